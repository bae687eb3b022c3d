"""Core ML emission, anec against coremltools, in one process and on the same models.

anec:        ONNX file -> `anec.compile(..., emit="coreml")` -> `.save("x.mlpackage")`
coremltools: the same PyTorch module's `torch.export` program -> `ct.convert` -> `.save("x.mlpackage")`

Both sides are timed from their model file or program to a package on disk (exporting the ONNX
file and the torch.export program is not timed), after a warm-up that pays every import. Both
target the same OS with fp16 compute. MIL op counts are read back from the saved packages
(constants excluded). The goal: anec at most half of coremltools' time, with no more ops.

    python benchmarks/coreml.py                 # the five full-size models
    python benchmarks/coreml.py bert-tiny resnet-tiny --exporter dynamo      # quick look
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import zoo
from tests.emit.mil_interpreter import load_package

MODELS = ("bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2")


def mil_ops(path: Path) -> Counter:
    program = load_package(path)
    return Counter(op.op_type for op in program.functions["main"].operations if op.op_type != "const")


def anec_seconds(name: str, exporter: str, target: str, out: Path) -> float:
    import anec

    onnx_path = zoo.onnx_model(name, exporter)
    start = time.perf_counter()
    anec.compile(str(onnx_path), emit="coreml", deployment_target=target).save(out)
    return time.perf_counter() - start


def coremltools_seconds(name: str, target: str, out: Path, clock: Callable[[], float] = time.perf_counter) -> tuple[float, str]:
    """(seconds by `clock`, which ATen decomposition coremltools could take)."""
    import coremltools as ct
    import torch

    model, feeds = zoo.torch_model(name)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    exported = torch.export.export(model, args)
    options = {"convert_to": "mlprogram", "minimum_deployment_target": getattr(ct.target, target.replace("ios", "iOS")),
               "compute_precision": ct.precision.FLOAT16, "skip_model_load": True}
    for label, table in (("aten", {}), ("core-aten", None)):
        program = exported.run_decompositions(table) if table is not None else exported.run_decompositions()
        start = clock()
        try:
            ct.convert(program, **options).save(str(out))
        except NotImplementedError:
            continue  # an ATen op coremltools does not know: retry decomposed to core ATen
        return clock() - start, label
    raise RuntimeError(f"coremltools cannot convert {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--exporter", default="legacy", choices=("legacy", "dynamo"), help="ONNX exporter for anec's input")
    parser.add_argument("--deployment-target", default="ios17", choices=("ios16", "ios17", "ios18"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from anec.mlpackage import quiet_coremltools

    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_coremltools(), contextlib.redirect_stdout(io.StringIO()) as log:
        folder = Path(tmp)
        anec_seconds("resnet-tiny", args.exporter, args.deployment_target, folder / "warm-a.mlpackage")
        coremltools_seconds("resnet-tiny", args.deployment_target, folder / "warm-c.mlpackage")
        for name in args.models:
            a = anec_seconds(name, args.exporter, args.deployment_target, folder / f"{name}-anec.mlpackage")
            c, dialect = coremltools_seconds(name, args.deployment_target, folder / f"{name}-ct.mlpackage")
            rows.append((name, a, c, dialect, mil_ops(folder / f"{name}-anec.mlpackage"), mil_ops(folder / f"{name}-ct.mlpackage")))
    del log
    print(f"Core ML emission, {args.deployment_target}, anec from ONNX ({args.exporter} exporter), coremltools from torch.export")
    print(f"{'model':<12} {'anec s':>7} {'ct s':>7} {'anec/ct':>8} {'anec ops':>9} {'ct ops':>7}  anec casts  ct input")
    for name, a, c, dialect, ours, theirs in rows:
        print(f"{name:<12} {a:7.2f} {c:7.2f} {a / c:8.2f} {sum(ours.values()):9d} {sum(theirs.values()):7d}  "
              f"{ours['cast']:10d}  {dialect}")
    total_a, total_c = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':<12} {total_a:7.2f} {total_c:7.2f} {total_a / total_c:8.2f}")


if __name__ == "__main__":
    main()
