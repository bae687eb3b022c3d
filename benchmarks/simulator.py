"""The simulator's speed against onnxruntime's f32 CPU time, on the same inputs, in one process.

    python benchmarks/simulator.py [resnet50 bert-base ...]

For each model: compile it for the M1 to descriptors, run the decoded program once (building the
machine), then time the simulator (ANE programs plus the CPU ops between them) and onnxruntime over
the same inputs; print both medians, their ratio (goal: within 3x) and the outputs' agreement.

Each tool is timed in its own block after a pause. Both keep worker threads that spin for a while
after each parallel section (the simulator's kernel pool after a kernel, onnxruntime after a run);
timed in turns, each tool ran beside the other's spinning threads — onnxruntime's ResNet-50 took
49-91 ms that way and 26 ms alone, which made the simulator look two to three times closer than it
is. Both use every CPU: `ANEC_SIM_THREADS=N` sets the simulator's kernel threads (its GEMMs run on
them, in numpy's OpenBLAS), and `ANEC_SIM_KERNELS=numpy` times the numpy twins of its C kernels
(single-threaded products: the specification, not a fast path).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import zoo  # the test model zoo: seeded random weights, exported once

MODELS = ("resnet50", "bert-base")
REPEATS = 7
PAUSE_S = 1.0
"""Longer than the worker threads of either tool spin after their last job."""


def quiet_median(fn, repeats: int = REPEATS) -> float:
    """Median time of `fn` over `repeats` calls, after a pause that lets the other tool's threads sleep."""
    time.sleep(PAUSE_S)
    spent = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        spent.append(time.perf_counter() - start)
    return statistics.median(spent)


def main(names: list[str]) -> None:
    import onnxruntime

    import anec
    from anec.runtime.check import error
    from anec.sim.fp16_kernels import ACTIVE, threads

    print(f"CPUs: {os.cpu_count()}, simulator kernels: {ACTIVE.name}" + (f" on {threads()} threads" if ACTIVE.name == "c" else ""))
    print(f"{'model':12} {'simulator':>11} {'onnxruntime':>12} {'ratio':>6}  agreement")
    for name in names:
        path = zoo.onnx_model(name, "legacy")
        feeds = zoo.inputs(name)
        compiled = anec.compile(str(path), target="m1", emit="descriptors")
        outputs = compiled.run(feeds)                     # builds the decoded program and the machine
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        reference = session.run(None, feeds)
        sim = quiet_median(lambda compiled=compiled, feeds=feeds: compiled.run(feeds))
        ort = quiet_median(lambda session=session, feeds=feeds: session.run(None, feeds))
        e = error(next(iter(outputs.values())), reference[0])
        print(f"{name:12} {sim * 1e3:8.1f} ms {ort * 1e3:9.1f} ms {sim / ort:5.2f}x  "
              f"cosine {e.cosine:.6f}, rel L2 {e.rel_l2:.2e}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
