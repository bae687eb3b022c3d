"""Peak memory of compiling a zoo model from ONNX with anec, next to onnxruntime loading it.

    python benchmarks/compile_memory.py [bert-base] [--target m1]

Each measurement runs in a fresh subprocess (peak RSS is per process): anec imports the ONNX file
and runs the whole descriptor pipeline (legalize … tile); the anchor creates an onnxruntime
session for the same file. Prints both peaks (each child's own high-water mark, `peak_memory_mb`)
and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ANEC = """
import json, sys, time
from anec.importers import import_model
from anec.pipeline import CompileOptions, peak_memory_mb, run_pipeline
start = time.perf_counter()
module = import_model(sys.argv[1])
stats = run_pipeline(module, CompileOptions(target=sys.argv[2], emit="descriptors"))
print(json.dumps({"peak_mb": peak_memory_mb(), "seconds": time.perf_counter() - start}))
"""

ORT = """
import json, sys, time
from anec.pipeline import peak_memory_mb  # before onnxruntime, so both sides count the same imports
import onnxruntime
start = time.perf_counter()
onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(json.dumps({"peak_mb": peak_memory_mb(), "seconds": time.perf_counter() - start}))
"""


def measure(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="bert-base")
    parser.add_argument("--target", default="m1")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests import zoo

    path = str(zoo.onnx_model(args.model, "legacy"))
    anec = measure(ANEC, path, args.target)
    ort = measure(ORT, path)
    print(f"{args.model} ({Path(path).stat().st_size / 2**20:.0f} MB ONNX), target {args.target}")
    print(f"  anec compile (import + all passes): peak {anec['peak_mb']:.0f} MB, {anec['seconds']:.1f} s")
    print(f"  onnxruntime session:                peak {ort['peak_mb']:.0f} MB, {ort['seconds']:.1f} s")
    print(f"  ratio anec / onnxruntime: {anec['peak_mb'] / ort['peak_mb']:.2f}x memory, {anec['seconds'] / ort['seconds']:.1f}x time")


if __name__ == "__main__":
    main()
