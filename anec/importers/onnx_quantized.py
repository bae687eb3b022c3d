"""Quantized ONNX (QDQ graphs, what onnxruntime's `quantize_static` and most exporters write).

- A `DequantizeLinear` of a constant int8/uint8 tensor whose every reader takes it as the weight of a
  Conv, ConvTranspose, MatMul or Gemm (or as a Gather's table) becomes that weight, stored compressed
  (`anec.compression.AffineWeight`: the integers, scale and zero point, per tensor or per axis), not
  folded to floats. Any other constant `DequantizeLinear` folds as before.
- A `QuantizeLinear` → `DequantizeLinear` pair on an activation is kept, emulated in float with `ane`
  ops: `q = round(clamp(x / s, low - z, high - z)) + z`, then `(q - z) * s`. The ANE has no integer
  activations on M1 (the hardware notes, "fp16 semantics": int8 on M1 is weight-only). `ane.round` is
  exact in float32 (ties to even, as ONNX) and ane-fp16 spells it as fp16 adds on the engine; clamping
  to the integer bounds first changes nothing (rounding commutes with it) and keeps the rounding's
  input within ±255, where one fp16 shift rounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import f32
from xdsl.ir import SSAValue

from anec.compression import AffineWeight
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of
from anec.importers.onnx_graph import UNFOLDED, GraphBuilder, Node, NotOnAne, Value, walk_nodes
from anec.importers.onnx_handlers import handles
from anec.types import numpy_dtype
from anec.weights import make_compressed_const

WEIGHT_INPUTS: dict[str, int] = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1, "Gather": 0}
"""The input of each op that may hold a compressed weight: MAC weights, and embedding tables (which
Core ML stores compressed; the CPU's gather reads their expansion)."""

INTEGER_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _readers(b: GraphBuilder, name: str) -> list[tuple[str, int]]:
    """(op type, input index) of every node of the graph that reads `name` (a graph output: ("", 0))."""
    graph = b.model.graph
    return ([(n.op_type, i) for n in walk_nodes(graph.node) for i, x in enumerate(n.input) if x == name]
            + [("", 0) for out in graph.output if out.name == name])


def _quantization(node: Node, b: GraphBuilder) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, zero point) of a Quantize/DequantizeLinear when both are constant and not blockwise; an
    absent zero point is 0 of the integer type (a DequantizeLinear's input's; uint8 for QuantizeLinear)."""
    scale = b.const(node.input(1))
    zero = b.const(node.input(2)) if node.input(2) else None
    if scale is None or (node.input(2) and zero is None) or node.attr("block_size", 0):
        return None
    if zero is None:
        zero = np.zeros(scale.shape, b.dtype(node.input(0)) if node.op_type == "DequantizeLinear" else np.uint8)
    return scale, zero


def _constant_quantization(node: Node, b: GraphBuilder) -> tuple[np.ndarray, np.ndarray]:
    """`_quantization`, which the ANE ops the handlers make need."""
    found = _quantization(node, b)
    if found is None:
        raise NotOnAne("its scale or zero point is computed at run time, or it is blockwise")
    return found


def keeps_compressed(node: Node, b: GraphBuilder) -> bool:
    """Whether a `DequantizeLinear` imports as a compressed weight rather than folding."""
    q = b.const(node.input(0))
    found = _quantization(node, b)
    if q is None or found is None or q.dtype not in INTEGER_RANGES or found[1].dtype != q.dtype:
        return False
    readers = _readers(b, node.outputs[0])
    return bool(readers) and all(WEIGHT_INPUTS.get(op) == i for op, i in readers)


UNFOLDED["DequantizeLinear"] = keeps_compressed


def _axis(node: Node, rank: int, scale: np.ndarray) -> int | None:
    return None if scale.size == 1 and scale.ndim <= 1 else node.attr("axis", 1) % rank


def _along(array: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    """`array` (one value, or one per index of `axis`) as float32 broadcastable against a rank-`rank` tensor."""
    shape = [1] * rank
    if axis is not None:
        shape[axis] = -1
    return np.asarray(array, np.float32).reshape(shape)


def _per_axis(array: np.ndarray, axis: int | None, like: SSAValue, b: GraphBuilder) -> SSAValue:
    return b.constant(_along(array, axis, len(shape_of(like))), name="quantization")


@handles("DequantizeLinear", emits=[ane.ConstOp, ane.SubOp, ane.MulOp],
         note="a constant int8/uint8 weight of a Conv, MatMul or Gemm (or a Gather table) stays compressed; on activations, (q - z) * s")
def dequantize_linear(node: Node, b: GraphBuilder) -> list[Value]:
    scale, zero = _constant_quantization(node, b)
    q = b.const(node.input(0))
    if q is not None:  # a weight: compressed, or folded here (onnx's evaluator has no DequantizeLinear before op set 19)
        axis = _axis(node, q.ndim, scale)
        if not keeps_compressed(node, b):
            return [np.asarray((q.astype(np.float32) - _along(zero, axis, q.ndim)) * _along(scale, axis, q.ndim), np.float32)]
        op = make_compressed_const(AffineWeight(q, scale, zero, axis), node.input(0), b.store, f32)
        b.block.add_op(op)
        return [op.result]
    x = b.value(node.input(0))
    axis = _axis(node, len(shape_of(x)), scale)
    if numpy_dtype(element_type_of(x)).kind in "iu":
        x = b.add(ane.CastOp(x, f32))
    if np.any(zero):
        x = b.add(ane.SubOp(x, _per_axis(zero, axis, x, b)))
    return [b.add(ane.MulOp(x, _per_axis(scale, axis, x, b)))]


@handles("QuantizeLinear", emits=[ane.DivOp, ane.ClampOp, ane.RoundOp, ane.AddOp],
         note="when only DequantizeLinear reads it: round(clamp(x / s, low - z, high - z)) + z, exact in float32")
def quantize_linear(node: Node, b: GraphBuilder) -> Sequence[Value]:
    scale, zero = _constant_quantization(node, b)
    if zero.dtype not in INTEGER_RANGES:
        raise NotOnAne(f"it quantizes to {zero.dtype}; the ANE emulates int8 and uint8 only")
    if not all(op == "DequantizeLinear" and i == 0 for op, i in _readers(b, node.outputs[0])):
        raise NotOnAne("an op other than DequantizeLinear reads its integers")
    low, high = INTEGER_RANGES[zero.dtype]
    if (c := b.const(node.input(0))) is not None:  # folded here, as for DequantizeLinear
        axis = _axis(node, c.ndim, scale)
        quantized = np.round(c.astype(np.float32) / _along(scale, axis, c.ndim)) + _along(zero, axis, c.ndim)
        return [np.asarray(np.clip(quantized, low, high), zero.dtype)]
    x = b.value(node.input(0))
    axis = _axis(node, len(shape_of(x)), scale)
    return [quantize(b.add(ane.DivOp(x, _per_axis(scale, axis, x, b))), zero, axis, b)]


def quantize(t: SSAValue, zero: np.ndarray, axis: int | None, b: GraphBuilder) -> SSAValue:
    """`clamp(round(t) + z)` to `zero`'s integer type, as floats: the clamp goes first, to the widest
    integer bounds any zero point allows (exact: rounding commutes with a clamp to integers), and again
    after the zero point only when it differs along `axis`."""
    low, high = INTEGER_RANGES[zero.dtype]
    z = zero.astype(np.float32)
    q = b.add(ane.RoundOp(b.add(ane.ClampOp(t, min=float(low - z.max()), max=float(high - z.min())))))
    if np.any(z):
        q = b.add(ane.AddOp(q, _per_axis(z, axis, q, b)))
    return b.add(ane.ClampOp(q, min=float(low), max=float(high))) if np.ptp(z) else q
