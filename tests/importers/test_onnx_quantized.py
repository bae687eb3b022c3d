"""QDQ ONNX: constant int8 weights import compressed, activation quantize/dequantize pairs run on the ANE
with an exact rounding op that fp16 adds spell on the engine; outputs follow onnxruntime running the same quantized model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import anec
from anec.compression import AffineWeight
from anec.dialects import ane, host
from anec.dialects.discardable import FP16_WARNINGS_ATTR, notes
from anec.importers.onnx import import_onnx
from anec.interpreter import interpret
from anec.weights import compressed_of, store_of
from tests.importers.onnx_models import F, model
from tests.importers.quantized_models import INPUT_SHAPE, cosine, onnxruntime_run, static_qdq

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def qdq_models(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    folder = tmp_path_factory.mktemp("qdq")
    return {per_channel: static_qdq(folder, per_channel) for per_channel in (True, False)}


def _stored(module) -> dict[str, AffineWeight]:
    return {op.handle.data: compressed_of(op) for op in module.walk() if isinstance(op, ane.ConstOp) and op.stored is not None}


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_quantize_static_weights_import_compressed_and_nothing_runs_on_the_cpu(qdq_models: dict[bool, Path], per_channel: bool) -> None:
    module = import_onnx(qdq_models[per_channel])
    assert not [op for op in module.walk() if isinstance(op, host.HostOp)]
    stored = _stored(module)
    assert sorted(stored) == ["w1_quantized", "w2_quantized", "wg_quantized", "wm_quantized"]
    assert all(w.quantized.dtype == np.int8 for w in stored.values())
    assert {name: w.axis for name, w in stored.items()} == (
        {"w1_quantized": 0, "w2_quantized": 0, "wg_quantized": 0, "wm_quantized": 1} if per_channel else dict.fromkeys(stored))
    store = store_of(module)  # no float copy of a weight sits beside its compressed form
    assert not [h for h in store if store.compressed(h) is None and store[h].size >= 32 * 27]


def test_weights_stay_compressed_through_the_graph_passes(qdq_models: dict[bool, Path]) -> None:
    compiled = anec.compile(qdq_models[True], target="m1", emit="ir")
    stored = _stored(compiled.ir)
    assert len(stored) == 4 and all(isinstance(w, AffineWeight) for w in stored.values())
    shapes = sorted(w.shape for w in stored.values())  # the linear layers became 1x1 convs, their weights moved stored
    assert shapes == [(32, 3, 3, 3), (64, 32, 3, 3), (64, 128, 1, 1), (128, 64, 1, 1)]
    assert next(w for w in stored.values() if w.shape == (64, 128, 1, 1)).axis == 0


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_static_qdq_matches_onnxruntime_on_the_graph_and_on_the_simulator(qdq_models: dict[bool, Path], per_channel: bool) -> None:
    path = qdq_models[per_channel]
    x = np.random.default_rng(5).standard_normal(INPUT_SHAPE).astype(np.float32)
    expected = onnxruntime_run(path, x)
    for chip in ("m1", "m4"):
        compiled = anec.compile(path, target=chip, emit="ir")
        assert cosine(interpret(compiled.ir, {"x": x})[0], expected) >= 0.999
        (simulated,) = compiled.run({"x": x}).values()
        assert cosine(simulated, expected) >= 0.999


def _qdq_pair(scale: float, zero: int, dtype: int) -> onnx.ModelProto:
    zero_array = np.array(zero, np.uint8 if dtype == TensorProto.UINT8 else np.int8)
    inits = {"s": np.array(scale, np.float32), "z": zero_array}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant")]
    m = model(nodes, [("x", F, [1, 4, 4, 8])], ["y"], inits, opset=19)  # onnx's evaluator: DequantizeLinear from 19
    m.graph.output[0].type.tensor_type.elem_type = F  # onnxruntime wants typed outputs
    return m


@pytest.mark.parametrize(("zero", "dtype"), [(0, TensorProto.INT8), (128, TensorProto.UINT8), (3, TensorProto.UINT8)])
def test_an_activation_pair_rounds_half_to_even_and_clamps_like_onnxruntime(zero: int, dtype: int, tmp_path: Path) -> None:
    import onnxruntime
    from onnx.reference import ReferenceEvaluator

    m = _qdq_pair(0.25, zero, dtype)
    path = tmp_path / "pair.onnx"
    onnx.save(m, path)
    # ties (0.125 / 0.25 = 0.5, 0.375 / 0.25 = 1.5), values beyond the range, all exact in fp16
    x = (np.arange(128, dtype=np.float32) - 64).reshape(1, 4, 4, 8) * 0.125 * np.float32(1.5) ** (np.arange(128) % 3 == 0).reshape(1, 4, 4, 8)
    x = x.astype(np.float16).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ReferenceEvaluator(m).run(None, {"x": x})[0], expected)
    np.testing.assert_array_equal(interpret(import_onnx(m), {"x": x})[0], expected)  # the float32 IR rounds, too
    compiled = anec.compile(path, target="m1", emit="ir")
    assert not [op for op in compiled.ir.walk() if isinstance(op, host.HostOp)]
    assert not [op for op in compiled.ir.walk() if notes(op, FP16_WARNINGS_ATTR)]
    np.testing.assert_array_equal(interpret(compiled.ir, {"x": x})[0], expected)
    (simulated,) = compiled.run({"x": x}).values()
    np.testing.assert_array_equal(simulated, expected)


def test_the_float32_ir_of_a_pair_is_onnxs_bit_for_bit_next_to_ties_and_per_channel() -> None:
    """Quotients a float32 ulp either side of a tie, which no fp16 shift rounds right, and a per-channel
    zero point: the imported IR in float32 is the reference evaluator's, every element."""
    from onnx.reference import ReferenceEvaluator

    scale = np.float32(0.1)
    ties = (np.arange(-40, 40, dtype=np.float32) + 0.5) * scale
    x = np.stack([ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)), ties * 37]).reshape(1, 4, 8, 10)
    zero = np.array([0, 3, 128, 255], np.uint8)
    inits = {"s": np.full(4, scale, np.float32), "z": zero}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant", axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant", axis=1)]
    m = model(nodes, [("x", F, [1, 4, 8, 10])], ["y"], inits, opset=19)
    np.testing.assert_array_equal(interpret(import_onnx(m), {"x": x})[0], ReferenceEvaluator(m).run(None, {"x": x})[0])


@pytest.mark.parametrize("op_type, exact", [("Round", np.rint), ("Floor", np.floor), ("Ceil", np.ceil)])
def test_rounding_ops_are_exact_in_fp16_over_the_whole_range(op_type: str, exact) -> None:
    """ONNX Round, Floor and Ceil on the ANE: ane-fp16 spells Round in fp16 adds, on the magnitude (no
    clamp bounds it), Floor and Ceil as that rounding and a one-step correction; every finite fp16
    number gives numpy's answer, in the fp16 IR and on the simulator, and float32 values between
    them give it in the float32 IR."""
    every = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16)
    values = np.concatenate([every, -every]).astype(np.float32).reshape(1, 2, 248, 128)
    m = model([helper.make_node(op_type, ["x"], ["y"], name="op")], [("x", F, list(values.shape))], ["y"])
    between = (values + np.float32(1 / 3)).astype(np.float32)  # float32 values no fp16 holds
    np.testing.assert_array_equal(interpret(import_onnx(m), {"x": between})[0], exact(between))
    compiled = anec.compile(m, target="m1", emit="ir")
    assert not [op for op in compiled.ir.walk() if isinstance(op, ane.RoundOp | ane.FloorOp | ane.CeilOp | host.HostOp)]  # expanded in the segment
    np.testing.assert_array_equal(interpret(compiled.ir, {"x": values})[0], exact(values))
    (simulated,) = compiled.run({"x": values}).values()
    np.testing.assert_array_equal(simulated, exact(values))


def test_a_quantize_read_by_another_op_stays_on_the_cpu() -> None:
    m = _qdq_pair(0.25, 0, TensorProto.INT8)
    m.graph.output.append(helper.make_tensor_value_info("q", TensorProto.INT8, None))
    module = import_onnx(m)
    (cpu,) = [op for op in module.walk() if isinstance(op, host.HostOp)]
    assert cpu.op_name.data == "onnx.QuantizeLinear"


def test_scalar_constants_fold_to_arrays() -> None:
    """quantize_static quantizes BERT's scalar constants (the attention scale) too: 0-d in, 0-d out."""
    inits = {"c": np.array(7, np.int8), "s": np.array(0.5, np.float32), "z": np.array(1, np.int8)}
    nodes = [helper.make_node("DequantizeLinear", ["c", "s", "z"], ["k"], name="dq"),
             helper.make_node("Mul", ["x", "k"], ["y"], name="scale")]
    m = model(nodes, [("x", F, [2, 3])], ["y"], inits)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(interpret(import_onnx(m), {"x": x})[0], x * 3.0)


def test_a_weight_brought_to_a_batched_inputs_rank_stays_compressed() -> None:
    """BERT's MatMuls take a [1, S, K] input: the [K, N] weight becomes [1, K, N], still int8 per column."""
    q = np.arange(-24, 24, dtype=np.int8).reshape(8, 6)
    inits = {"w": q, "s": np.linspace(0.01, 0.06, 6).astype(np.float32), "z": np.zeros(6, np.int8)}
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"], name="dq", axis=1),
             helper.make_node("MatMul", ["x", "wd"], ["y"], name="mm")]
    module = import_onnx(model(nodes, [("x", F, [1, 4, 8])], ["y"], inits))
    (weight,) = _stored(module).values()
    assert weight.shape == (1, 8, 6) and weight.axis == 2
    x = np.random.default_rng(0).standard_normal((1, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(interpret(module, {"x": x})[0], x @ (q * inits["s"]), rtol=1e-3, atol=1e-3)


def test_an_int8_embedding_table_stays_compressed_and_the_cpu_gathers_its_expansion(tmp_path: Path) -> None:
    import onnx

    table = np.random.default_rng(1).integers(-128, 128, (50, 16)).astype(np.int8)
    inits = {"t": table, "s": np.array(0.02, np.float32), "z": np.array(3, np.int8)}
    nodes = [helper.make_node("DequantizeLinear", ["t", "s", "z"], ["td"], name="dq"),
             helper.make_node("Gather", ["td", "ids"], ["e"], name="embed"),
             helper.make_node("Relu", ["e"], ["y"], name="relu")]
    m = model(nodes, [("ids", TensorProto.INT64, [1, 5])], ["y"], inits)
    path = tmp_path / "embed.onnx"
    onnx.save(m, path)
    compiled = anec.compile(path, target="m4", emit="ir")
    assert [w.form for w in _stored(compiled.ir).values()] == ["int8"]
    ids = np.array([[0, 7, 49, 7, 3]], np.int64)
    expected = np.maximum((table[ids[0]].astype(np.float32) - 3) * np.float32(0.02), 0)[None]
    np.testing.assert_allclose(compiled.run({"ids": ids})["y"], expected, rtol=1e-3, atol=1e-3)


def test_a_weight_without_a_zero_point_is_symmetric_int8() -> None:
    q = np.arange(-12, 12, dtype=np.int8).reshape(4, 6)
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wd"], name="dq"),
             helper.make_node("MatMul", ["x", "wd"], ["y"], name="mm")]
    module = import_onnx(model(nodes, [("x", F, [3, 4])], ["y"], {"w": q, "s": np.array(0.5, np.float32)}))
    (weight,) = _stored(module).values()
    assert weight.quantized.dtype == np.int8 and weight.zero_point.tolist() == [0] and weight.axis is None


# ------------------------------------------------------------------------------------------------
# Integer ops: quantize_dynamic's DynamicQuantizeLinear / ConvInteger / MatMulInteger, QLinearConv, QLinearMatMul
# ------------------------------------------------------------------------------------------------


def test_quantize_dynamic_imports_exactly_and_its_sums_never_reach_fp16(tmp_path: Path) -> None:
    """The imported IR computes the int32 sums exactly (bit for bit onnx's evaluator, whose sums pass
    fp16's 65504 here); compiled, the scale moves into the int8 weight and the input, all on the ANE."""
    from onnx.reference import ReferenceEvaluator

    from tests.importers.quantized_models import dynamic

    path = dynamic(tmp_path)
    m = onnx.load(path)
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= {n.op_type for n in m.graph.node}
    x = np.random.default_rng(5).standard_normal(INPUT_SHAPE).astype(np.float32) * 4
    sums = [n.output[0] for n in m.graph.node if n.op_type == "ConvInteger"]
    reference = ReferenceEvaluator(m)
    assert max(np.abs(s).max() for s in reference.run(sums, {"x": x})) > 65504
    expected = onnxruntime_run(path, x)
    np.testing.assert_array_equal(interpret(import_onnx(path), {"x": x})[0], reference.run(None, {"x": x})[0])
    for chip in ("m1", "m4"):
        compiled = anec.compile(path, target=chip, emit="ir")
        assert not [op for op in compiled.ir.walk() if isinstance(op, host.HostOp)]
        stored = _stored(compiled.ir)
        assert len(stored) == 4 and all(w.quantized.dtype == np.int8 for w in stored.values())
        (simulated,) = compiled.run({"x": x}).values()
        assert cosine(simulated, expected) >= 0.999


def test_quantize_dynamic_small_weights_keep_the_m1_macs_inputs_out_of_the_denormals(tmp_path: Path) -> None:
    """BERT-base's case: weights near 0.02 (scale ~8e-4) and activations scaled by ~0.03. The input times
    both scales would be ~2.6e-5 per integer step, denormal in fp16, which the M1's MAC flushes (the
    simulator agreed with the fp16 interpreter only to rel L2 4e-2 on this model, 8.6e-2 on BERT-base);
    with the weight's scale kept in the weight, the hardware matches the interpreter and onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from anec.runtime import run_interpreted

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((256, 128)) * 0.01).astype(np.float32)
    source, path = tmp_path / "float.onnx", tmp_path / "dynamic.onnx"
    onnx.save(model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", F, [1, 64, 256])], ["y"], {"w": w}), str(source))
    quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8)
    x = rng.standard_normal((1, 64, 256)).astype(np.float32)
    compiled = anec.compile(path, target="m1", emit="ir")
    (weight,) = _stored(compiled.ir).values()
    assert weight.form == "int8" and float(weight.scale[0]) != 1.0  # the weight's scale went into the weight
    (simulated,) = compiled.run({"x": x}).values()
    (interpreted,) = run_interpreted(compiled.ir, {"x": x}).values()
    assert np.linalg.norm(simulated - interpreted) / np.linalg.norm(interpreted) < 1e-4
    assert cosine(simulated, onnxruntime_run(path, x)) >= 0.9999


def _one_quantum_apart(got: np.ndarray, expected: np.ndarray, scale: float) -> None:
    """Equal but where the float32 requantization and onnx's float64 one round a near-tie apart."""
    steps = np.abs(got.astype(np.float64) - expected.astype(np.float64)) / scale
    assert steps.max() <= 1 + 1e-6 and np.mean(steps > 0.5) < 0.01


def _qlinear(kind: str, tmp_path: Path) -> tuple[onnx.ModelProto, Path, dict[str, np.ndarray], float]:
    """One QLinearConv (per-channel weight scales, bias) or QLinearMatMul between a uint8 quantize and a dequantize."""
    rng = np.random.default_rng(3)
    sx, sy = np.float32(0.05), np.float32(0.2)
    inits: dict[str, np.ndarray] = {"sx": np.array(sx), "zx": np.array(120, np.uint8), "sy": np.array(sy), "zy": np.array(7, np.uint8)}
    if kind == "conv":
        inits |= {"w": rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8), "sw": np.linspace(0.01, 0.03, 16).astype(np.float32),
                  "zw": np.zeros(16, np.int8), "b": rng.integers(-3000, 3000, 16).astype(np.int32)}
        op = helper.make_node("QLinearConv", ["q", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"], ["qy"], pads=[1, 1, 1, 1], name="qconv")
        shape = [1, 8, 12, 12]
    else:
        inits |= {"w": rng.integers(0, 256, (32, 24)).astype(np.uint8), "sw": np.array(0.004, np.float32), "zw": np.array(131, np.uint8)}
        op = helper.make_node("QLinearMatMul", ["q", "sx", "zx", "w", "sw", "zw", "sy", "zy"], ["qy"], name="qmatmul")
        shape = [1, 6, 32]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["q"], name="quant"), op,
             helper.make_node("DequantizeLinear", ["qy", "sy", "zy"], ["y"], name="dequant")]
    m = model(nodes, [("x", F, shape)], ["y"], inits, opset=19)
    m.graph.output[0].type.tensor_type.elem_type = F
    path = tmp_path / f"{kind}.onnx"
    onnx.save(m, path)
    return m, path, {"x": rng.standard_normal(shape).astype(np.float32) * 3}, float(sy)


@pytest.mark.parametrize("kind", ["conv", "matmul"])
def test_qlinear_ops_match_onnx_and_onnxruntime_within_a_quantum(kind: str, tmp_path: Path) -> None:
    import onnxruntime
    from onnx.reference import ReferenceEvaluator

    m, path, inputs, quantum = _qlinear(kind, tmp_path)
    expected = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    _one_quantum_apart(ReferenceEvaluator(m).run(None, inputs)[0], expected, quantum)
    module = import_onnx(m)
    assert not [op for op in module.walk() if isinstance(op, host.HostOp)]
    _one_quantum_apart(interpret(module, inputs)[0], expected, quantum)
    compiled = anec.compile(path, target="m1", emit="ir")
    assert [w.quantized.dtype for w in _stored(compiled.ir).values()] == [np.int8 if kind == "conv" else np.uint8]
    (simulated,) = compiled.run(inputs).values()
    assert cosine(simulated, expected) >= 0.999


def test_a_runtime_int32_bias_between_the_sums_and_their_scale_follows_the_scale() -> None:
    """onnxruntime's older quantize_dynamic (ddddocr's recogniser): ConvInteger + floor(b / (sx·sw)) as
    int32, cast, times sx·sw. Imported exactly, and partitioned exactly into one segment (Floor on the
    ANE, the int32 round trip dropped); in fp16 sx scales the input, sw the weight and sx·sw the bias."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
             helper.make_node("ConvInteger", ["xq", "w", "xz"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Mul", ["xs", "ws"], ["s"], name="scales"),
             helper.make_node("Div", ["bias", "s"], ["bd"], name="bias_div"),
             helper.make_node("Floor", ["bd"], ["bf"], name="bias_floor"),
             helper.make_node("Cast", ["bf"], ["bi"], to=TensorProto.INT32, name="bias_int"),
             helper.make_node("Reshape", ["bi", "shape"], ["br"], name="bias_reshape"),
             helper.make_node("Add", ["c", "br"], ["cb"], name="bias_add"),
             helper.make_node("Cast", ["cb"], ["cf"], to=TensorProto.FLOAT, name="sums"),
             helper.make_node("Mul", ["cf", "s"], ["y"], name="scale")]
    inits = {"w": rng.integers(-127, 128, (8, 16, 3, 3)).astype(np.int8), "ws": np.array(0.02, np.float32),
             "bias": rng.standard_normal(8).astype(np.float32), "shape": np.array([1, 8, 1, 1], np.int64)}
    m = model(nodes, [("x", F, [1, 16, 10, 10])], ["y"], inits, opset=19)
    x = rng.standard_normal((1, 16, 10, 10)).astype(np.float32) * 3
    reference = ReferenceEvaluator(m)
    assert np.abs(reference.run(["cb"], {"x": x})[0]).max() > 65504
    expected = reference.run(None, {"x": x})[0]
    np.testing.assert_array_equal(interpret(import_onnx(m), {"x": x})[0], expected)
    partitioned = anec.compile(m, target="m1", emit="ir", stop_after="ane-partition")
    assert not [op for op in partitioned.ir.walk() if isinstance(op, host.HostOp)]  # Floor on the ANE, its int32 round trip dropped
    assert len([op for op in partitioned.ir.walk() if isinstance(op, ane.SegmentOp)]) == 1
    np.testing.assert_array_equal(interpret(partitioned.ir, {"x": x}, segments="f32")[0], expected)  # the scale moves in ane-fp16 only
    compiled = anec.compile(m, target="m1", emit="ir")
    (conv,) = [op for op in compiled.ir.walk() if isinstance(op, ane.ConvOp)]
    assert compressed_of(conv.weight.owner).scale.tolist() == [np.float32(0.02)]  # sw into the weight, the runtime sx into the input
    assert isinstance(conv.input.owner, ane.MulOp)
    (simulated,) = compiled.run({"x": x}).values()
    assert cosine(simulated, expected) >= 0.999 and np.all(np.isfinite(simulated))
