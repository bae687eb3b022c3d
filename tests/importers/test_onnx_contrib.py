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
    ("lengths", {}),
])
def test_attention_with_static_shapes(mask: str | None, attrs: dict[str, Any]) -> None:
    sizes = attrs.get("qkv_hidden_sizes", [8, 8, 8])
    inits = {"w": random((8, sum(sizes)), 1) * 0.5, "bias": random((sum(sizes),), 2)}
    inputs = [("x", F, [2, 5, 8])]
    feeds: dict[str, np.ndarray] = {"x": random((2, 5, 8))}
    order = ["x", "w", "bias"]
    if mask == "lengths":
        inputs.append(("mask", TensorProto.INT32, [2]))
        feeds["mask"] = np.array([5, 3], np.int32)
        order.append("mask")
    elif mask:
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


@pytest.mark.parametrize(("segments", "mask", "positions"), [(True, True, False), (False, False, False), (True, False, True)])
def test_embed_layer_normalization(segments: bool, mask: bool, positions: bool) -> None:
    """BERT's embeddings as the transformers optimizer fuses them: the lookups run on the CPU as onnx
    Gathers (the only CPU ops), the sum and the layer norm on the ANE."""
    rng = np.random.default_rng(7)
    inits = {"word": random((30, 8), 1), "pos": random((16, 8), 2), "seg": random((2, 8), 3), "gamma": random((8,), 4),
             "beta": random((8,), 5)}
    ids = rng.integers(0, 30, (2, 5)).astype(np.int32)
    inputs, feeds = [("ids", TensorProto.INT32, [2, 5])], {"ids": ids}
    order = ["ids", "segment_ids" if segments else "", "word", "pos", "seg" if segments else "", "gamma", "beta",
             "mask" if mask else "", "position_ids" if positions else ""]
    for name, used, value in (("segment_ids", segments, rng.integers(0, 2, (2, 5))), ("mask", mask, np.array([[1] * 5, [1, 1, 1, 0, 0]])),
                              ("position_ids", positions, np.array([[4, 3, 2, 1, 0]] * 2))):
        if used:
            inputs.append((name, TensorProto.INT32, [2, 5]))
            feeds[name] = value.astype(np.int32)
    outputs = ("y", "mask_index", "sum")
    m = contrib_model("EmbedLayerNormalization", inputs, inits, outputs=outputs, order=[o for o in order], epsilon=1e-5)
    for k, out in enumerate(m.graph.output):
        out.type.tensor_type.elem_type = TensorProto.INT32 if k == 1 else F
    module = import_onnx(m)
    hosts = [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    assert {op.op_name.data for op in hosts} == {"onnx.Gather"} and len(hosts) == 1 + segments + positions
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for got, w in zip(interpret(module, feeds), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("direction", "per_column"), [("forward", False), ("bidirectional", True)])
def test_dynamic_quantize_lstm_is_the_lstm_of_its_dequantized_weights(direction: str, per_column: bool) -> None:
    """ddddocr's recogniser: onnxruntime's int8 LSTM. anec imports the float LSTM of the dequantized
    weights (exactly: against ONNX's LSTM with them), which is onnxruntime's op up to its 8-bit
    rounding of the activations."""
    dirs, seq, size, hidden = (2 if direction == "bidirectional" else 1), 6, 5, 4
    rng = np.random.default_rng(3)

    def quantized(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        w = rng.uniform(-0.8, 0.8, shape).astype(np.float32)
        scale = (np.abs(w).max(axis=1) if per_column else np.abs(w).max(axis=(1, 2))) / 127
        q = np.round(w / scale.reshape(dirs, 1, -1)).astype(np.int8)
        return q, scale.astype(np.float32), np.zeros(scale.shape, np.int8), (q * scale.reshape(dirs, 1, -1)).astype(np.float32)

    wq, ws, wz, w = quantized((dirs, size, 4 * hidden))
    rq, rs, rz, r = quantized((dirs, hidden, 4 * hidden))
    bias = rng.uniform(-0.2, 0.2, (dirs, 8 * hidden)).astype(np.float32)
    x = rng.uniform(-1, 1, (seq, 1, size)).astype(np.float32)
    m = contrib_model("DynamicQuantizeLSTM", [("x", F, [seq, 1, size])],
                      {"w": wq, "r": rq, "b": bias, "ws": ws, "wz": wz, "rs": rs, "rz": rz},
                      outputs=("y", "y_h", "y_c"), order=["x", "w", "r", "b", "", "", "", "", "ws", "wz", "rs", "rz"],
                      hidden_size=hidden, direction=direction)
    as_lstm = model([helper.make_node("LSTM", ["x", "w", "r", "b"], ["y", "y_h", "y_c"], hidden_size=hidden, direction=direction)],
                    [("x", F, [seq, 1, size])], ["y", "y_h", "y_c"],
                    {"w": np.ascontiguousarray(w.transpose(0, 2, 1)), "r": np.ascontiguousarray(r.transpose(0, 2, 1)), "b": bias})
    assert set(check(m, {"x": x}, onnxruntime_outputs(as_lstm, {"x": x}))) >= {"ane.matmul", "ane.sigmoid", "ane.tanh"}
    for got, want in zip(interpret(import_onnx(m), {"x": x}), onnxruntime_outputs(m, {"x": x}), strict=True):
        assert np.linalg.norm(got - want) <= 2e-2 * np.linalg.norm(want)


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


def test_a_bert_layer_as_the_transformers_optimizer_writes_it_compiles_and_runs() -> None:
    """EmbedLayerNormalization → Attention (masked by its key lengths) → SkipLayerNormalization →
    MatMul + FastGelu → MatMul → SkipLayerNormalization: the embedding lookups and the integer mask
    arithmetic run on the CPU, everything else on the ANE."""
    import anec

    hidden, inner = 16, 32
    inits = {"word": random((50, hidden), 1), "pos": random((12, hidden), 2), "seg": random((2, hidden), 3),
             "g0": random((hidden,), 4), "b0": random((hidden,), 5), "qkv_w": random((hidden, 3 * hidden), 6) * 0.3,
             "qkv_b": random((3 * hidden,), 7), "g1": random((hidden,), 8), "b1": random((hidden,), 9),
             "w1": random((hidden, inner), 10) * 0.3, "fb": random((inner,), 11), "w2": random((inner, hidden), 12) * 0.3,
             "g2": random((hidden,), 13), "b2": random((hidden,), 14)}
    nodes = [
        helper.make_node("EmbedLayerNormalization", ["ids", "segments", "word", "pos", "seg", "g0", "b0", "mask"], ["emb", "lengths"],
                         name="embed", domain=MS, epsilon=1e-12),
        helper.make_node("Attention", ["emb", "qkv_w", "qkv_b", "lengths"], ["att"], name="attention", domain=MS, num_heads=4),
        helper.make_node("SkipLayerNormalization", ["att", "emb", "g1", "b1"], ["ln1"], name="ln1", domain=MS),
        helper.make_node("MatMul", ["ln1", "w1"], ["up"], name="up"),
        helper.make_node("FastGelu", ["up", "fb"], ["act"], name="gelu", domain=MS),
        helper.make_node("MatMul", ["act", "w2"], ["down"], name="down"),
        helper.make_node("SkipLayerNormalization", ["down", "ln1", "g2", "b2"], ["y"], name="ln2", domain=MS),
    ]
    I32 = TensorProto.INT32
    m = model(nodes, [("ids", I32, [2, 8]), ("segments", I32, [2, 8]), ("mask", I32, [2, 8])], ["y"], inits, extra_opsets={MS: 1})
    rng = np.random.default_rng(0)
    feeds = {"ids": rng.integers(0, 50, (2, 8)).astype(np.int32), "segments": np.zeros((2, 8), np.int32),
             "mask": np.array([[1] * 8, [1] * 5 + [0] * 3], np.int32)}
    compiled = anec.compile(m, emit="descriptors")
    assert "onnx.Gather" in {r.op for r in compiled.report.host_ops}  # with the integer mask bookkeeping
    assert compiled.report.ane_flops_fraction > 0.99
    want = onnxruntime_outputs(m, feeds)[0]
    got = compiled.run(feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
