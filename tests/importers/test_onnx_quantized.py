"""QDQ ONNX: constant int8 weights import compressed, activation quantize/dequantize pairs run on the ANE
with their rounding emulated at fp16; outputs follow onnxruntime running the same quantized model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def _qdq_pair(scale: float, zero: int, dtype: int) -> object:
    zero_array = np.array(zero, np.uint8 if dtype == TensorProto.UINT8 else np.int8)
    inits = {"s": np.array(scale, np.float32), "z": zero_array}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant")]
    m = model(nodes, [("x", F, [1, 4, 4, 8])], ["y"], inits)
    m.graph.output[0].type.tensor_type.elem_type = F  # onnxruntime wants typed outputs
    return m


@pytest.mark.parametrize(("zero", "dtype"), [(0, TensorProto.INT8), (128, TensorProto.UINT8), (3, TensorProto.UINT8)])
def test_an_activation_pair_rounds_half_to_even_and_clamps_like_onnxruntime(zero: int, dtype: int, tmp_path: Path) -> None:
    import onnx
    import onnxruntime

    m = _qdq_pair(0.25, zero, dtype)
    path = tmp_path / "pair.onnx"
    onnx.save(m, path)
    # ties (0.125 / 0.25 = 0.5, 0.375 / 0.25 = 1.5), values beyond the range, all exact in fp16
    x = (np.arange(128, dtype=np.float32) - 64).reshape(1, 4, 4, 8) * 0.125 * np.float32(1.5) ** (np.arange(128) % 3 == 0).reshape(1, 4, 4, 8)
    x = x.astype(np.float16).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    compiled = anec.compile(path, target="m1", emit="ir")
    assert not [op for op in compiled.ir.walk() if isinstance(op, host.HostOp)]
    np.testing.assert_array_equal(interpret(compiled.ir, {"x": x})[0], expected)
    (simulated,) = compiled.run({"x": x}).values()
    np.testing.assert_array_equal(simulated, expected)
    rounding = [op for op in compiled.ir.walk() if notes(op, FP16_WARNINGS_ATTR)]
    assert len(rounding) == 1 and "emulated in fp16 on the ANE" in notes(rounding[0], FP16_WARNINGS_ATTR)[0]


def test_a_quantize_read_by_another_op_stays_on_the_cpu() -> None:
    m = _qdq_pair(0.25, 0, TensorProto.INT8)
    m.graph.output.append(helper.make_tensor_value_info("q", TensorProto.INT8, None))
    module = import_onnx(m)
    (cpu,) = [op for op in module.walk() if isinstance(op, host.HostOp)]
    assert cpu.op_name.data == "onnx.QuantizeLinear"
