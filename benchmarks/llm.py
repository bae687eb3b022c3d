"""GPT-2 small (124M) and a Llama-style decoder (~100M) generate through `anec.llm` — their forward
compiled by torch.compile(backend="anec") with a static KV cache — beside eager PyTorch: anec graph
compiles, tokens equal to eager's, the worst step's logits error (relative L2, the fp16 agreement
bar), wall times, then per chip the predicted prefill and decode tokens/s and the KV cache's bytes.
A second process then compiles the same model from the disk compile cache (its compile time printed).

    python benchmarks/llm.py [--tokens 64] [--models gpt2,llama] [--chips all|m1,m4]

Random weights from transformers configs (no download). The anec runtime executes ANE segments on
anec's simulator on this CPU, so anec's wall time measures the simulation, not an ANE; the
predictions are anec's timing model. Numbers come from a shared machine: read them as ranges.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from anec.agreement import REL_L2_MAX, error
from anec.integrations import dynamo
from anec.llm import CausalLM
from anec.targets import Target, resolve_targets

PROMPT_LENGTH = 8


def gpt2_small() -> torch.nn.Module:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()  # GPT-2's own sizes: 124M


def llama_100m() -> torch.nn.Module:
    """A Llama-style decoder of ~100M parameters: 8 layers of width 768, grouped queries (12 heads over 4)."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                                        num_key_value_heads=4, vocab_size=32000, max_position_embeddings=512,
                                        bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()


MODELS = {"gpt2": gpt2_small, "llama": llama_100m}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--models", default="gpt2,llama")
    parser.add_argument("--chips", default="all")
    parser.add_argument("--from-cache", help=argparse.SUPPRESS)  # the second process: one model, compile time only
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.from_cache:
        return compile_from_cache(args.from_cache, args.tokens)
    with tempfile.TemporaryDirectory(prefix="anec-llm-cache-") as cache:
        os.environ["ANEC_CACHE_DIR"] = cache
        for name in args.models.split(","):
            measure(name, args.tokens, [t for chip in args.chips.split(",") for t in resolve_targets(chip)])
            second = subprocess.run([sys.executable, __file__, "--from-cache", name, "--tokens", str(args.tokens)],
                                    capture_output=True, text=True, check=True)
            print(second.stdout.rstrip())


def measure(name: str, tokens: int, chips: list[Target]) -> None:
    model = MODELS[name]()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    prompt = torch.randint(1, model.config.vocab_size, (1, PROMPT_LENGTH), generator=torch.Generator().manual_seed(0))
    lm = CausalLM(model, PROMPT_LENGTH + tokens)
    print(f"{type(model).__name__} ({params:.0f}M parameters), {PROMPT_LENGTH}-token prompt, {tokens} new tokens (greedy)")
    lm.generate(prompt, tokens, eager=True)  # warm up torch itself, as anec's warm run is
    start = time.perf_counter()
    eager = lm.generate(prompt, tokens, eager=True)
    eager_s = time.perf_counter() - start
    start = time.perf_counter()
    got = lm.generate(prompt, tokens)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = lm.generate(prompt, tokens)
    warm_s = time.perf_counter() - start
    same = [int(torch.equal(a.argmax(-1), b.argmax(-1))) for a, b in zip(got.logits, eager.logits, strict=True)]
    with torch.no_grad():  # eager's logits on anec's own tokens: once a near-tie flips, the two generations read different text
        forced = model(got.tokens[:, :-1]).logits[:, PROMPT_LENGTH - 1:]
    errors = [error(a.numpy(), forced[:, step].numpy()).rel_l2 for step, a in enumerate(got.logits)]
    worst = max(errors)
    new_tokens = (got.tokens[0, PROMPT_LENGTH:] != eager.tokens[0, PROMPT_LENGTH:]).nonzero()
    if len(new_tokens):
        step = int(new_tokens[0])
        top = eager.logits[step][0].topk(2).values
        print(f"  the tokens part at step {step}: eager's two best logits there are {float(top[0] - top[1]):.1e} apart, "
              f"anec's logits within rel L2 {errors[step]:.1e} of eager's")
    for why in got.fallbacks:
        print(f"  a graph ran eagerly in torch: {why}")
    partitions = [report.partitions for report in dynamo.REPORTS[-got.graphs:]] if got.graphs else []
    print(f"  anec graphs compiled: {got.graphs} (then {warm.graphs}), ANE partitions each {partitions}; fallbacks: {len(got.fallbacks)}; tokens equal eager: "
          f"{torch.equal(got.tokens, eager.tokens)} ({sum(same)}/{len(same)} steps); worst step's logits rel L2 {worst:.1e} "
          f"(bar {REL_L2_MAX:.0e}, against eager on the same tokens)")
    print(f"  wall time: anec {warm_s:6.1f} s ({warm_s / tokens * 1e3:6.0f} ms/token, simulated on this CPU), first call "
          f"{first_s:6.1f} s (compile ~{first_s - warm_s:5.1f} s); eager {eager_s:5.2f} s ({eager_s / tokens * 1e3:5.1f} ms/token)")
    start = time.perf_counter()
    figures = lm.predict(PROMPT_LENGTH, chips=chips)
    print(f"  predicted (anec's timing model, {time.perf_counter() - start:.0f} s to compile both steps for {len(chips)} chips; "
          f"KV cache {figures[0].kv_cache_bytes / 2**20:.1f} MiB fp16 for {PROMPT_LENGTH + tokens} positions):")
    for f in figures:
        print(f"    {f.chip:11s} prefill {f.prefill_tokens_per_s:8.0f} tokens/s, decode {f.decode_tokens_per_s:6.1f} tokens/s, "
              f"ANE FLOPs {f.ane_flops_fraction:.1%}")
    np.testing.assert_array_equal(got.tokens.numpy(), warm.tokens.numpy())  # the warm run reads the same graphs


def compile_from_cache(name: str, tokens: int) -> None:
    """A new process with the first one's `$ANEC_CACHE_DIR` and cache length: two tokens (prefill,
    one decode step), compile time the first `generate` minus a warm one."""
    model = MODELS[name]()
    prompt = torch.randint(1, model.config.vocab_size, (1, PROMPT_LENGTH), generator=torch.Generator().manual_seed(0))
    lm = CausalLM(model, PROMPT_LENGTH + tokens)
    start = time.perf_counter()
    first = lm.generate(prompt, 2)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    lm.generate(prompt, 2)
    warm_s = time.perf_counter() - start
    print(f"  a second process, compile cache on disk: {first.graphs} graphs, compile ~{first_s - warm_s:.1f} s "
          f"(first generate {first_s:.1f} s, warm {warm_s:.1f} s)")


if __name__ == "__main__":
    main()
