"""A decoder (GPT-2) with random weights: compile for the ANE, simulate, compare with PyTorch.

    python examples/decoder.py [--small] [--target m4] [--emit descriptors|coreml] [-o gpt2.anec]

Full size is GPT-2 small (12 layers, hidden 768) on 128 tokens; `--small` is 2 layers of width 64.
"""

from __future__ import annotations

from common import Example, hf_module, main, tokens

SEQUENCE = 128
VOCAB = 50257


def build(small: bool) -> Example:
    size = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=SEQUENCE) if small else {}
    module = hf_module("GPT2Model", "GPT2Config", "last_hidden_state", **size)
    return Example("gpt2-small" if small else "gpt2", module, {"input_ids": tokens(1000 if small else VOCAB, SEQUENCE)})


if __name__ == "__main__":
    main(__doc__.splitlines()[0], build)
