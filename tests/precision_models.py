"""Small ONNX models with one fp16 hazard each, shared by the precision-policy tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 0


def _model(nodes: list, shape: list[int], outputs: list[str], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def scaled_sum(unscale: bool = False) -> onnx.ModelProto:
    """y = ReduceSum(x · 1000) over 256 values (÷ 1000 after, with `unscale`): on inputs in [0, 1)
    the sum is about 128 000, beyond fp16's 65 504."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["big"], name="scale"),
             helper.make_node("ReduceSum", ["big", "axes"], ["total" if unscale else "y"], name="total", keepdims=1)]
    if unscale:
        nodes.append(helper.make_node("Mul", ["total", "inv"], ["y"], name="unscale"))
    inits = {"k": np.float32(1000.0), "axes": np.array([2], np.int64), "inv": np.float32(1e-3)}
    return _model(nodes, [1, 8, 256], ["y"], inits)


def rms_norm(square: str = "Mul") -> onnx.ModelProto:
    """y = x / sqrt(mean(x²) + ε), the square written as `Mul` or `Pow`: values of a few hundred
    square past 65 504 while their mean stays below."""
    sq = (helper.make_node("Mul", ["x", "x"], ["sq"], name="square") if square == "Mul"
          else helper.make_node("Pow", ["x", "two"], ["sq"], name="square"))
    nodes = [sq, helper.make_node("ReduceMean", ["sq"], ["ms"], name="mean_square", axes=[2], keepdims=1),
             helper.make_node("Add", ["ms", "eps"], ["v"], name="plus_eps"), helper.make_node("Sqrt", ["v"], ["rms"], name="rms"),
             helper.make_node("Div", ["x", "rms"], ["y"], name="normalize")]
    return _model(nodes, [1, 8, 64], ["y"], {"eps": np.float32(1e-5), "two": np.float32(2.0)})


def harmless() -> onnx.ModelProto:
    """y = relu(x) · 0.5: nothing fp16 cannot hold."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Mul", ["r", "half"], ["y"], name="halve")]
    return _model(nodes, [1, 8, 256], ["y"], {"half": np.float32(0.5)})


def many_sums(n: int) -> onnx.ModelProto:
    """`n` outputs, each an overflowing sum of its own: one op to move per output."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["big"], name="scale")]
    nodes += [helper.make_node("ReduceSum", ["big", "axes"], [f"y{i}"], name=f"total{i}", keepdims=1) for i in range(n)]
    return _model(nodes, [1, 8, 256], [f"y{i}" for i in range(n)], {"k": np.float32(1000.0), "axes": np.array([2], np.int64)})


def cancellation() -> onnx.ModelProto:
    """y = (x + 1000) - 1000: fp16 holds 1000 + x to 0.5, so small x cancel to multiples of 0.5."""
    nodes = [helper.make_node("Add", ["x", "big"], ["shifted"], name="shift"),
             helper.make_node("Sub", ["shifted", "big"], ["y"], name="restore")]
    return _model(nodes, [1, 8, 256], ["y"], {"big": np.float32(1000.0)})


def unit_inputs(shape: tuple[int, ...] = (1, 8, 256)) -> np.ndarray:
    """Seeded values in [0, 1)."""
    return np.random.default_rng(RNG_SEED).random(shape).astype(np.float32)


def rms_inputs() -> np.ndarray:
    """Seeded values of about ±100 with a 300 in every row: squares up to 90 000."""
    x = (100 * np.random.default_rng(RNG_SEED).standard_normal((1, 8, 64))).astype(np.float32)
    x[..., 0] = 300.0
    return x


def scale_folded_into_matmul() -> onnx.ModelProto:
    """y = (x @ W) · 5e4 per column, then a second matmul: the scale overflows fp16, and ane-fuse folds
    it into the first matmul's weights after the attribution has named it."""
    rng = np.random.default_rng(RNG_SEED)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="project"),
             helper.make_node("Mul", ["h", "k"], ["big"], name="amplify"),
             helper.make_node("MatMul", ["big", "v"], ["y"], name="mix")]
    inits = {"w": (rng.standard_normal((256, 32)) / 16).astype(np.float32), "k": np.full(32, 5e4, np.float32),
             "v": (rng.standard_normal((32, 16)) / 6).astype(np.float32)}
    return _model(nodes, [1, 8, 256], ["y"], inits)


def amplified_upstream_rounding() -> onnx.ModelProto:
    """y = relu(x · 1.37) · 0.73 − x = 1e-4 · x for x ≥ 0: the subtraction cancels all but 1e-4 of its
    operands, so the fp16 rounding of x · 1.37 (two ops up, ~5e-4) comes out larger than y itself."""
    nodes = [helper.make_node("Mul", ["x", "up"], ["a0"], name="up"), helper.make_node("Relu", ["a0"], ["a"], name="relu"),
             helper.make_node("Mul", ["a", "down"], ["b"], name="down"), helper.make_node("Sub", ["b", "x"], ["y"], name="difference")]
    return _model(nodes, [1, 8, 256], ["y"], {"up": np.float32(1.37), "down": np.float32(0.73)})
