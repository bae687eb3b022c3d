"""An encoder (BERT) with random weights: compile for the ANE, simulate, compare with PyTorch.

    python examples/encoder.py [--small] [--target m4] [--emit descriptors|coreml] [-o bert.anec]

Full size is BERT-base (12 layers, hidden 768) on 128 tokens; `--small` is 2 layers of width 64.
"""

from __future__ import annotations

from common import Example, hf_module, main, tokens

SEQUENCE = 128
VOCAB = 30522


def build(small: bool) -> Example:
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128) if small else {}
    module = hf_module("BertModel", "BertConfig", "last_hidden_state", **size)
    return Example("bert-small" if small else "bert-base", module, {"input_ids": tokens(VOCAB, SEQUENCE)})


if __name__ == "__main__":
    main(__doc__.splitlines()[0], build)
