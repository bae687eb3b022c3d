"""The descriptor route on full-size models: compile to .anec for each chip, check the file, simulate.

    python benchmarks/descriptor_models.py [--targets m1,m4] [MODEL ...]

For every model and chip: compile to descriptors twice (the two files must be byte-identical), check
that decode → encode reproduces the file, run the decoded program on the simulator and compare with
onnxruntime on the same inputs (goal: cosine >= 0.999, relative L2 <= 1e-2). Prints one row each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import zoo  # the test model zoo: seeded random weights, exported once

MODELS = ("bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2")


def check(name: str, target: str) -> str:
    import onnxruntime

    import anec
    from anec.descriptors.binary import decode, encode
    from anec.runtime import run_file
    from anec.runtime.check import error

    path = zoo.onnx_model(name, "legacy")
    feeds = zoo.inputs(name)
    start = time.perf_counter()
    first = anec.compile(str(path), target=target, emit="descriptors")
    compile_s = time.perf_counter() - start
    data = first.save(Path("/tmp") / f"anec-{name}-{target}.anec").read_bytes()
    again = anec.compile(str(path), target=target, emit="descriptors").save(Path("/tmp") / f"anec-{name}-{target}-2.anec").read_bytes()
    decoded = decode(data)
    identical = encode(decoded) == data
    start = time.perf_counter()
    outputs = run_file(decoded, feeds)
    run_s = time.perf_counter() - start
    reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    e = error(next(iter(outputs.values())), reference[0])
    tasks = sum(len(p.tasks) for p in decoded.programs)
    return (f"{name:12} {target:5} {len(data) / 2**20:8.1f} MB {len(decoded.programs):3d} prog {tasks:5d} TDs  "
            f"round trip {'same' if identical else 'DIFFERS'}, recompile {'same' if data == again else 'DIFFERS'}  "
            f"cosine {e.cosine:.6f} rel L2 {e.rel_l2:.2e} {'ok' if e.ok else 'MISMATCH'}  "
            f"compile {compile_s:.1f}s run {run_s:.1f}s  predicted {first.report.predicted_latency_s * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--targets", default="m1,m4")
    args = parser.parse_args()
    for name in args.models:
        for target in args.targets.split(","):
            try:
                print(check(name, target), flush=True)
            except Exception as e:  # report and go on to the next model
                print(f"{name:12} {target:5} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)


if __name__ == "__main__":
    main()
