"""LSTM, GRU and RNN unrolled into `ane` ops: every variant checked against onnxruntime and onnx's
ReferenceEvaluator on random weights, and the configurations that stay on the CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from anec.dialects import ane, host
from anec.importers.onnx import import_onnx
from anec.interpreter import interpret
from tests.importers.onnx_models import F, model, random, reference
from tests.importers.test_onnx import ops_of

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SEQ, BATCH, SIZE, HIDDEN = 5, 2, 3, 4


def recurrent_model(kind: str, direction: str = "forward", layout: int = 0, *, states: bool = False, bias: bool = True,
                    outputs: tuple[str, ...] = ("Y", "Y_h", "Y_c"), peepholes: bool = False, lengths: np.ndarray | None = None,
                    opset: int = 14, **attrs: Any) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    dirs, g = (2 if direction == "bidirectional" else 1), GATES[kind]
    x_shape = [SEQ, BATCH, SIZE] if layout == 0 else [BATCH, SEQ, SIZE]
    state_shape = [dirs, BATCH, HIDDEN] if layout == 0 else [BATCH, dirs, HIDDEN]
    inits = {"W": random((dirs, g * HIDDEN, SIZE), 1), "R": random((dirs, g * HIDDEN, HIDDEN), 2) * 0.5}
    if bias:
        inits["B"] = random((dirs, 2 * g * HIDDEN), 3)
    if lengths is not None:
        inits["L"] = lengths
    if peepholes:
        inits["P"] = random((dirs, 3 * HIDDEN), 4)
    inputs = [("X", F, x_shape)]
    batch_first = (1, 0, 2) if layout else (0, 1, 2)  # the same values in either layout
    feeds = {"X": random((SEQ, BATCH, SIZE), 5).transpose(batch_first).copy()}
    if states:
        inputs.append(("H0", F, state_shape))
        feeds["H0"] = random((dirs, BATCH, HIDDEN), 6).transpose(batch_first).copy()
        if kind == "LSTM":
            inputs.append(("C0", F, state_shape))
            feeds["C0"] = random((dirs, BATCH, HIDDEN), 7).transpose(batch_first).copy()
    names = ["X", "W", "R", "B" if bias else "", "L" if lengths is not None else "", "H0" if states else "",
             "C0" if states and kind == "LSTM" else "", "P" if peepholes else ""][:8 if kind == "LSTM" else 6]
    while names and not names[-1]:
        names.pop()
    outs = [o if o in outputs else "" for o in ("Y", "Y_h", "Y_c")[:3 if kind == "LSTM" else 2]]
    while outs and not outs[-1]:
        outs.pop()
    if layout:
        attrs["layout"] = layout
    node = helper.make_node(kind, names, outs, name="rnn", hidden_size=HIDDEN, direction=direction, **attrs)
    return model([node], inputs, [o for o in outs if o], inits, opset=opset), feeds


def onnxruntime_outputs(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs; it has no batch-first layout, so a layout-1 model runs as its layout-0 twin."""
    ort = pytest.importorskip("onnxruntime")
    layout = next((a.i for a in m.graph.node[0].attribute if a.name == "layout"), 0)
    if layout:
        m = sequence_first(m)
        feeds = {k: v.transpose(1, 0, 2) for k, v in feeds.items()}
    session = ort.InferenceSession(onnx.shape_inference.infer_shapes(m).SerializeToString(), providers=["CPUExecutionProvider"])
    outs = session.run(None, feeds)
    if layout:  # Y: [seq, dirs, batch, H] -> [batch, seq, dirs, H]; states: [dirs, batch, H] -> [batch, dirs, H]
        outs = [o.transpose(2, 0, 1, 3) if o.ndim == 4 else o.transpose(1, 0, 2) for o in outs]
    return outs


def sequence_first(m: onnx.ModelProto) -> onnx.ModelProto:
    """The layout-0 twin of a layout-1 model: the same node without `layout`, its inputs' first two axes swapped."""
    twin = onnx.ModelProto()
    twin.CopyFrom(m)
    node = twin.graph.node[0]
    kept = [a for a in node.attribute if a.name != "layout"]
    del node.attribute[:]
    node.attribute.extend(kept)
    for v in twin.graph.input:
        dims = v.type.tensor_type.shape.dim
        a, c = dims[0].dim_value, dims[1].dim_value
        dims[0].dim_value, dims[1].dim_value = c, a
    return twin


def check(m: onnx.ModelProto, feeds: dict[str, np.ndarray], evaluator: bool = True) -> list:
    """Imported to ANE ops only, and equal to onnxruntime (and to the ReferenceEvaluator where it implements the variant)."""
    module = import_onnx(m)
    ops = ops_of(module)
    assert not [op for op in ops if isinstance(op, host.HostOp)]
    got = interpret(module, feeds)
    for g, want in zip(got, onnxruntime_outputs(m, feeds), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    if evaluator:
        for g, want in zip(got, reference(m, feeds), strict=True):
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    return ops


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("states", [False, True])
def test_recurrent_ops_unroll_to_ane_ops_that_match_onnxruntime(kind: str, direction: str, layout: int, states: bool) -> None:
    m, feeds = recurrent_model(kind, direction, layout, states=states)
    ops = check(m, feeds)
    steps = SEQ * (2 if direction == "bidirectional" else 1)
    recurrence = sum(isinstance(op, ane.MatmulOp) for op in ops) - (2 if direction == "bidirectional" else 1)
    per_step = 2 if kind == "GRU" else 1
    assert recurrence == per_step * (steps if states else steps - (2 if direction == "bidirectional" else 1))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_ops_without_bias_with_some_outputs(kind: str) -> None:
    check(*recurrent_model(kind, "bidirectional", bias=False, outputs=("Y_h",)))
    check(*recurrent_model(kind, "forward", outputs=("Y",), states=True))


def test_lstm_peepholes_and_full_length_sequence_lengths() -> None:
    check(*recurrent_model("LSTM", "bidirectional", peepholes=True, states=True, lengths=np.full(BATCH, SEQ, np.int32)))


@pytest.mark.parametrize(("kind", "attrs"), [
    ("GRU", {"linear_before_reset": 1}),
    ("LSTM", {"input_forget": 1}),
    ("LSTM", {"clip": 0.5}),
    ("GRU", {"clip": 0.3, "linear_before_reset": 1}),
    ("RNN", {"activations": ["Relu", "Sigmoid"]}),
    ("LSTM", {"activations": ["Sigmoid", "Relu", "Softsign", "Sigmoid", "Tanh", "Softplus"]}),
    ("RNN", {"activations": ["LeakyRelu", "ThresholdedRelu"], "activation_alpha": [0.1, 0.2]}),
    ("GRU", {"activations": ["HardSigmoid", "ScaledTanh", "Elu", "Affine"], "activation_alpha": [0.3, 0.9, 0.7, 0.1],
             "activation_beta": [0.4, 1.3, -0.2]}),
    ("LSTM", {"activations": ["Sigmoid", "Affine", "LeakyRelu", "HardSigmoid", "Tanh", "ScaledTanh"],
              "activation_alpha": [0.8, 0.05, 0.25, 1.1], "activation_beta": [0.1, 0.45, 0.7]}),
])
def test_recurrent_attributes_match_onnxruntime(kind: str, attrs: dict[str, Any]) -> None:
    """onnxruntime implements clip, input_forget and every activation; the ReferenceEvaluator does not."""
    direction = "bidirectional" if len(attrs.get("activations", [])) in (2, 4, 6) else "forward"
    check(*recurrent_model(kind, direction, states=True, **attrs), evaluator="linear_before_reset" in attrs and "clip" not in attrs)


@pytest.mark.parametrize(("change", "reason"), [
    ({"lengths": np.array([SEQ, 2], np.int32)}, "padded batches"),
    ({"activations": ["ScaledTanh"], "activation_alpha": [0.5]}, "the ScaledTanh activation without its activation_alpha/activation_beta"),
    ({"activations": ["Swish"]}, "the Swish activation"),
])
def test_unsupported_recurrent_configurations_run_on_the_cpu_with_a_reason(change: dict[str, Any], reason: str) -> None:
    m, feeds = recurrent_model("RNN", **change)
    module = import_onnx(m)
    (op,) = [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    assert reason in op.attributes["ane.reason"].data
    if "activations" not in change:  # the ReferenceEvaluator, the CPU runner, knows the default activations only
        for g, want in zip(interpret(module, feeds), reference(m, feeds)):
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)


def test_run_time_weights_stay_on_the_cpu() -> None:
    m, feeds = recurrent_model("GRU")
    w = m.graph.initializer[0]
    feeds["W"] = onnx.numpy_helper.to_array(w)
    m.graph.input.append(helper.make_tensor_value_info("W", F, list(w.dims)))
    del m.graph.initializer[0]
    module = import_onnx(m)
    (op,) = [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    assert "input weights is computed at run time" in op.attributes["ane.reason"].data


def test_an_unrolled_lstm_compiles_wholly_for_the_ane_and_runs_on_the_simulator() -> None:
    import anec

    m, feeds = recurrent_model("LSTM", "bidirectional", states=True)
    compiled = anec.compile(m, emit="descriptors")
    assert not compiled.report.host_ops
    out = compiled.run(feeds)
    for got, want in zip(out.values(), onnxruntime_outputs(m, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)


def test_the_steps_of_an_unrolled_lstm_share_their_weights() -> None:
    """Every step of an unrolled recurrence multiplies by the same matrices: the program stores them
    once, so its weight section does not grow with the sequence (it grew by a copy per step)."""
    import anec

    inits = {"W": random((1, 4 * HIDDEN, SIZE), 1), "R": random((1, 4 * HIDDEN, HIDDEN), 2), "B": random((1, 8 * HIDDEN), 3)}
    weight_bytes = {}
    for steps in (2, 12):
        node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=HIDDEN)
        m = model([node], [("X", F, [steps, BATCH, SIZE])], ["Y"], inits)
        weight_bytes[steps] = len(anec.compile(m, emit="descriptors").program.programs[0].weights)
    assert weight_bytes[12] == weight_bytes[2] > 0


def test_a_pytorch_exported_lstm_and_gru_compile_wholly_for_the_ane() -> None:
    """torch.onnx.export of a two-layer bidirectional batch-first LSTM feeding a GRU: the exporter's
    LSTM/GRU nodes (with their Transposes, Squeezes and zero initial states) all map to ANE ops."""
    torch = pytest.importorskip("torch")
    import io

    import anec

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = torch.nn.GRU(32, 8, batch_first=True)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.gru(y)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 7, 8)
    buffer = io.BytesIO()
    torch.onnx.export(net, (x,), buffer, dynamo=False, input_names=["x"], output_names=["z", "h"])
    m = onnx.load_from_string(buffer.getvalue())
    assert {"LSTM", "GRU"} <= {n.op_type for n in m.graph.node}
    compiled = anec.compile(m, emit="descriptors")
    assert not compiled.report.host_ops
    with torch.no_grad():
        want = [t.numpy() for t in net(x)]
    for got, w in zip(compiled.run({"x": x.numpy()}).values(), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-2, atol=1e-2)
