"""torch.compile on BERT-base: first-call compile time of backend="anec" against the default
inductor backend (both measured in this process), and anec's steady-state simulated latency on
every target's ANE (the simulator's timing model, from the compiled model's report).

    python benchmarks/torch_compile.py [--model bert-base] [--seq 128]

Numbers come from a shared machine: read them as ranges.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.zoo
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")  # a first call compiles from scratch

import torch

import anec
from tests import zoo


def first_call_seconds(model: torch.nn.Module, args: tuple[torch.Tensor, ...], backend: str) -> tuple[float, torch.Tensor]:
    """Seconds from torch.compile to the end of the first call (tracing plus backend compile)."""
    torch._dynamo.reset()
    start = time.perf_counter()
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        out = compiled(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert-base", choices=sorted(zoo.ZOO))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    model, feeds = zoo.torch_model(args.model)
    inputs = tuple(torch.from_numpy(v) for v in feeds.values())
    with torch.no_grad():
        expected = model(*inputs)

    print(f"{args.model}: first call of torch.compile (trace + compile + run; inductor with a cold cache)")
    times = {}
    for backend in ("anec", "inductor"):
        times[backend], out = first_call_seconds(model, inputs, backend)
        cosine = torch.nn.functional.cosine_similarity(out.flatten().double(), expected.flatten().double(), dim=0)
        print(f"  backend={backend:9s} {times[backend]:7.2f} s   cosine to eager {cosine:.6f}")
    print(f"  anec / inductor: {times['anec'] / times['inductor']:.2f}x")

    print(f"\n{args.model}: steady-state simulated latency per target (torch.export + anec.compile)")
    program = torch.export.export(model, inputs)
    for target in anec.TARGETS:
        compiled = anec.compile(program, target=target, emit="descriptors")
        report = compiled.report
        latency = report.predicted_latency_s
        shown = f"{latency * 1e3:8.3f} ms" if latency is not None else "  (no timing model in this build)"
        print(f"  {target.name:14s} {shown}   ANE FLOPs {report.ane_flops_fraction:6.1%}   segments {report.segments}")


if __name__ == "__main__":
    main()
