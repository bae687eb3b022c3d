"""Where a static-QDQ model's output parts from onnxruntime's, stage by stage, and how far onnxruntime
parts from itself when its float32 arithmetic moves by one ulp, or when its float constants are
rounded to fp16 as fp16 hardware must hold them (the floors any other implementation can reach:
requantizations flip on tiny differences and the flips compound layer by layer).

    python benchmarks/qdq_stages.py bert-base --chips m1,m4

Per chip: cosine against onnxruntime (optimized, and with graph optimizations off: the ONNX spec's
float arithmetic) of the float32 import, the fp16 IR interpreter after the graph passes, and the
simulated descriptor program; then the simulator against the interpreter (the hardware stage).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # compression.py beside it

from compression import cosine, quantize

from anec.context import make_context
from anec.importers import import_model
from anec.interpreter import interpret
from anec.pipeline import GRAPH_PASSES, CompileOptions, build_passes, descriptor_program
from anec.runtime import run_file, run_interpreted
from anec.targets import get_target
from tests import zoo


def onnxruntime_output(path: Path, feeds: dict[str, np.ndarray], optimized: bool) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if not optimized:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def one_ulp_off(path: Path, out: Path) -> Path:
    """The model with every constant weight `DequantizeLinear` folded to float32 and half its values
    moved one ulp up (seeded)."""
    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    kept = []
    rng = np.random.default_rng(0)
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in initializers:
            kept.append(node)
            continue
        q = initializers[node.input[0]].astype(np.float32)
        scale = initializers[node.input[1]].astype(np.float32)
        zero = initializers[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        if scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        value = ((q - zero) * scale).astype(np.float32)
        value = np.where(rng.random(value.shape) < 0.5, np.nextafter(value, np.float32(np.inf)), value).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.save(model, str(out))
    return out


def constants_in_fp16(path: Path, out: Path) -> Path:
    """The model with every float32 initializer (scales, biases, norms, tables) rounded to fp16."""
    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.astype(np.float16).astype(np.float32), init.name))
    onnx.save(model, str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="zoo model name (bert-base, resnet50, bert-tiny, …)")
    parser.add_argument("--chips", default="m1,m4")
    args = parser.parse_args()
    feeds = zoo.inputs(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        path = quantize(zoo.onnx_model(args.model), feeds, Path(tmp) / "qdq.onnx")
        references = {"ort": onnxruntime_output(path, feeds, True), "ort-unoptimized": onnxruntime_output(path, feeds, False)}
        nudged = onnxruntime_output(one_ulp_off(path, Path(tmp) / "ulp.onnx"), feeds, False)
        rounded = onnxruntime_output(constants_in_fp16(path, Path(tmp) / "fp16.onnx"), feeds, True)
        print(f"onnxruntime optimized vs unoptimized {cosine(references['ort'], references['ort-unoptimized']):.5f}; "
              f"unoptimized vs itself with weights one float32 ulp off {cosine(nudged, references['ort-unoptimized']):.5f}; "
              f"optimized vs itself with its float constants rounded to fp16 {cosine(rounded, references['ort']):.5f}", flush=True)
        float32 = interpret(import_model(path), feeds, precision="f32", segments="f32")[0]
        for chip in args.chips.split(","):
            module = import_model(path)
            options = CompileOptions(target=get_target(chip).arch, emit="descriptors")
            ctx = make_context()
            for p in build_passes(options):
                if p.name in GRAPH_PASSES:
                    p.apply(ctx, module)
            (fp16,) = run_interpreted(module, feeds).values()
            (simulated,) = run_file(descriptor_program(module, options.target, {}), feeds).values()
            for stage, value in (("float32 import", float32), ("fp16 interpreter", fp16), ("simulated", simulated)):
                print(f"{args.model} {chip} {stage:16} " + "  ".join(f"vs {r} {cosine(value, w):.5f}" for r, w in references.items()))
            print(f"{args.model} {chip} simulated vs fp16 interpreter {cosine(simulated, fp16):.6f}; "
                  f"fp16 interpreter vs float32 import {cosine(fp16, float32):.5f}", flush=True)


if __name__ == "__main__":
    main()
