"""Quantized ONNX (QDQ graphs, what onnxruntime's `quantize_static` and most exporters write).

- A `DequantizeLinear` of a constant int8/uint8 tensor whose every reader takes it as the weight of a
  Conv, ConvTranspose, MatMul or Gemm (or as a Gather's table) becomes that weight, stored compressed
  (`anec.compression.AffineWeight`: the integers, scale and zero point, per tensor or per axis), not
  folded to floats. Any other constant `DequantizeLinear` folds as before.
- A `QuantizeLinear` → `DequantizeLinear` pair on an activation is kept, emulated in float with `ane`
  ops (`OpBuilder.quantize` / `dequantize`, which PT2E's pairs in ATen graphs import through too):
  `q = round(clamp(x / s, low - z, high - z)) + z`, then `(q - z) * s`. The ANE has no integer
  activations on M1 (the hardware notes, "fp16 semantics": int8 on M1 is weight-only). `ane.round` is
  exact in float32 (ties to even, as ONNX) and ane-fp16 spells it as fp16 adds on the engine; clamping
  to the integer bounds first changes nothing (rounding commutes with it) and keeps the rounding's
  input within ±255, where one fp16 shift rounds.
- Integer ops (what `quantize_dynamic` and the QOperator format write): the ANE has no integer tensors,
  so their integers are carried as floats. `DynamicQuantizeLinear` computes its scale and zero point
  with ane reductions and quantizes as above; `ConvInteger` and `MatMulInteger` are the float conv
  or matmul of `x - zx` by the constant weight stored compressed with scale one (`q - zw`, exact), so
  the imported IR computes the int32 sums exactly (below 2^24); `QLinearConv` and `QLinearMatMul` are
  those sums, plus the bias, times `sx·sw/sy`, quantized. The sums would overflow fp16 (a 3×3 conv of
  uint8 by int8 reaches 10^5): ane-fp16 (`anec.lowering.integer_sums`) moves the scale that follows into the
  weight's stored scale and the input, so the ANE computes the float conv of dequantized values (the
  float32 graph keeps the import's order, which requantizations after it amplify any change of).
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
from anec.importers.onnx_handlers import conv_of, handles, matmul_of
from anec.types import numpy_dtype
from anec.weights import make_compressed_const

WEIGHT_INPUTS: dict[str, int] = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1, "Gather": 0}
"""The input of each op that may hold a compressed weight: MAC weights, and embedding tables (which
Core ML stores compressed; the CPU's gather reads their expansion)."""

INTEGER_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}

INTEGER_READERS: dict[str, set[int]] = {"ConvInteger": {0, 2}, "MatMulInteger": {0, 1, 2, 3}, "QLinearConv": {0, 2, 3, 5},
                                        "QLinearMatMul": {0, 2, 3, 5}, "DequantizeLinear": {0}}
"""The inputs that take integers carried as floats (the handlers here make them so)."""


def _require_integer_readers(node: Node, b: GraphBuilder, *outputs: int) -> None:
    for out in outputs:
        if not all(i in INTEGER_READERS.get(op, set()) for op, i in _readers(b, node.outputs[out])):
            raise NotOnAne(f"its integer output {out} is read by an op that takes no integers carried as floats")


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
    return [b.dequantize(x, scale, zero, _axis(node, len(shape_of(x)), scale))]


@handles("QuantizeLinear", emits=[ane.DivOp, ane.ClampOp, ane.RoundOp, ane.AddOp],
         note="when only DequantizeLinear or integer ops read it: round(clamp(x / s, low - z, high - z)) + z, exact in float32")
def quantize_linear(node: Node, b: GraphBuilder) -> Sequence[Value]:
    scale, zero = _constant_quantization(node, b)
    if zero.dtype not in INTEGER_RANGES:
        raise NotOnAne(f"it quantizes to {zero.dtype}; the ANE emulates int8 and uint8 only")
    _require_integer_readers(node, b, 0)
    low, high = INTEGER_RANGES[zero.dtype]
    if (c := b.const(node.input(0))) is not None:  # folded here, as for DequantizeLinear
        axis = _axis(node, c.ndim, scale)
        quantized = np.round(c.astype(np.float32) / _along(scale, axis, c.ndim)) + _along(zero, axis, c.ndim)
        return [np.asarray(np.clip(quantized, low, high), zero.dtype)]
    x = b.value(node.input(0))
    axis = _axis(node, len(shape_of(x)), scale)
    return [b.quantize(b.add(ane.DivOp(x, b.quantization_constant(scale, axis, x))), zero, low, high, axis)]


# ------------------------------------------------------------------------------------------------
# Integer ops: DynamicQuantizeLinear, ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul
# ------------------------------------------------------------------------------------------------

def _as_float(x: SSAValue, b: GraphBuilder) -> SSAValue:
    return b.add(ane.CastOp(x, f32)) if numpy_dtype(element_type_of(x)).kind in "iu" else x


def _centered(node: Node, b: GraphBuilder, i: int, zero: int) -> SSAValue:
    """Input `i` minus its zero point (input `zero`), as float; the zero point may be computed at run time."""
    x = _as_float(b.value(node.input(i)), b)
    if not node.input(zero):
        return x
    z = b.const(node.input(zero))
    if z is not None:
        if z.size != 1:
            raise NotOnAne("a zero point per row of its activation input")
        return b.add(ane.SubOp(x, b.scalar(float(z.reshape(-1)[0]), x))) if np.any(z) else x
    return b.add(ane.SubOp(*b.same_rank(x, _as_float(b.value(node.input(zero)), b))))


def _integer_weight(node: Node, b: GraphBuilder, i: int, zero: int, axis: int) -> SSAValue:
    """A constant int8/uint8 weight minus its zero point (one, or one per index of `axis`): stored
    compressed with scale one, so its values are the exact integers; a computed weight is centered in float."""
    q = b.const(node.input(i))
    z = b.const(node.input(zero)) if node.input(zero) else np.zeros((), q.dtype if q is not None else np.int8)
    if q is None or z is None or q.dtype not in INTEGER_RANGES or z.dtype != q.dtype:
        return _centered(node, b, i, zero)
    per_axis = None if z.size == 1 else axis % q.ndim
    op = make_compressed_const(AffineWeight(q, np.ones(z.size, np.float32), z, per_axis), node.input(i), b.store, f32)
    b.block.add_op(op)
    return op.result


@handles("DynamicQuantizeLinear", emits=[ane.ReduceMinOp, ane.ReduceMaxOp, ane.MinOp, ane.MaxOp, ane.SubOp, ane.DivOp,
                                         ane.EqualOp, ane.SelectOp, ane.ClampOp, ane.RoundOp, ane.AddOp],
         note="when only integer ops read its integers: scale (max(x, 0) - min(x, 0)) / 255 and zero point computed on the ANE")
def dynamic_quantize_linear(node: Node, b: GraphBuilder) -> list[Value]:
    _require_integer_readers(node, b, 0, 2)
    x = b.value(node.input(0))
    every = list(range(len(shape_of(x))))
    low = b.add(ane.MinOp(b.add(ane.ReduceMinOp(x, every)), b.scalar(0.0, x)))
    high = b.add(ane.MaxOp(b.add(ane.ReduceMaxOp(x, every)), b.scalar(0.0, x)))
    span = b.add(ane.SubOp(high, low))
    span = b.add(ane.SelectOp(b.add(ane.EqualOp(span, b.scalar(0.0, x))), b.scalar(1.0, x), span))  # an all-zero x: scale 1/255, as onnx
    scale = b.add(ane.DivOp(span, b.scalar(255.0, x)))
    zero = b.add(ane.RoundOp(b.add(ane.ClampOp(b.add(ane.DivOp(b.add(ane.NegOp(low)), scale)), min=0.0, max=255.0))))
    t = b.add(ane.DivOp(x, scale))  # round(clamp(t, -255, 255)) + z, clamped: exact for any zero point in [0, 255]
    q = b.add(ane.ClampOp(b.add(ane.AddOp(b.add(ane.RoundOp(b.add(ane.ClampOp(t, min=-255.0, max=255.0)))), zero)), min=0.0, max=255.0))
    return [q, b.reshape(scale, ()), b.reshape(zero, ())]


def _integer_sum_readers(node: Node, b: GraphBuilder) -> None:
    if not all(op in ("Cast", "Add") for op, _ in _readers(b, node.outputs[0])):
        raise NotOnAne("an op other than a Cast or an Add reads its int32 sums (which anec carries as floats)")


@handles("ConvInteger", emits=[ane.SubOp, ane.ConvOp],
         note="the float conv of x - zx by the weight stored int8 (exact sums); ane-fp16 moves the scale in front")
def conv_integer(node: Node, b: GraphBuilder) -> list[Value]:
    _integer_sum_readers(node, b)
    return [conv_of(node, _centered(node, b, 0, 2), _integer_weight(node, b, 1, 3, 0), None, b)]


@handles("MatMulInteger", emits=[ane.SubOp, ane.MatmulOp],
         note="the float matmul of a - za by the weight stored int8 (exact sums); ane-fp16 moves the scale in front")
def matmul_integer(node: Node, b: GraphBuilder) -> list[Value]:
    _integer_sum_readers(node, b)
    return [matmul_of(_centered(node, b, 0, 2), _integer_weight(node, b, 1, 3, -1), b)]


def _requantized(node: Node, b: GraphBuilder, sums: SSAValue, scale: np.ndarray, out: int, axis: int) -> SSAValue:
    """Integer sums times `scale` (per tensor or per output channel on `axis`), quantized by the output
    scale and zero point at inputs `out`, `out + 1`."""
    y_scale = b.require_const(node.input(out), "output scale").astype(np.float32)
    y_zero = b.require_const(node.input(out + 1), "output zero point") if node.input(out + 1) else np.zeros((), np.uint8)
    if y_scale.size != 1 or y_zero.size != 1 or y_zero.dtype not in INTEGER_RANGES:
        raise NotOnAne("an output scale or zero point that is not one int8/uint8 value")
    factor = (scale / y_scale.reshape(())).astype(np.float32)
    t = b.add(ane.MulOp(sums, b.quantization_constant(factor, None if factor.size == 1 else axis % len(shape_of(sums)), sums)))
    return b.quantize(t, y_zero.reshape(()), *INTEGER_RANGES[y_zero.dtype])


@handles("QLinearConv", emits=[ane.SubOp, ane.ConvOp, ane.MulOp, ane.ClampOp, ane.RoundOp, ane.AddOp],
         note="the int32 conv plus bias, times sx·sw/sy, quantized; ane-fp16 moves the scale in front")
def qlinear_conv(node: Node, b: GraphBuilder) -> list[Value]:
    _require_integer_readers(node, b, 0)
    sx = b.require_const(node.input(1), "input scale").astype(np.float32)
    sw = b.require_const(node.input(4), "weight scale").astype(np.float32)
    bias = b.const(node.input(8)) if node.input(8) else None
    if node.input(8) and bias is None:
        raise NotOnAne("its bias is computed at run time")
    bias_value = b.constant(bias.astype(np.float32), name=node.input(8)) if bias is not None else None
    sums = conv_of(node, _centered(node, b, 0, 2), _integer_weight(node, b, 3, 5, 0), bias_value, b)
    return [_requantized(node, b, sums, sx.reshape(()) * sw.reshape(-1), 6, 1)]


@handles("QLinearMatMul", emits=[ane.SubOp, ane.MatmulOp, ane.MulOp, ane.ClampOp, ane.RoundOp, ane.AddOp],
         note="the int32 matmul times sa·sb/sy, quantized; ane-fp16 moves the scale in front")
def qlinear_matmul(node: Node, b: GraphBuilder) -> list[Value]:
    _require_integer_readers(node, b, 0)
    sa = b.require_const(node.input(1), "input scale").astype(np.float32)
    sb = b.require_const(node.input(4), "weight scale").astype(np.float32)
    if sa.size != 1:
        raise NotOnAne("a scale per row of its first input")
    sums = matmul_of(_centered(node, b, 0, 2), _integer_weight(node, b, 3, 5, -1), b)
    return [_requantized(node, b, sums, sa.reshape(()) * sb.reshape(-1), 6, -1)]
