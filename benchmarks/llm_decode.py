"""GPT-2 `generate` with its forward compiled by torch.compile(backend="anec"): per-token time as a
ratio to eager PyTorch, for transformers' static cache and its default dynamic cache, with the
number of anec graph compiles and the warnings the backend gave; then the decode step's predicted
tokens per second on each chip's ANE (anec's timing model, from the step exported with the static
cache and compiled by `anec.compile`).

    python benchmarks/llm_decode.py [--layers 2] [--width 64] [--tokens 32]

Random weights from a small config (no download). The anec runtime here executes ANE segments on
anec's simulator on the CPU, so the ratio measures this machine's simulation and host overhead,
not an ANE; compile time is the first `generate` minus a warm one. Numbers come from a shared
machine: read them as ranges.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
from transformers.integrations.executorch import TorchExportableModuleWithStaticCache

import anec
from anec import AnecFallbackWarning
from anec.integrations import dynamo


def build(layers: int, width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_head=max(1, width // 32), n_embd=width, vocab_size=1024, n_positions=256,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def timed_generate(model: torch.nn.Module, prompt: torch.Tensor, options: dict) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(prompt, **options)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    prompt = torch.randint(1, 1024, (1, 8), generator=torch.Generator().manual_seed(0))
    print(f"GPT-2, {args.layers} layers, width {args.width}, {args.tokens} new tokens (greedy)")
    for cache, extra in (("static", {"cache_implementation": "static"}), ("dynamic", {})):
        options = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "do_sample": False, **extra}
        model = build(args.layers, args.width)
        timed_generate(model, prompt, options)  # warm up torch itself
        eager_s, expected = timed_generate(model, prompt, options)
        torch._dynamo.reset()
        dynamo.REPORTS.clear()
        dynamo.WARNED.clear()
        model.forward = torch.compile(model.forward, backend="anec")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AnecFallbackWarning)
            first_s, _ = timed_generate(model, prompt, options)
            anec_s, got = timed_generate(model, prompt, options)
        fallbacks = [w for w in caught if issubclass(w.category, AnecFallbackWarning)]
        on_anec = sum(r.fallback is None for r in dynamo.REPORTS)
        print(f"  {cache:7s} cache: per token anec {anec_s / args.tokens * 1e3:7.2f} ms, eager {eager_s / args.tokens * 1e3:6.2f} ms, "
              f"ratio {anec_s / eager_s:5.2f}x; {len(dynamo.REPORTS)} graphs ({on_anec} through anec), compile {first_s - anec_s:5.1f} s; "
              f"tokens equal eager: {torch.equal(got, expected)}; {len(fallbacks)} AnecFallbackWarning")
    predicted_decode(build(args.layers, args.width), cache_length=8 + args.tokens)


def predicted_decode(model: torch.nn.Module, cache_length: int) -> None:
    """Decode tokens/s per chip: 1 / the predicted latency of one step with a `cache_length` static cache."""
    model.generation_config = GenerationConfig(use_cache=True, cache_implementation="static", max_length=cache_length,
                                               cache_config={"batch_size": 1, "max_cache_len": cache_length, "device": "cpu"})
    step = TorchExportableModuleWithStaticCache(model, batch_size=1, max_cache_len=cache_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(step, (), {"input_ids": torch.tensor([[1]]), "cache_position": torch.tensor([8])}, strict=True)
    figures = []
    for target in anec.TARGETS:
        report = anec.compile(program, target=target, emit="ir").report
        figures.append(f"{target.name} {1 / report.predicted_latency_s:8.0f}")
    print(f"  predicted decode tokens/s (cache {cache_length}, ANE FLOPs {report.ane_flops_fraction:.0%}): " + ", ".join(figures))


if __name__ == "__main__":
    main()
