"""Small float ONNX models quantized by onnxruntime's own tool, for the compressed-weight tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_SHAPE = (1, 3, 16, 16)


def float_model(path: Path) -> Path:
    """conv → relu → conv → pool → Gemm (transB) → relu → MatMul: every MAC form QDQ gives a weight."""
    rng = np.random.default_rng(0)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g"], transB=1, name="fc1"),
        helper.make_node("Relu", ["g"], ["rg"], name="relu2"),
        helper.make_node("MatMul", ["rg", "wm"], ["y"], name="fc2"),
    ]
    inits = [init("w1", (32, 3, 3, 3), 0.3), init("b1", (32,), 0.1), init("w2", (64, 32, 3, 3), 0.06), init("b2", (64,), 0.1),
             init("wg", (128, 64), 0.2), init("bg", (128,), 0.1), init("wm", (128, 64), 0.15)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(INPUT_SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def static_qdq(folder: Path, per_channel: bool = True) -> Path:
    """The float model through `quantize_static` (QDQ, int8 weights, uint8 activations), calibrated on
    eight random inputs."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.batches = iter([{"x": rng.standard_normal(INPUT_SHAPE).astype(np.float32)} for _ in range(8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    source = float_model(folder / "float.onnx")
    out = folder / f"qdq{'-channel' if per_channel else ''}.onnx"
    quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return out


def dynamic(folder: Path) -> Path:
    """The float model through `quantize_dynamic`: DynamicQuantizeLinear, ConvInteger and MatMulInteger
    with int8 weights, each sum cast to float and scaled."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = float_model(folder / "float.onnx")
    out = folder / "dynamic.onnx"
    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    return out


def onnxruntime_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
