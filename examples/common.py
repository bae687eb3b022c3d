"""What every model-family example does once it has a PyTorch module and its inputs.

`main(build)` parses the shared command line (`--small`, `--target`, `--emit`, `-o`), builds the
module from a `transformers` config with seeded random weights (no network: HF_HUB_OFFLINE=1),
compiles it with `anec.compile` (traced by torch.export), prints the placement, FLOPs and predicted
latency, runs the compiled model on the simulator, compares it with eager PyTorch and writes the
artifact.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class Example:
    """A model ready to compile: the module, its inputs by name, and a name for the artifact."""

    name: str
    module: Any
    inputs: dict[str, np.ndarray]


def hf_module(model_cls: str, config_cls: str, output: str, **config: Any) -> Any:
    """`transformers.<model_cls>(<config_cls>(**config))` with seeded random weights, returning one output tensor."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**config)).eval()

    class OneOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return getattr(self.model(*args), output)

    return OneOutput().eval()


def tokens(vocab: int, length: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, vocab, size=(1, length), dtype=np.int64)


def pixels(size: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="a tiny config of the same architecture (seconds, not minutes)")
    parser.add_argument("--target", default="m4", help="chip to compile for (default m4; `anec targets` lists them)")
    parser.add_argument("--emit", default="descriptors", choices=("descriptors", "coreml"),
                        help="artifact: an .anec program for the simulator (default) or a Core ML .mlpackage")
    parser.add_argument("-o", "--output", type=Path, help="where to write the artifact (default: a fresh temporary folder)")
    return parser.parse_args()


def main(description: str, build: Callable[[bool], Example]) -> None:
    """Build (small or full size), compile, report, simulate, compare with eager PyTorch, save."""
    import torch

    import anec

    args = parse_args(description)
    example = build(args.small)
    feeds = tuple(torch.from_numpy(v) for v in example.inputs.values())
    with torch.no_grad():
        reference = example.module(*feeds).numpy()

    start = time.perf_counter()
    compiled = anec.compile(example.module, target=args.target, emit=args.emit, example_inputs=feeds)
    print(f"compiled {example.name} for the {compiled.target.name} in {time.perf_counter() - start:.1f} s")
    report = compiled.report
    flops = sum(r.flops for r in report.ops)
    print(f"placement: {len(report.ops) - len(report.host_ops)} of {len(report.ops)} ops on the ANE "
          f"({report.ane_flops_fraction:.1%} of {flops / 1e9:.3f} GFLOPs) in {report.segments} segment(s)")
    for r in report.host_ops:
        print(f"  CPU {r.op} {r.name}: {r.reason}")
    print(f"predicted latency on the {compiled.target.name}: {(report.predicted_latency_s or 0.0) * 1e3:.3f} ms")
    notes = report.fp16_fixes + report.fp16_warnings
    for note in notes[:3]:
        print(f"  fp16: {note}")
    if len(notes) > 3:
        print(f"  fp16: … and {len(notes) - 3} more")

    start = time.perf_counter()
    outputs = compiled.run(list(example.inputs.values()))  # positional: traced inputs are named args_0, …
    simulated = next(iter(outputs.values()))
    error = float(np.max(np.abs(simulated.astype(np.float32) - reference)))
    scale = float(np.max(np.abs(reference))) or 1.0
    print(f"simulated in {time.perf_counter() - start:.1f} s; max |simulator - eager PyTorch| = {error:.4g} "
          f"({error / scale:.2%} of the largest output)")
    matches = simulated.shape == reference.shape and error <= 0.05 * scale
    print(f"match: {'yes' if matches else 'NO'} (fp16 tolerance: 5% of the largest output)")

    suffix = ".anec" if args.emit == "descriptors" else ".mlpackage"
    output = args.output or Path(tempfile.mkdtemp(prefix="anec-example-")) / f"{example.name}{suffix}"
    print(f"wrote {compiled.save(output)}")
    if not matches:
        raise SystemExit(1)
