"""The ONNX runner of host ops: ops the ReferenceEvaluator implements only from a newer op set run
at that op set when its semantics on the older types are the same."""

from __future__ import annotations

import numpy as np
from onnx import helper

from anec.host_kernels import SAME_AS_NEWER, evaluate_onnx_node


def test_dequantize_linear_at_op_set_18_runs() -> None:
    assert ("DequantizeLinear", 18) in SAME_AS_NEWER
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])
    x, s, z = np.array([0, 10, 255], np.uint8), np.array(0.5, np.float32), np.array(10, np.uint8)
    (y,) = evaluate_onnx_node(node, {"": 18}, [x, s, z])
    assert np.array_equal(y, np.array([-5.0, 0.0, 122.5], np.float32))
