"""The simulator's speed against onnxruntime's f32 CPU time, on the same inputs, in one process.

    python benchmarks/simulator.py [--blas-threads N] [resnet50 bert-base ...]

For each model: compile it for the M1 to descriptors, run the decoded program once (building the
machine), then time the simulator (ANE programs plus the CPU ops between them) and onnxruntime over
the same inputs; print both medians, their ratio (goal: within 3x) and the outputs' agreement.
The simulator's GEMMs run in OpenBLAS; on a machine other jobs keep busy, its threads contend, and
`--blas-threads 1` (set before numpy loads) is faster. onnxruntime keeps its own thread pool.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

if "--blas-threads" in sys.argv:  # must be set before numpy loads OpenBLAS
    at = sys.argv.index("--blas-threads")
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = sys.argv[at + 1]
    del sys.argv[at:at + 2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import zoo  # the test model zoo: seeded random weights, exported once

MODELS = ("resnet50", "bert-base")
REPEATS = 7


def median_seconds(*fns, repeats: int = REPEATS) -> list[float]:
    """Median time of each function, the functions taking turns so they share the machine's load."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(names: list[str]) -> None:
    import onnxruntime

    import anec
    from anec.runtime.check import error

    print(f"OpenBLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, CPUs: {os.cpu_count()}")
    print(f"{'model':12} {'simulator':>11} {'onnxruntime':>12} {'ratio':>6}  agreement")
    for name in names:
        path = zoo.onnx_model(name, "legacy")
        feeds = zoo.inputs(name)
        compiled = anec.compile(str(path), target="m1", emit="descriptors")
        outputs = compiled.run(feeds)                     # builds the decoded program and the machine
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        reference = session.run(None, feeds)
        sim, ort = median_seconds(lambda compiled=compiled, feeds=feeds: compiled.run(feeds),
                                  lambda session=session, feeds=feeds: session.run(None, feeds))
        e = error(next(iter(outputs.values())), reference[0])
        print(f"{name:12} {sim * 1e3:8.1f} ms {ort * 1e3:9.1f} ms {sim / ort:5.2f}x  "
              f"cosine {e.cosine:.6f}, rel L2 {e.rel_l2:.2e}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
