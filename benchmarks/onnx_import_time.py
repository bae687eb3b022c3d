"""How long anec takes to import BERT-base (legacy export, ~800 nodes, 110 M parameters).

    python benchmarks/onnx_import_time.py [--model bert-base] [--exporter legacy]

Prints the best of three imports next to two anchors run in the same process: reading the file
with onnx.load, and creating an onnxruntime session for it. The goal is an import under 3 s.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anec.importers.onnx import import_onnx
from tests import zoo


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--exporter", default="legacy", choices=["legacy", "dynamo"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import onnx
    import onnxruntime

    path = zoo.onnx_model(args.model, args.exporter)
    proto = onnx.load(str(path))
    nodes, params = len(proto.graph.node), sum(int(onnx.numpy_helper.to_array(t).size) for t in proto.graph.initializer)
    module = import_onnx(path)
    ops = sum(1 for _ in next(iter(module.ops)).body.block.ops)
    anec_s = best_of(3, lambda: import_onnx(path))
    load_s = best_of(3, lambda: onnx.load(str(path)))
    ort_s = best_of(3, lambda: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    print(f"{args.model} ({args.exporter} export): {nodes} nodes, {params / 1e6:.1f} M parameters -> {ops} IR ops")
    print(f"anec import_onnx        {anec_s:6.2f} s   (goal < 3 s)")
    print(f"onnx.load               {load_s:6.2f} s   anec/onnx.load {anec_s / load_s:5.1f}x")
    print(f"onnxruntime session     {ort_s:6.2f} s   anec/onnxruntime {anec_s / ort_s:5.1f}x")


if __name__ == "__main__":
    main()
