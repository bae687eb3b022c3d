"""ane-fp16 with sample inputs: an output fp16 changes beyond tolerance is flagged, with the op where
the error enters and its kind; a model fp16 does not change gets no such warning."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import anec


def model(nodes: list, inits: dict[str, np.ndarray], n: int = 256) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def warnings(m: onnx.ModelProto, x: np.ndarray) -> list[str]:
    compiled = anec.compile(m, target="m1", emit="coreml", example_inputs={"x": x.astype(np.float32)})
    return compiled.report.fp16_warnings


RNG = np.random.default_rng(0)


def test_an_overflowing_sum_is_flagged_where_it_enters() -> None:
    m = model([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("ReduceSum", ["sq"], ["ss"], keepdims=1),
               helper.make_node("Sqrt", ["ss"], ["norm"]), helper.make_node("Div", ["x", "norm"], ["y"])], {})
    found = warnings(m, 30 + 20 * RNG.standard_normal((1, 256)))
    assert any("error enters at ss (overflow)" in w for w in found)
    assert any(w.startswith("ss: fp16 error enters here (overflow)") for w in found)


def test_cancellation_is_named() -> None:
    m = model([helper.make_node("Add", ["x", "big"], ["shifted"]), helper.make_node("Sub", ["shifted", "big"], ["y"])],
              {"big": [1000.0]})
    found = warnings(m, 0.01 * RNG.standard_normal((1, 256)))
    assert any("(cancellation)" in w or "(rounding)" in w for w in found)
    assert any("output 'y' differs from float32" in w for w in found)


def test_a_flipped_comparison_is_a_discontinuity() -> None:
    m = model([helper.make_node("Greater", ["x", "t"], ["g"]), helper.make_node("Cast", ["g"], ["y"], to=TensorProto.FLOAT)],
              {"t": [0.30001]})
    found = warnings(m, 0.30001 + 2e-4 * RNG.standard_normal((1, 256)))
    assert any("(discontinuity)" in w for w in found)


def test_a_model_fp16_does_not_change_gets_no_error_warning() -> None:
    m = model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "half"], ["y"])], {"half": [0.5]})
    found = warnings(m, RNG.standard_normal((1, 256)))
    assert not any("differs from float32" in w or "error enters" in w for w in found)


def test_outputs_of_a_multi_result_op_are_compared_by_their_own_index() -> None:
    graph = helper.make_graph(
        [helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2), helper.make_node("Mul", ["b", "b"], ["c"])],
        "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b", "c")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.concatenate([RNG.standard_normal((1, 128)), 400 + RNG.standard_normal((1, 128))], axis=1)
    found = warnings(m, x)
    assert any("output 'c' differs" in w for w in found) and not any("output 'a'" in w or "output 'b'" in w for w in found)
