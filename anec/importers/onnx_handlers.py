"""ONNX op handlers: one small function per op (or family), each emitting `ane` ops.

A handler reads its node through the `GraphBuilder` API and returns one value per node output: an
SSA value, or a numpy array when the output is known at compile time (Shape, Size, EyeLike). When
a node, as configured, has no ANE mapping (a run-time shape, an unsupported mode, a 3-D
convolution), the handler raises `NotOnAne(reason)` and the node runs on the CPU with that reason.
Ops without a handler are inlined from their ONNX function definition when they have one, and
otherwise run on the CPU. `HANDLERS` is also what `docs/supported-ops.md` is generated from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from xdsl.dialects.builtin import i32
from xdsl.ir import Operation, SSAValue

from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of
from anec.importers.onnx_graph import GraphBuilder, Handler, Node, NotOnAne, Value
from anec.registry import Registry
from anec.types import numpy_dtype, xdsl_element_type


@dataclass(frozen=True)
class HandlerInfo:
    fn: Handler
    emits: tuple[type[Operation], ...]
    """The `ane` ops the handler produces (for docs/supported-ops.md)."""
    note: str = ""
    """What happens instead, for handlers that emit no op, or a condition worth documenting."""


TABLE: Registry[HandlerInfo] = Registry("ONNX import handler")
HANDLERS: Registry[Handler] = Registry("ONNX import handler")


STANDARD_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.bool_, np.int8, np.int16, np.int32,
                                                  np.int64, np.uint8, np.uint16, np.uint32, np.uint64))
"""Element types `ane` ops are built on; narrower formats (bfloat16, float8, int4) stay in host ops."""


def handles(*op_types: str, emits: Sequence[type[Operation]], note: str = "") -> Callable[[Handler], Handler]:
    """Register a handler; one that emits ops is only called on non-empty tensors of standard types."""
    def register(fn: Handler) -> Handler:
        checked = _standard_tensors_only(fn) if emits else fn
        for t in op_types:
            TABLE.add(t, HandlerInfo(checked, tuple(emits), note))
            HANDLERS.add(t, checked)
        return fn
    return register


def _optional_input(node: Node, index: int) -> bool:
    """Whether input `index` is a parameter that may be left unset: optional in the node's op set,
    or in the op's latest one (Resize-11 requires `roi` and `scales` but ignores an empty `roi`
    and takes an empty `scales` when `sizes` is given; Resize-13 made both optional)."""
    def optional(opset: int) -> bool:
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        except onnx.defs.SchemaError:
            return False
        formal = schema.inputs[min(index, len(schema.inputs) - 1)] if schema.inputs else None
        return formal is not None and formal.option == onnx.defs.OpSchema.FormalParameterOption.Optional
    return optional(node.opset) or optional(onnx.defs.onnx_opset_version())


def _standard_tensors_only(fn: Handler) -> Handler:
    """Tensors of standard types only; an empty constant in an optional input is a parameter left
    unset (a Resize's `roi` that paddle2onnx writes as an empty initializer), not an empty tensor."""
    def run(node: Node, b: GraphBuilder) -> Sequence[Value | None]:
        for i, x in enumerate(node.inputs):
            if not x or (_optional_input(node, i) and (c := b.const(x)) is not None and c.size == 0):
                continue
            if b.dtype(x) not in STANDARD_DTYPES:
                raise NotOnAne(f"{b.dtype(x)} tensors stay on the CPU")
            if 0 in b.shape(x):
                raise NotOnAne("empty tensors stay on the CPU")
        return fn(node, b)
    return run


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------


def axis_of(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise NotOnAne(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def ints_from(node: Node, b: GraphBuilder, attr: str, index: int, what: str) -> list[int] | None:
    """An int list given as an attribute (older op sets) or a constant input (newer ones)."""
    if attr in node.attrs:
        return [int(v) for v in node.attrs[attr]]
    name = node.input(index)
    if not name:
        return None
    return [int(v) for v in b.require_const(name, what).reshape(-1)]


def x_of(node: Node, b: GraphBuilder, i: int = 0) -> SSAValue:
    return b.value(node.input(i))


# ------------------------------------------------------------------------------------------------
# Elementwise: neuron ops and their decompositions
# ------------------------------------------------------------------------------------------------

UNARY: dict[str, type[ane.UnaryOp]] = {
    "Relu": ane.ReluOp, "Sigmoid": ane.SigmoidOp, "Tanh": ane.TanhOp, "Exp": ane.ExpOp, "Log": ane.LogOp,
    "Sqrt": ane.SqrtOp, "Reciprocal": ane.ReciprocalOp, "Abs": ane.AbsOp, "Neg": ane.NegOp, "Erf": ane.ErfOp,
    "Sin": ane.SinOp, "Cos": ane.CosOp, "Softplus": ane.SoftplusOp, "HardSwish": ane.HardswishOp, "Sign": ane.SignOp,
    "Round": ane.RoundOp, "Floor": ane.FloorOp, "Ceil": ane.CeilOp,
}


def unary(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(UNARY[node.op_type](x_of(node, b)))]


for _op, _cls in UNARY.items():
    handles(_op, emits=[_cls])(unary)


@handles("LeakyRelu", emits=[ane.LeakyReluOp])
def leaky_relu(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.LeakyReluOp(x_of(node, b), alpha=node.attr("alpha", 0.01)))]


@handles("Elu", emits=[ane.EluOp])
def elu(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.EluOp(x_of(node, b), alpha=node.attr("alpha", 1.0)))]


@handles("Selu", emits=[ane.EluOp, ane.MulOp])
def selu(node: Node, b: GraphBuilder) -> list[Value]:
    y = b.add(ane.EluOp(x_of(node, b), alpha=node.attr("alpha", 1.67326319217681884765625)))
    return [b.add(ane.MulOp(y, b.scalar(node.attr("gamma", 1.05070102214813232421875), y)))]


@handles("Celu", emits=[ane.EluOp, ane.MulOp])
def celu(node: Node, b: GraphBuilder) -> list[Value]:
    alpha, x = node.attr("alpha", 1.0), x_of(node, b)
    if alpha == 1.0:
        return [b.add(ane.EluOp(x, alpha=1.0))]
    y = b.add(ane.EluOp(b.add(ane.MulOp(x, b.scalar(1.0 / alpha, x))), alpha=1.0))
    return [b.add(ane.MulOp(y, b.scalar(alpha, y)))]


@handles("HardSigmoid", emits=[ane.HardsigmoidOp])
def hard_sigmoid(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.HardsigmoidOp(x_of(node, b), alpha=node.attr("alpha", 0.2), beta=node.attr("beta", 0.5)))]


@handles("Gelu", emits=[ane.GeluOp])
def gelu(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.GeluOp(x_of(node, b), node.attr("approximate", "none")))]


F32_MAX = float(np.finfo(np.float32).max)


@handles("Clip", emits=[ane.ClampOp])
def clip(node: Node, b: GraphBuilder) -> list[Value]:
    if node.opset < 11:
        lo, hi = node.attr("min", -F32_MAX), node.attr("max", F32_MAX)
    else:
        lo = float(b.require_const(node.input(1), "minimum")) if node.input(1) else -F32_MAX
        hi = float(b.require_const(node.input(2), "maximum")) if node.input(2) else F32_MAX
    return [b.add(ane.ClampOp(x_of(node, b), min=max(lo, -F32_MAX), max=min(hi, F32_MAX)))]


@handles("Mish", emits=[ane.SoftplusOp, ane.TanhOp, ane.MulOp])
def mish(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    return [b.add(ane.MulOp(x, b.add(ane.TanhOp(b.add(ane.SoftplusOp(x))))))]


@handles("Softsign", emits=[ane.AbsOp, ane.AddOp, ane.DivOp])
def softsign(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    return [b.add(ane.DivOp(x, b.add(ane.AddOp(b.add(ane.AbsOp(x)), b.scalar(1.0, x)))))]


@handles("Swish", emits=[ane.SiluOp, ane.SigmoidOp, ane.MulOp])
def swish(node: Node, b: GraphBuilder) -> list[Value]:
    x, alpha = x_of(node, b), node.attr("alpha", 1.0)
    if alpha == 1.0:
        return [b.add(ane.SiluOp(x))]
    return [b.add(ane.MulOp(x, b.add(ane.SigmoidOp(b.add(ane.MulOp(x, b.scalar(alpha, x)))))))]


@handles("ThresholdedRelu", emits=[ane.GreaterOp, ane.SelectOp])
def thresholded_relu(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    keep = b.add(ane.GreaterOp(x, b.scalar(node.attr("alpha", 1.0), x)))
    return [b.add(ane.SelectOp(keep, x, b.scalar(0.0, x)))]


@handles("Shrink", emits=[ane.LessOp, ane.GreaterOp, ane.AddOp, ane.SubOp, ane.SelectOp])
def shrink(node: Node, b: GraphBuilder) -> list[Value]:
    x, lambd, bias = x_of(node, b), node.attr("lambd", 0.5), node.attr("bias", 0.0)
    below = b.add(ane.LessOp(x, b.scalar(-lambd, x)))
    above = b.add(ane.GreaterOp(x, b.scalar(lambd, x)))
    upper = b.add(ane.SelectOp(above, b.add(ane.SubOp(x, b.scalar(bias, x))), b.scalar(0, x)))
    return [b.add(ane.SelectOp(below, b.add(ane.AddOp(x, b.scalar(bias, x))), upper))]


@handles("PRelu", emits=[ane.LeakyReluOp, ane.LessOp, ane.MulOp, ane.SelectOp])
def prelu(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    slope = b.const(node.input(1))
    if slope is not None and slope.size and np.all(slope == slope.reshape(-1)[0]) and slope.ndim <= len(shape_of(x)):
        return [b.add(ane.LeakyReluOp(x, alpha=float(slope.reshape(-1)[0])))]
    x, s = b.same_rank(x, b.value(node.input(1)))
    negative = b.add(ane.LessOp(x, b.scalar(0, x)))
    return [b.add(ane.SelectOp(negative, b.add(ane.MulOp(x, s)), x))]


@handles("Identity", emits=[], note="no op: the output is the input")
def identity(node: Node, b: GraphBuilder) -> list[Value]:
    name = node.input(0)
    c = b.const(name)
    return [c if c is not None else b.value(name)]


@handles("Dropout", emits=[], note="no op at inference (the mask output is a constant); training mode runs on the CPU")
def dropout(node: Node, b: GraphBuilder) -> list[Value | None]:
    training = node.attr("is_test", 1) == 0 if node.opset < 7 else False
    if node.input(2):
        training = bool(b.require_const(node.input(2), "training mode"))
    if training:
        raise NotOnAne("training-mode dropout is random")
    x = b.value(node.input(0))
    mask = np.ones(shape_of(x), dtype=np.bool_) if len(node.outputs) > 1 and node.outputs[1] else None
    return [x, mask]


# ------------------------------------------------------------------------------------------------
# Elementwise: binary arithmetic, comparisons, select
# ------------------------------------------------------------------------------------------------

BINARY: dict[str, type[ane.BinaryOp]] = {"Add": ane.AddOp, "Sub": ane.SubOp, "Mul": ane.MulOp, "Div": ane.DivOp, "Pow": ane.PowOp}
COMPARE: dict[str, type[ane.CompareOp]] = {
    "Equal": ane.EqualOp, "Greater": ane.GreaterOp, "Less": ane.LessOp, "GreaterOrEqual": ane.GreaterEqualOp,
    "LessOrEqual": ane.LessEqualOp,
}


def binary_operands(node: Node, b: GraphBuilder) -> list[SSAValue]:
    if "axis" in node.attrs or node.attr("broadcast", 0):
        raise NotOnAne("op-set-1 style axis broadcasting")
    lhs = b.value(node.input(0))
    exponent = b.const(node.input(1))
    if node.op_type == "Pow" and exponent is not None and exponent.dtype != b.dtype(node.input(0)):
        rhs = b.constant(exponent.astype(b.dtype(node.input(0))), name=f"{node.name}.exponent")
    else:
        rhs = b.value(node.input(1))
    floats = [element_type_of(v) for v in (lhs, rhs) if numpy_dtype(element_type_of(v)).kind == "f"]
    if len(floats) == 1 and node.op_type in BINARY and node.op_type != "Pow":
        # ONNX gives both operands one type, so a float side carries integers (onnx_quantized); Pow alone
        # takes two types, and its result has the base's
        lhs, rhs = (b.cast(v, floats[0]) for v in (lhs, rhs))
    return b.same_rank(lhs, rhs)


def binary(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(BINARY[node.op_type](*binary_operands(node, b)))]


def compare(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(COMPARE[node.op_type](*binary_operands(node, b)))]


for _op, _binary_cls in BINARY.items():
    handles(_op, emits=[_binary_cls])(binary)
for _op, _compare_cls in COMPARE.items():
    handles(_op, emits=[_compare_cls])(compare)


VARIADIC: dict[str, type[ane.BinaryOp]] = {"Max": ane.MaxOp, "Min": ane.MinOp, "Sum": ane.AddOp, "Mean": ane.AddOp}


@handles("Max", emits=[ane.MaxOp])
@handles("Min", emits=[ane.MinOp])
@handles("Sum", emits=[ane.AddOp])
@handles("Mean", emits=[ane.AddOp, ane.MulOp])
def variadic(node: Node, b: GraphBuilder) -> list[Value]:
    vals = b.same_rank(*(b.value(x) for x in node.inputs if x))
    y = vals[0]
    for v in vals[1:]:
        y = b.add(VARIADIC[node.op_type](y, v))
    if node.op_type == "Mean" and len(vals) > 1:
        y = b.add(ane.MulOp(y, b.scalar(1.0 / len(vals), y)))
    return [y]


@handles("IsNaN", emits=[ane.NotEqualOp])
def is_nan(node: Node, b: GraphBuilder) -> list[Value]:
    """x != x: true only for NaN (which the ANE never produces: it saturates to inf)."""
    x = x_of(node, b)
    return [b.add(ane.NotEqualOp(x, x))]


@handles("Not", "And", "Or", emits=[ane.SelectOp])
@handles("Xor", emits=[ane.NotEqualOp])
def logical(node: Node, b: GraphBuilder) -> list[Value]:
    """Boolean logic as selects between masks (fp16 0/1 on the ANE)."""
    vals = b.same_rank(*(b.value(x) for x in node.inputs))
    if any(b.dtype(x) != np.bool_ for x in node.inputs):
        raise NotOnAne("bitwise logic on integers")
    rank = len(shape_of(vals[0]))
    false, true = (b.constant(np.full((1,) * rank, v), name="mask") for v in (False, True))
    match node.op_type, vals:
        case "Not", [a]:
            return [b.add(ane.SelectOp(a, false, true))]
        case "And", [a, c]:
            return [b.add(ane.SelectOp(a, c, false))]
        case "Or", [a, c]:
            return [b.add(ane.SelectOp(a, true, c))]
    a, c = vals
    return [b.add(ane.NotEqualOp(a, c))]


@handles("Where", emits=[ane.SelectOp])
def where(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.SelectOp(*b.same_rank(*(b.value(x) for x in node.inputs))))]


# ------------------------------------------------------------------------------------------------
# MAC ops
# ------------------------------------------------------------------------------------------------


@handles("MatMul", emits=[ane.MatmulOp])
def matmul(node: Node, b: GraphBuilder) -> list[Value]:
    return [matmul_of(x_of(node, b, 0), x_of(node, b, 1), b)]


def matmul_of(a: SSAValue, c: SSAValue, b: GraphBuilder) -> SSAValue:
    """numpy's matmul of two values (1-D operands as a row and a column), for MatMul and MatMulInteger."""
    sa, sc = shape_of(a), shape_of(c)
    if not sa or not sc:
        raise NotOnAne("a scalar operand")
    a = b.reshape(a, (1, sa[0])) if len(sa) == 1 else a
    c = b.reshape(c, (sc[0], 1)) if len(sc) == 1 else c
    y = b.add(ane.MatmulOp(*b.same_rank(a, c)))
    out = shape_of(y)
    squeezed = out[:-2] + ((out[-2],) if len(sa) > 1 else ()) + ((out[-1],) if len(sc) > 1 else ())
    return b.reshape(y, squeezed[-max(len(sa), len(sc)):] if len(squeezed) else ())


@handles("Gemm", emits=[ane.MatmulOp, ane.MulOp, ane.AddOp])
def gemm(node: Node, b: GraphBuilder) -> list[Value]:
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    a, w = x_of(node, b, 0), x_of(node, b, 1)
    flags = {"transpose_lhs": bool(node.attr("transA", 0)), "transpose_rhs": bool(node.attr("transB", 0))}
    n = ane.MatmulOp.infer(shape_of(a), shape_of(w), *flags.values())[-1]
    c = b.const(node.input(2)) if node.input(2) else None
    bias = None
    if c is not None and alpha == 1.0 and c.ndim <= 2 and c.size in (1, n) and (c.ndim < 2 or c.shape[0] == 1):
        bias = b.constant(np.broadcast_to(c.reshape(-1) * np.asarray(beta, c.dtype), (n,)).copy(), name=f"{node.name}.bias")
    y = b.add(ane.MatmulOp(a, w, bias, **flags))
    if alpha != 1.0:
        y = b.add(ane.MulOp(y, b.scalar(alpha, y)))
    if node.input(2) and bias is None:
        cv = b.value(node.input(2))
        if beta != 1.0:
            cv = b.add(ane.MulOp(cv, b.scalar(beta, cv)))
        y = b.add(ane.AddOp(*b.same_rank(y, cv)))
    return [y]


def conv_pads(node: Node, in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int]) -> list[int]:
    k = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(node.attr("pads", [0] * 2 * k))
    if auto == "VALID":
        return [0] * 2 * k
    begins, ends = [], []
    for size, kk, s, d in zip(in_spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (kk - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else large)
        ends.append(large if auto == "SAME_UPPER" else small)
    return begins + ends


def _window_attrs(node: Node, x: SSAValue, kernel: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    k = len(kernel)
    strides = list(node.attr("strides", [1] * k))
    dilations = list(node.attr("dilations", [1] * k))
    return strides, dilations, conv_pads(node, shape_of(x)[2:], kernel, strides, dilations)


def _spatial_rank(x: SSAValue, what: str) -> int:
    rank = len(shape_of(x))
    if rank not in (3, 4):
        raise NotOnAne(f"{rank - 2}-D {what} (the ANE has 1-D and 2-D windows)")
    return rank - 2


@handles("Conv", emits=[ane.ConvOp], note="1-D and 2-D")
def conv(node: Node, b: GraphBuilder) -> list[Value]:
    return [conv_of(node, x_of(node, b, 0), x_of(node, b, 1), b.value(node.input(2)) if node.input(2) else None, b)]


def conv_of(node: Node, x: SSAValue, w: SSAValue, bias: SSAValue | None, b: GraphBuilder) -> SSAValue:
    """A Conv's (or ConvInteger's, QLinearConv's) convolution of `x` by `w`, with its attributes."""
    _spatial_rank(x, "convolution")
    strides, dilations, pads = _window_attrs(node, x, shape_of(w)[2:])
    return b.add(ane.ConvOp(x, w, bias, strides=strides, pads=pads, dilations=dilations, groups=node.attr("group", 1)))


@handles("ConvTranspose", emits=[ane.ConvTransposeOp], note="1-D and 2-D")
def conv_transpose(node: Node, b: GraphBuilder) -> list[Value]:
    x, w = x_of(node, b, 0), x_of(node, b, 1)
    k = _spatial_rank(x, "transposed convolution")
    kernel, groups = shape_of(w)[2:], node.attr("group", 1)
    strides, dilations = list(node.attr("strides", [1] * k)), list(node.attr("dilations", [1] * k))
    out_pad = list(node.attr("output_padding", [0] * k))
    auto = node.attr("auto_pad", "NOTSET")
    pads = list(node.attr("pads", [0] * 2 * k))
    target = node.attr("output_shape")
    if target is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [d * s for d, s in zip(shape_of(x)[2:], strides)]
    if auto == "VALID":
        pads = [0] * 2 * k
    elif target is not None:
        target = list(target)[-k:]
        begins, ends = [], []
        for i in range(k):
            total = strides[i] * (shape_of(x)[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 - target[i]
            if total < 0:
                out_pad[i] -= total
                total = 0
            small, large = total // 2, total - total // 2
            upper = auto != "SAME_LOWER"
            begins.append(small if upper else large)
            ends.append(large if upper else small)
        pads = begins + ends
    bias = b.value(node.input(2)) if node.input(2) else None
    return [b.add(ane.ConvTransposeOp(x, w, bias, strides=strides, pads=pads, dilations=dilations, groups=groups,
                                       output_padding=out_pad))]


def _ceil_extra(size: int, kernel: int, stride: int, begin: int, end: int) -> int:
    """Extra end padding that makes floor-mode pooling produce ceil-mode's output size."""
    floor_out = (size + begin + end - kernel) // stride + 1
    ceil_out = -(-(size + begin + end - kernel) // stride) + 1
    if (ceil_out - 1) * stride >= size + begin:  # the last window would start in the end padding
        ceil_out -= 1
    return (ceil_out - floor_out) * stride


def pool_geometry(node: Node, x: SSAValue) -> tuple[list[int], list[int], list[int], bool]:
    kernel = list(node.attr("kernel_shape"))
    strides, dilations, pads = _window_attrs(node, x, kernel)
    if any(d != 1 for d in dilations):
        raise NotOnAne("dilated pooling")
    extended = False
    if node.attr("ceil_mode", 0):
        k = len(kernel)
        for i in range(k):
            extra = _ceil_extra(shape_of(x)[2 + i], kernel[i], strides[i], pads[i], pads[k + i])
            if extra:
                pads[k + i] += extra
                extended = True
    return kernel, strides, pads, extended


@handles("MaxPool", emits=[ane.MaxPoolOp])
def max_pool(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    _spatial_rank(x, "pooling")
    if len(node.outputs) > 1 and node.outputs[1]:
        raise NotOnAne("its indices output")
    kernel, strides, pads, _ = pool_geometry(node, x)
    return [b.add(ane.MaxPoolOp(x, kernel, strides, pads))]


@handles("AveragePool", emits=[ane.AvgPoolOp])
def avg_pool(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    _spatial_rank(x, "pooling")
    kernel, strides, pads, extended = pool_geometry(node, x)
    include = bool(node.attr("count_include_pad", 0))
    if include and extended:
        raise NotOnAne("ceil mode with count_include_pad (the ceil extension must not count)")
    return [b.add(ane.AvgPoolOp(x, kernel, strides, pads, count_include_pad=include))]


@handles("LpPool", emits=[ane.L2PoolOp])
def lp_pool(node: Node, b: GraphBuilder) -> list[Value]:
    if node.attr("p", 2) != 2:
        raise NotOnAne(f"an L{node.attr('p')} pool (the ANE has L2 pools)")
    x = x_of(node, b)
    _spatial_rank(x, "pooling")
    kernel, strides, pads, _ = pool_geometry(node, x)
    return [b.add(ane.L2PoolOp(x, kernel, strides, pads))]


@handles("GlobalAveragePool", emits=[ane.GlobalAvgPoolOp])
@handles("GlobalMaxPool", emits=[ane.GlobalMaxPoolOp])
def global_pool(node: Node, b: GraphBuilder) -> list[Value]:
    cls = ane.GlobalAvgPoolOp if node.op_type == "GlobalAveragePool" else ane.GlobalMaxPoolOp
    return [b.add(cls(x_of(node, b)))]


# ------------------------------------------------------------------------------------------------
# Softmax and reductions
# ------------------------------------------------------------------------------------------------


def _coerced_2d(node: Node, b: GraphBuilder, fn: Callable[[SSAValue, int], SSAValue]) -> SSAValue:
    """Softmax-family ops before op set 13 work on the input flattened to 2-D at `axis`."""
    x = x_of(node, b)
    shape = shape_of(x)
    if node.opset >= 13:
        return fn(x, axis_of(node.attr("axis", -1), len(shape)))
    axis = axis_of(node.attr("axis", 1), len(shape))
    flat = b.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))
    return b.reshape(fn(flat, 1), shape)


@handles("Softmax", emits=[ane.SoftmaxOp])
def softmax(node: Node, b: GraphBuilder) -> list[Value]:
    return [_coerced_2d(node, b, lambda x, axis: b.add(ane.SoftmaxOp(x, axis)))]


@handles("LogSoftmax", emits=[ane.ReduceLogSumExpOp, ane.SubOp])
def log_softmax(node: Node, b: GraphBuilder) -> list[Value]:
    return [_coerced_2d(node, b, lambda x, axis: b.add(ane.SubOp(x, b.add(ane.ReduceLogSumExpOp(x, [axis])))))]


REDUCE: dict[str, type[ane.ReduceOp]] = {
    "ReduceSum": ane.ReduceSumOp, "ReduceMean": ane.ReduceMeanOp, "ReduceMax": ane.ReduceMaxOp,
    "ReduceMin": ane.ReduceMinOp, "ReduceL2": ane.ReduceL2Op, "ReduceLogSumExp": ane.ReduceLogSumExpOp,
    "ReduceL1": ane.ReduceSumOp, "ReduceSumSquare": ane.ReduceSumOp, "ReduceLogSum": ane.ReduceSumOp,
}
AXES_AS_INPUT = {"ReduceSum": 13}
"""Op set from which a reduction takes its axes as an input (18 for all but ReduceSum)."""


def reduce(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    rank = len(shape_of(x))
    if node.opset >= AXES_AS_INPUT.get(node.op_type, 18):
        axes = ints_from(node, b, "axes", 1, "reduction axes")
    else:
        axes = node.attr("axes")
    keepdims = bool(node.attr("keepdims", 1))
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = sorted({axis_of(a, rank) for a in axes})
    if node.op_type == "ReduceL1":
        x = b.add(ane.AbsOp(x))
    elif node.op_type == "ReduceSumSquare":
        x = b.add(ane.MulOp(x, x))
    y = b.add(REDUCE[node.op_type](x, axes, keepdims))
    return [b.add(ane.LogOp(y)) if node.op_type == "ReduceLogSum" else y]


_REDUCE_EXTRA: dict[str, list[type[Operation]]] = {"ReduceL1": [ane.AbsOp], "ReduceSumSquare": [ane.MulOp], "ReduceLogSum": [ane.LogOp]}
for _op, _reduce_cls in REDUCE.items():
    handles(_op, emits=[*_REDUCE_EXTRA.get(_op, []), _reduce_cls])(reduce)


@handles("ArgMax", emits=[ane.ArgmaxOp, ane.CastOp])
@handles("ArgMin", emits=[ane.ArgminOp, ane.CastOp])
def arg_reduce(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    cls = ane.ArgmaxOp if node.op_type == "ArgMax" else ane.ArgminOp
    idx = b.add(cls(x, axis_of(node.attr("axis", 0), len(shape_of(x))), bool(node.attr("keepdims", 1)),
                     bool(node.attr("select_last_index", 0)), index_type=i32))
    return [b.add(ane.CastOp(idx, xdsl_element_type(np.int64)))]


@handles("TopK", emits=[ane.TopkOp], note="a constant k; ties keep the lower index first")
def topk(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    axis = axis_of(node.attr("axis", -1), len(shape_of(x)))
    k = node.attr("k") if node.opset < 10 else b.require_const(node.input(1), "k").reshape(-1)[0]
    if not 1 <= int(k) <= shape_of(x)[axis]:
        raise NotOnAne(f"k = {k} selects no element or more than the {shape_of(x)[axis]} of axis {axis}")
    op = b.insert(ane.TopkOp(x, int(k), axis, bool(node.attr("largest", 1)), bool(node.attr("sorted", 1)),
                             index_type=xdsl_element_type(np.int64)))
    return list(op.results)


# ------------------------------------------------------------------------------------------------
# Normalization
# ------------------------------------------------------------------------------------------------


def _per_channel(b: GraphBuilder, v: SSAValue, rank: int) -> SSAValue:
    return b.reshape(v, (1, shape_of(v)[0]) + (1,) * (rank - 2))


@handles("BatchNormalization", emits=[ane.MulOp, ane.AddOp, ane.SubOp, ane.RsqrtOp], note="inference mode; constant statistics fold into a scale and a shift")
def batch_norm(node: Node, b: GraphBuilder) -> list[Value]:
    if node.attr("training_mode", 0) or any(node.outputs[1:]) or (node.opset < 7 and not node.attr("is_test", 0)):
        raise NotOnAne("training-mode batch normalization")
    x = x_of(node, b)
    rank, eps = len(shape_of(x)), node.attr("epsilon", 1e-5)
    params = [p for i in range(1, 5) if (p := b.const(node.input(i))) is not None]
    if len(params) == 4:
        c_scale, c_bias, c_mean, c_var = (p.astype(np.float64) for p in params)
        a = c_scale / np.sqrt(c_var + eps)
        dtype = b.dtype(node.input(0))
        mul = b.constant(a.astype(dtype).reshape((1, -1) + (1,) * (rank - 2)), name=f"{node.name}.scale")
        add = b.constant((c_bias - c_mean * a).astype(dtype).reshape((1, -1) + (1,) * (rank - 2)), name=f"{node.name}.shift")
        return [b.add(ane.AddOp(b.add(ane.MulOp(x, mul)), add))]
    scale, bias, mean, var = (_per_channel(b, b.value(node.input(i)), rank) for i in range(1, 5))
    inv = b.add(ane.RsqrtOp(b.add(ane.AddOp(var, b.scalar(eps, var)))))
    y = b.add(ane.MulOp(b.add(ane.SubOp(x, mean)), b.add(ane.MulOp(inv, scale))))
    return [b.add(ane.AddOp(y, bias))]


def _affine(b: GraphBuilder, name: str, shape: Sequence[int], like: SSAValue, fill: float, what: str) -> SSAValue:
    """Scale or bias of a norm with exactly `shape` (broadcast constants; ones/zeros when absent)."""
    if not name:
        return b.constant(np.full(shape, fill, dtype=_np(like)), name=what)
    c = b.const(name)
    if c is not None:
        return b.constant(np.broadcast_to(c, shape).copy(), name=what) if c.shape != tuple(shape) else b.value(name)
    v = b.value(name)
    if shape_of(v) == tuple(shape):
        return v
    v = b.with_rank(v, len(shape))
    return b.add(ane.BroadcastOp(v, shape))


def _np(v: SSAValue) -> np.dtype:
    return numpy_dtype(element_type_of(v))


@handles("LayerNormalization", emits=[ane.LayerNormOp])
def layer_norm(node: Node, b: GraphBuilder) -> list[Value]:
    if any(node.outputs[1:]):
        raise NotOnAne("its mean and inverse-deviation outputs")
    x = x_of(node, b)
    shape = shape_of(x)
    axis = axis_of(node.attr("axis", -1), len(shape))
    affine = shape[axis:]
    scale = _affine(b, node.input(1), affine, x, 1.0, f"{node.name}.scale")
    bias = _affine(b, node.input(2), affine, x, 0.0, f"{node.name}.bias")
    return [b.add(ane.LayerNormOp(x, scale, bias, axes=range(axis, len(shape)), epsilon=node.attr("epsilon", 1e-5)))]


@handles("InstanceNormalization", emits=[ane.InstanceNormOp])
def instance_norm(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    return [b.add(ane.InstanceNormOp(x, x_of(node, b, 1), x_of(node, b, 2), epsilon=node.attr("epsilon", 1e-5)))]


@handles("GroupNormalization", emits=[ane.GroupNormOp])
def group_norm(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    groups, channels = node.attr("num_groups"), shape_of(x)[1]
    affine = []
    for i in (1, 2):
        v = b.value(node.input(i))
        if shape_of(v) == (groups,) and groups != channels:  # op set 18: one value per group
            c = b.require_const(node.input(i), "per-group scale")
            v = b.constant(np.repeat(c, channels // groups), name=f"{node.name}.affine{i}")
        affine.append(v)
    return [b.add(ane.GroupNormOp(x, *affine, num_groups=groups, epsilon=node.attr("epsilon", 1e-5)))]


@handles("LpNormalization", emits=[ane.L2NormOp, ane.AbsOp, ane.ReduceSumOp, ane.MaxOp, ane.DivOp])
def lp_normalization(node: Node, b: GraphBuilder) -> list[Value]:
    x, p = x_of(node, b), node.attr("p", 2)
    axis = axis_of(node.attr("axis", -1), len(shape_of(x)))
    if p == 2:
        return [b.add(ane.L2NormOp(x, axes=[axis], epsilon=1e-24))]
    if p != 1:
        raise NotOnAne(f"L{p} normalization")
    norm = b.add(ane.ReduceSumOp(b.add(ane.AbsOp(x)), [axis]))
    return [b.add(ane.DivOp(x, b.add(ane.MaxOp(norm, b.scalar(1e-12, norm)))))]


@handles("LRN", emits=[ane.MulOp, ane.AvgPoolOp, ane.AddOp, ane.PowOp, ane.DivOp])
def lrn(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    if len(shape_of(x)) != 4:
        raise NotOnAne("LRN over a non-NCHW tensor")
    n, c, h, w = shape_of(x)
    size = node.attr("size")
    sq = b.reshape(b.add(ane.MulOp(x, x)), (n, 1, c, h * w))
    pads = [(size - 1) // 2, 0, size - 1 - (size - 1) // 2, 0]
    mean = b.reshape(b.add(ane.AvgPoolOp(sq, [size, 1], [1, 1], pads, count_include_pad=True)), (n, c, h, w))
    base = b.add(ane.AddOp(b.add(ane.MulOp(mean, b.scalar(node.attr("alpha", 1e-4), mean))), b.scalar(node.attr("bias", 1.0), mean)))
    return [b.add(ane.DivOp(x, b.add(ane.PowOp(base, b.scalar(node.attr("beta", 0.75), base)))))]


# ------------------------------------------------------------------------------------------------
# Data movement
# ------------------------------------------------------------------------------------------------


def reshape_target(shape: Sequence[int], spec: Sequence[int], allow_zero: bool) -> tuple[int, ...]:
    out = [shape[i] if d == 0 and not allow_zero and i < len(shape) else d for i, d in enumerate(spec)]
    if out.count(-1) > 1:
        raise NotOnAne(f"reshape target {list(spec)} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape) // known if known else 0
    if math.prod(out) != math.prod(shape):
        raise NotOnAne(f"cannot reshape {list(shape)} to {list(spec)}")
    return tuple(out)


@handles("Reshape", emits=[ane.ReshapeOp])
def reshape(node: Node, b: GraphBuilder) -> list[Value]:
    spec = node.attr("shape") if node.opset < 5 else ints_from(node, b, "_", 1, "target shape")
    x = x_of(node, b)
    return [b.reshape(x, reshape_target(shape_of(x), spec or [], bool(node.attr("allowzero", 0))))]


@handles("Flatten", emits=[ane.ReshapeOp])
def flatten(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    shape = shape_of(x)
    axis = node.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    return [b.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))]


@handles("Squeeze", "Unsqueeze", emits=[ane.ReshapeOp])
def squeeze(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    shape = list(shape_of(x))
    axes = ints_from(node, b, "axes", 1, "axes") if node.opset >= 13 else node.attr("axes")
    if node.op_type == "Squeeze":
        drop = {axis_of(a, len(shape)) for a in axes} if axes else {i for i, d in enumerate(shape) if d == 1}
        return [b.reshape(x, [d for i, d in enumerate(shape) if i not in drop])]
    rank = len(shape) + len(axes or [])
    for a in sorted(axis_of(a, rank) for a in axes or []):
        shape.insert(a, 1)
    return [b.reshape(x, shape)]


@handles("Transpose", emits=[ane.TransposeOp])
def transpose(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    rank = len(shape_of(x))
    perm = [axis_of(p, rank) for p in node.attr("perm", list(range(rank))[::-1])]
    return [b.transpose(x, perm)]


@handles("Concat", emits=[ane.ConcatOp])
def concat(node: Node, b: GraphBuilder) -> list[Value]:
    names = [x for x in node.inputs if x]
    axis = axis_of(node.attr("axis"), b.rank(names[0]))
    kept = [x for x in names if b.shape(x)[axis] != 0] or names[:1]
    vals = [b.value(x) for x in kept]
    return [vals[0] if len(vals) == 1 else b.add(ane.ConcatOp(vals, axis))]


@handles("Split", emits=[ane.SplitOp])
def split(node: Node, b: GraphBuilder) -> Sequence[Value | None]:
    x = x_of(node, b)
    shape = shape_of(x)
    axis = axis_of(node.attr("axis", 0), len(shape))
    sizes = node.attr("split") if node.opset < 13 else ints_from(node, b, "split", 1, "split sizes")
    count = len(node.outputs)
    if not sizes:
        chunk = -(-shape[axis] // count) if node.attr("num_outputs") else shape[axis] // count
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(count)]
    return list(b.insert(ane.SplitOp(x, axis, sizes)).results)


def slice_bounds(size: int, start: int, end: int, step: int) -> tuple[int, int]:
    """Python-style clamped [start, end) for a positive step."""
    start = min(max(start + size if start < 0 else start, 0), size)
    end = min(max(end + size if end < 0 else end, 0), size)
    return start, max(end, start)


@handles("Slice", emits=[ane.SliceOp])
def slice_(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    shape = shape_of(x)
    if node.opset < 10:
        starts, ends, axes, steps = node.attr("starts"), node.attr("ends"), node.attr("axes"), None
    else:
        starts, ends = ints_from(node, b, "_", 1, "starts"), ints_from(node, b, "_", 2, "ends")
        axes, steps = ints_from(node, b, "_", 3, "axes"), ints_from(node, b, "_", 4, "steps")
    axes = [axis_of(a, len(shape)) for a in (axes if axes is not None else range(len(starts or [])))]
    lo, hi, st = [0] * len(shape), list(shape), [1] * len(shape)
    for a, s, e, step in zip(axes, starts or [], ends or [], steps or [1] * len(axes)):
        if step <= 0:
            raise NotOnAne("a slice with a negative step (the ANE reads forward)")
        lo[a], hi[a] = slice_bounds(shape[a], s, e, step)
        st[a] = step
    if lo == [0] * len(shape) and hi == list(shape) and st == [1] * len(shape):
        return [x]
    return [b.add(ane.SliceOp(x, lo, hi, st))]


@handles("Pad", emits=[ane.PadOp, ane.SliceOp])
def pad(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    rank = len(shape_of(x))
    mode = node.attr("mode", "constant")
    if mode not in ane.PadOp.MODES:
        raise NotOnAne(f"{mode} padding")
    if node.opset < 11:
        pads, value = list(node.attr("pads", node.attr("paddings", []))), node.attr("value", 0.0)
    else:
        pads = [int(p) for p in b.require_const(node.input(1), "padding")]
        value = float(b.require_const(node.input(2), "pad value").reshape(-1)[0]) if node.input(2) else 0.0
    axes = ints_from(node, b, "_", 3, "pad axes") if node.opset >= 18 else None
    if axes is not None:
        full = [0] * 2 * rank
        for k, a in enumerate(axis_of(a, rank) for a in axes):
            full[a], full[rank + a] = pads[k], pads[len(axes) + k]
        pads = full
    if any(p < 0 for p in pads):
        shape = shape_of(x)
        x = b.add(ane.SliceOp(x, [max(-p, 0) for p in pads[:rank]], [d - max(-p, 0) for d, p in zip(shape, pads[rank:])]))
        pads = [max(p, 0) for p in pads]
    if not any(pads):
        return [x]
    return [b.add(ane.PadOp(x, pads, mode, value))]


@handles("Tile", emits=[ane.TileOp])
def tile(node: Node, b: GraphBuilder) -> list[Value]:
    repeats = [int(r) for r in b.require_const(node.input(1), "repeat counts")]
    if any(r < 1 for r in repeats):
        raise NotOnAne("a zero repeat count")
    return [b.add(ane.TileOp(x_of(node, b), repeats))]


@handles("Expand", emits=[ane.ReshapeOp, ane.BroadcastOp])
def expand(node: Node, b: GraphBuilder) -> list[Value]:
    target = [int(d) for d in b.require_const(node.input(1), "target shape")]
    x = x_of(node, b)
    out = tuple(np.broadcast_shapes(shape_of(x), tuple(target)))
    x = b.with_rank(x, len(out))
    return [x if shape_of(x) == out else b.add(ane.BroadcastOp(x, out))]


@handles("DepthToSpace", emits=[ane.DepthToSpaceOp])
def depth_to_space(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.DepthToSpaceOp(x_of(node, b), node.attr("blocksize"), node.attr("mode", "DCR")))]


@handles("SpaceToDepth", emits=[ane.SpaceToDepthOp])
def space_to_depth(node: Node, b: GraphBuilder) -> list[Value]:
    if node.attr("mode", "DCR") != "DCR":
        raise NotOnAne(f"{node.attr('mode')} block order")
    return [b.add(ane.SpaceToDepthOp(x_of(node, b), node.attr("blocksize")))]


RESIZE_MODES = {"nearest": "nearest", "linear": "bilinear", "bilinear": "bilinear"}


def _resize(b: GraphBuilder, x: SSAValue, out: Sequence[int], scales: Sequence[float], mode: str, coords: str,
            nearest: str) -> SSAValue:
    shape = shape_of(x)
    changed = [i for i, (a, o, s) in enumerate(zip(shape, out, scales)) if a != o or s != 1.0]
    if not changed:
        return x
    first = min(changed)
    k = len(shape) - first
    if k > 2 or first == 0:
        raise NotOnAne(f"resizing axes {changed} (the ANE resizes the last one or two axes of a batched tensor)")
    if mode not in RESIZE_MODES:
        raise NotOnAne(f"{mode} resize")
    if coords not in ane.ResizeOp.COORDINATE_MODES:
        raise NotOnAne(f"{coords} coordinates")
    if coords == "align_corners" and any(abs(shape[i] * scales[i] - out[i]) > 1e-6 for i in changed):
        raise NotOnAne("align_corners with a scale that does not give a whole output size")
    return b.add(ane.ResizeOp(x, out, RESIZE_MODES[mode], [float(s) for s in scales[first:]], coords, nearest))


@handles("Resize", emits=[ane.ResizeOp], note="op set 11 and later; nearest and linear over the last two axes")
def resize(node: Node, b: GraphBuilder) -> list[Value]:
    if node.opset < 11:
        raise NotOnAne("op-set-10 resize semantics")
    if node.attr("antialias", 0) or node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise NotOnAne("antialiasing or an aspect-ratio policy")
    x = x_of(node, b)
    shape = shape_of(x)
    axes = [axis_of(a, len(shape)) for a in node.attr("axes", range(len(shape)))]
    scale_in = b.require_const(node.input(2), "scales") if node.input(2) else None
    sizes_in = b.require_const(node.input(3), "output sizes") if node.input(3) else None
    scales, out = [1.0] * len(shape), list(shape)
    if sizes_in is not None and sizes_in.size:
        for a, s in zip(axes, sizes_in):
            out[a], scales[a] = int(s), int(s) / shape[a]
    elif scale_in is not None and scale_in.size:
        for a, s in zip(axes, scale_in):
            scales[a], out[a] = float(s), math.floor(shape[a] * float(s))
    else:
        raise NotOnAne("neither scales nor sizes")
    coords = node.attr("coordinate_transformation_mode", "half_pixel")
    return [_resize(b, x, out, scales, node.attr("mode", "nearest"), coords, node.attr("nearest_mode", "round_prefer_floor"))]


@handles("Scatter", emits=[], note="runs on the CPU as ScatterElements, its op-set-11 name")
def scatter(node: Node, b: GraphBuilder) -> Sequence[Value | None]:
    """Scatter (op sets 9-10) is ScatterElements under its old name; the CPU runs it by the new one."""
    renamed = type(node.proto)()
    renamed.CopyFrom(node.proto)
    renamed.op_type = "ScatterElements"
    return b.host(type(node)(renamed, {**node.opsets, "": 11}, node.name, node.attrs))


@handles("Upsample", emits=[ane.ResizeOp])
def upsample(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    scales = node.attr("scales") if node.opset < 9 else [float(s) for s in b.require_const(node.input(1), "scales")]
    out = [math.floor(d * s) for d, s in zip(shape_of(x), scales)]
    return [_resize(b, x, out, scales, node.attr("mode", "nearest"), "asymmetric", "floor")]


@handles("Cast", "CastLike", emits=[ane.CastOp])
def cast(node: Node, b: GraphBuilder) -> list[Value]:
    from onnx import helper

    to = b.dtype(node.input(1)) if node.op_type == "CastLike" else np.dtype(helper.tensor_dtype_to_np_dtype(node.attr("to")))
    if to not in STANDARD_DTYPES:
        raise NotOnAne(f"a cast to {to}")
    x = x_of(node, b)
    return [x if b.dtype(node.input(0)) == to else b.add(ane.CastOp(x, xdsl_element_type(to)))]


@handles("Gather", emits=[ane.SliceOp, ane.ReshapeOp, ane.ConcatOp], note="constant indices only; lookups (embeddings) run on the CPU")
def gather(node: Node, b: GraphBuilder) -> list[Value]:
    idx = b.const(node.input(1))
    if idx is None:
        raise NotOnAne("a lookup with run-time indices (an embedding) has no ANE equivalent")
    x = x_of(node, b)
    shape = shape_of(x)
    axis = axis_of(node.attr("axis", 0), len(shape))
    flat = [int(i) + shape[axis] if i < 0 else int(i) for i in idx.reshape(-1)]
    out_shape = shape[:axis] + idx.shape + shape[axis + 1:]
    runs = _arithmetic_runs(flat)
    if len(runs) > 16:
        raise NotOnAne(f"a gather of {len(flat)} scattered indices")
    pieces = []
    for start, step, count in runs:
        lo, hi, st = [0] * len(shape), list(shape), [1] * len(shape)
        lo[axis], hi[axis], st[axis] = start, start + step * (count - 1) + 1, step
        pieces.append(b.add(ane.SliceOp(x, lo, hi, st)))
    y = pieces[0] if len(pieces) == 1 else b.add(ane.ConcatOp(pieces, axis))
    return [b.reshape(y, out_shape)]


def _arithmetic_runs(indices: Sequence[int]) -> list[tuple[int, int, int]]:
    """Cover `indices` with (start, step > 0, count) runs, in order."""
    runs: list[tuple[int, int, int]] = []
    i = 0
    while i < len(indices):
        start, count, step = indices[i], 1, 1
        if i + 1 < len(indices) and indices[i + 1] > start:
            step = indices[i + 1] - start
            while i + count < len(indices) and indices[i + count] == start + step * count:
                count += 1
        runs.append((start, step, count))
        i += count
    return runs


# ------------------------------------------------------------------------------------------------
# Shapes known at compile time
# ------------------------------------------------------------------------------------------------


@handles("Constant", emits=[], note="a constant (in the weight store when large)")
def constant(node: Node, b: GraphBuilder) -> list[Value]:
    attrs = node.attrs
    if "value" in attrs:
        return [np.asarray(attrs["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=dtype)]
    raise NotOnAne("a string or sparse constant")


@handles("Shape", emits=[], note="a constant: shapes are static")
def shape_op(node: Node, b: GraphBuilder) -> list[Value]:
    shape = b.shape(node.input(0))
    start, end = node.attr("start", 0), node.attr("end", len(shape))
    return [np.asarray(shape[slice(start, end)], dtype=np.int64)]


@handles("Size", emits=[], note="a constant: shapes are static")
def size(node: Node, b: GraphBuilder) -> list[Value]:
    return [np.asarray(math.prod(b.shape(node.input(0))), dtype=np.int64)]


@handles("EyeLike", emits=[], note="a constant: shapes are static")
def eye_like(node: Node, b: GraphBuilder) -> list[Value]:
    from onnx import helper

    rows, cols = b.shape(node.input(0))
    dtype = helper.tensor_dtype_to_np_dtype(node.attr("dtype")) if "dtype" in node.attrs else b.dtype(node.input(0))
    return [np.eye(rows, cols, k=node.attr("k", 0), dtype=dtype)]


# ------------------------------------------------------------------------------------------------
# Masks and scans as MAC work
# ------------------------------------------------------------------------------------------------


@handles("Trilu", emits=[ane.SelectOp])
def trilu(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    k = int(b.require_const(node.input(1), "diagonal offset").reshape(-1)[0]) if node.input(1) else 0
    rows, cols = shape_of(x)[-2:]
    keep = np.triu(np.ones((rows, cols), bool), k) if node.attr("upper", 1) else np.tril(np.ones((rows, cols), bool), k)
    cond = b.constant(keep.reshape((1,) * (len(shape_of(x)) - 2) + keep.shape), name=f"{node.name}.mask")
    zero = b.scalar(0, x)
    return [b.add(ane.SelectOp(cond, x, zero))]


@handles("CumSum", emits=[ane.TransposeOp, ane.MatmulOp])
def cumsum(node: Node, b: GraphBuilder) -> list[Value]:
    x = x_of(node, b)
    shape = shape_of(x)
    axis = axis_of(int(b.require_const(node.input(1), "axis").reshape(-1)[0]), len(shape))
    n = shape[axis]
    i, j = np.indices((n, n))
    exclusive, reverse = node.attr("exclusive", 0), node.attr("reverse", 0)
    tri = ((i > j) if exclusive else (i >= j)) if reverse else ((i < j) if exclusive else (i <= j))
    perm = [d for d in range(len(shape)) if d != axis] + [axis]
    moved = b.transpose(x, perm)
    weights = b.constant(tri.astype(_np(x)).reshape((1,) * (len(shape) - 2) + (n, n)), name=f"{node.name}.triangle")
    y = b.add(ane.MatmulOp(moved, weights))
    return [b.transpose(y, list(np.argsort(perm)))]


# ------------------------------------------------------------------------------------------------
# Einsum: contractions as matmul, the rest as transposes and sums
# ------------------------------------------------------------------------------------------------


def _einsum_terms(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise NotOnAne(f"einsum {equation!r} does not match its {len(ranks)} operands")
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    ell = max((r - (len(t) - 3) for t, r in zip(terms, ranks) if "..." in t), default=0)
    terms = [t.replace("...", "".join(free[ell - (r - (len(t) - 3)):ell])) if "..." in t else t for t, r in zip(terms, ranks)]
    if "->" not in eq:
        counts = {c: "".join(terms).count(c) for c in "".join(terms)}
        rhs = "".join(free[:ell]) + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in free))
    rhs = rhs.replace("...", "".join(free[:ell]))
    if any(len(set(t)) != len(t) for t in terms) or not re.fullmatch(r"[A-Za-z]*", "".join(terms) + rhs):
        raise NotOnAne(f"einsum {equation!r} takes a diagonal")
    return terms, rhs


def _sum_away(b: GraphBuilder, v: SSAValue, term: str, keep: set[str]) -> tuple[SSAValue, str]:
    axes = [i for i, c in enumerate(term) if c not in keep]
    if not axes:
        return v, term
    return b.add(ane.ReduceSumOp(v, axes, keepdims=False)), "".join(c for c in term if c in keep)


def _permute(b: GraphBuilder, v: SSAValue, term: str, order: str) -> SSAValue:
    return b.transpose(v, [term.index(c) for c in order])


@handles("Einsum", emits=[ane.MatmulOp, ane.TransposeOp, ane.ReshapeOp, ane.ReduceSumOp], note="one or two operands, no diagonals")
def einsum(node: Node, b: GraphBuilder) -> list[Value]:
    vals = [b.value(x) for x in node.inputs]
    terms, out = _einsum_terms(node.attr("equation"), [len(shape_of(v)) for v in vals])
    if len(vals) == 1:
        v, term = _sum_away(b, vals[0], terms[0], set(out))
        return [_permute(b, v, term, out)]
    if len(vals) != 2:
        raise NotOnAne(f"an einsum over {len(vals)} operands")
    (a, ta), (c, tc) = (_sum_away(b, v, t, set(out) | set(other)) for v, t, other in
                        ((vals[0], terms[0], terms[1]), (vals[1], terms[1], terms[0])))
    batch = [ch for ch in ta if ch in tc and ch in out]
    contract = [ch for ch in ta if ch in tc and ch not in out]
    free_a = [ch for ch in ta if ch not in tc]
    free_c = [ch for ch in tc if ch not in ta]
    size_a, size_c = dict(zip(ta, shape_of(a))), dict(zip(tc, shape_of(c)))
    nb, k = len(batch), math.prod(size_a[ch] for ch in contract)
    a = b.reshape(_permute(b, a, ta, "".join(batch + free_a + contract)),
                  (*[size_a[ch] for ch in batch], math.prod(size_a[ch] for ch in free_a), k))
    c = b.reshape(_permute(b, c, tc, "".join(batch + contract + free_c)),
                  (*[size_c[ch] for ch in batch], k, math.prod(size_c[ch] for ch in free_c)))
    y = b.add(ane.MatmulOp(a, c))
    y = b.reshape(y, (*shape_of(y)[:nb], *[size_a[ch] for ch in free_a], *[size_c[ch] for ch in free_c]))
    return [_permute(b, y, "".join(batch + free_a + free_c), out)]

