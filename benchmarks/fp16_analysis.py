"""What the calibrated fp16 analysis costs: compile time and peak memory with and without samples.

    python benchmarks/fp16_analysis.py [--models bert-base resnet50] [--target m1]

Each model compiles twice to the graph IR (`emit="ir"`: the passes, no artifact), each in a fresh
subprocess so peak memory is per process: once without samples (lint and range analysis only) and
once calibrated on the zoo's sample inputs (`example_inputs`: float32 and fp16 runs side by side and
the error attribution). Prints both times, the ratio of what calibration adds to the plain compile
time (the goal: below 1), the ane-fp16 pass's own seconds, and each run's peak memory (goal: under
2 GB), with the number of fp16 warnings each gives.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE = """
import json, sys, time
import anec
from anec.pipeline import peak_memory_mb
from tests import zoo
name, target, calibrated = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
path = zoo.onnx_model(name)
samples = zoo.inputs(name) if calibrated else None
start = time.perf_counter()
compiled = anec.compile(path, target=target, emit="ir", example_inputs=samples)
seconds = time.perf_counter() - start
stats = compiled.report.stats
print(json.dumps({"seconds": seconds, "fp16_seconds": stats["pass_seconds"].get("ane-fp16", 0.0),
                  "peak_mb": peak_memory_mb(), "warnings": len(compiled.report.fp16_warnings)}))
"""


def measure(name: str, target: str, calibrated: bool) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", ONE, name, target, "1" if calibrated else "0"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"{name}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bert-base", "resnet50"])
    parser.add_argument("--target", default="m1")
    args = parser.parse_args()
    print(f"{'model':<12} {'plain s':>8} {'calibrated s':>13} {'added/plain':>12} {'ane-fp16 s':>11} {'peak MB':>16} {'warnings':>9}")
    for name in args.models:
        plain, calibrated = measure(name, args.target, False), measure(name, args.target, True)
        added = (calibrated["seconds"] - plain["seconds"]) / plain["seconds"]
        print(f"{name:<12} {plain['seconds']:8.1f} {calibrated['seconds']:13.1f} {added:12.2f} "
              f"{plain['fp16_seconds']:5.1f}/{calibrated['fp16_seconds']:<5.1f} "
              f"{plain['peak_mb']:7.0f}/{calibrated['peak_mb']:<8.0f} {plain['warnings']:4d}/{calibrated['warnings']:<4d}")


if __name__ == "__main__":
    main()
