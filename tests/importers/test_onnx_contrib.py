"""ONNX Runtime's com.microsoft contrib ops: the ones with standard decompositions become `ane` ops
equal to onnxruntime's results; the rest are refused by name with the hint to use the model as exported."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from anec.dialects import host
from anec.errors import AnecError
from anec.importers.onnx import import_onnx
from anec.interpreter import interpret
from tests.importers.onnx_models import F, model, random
from tests.importers.test_onnx import names_of, ops_of

MS = "com.microsoft"


def contrib_model(op: str, inputs: list[tuple[str, int, list[int]]], inits: dict[str, np.ndarray] | None = None,
                  outputs: tuple[str, ...] = ("y",), domain: str = MS, **attrs: Any) -> onnx.ModelProto:
    names = [n for n, _, _ in inputs] + list(inits or {})
    order = attrs.pop("order", names)
    node = helper.make_node(op, order, list(outputs), name="fused", domain=domain, **attrs)
    return model([node], inputs, [o for o in outputs if o], inits, extra_opsets={MS: 1})


def onnxruntime_outputs(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    typed = onnx.ModelProto()
    typed.CopyFrom(m)
    for out in typed.graph.output:  # onnxruntime wants typed outputs; these models' are all float
        out.type.tensor_type.elem_type = F
    session = ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check(m: onnx.ModelProto, feeds: dict[str, np.ndarray], expected: list[np.ndarray] | None = None, tol: float = 1e-5) -> list[str]:
    module = import_onnx(m)
    assert not [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    got = interpret(module, feeds)
    for g, want in zip(got, expected if expected is not None else onnxruntime_outputs(m, feeds), strict=True):
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol)
    return names_of(module)


X = [("x", F, [2, 5, 8])]


@pytest.mark.parametrize(("op", "bias", "first"), [("Gelu", False, "ane.gelu"), ("BiasGelu", True, "ane.add"),
                                                   ("FastGelu", True, "ane.add"), ("FastGelu", False, "ane.gelu")])
def test_gelu_family(op: str, bias: bool, first: str) -> None:
    m = contrib_model(op, X, {"bias": random((8,), 1)} if bias else None)
    assert check(m, {"x": random((2, 5, 8))}, tol=2e-5)[0] == first


def test_quick_gelu() -> None:
    m = contrib_model("QuickGelu", X, alpha=1.5)
    assert check(m, {"x": random((2, 5, 8))}) == ["ane.mul", "ane.sigmoid", "ane.mul"]


def test_bias_add_follows_its_definition() -> None:
    """onnxruntime implements BiasAdd on CUDA only: its definition is x + bias + skip."""
    x, skip, bias = random((2, 5, 8)), random((2, 5, 8), 1), random((8,), 2)
    m = contrib_model("BiasAdd", [("x", F, [2, 5, 8]), ("skip", F, [2, 5, 8])], {"bias": bias}, order=["x", "bias", "skip"])
    check(m, {"x": x, "skip": skip}, [x + bias + skip])


@pytest.mark.parametrize(("activation", "params", "z"), [("Relu", [], False), ("LeakyRelu", [0.2], True), ("Clip", [-0.5, 0.5], False),
                                                         ("HardSigmoid", [0.3, 0.4], False), ("Sigmoid", [], True), ("", [], False)])
def test_fused_conv(activation: str, params: list[float], z: bool) -> None:
    inits = {"w": random((4, 3, 3, 3), 1), "b": random((4,), 2)}
    inputs = [("x", F, [1, 3, 6, 6])] + ([("z", F, [1, 4, 6, 6])] if z else [])
    attrs = ({"activation": activation} if activation else {}) | ({"activation_params": params} if params else {})
    m = contrib_model("FusedConv", inputs, inits, order=["x", "w", "b"] + (["z"] if z else []), pads=[1, 1, 1, 1], **attrs)
    feeds = {"x": random((1, 3, 6, 6))} | ({"z": random((1, 4, 6, 6), 3)} if z else {})
    assert check(m, feeds, tol=1e-4)[0] == "ane.conv"


@pytest.mark.parametrize(("shapes", "attrs"), [
    (([2, 3, 4], [2, 5, 4]), {"transB": 1, "alpha": 0.5}),
    (([4, 3], [4, 5]), {"transA": 1}),
    (([2, 3, 4], [4, 5]), {}),
    (([3, 2, 4], [2, 4, 5]), {"transBatchA": 1}),
    (([3, 2, 4], [2, 5, 4]), {"transBatchA": 1, "transB": 1, "alpha": 0.125}),
    (([4, 2, 3], [2, 4, 5]), {"transBatchA": 1, "transA": 1}),
    (([2, 3, 4], [4, 2, 5]), {"transBatchB": 1}),
    (([2, 3, 2, 4], [5, 2, 3, 4]), {"transBatchB": 1, "transB": 1}),
])
def test_fused_matmul(shapes: tuple[list[int], list[int]], attrs: dict[str, Any]) -> None:
    m = contrib_model("FusedMatMul", [("a", F, shapes[0]), ("c", F, shapes[1])], **attrs)
    assert "ane.matmul" in check(m, {"a": random(shapes[0]), "c": random(shapes[1], 1)})


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sum_output", [True, False])
def test_skip_layer_normalization(bias: bool, sum_output: bool) -> None:
    inits = {"gamma": random((8,), 1), "beta": random((8,), 2)} | ({"bias": random((8,), 3)} if bias else {})
    m = contrib_model("SkipLayerNormalization", [("x", F, [2, 5, 8]), ("skip", F, [2, 5, 8])], inits,
                      outputs=("y", "", "", "sum") if sum_output else ("y",), epsilon=1e-5)
    names = check(m, {"x": random((2, 5, 8)), "skip": random((2, 5, 8), 4)}, tol=1e-4)
    assert "ane.layer_norm" in names


@pytest.mark.parametrize("bias", [True, False])
def test_skip_simplified_layer_normalization(bias: bool) -> None:
    inits = {"gamma": random((8,), 1)} | ({"bias": random((8,), 3)} if bias else {})
    m = contrib_model("SkipSimplifiedLayerNormalization", [("x", F, [2, 5, 8]), ("skip", F, [2, 5, 8])], inits, epsilon=1e-6)
    check(m, {"x": random((2, 5, 8)), "skip": random((2, 5, 8), 4)}, tol=1e-4)


def test_simplified_layer_normalization_in_the_onnx_domain() -> None:
    """onnxruntime registers SimplifiedLayerNormalization (RMS norm) in the ONNX domain."""
    m = contrib_model("SimplifiedLayerNormalization", X, {"scale": random((8,), 1)}, domain="", epsilon=1e-6)
    assert "ane.rsqrt" in check(m, {"x": random((2, 5, 8))}, tol=1e-4)


@pytest.mark.parametrize(("mask", "attrs"), [
    (None, {}),
    ("2d", {}),
    (None, {"unidirectional": 1}),
    ("3d", {"scale": 0.3}),
    ("2d", {"qkv_hidden_sizes": [8, 8, 16], "unidirectional": 1}),
])
def test_attention_with_static_shapes(mask: str | None, attrs: dict[str, Any]) -> None:
    sizes = attrs.get("qkv_hidden_sizes", [8, 8, 8])
    inits = {"w": random((8, sum(sizes)), 1) * 0.5, "bias": random((sum(sizes),), 2)}
    inputs = [("x", F, [2, 5, 8])]
    feeds: dict[str, np.ndarray] = {"x": random((2, 5, 8))}
    order = ["x", "w", "bias"]
    if mask:
        shape = [2, 5] if mask == "2d" else [2, 5, 5]
        inputs.append(("mask", TensorProto.INT32, shape))
        feeds["mask"] = (np.random.default_rng(5).random(shape) > 0.3).astype(np.int32)
        feeds["mask"][..., 0] = 1
        order.append("mask")
    m = contrib_model("Attention", inputs, inits, order=order, num_heads=2, **attrs)
    assert "ane.sdpa" in check(m, feeds, tol=1e-4)


@pytest.mark.parametrize(("mask", "attrs", "keys"), [
    (None, {}, 5),
    ("2d", {}, 7),
    ("3d", {"scale": 0.3}, 7),
    (None, {"unidirectional": 1}, 5),
    ("bias", {}, 7),
])
def test_multi_head_attention_with_separate_query_key_value(mask: str | None, attrs: dict[str, Any], keys: int) -> None:
    inputs = [("q", F, [2, 5, 8]), ("k", F, [2, keys, 8]), ("v", F, [2, keys, 12])]
    feeds: dict[str, np.ndarray] = {"q": random((2, 5, 8)), "k": random((2, keys, 8), 1), "v": random((2, keys, 12), 2)}
    order = ["q", "k", "v", "bias"]
    if mask in ("2d", "3d"):
        shape = [2, keys] if mask == "2d" else [2, 5, keys]
        inputs.append(("mask", TensorProto.INT32, shape))
        feeds["mask"] = (np.random.default_rng(5).random(shape) > 0.3).astype(np.int32)
        feeds["mask"][..., 0] = 1
        order.append("mask")
    elif mask == "bias":
        inputs.append(("attn_bias", F, [1, 2, 5, keys]))
        feeds["attn_bias"] = random((1, 2, 5, keys), 6)
        order += ["", "attn_bias"]
    m = contrib_model("MultiHeadAttention", inputs, {"bias": random((28,), 3)}, order=order, num_heads=2, **attrs)
    assert "ane.sdpa" in check(m, feeds, tol=1e-4)


def test_other_contrib_ops_are_refused_by_name_with_the_hint() -> None:
    m = contrib_model("MatMulNBits", [("a", F, [2, 8])], {"w": np.zeros((4, 1, 4), np.uint8)}, K=8, N=4, bits=4, block_size=8)
    with pytest.raises(AnecError, match=r"node 'fused' \(MatMulNBits\): unsupported com.microsoft op MatMulNBits.*hint: use the model as exported"):
        import_onnx(m)


def test_a_contrib_configuration_anec_cannot_map_is_refused_with_the_reason() -> None:
    m = contrib_model("FusedMatMul", [("a", F, [4]), ("c", F, [4, 5])])
    with pytest.raises(AnecError, match=r"unsupported com.microsoft op FusedMatMul: anec maps this op, but not a vector operand"):
        import_onnx(m)


def test_a_model_saved_by_onnxruntime_after_its_graph_optimizations_compiles_wholly_for_the_ane(tmp_path) -> None:
    """A PyTorch transformer encoder exported to ONNX, then saved by onnxruntime at ORT_ENABLE_EXTENDED: it has
    FusedMatMul (with transBatchA), Gelu and SkipLayerNormalization, and imports domains it never uses
    (ai.onnx.training, com.microsoft.nchwc, …)."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    import anec

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, activation="gelu", dropout=0.0)
    net = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()
    x = torch.randn(1, 10, 32)
    exported, optimized = tmp_path / "encoder.onnx", tmp_path / "encoder.ort.onnx"
    torch.onnx.export(net, (x,), str(exported), dynamo=False, input_names=["x"], output_names=["y"], opset_version=17)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    ops = {(n.domain, n.op_type) for n in onnx.load(str(optimized)).graph.node}
    assert {(MS, "FusedMatMul"), (MS, "SkipLayerNormalization")} <= ops

    compiled = anec.compile(optimized, emit="descriptors")
    assert not compiled.report.host_ops
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(compiled.run({"x": x.numpy()})["y"], want, rtol=1e-2, atol=1e-2)
