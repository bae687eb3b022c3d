"""Hand-built lowered IR covering every `ane` op and the `host.op`s the Core ML emitter knows.

Each case is a small graph with its own inputs and outputs. `build_module` puts many cases into one
entry function (so one package covers them all), either each inside its own fp16 `ane.segment`
(f32 at the edges, `ane.cast` inside, as the fp16 pass leaves them) or directly at f32 (ops the
partition pass left on the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f16,
    f32,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from anec.dialects import ane, host
from anec.dialects.discardable import NAME_ATTR
from anec.types import xdsl_element_type
from anec.weights import WeightStore, attach, make_const


class Graph:
    """Appends ops to a block; constants take the graph's float type (f16 inside segments)."""

    def __init__(self, block: Block, store: WeightStore, float_type: Attribute, prefix: str):
        self.block, self.store, self.float_type, self.prefix = block, store, float_type, prefix
        self.count = 0

    def op(self, op: Operation) -> SSAValue | tuple[SSAValue, ...]:
        self.count += 1
        op.attributes[NAME_ATTR] = StringAttr(f"{self.prefix}/op{self.count}")
        self.block.add_op(op)
        return op.results[0] if len(op.results) == 1 else tuple(op.results)

    def const(self, array: np.ndarray | Sequence, dtype: np.dtype | None = None) -> SSAValue:
        array = np.asarray(array, dtype=dtype)
        element = self.float_type if array.dtype.kind == "f" else xdsl_element_type(array.dtype)
        return self.op(make_const(array, f"{self.prefix}.w{self.count}", self.store, element))

    def weight(self, *shape: int, scale: float = 0.3) -> SSAValue:
        seed = sum(map(ord, self.prefix)) + self.count
        return self.const((np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32))


Domain = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
NORMAL: Domain = lambda rng, s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
POSITIVE: Domain = lambda rng, s: rng.uniform(0.5, 2.0, s).astype(np.float32)  # noqa: E731
STEPS: Domain = lambda rng, s: rng.integers(-2, 3, s).astype(np.float32)  # noqa: E731
"""Integer-valued floats: comparisons and arg-reductions see equal values (ties)."""


def indices(high: int, low: int = 0) -> Domain:
    return lambda rng, s: rng.integers(low, high, s).astype(np.int64)


def ints(rng: np.random.Generator, s: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-9, 10, s).astype(np.int32)


def nonzero_ints(rng: np.random.Generator, s: tuple[int, ...]) -> np.ndarray:
    return (rng.integers(1, 5, s) * rng.choice([-1, 1], s)).astype(np.int32)


@dataclass(frozen=True)
class Case:
    name: str
    inputs: tuple[tuple[tuple[int, ...], Domain], ...]
    build: Callable[..., SSAValue | tuple[SSAValue, ...]]
    host_only: bool = False   # integer / host ops: never inside an ANE segment
    min_ios: int = 16


CASES: dict[str, Case] = {}


def case(*inputs: tuple[tuple[int, ...], Domain] | tuple[int, ...], host_only: bool = False, min_ios: int = 16):
    def register(fn: Callable[..., SSAValue | tuple[SSAValue, ...]]) -> Callable:
        specs = tuple(i if len(i) == 2 and callable(i[1]) else (i, NORMAL) for i in inputs)
        CASES[fn.__name__] = Case(fn.__name__, specs, fn, host_only, min_ios)  # type: ignore[arg-type]
        return fn
    return register


X = (1, 4, 6, 6)
SEQ = (1, 5, 8)

# -- elementwise --------------------------------------------------------------------------------

for _name in ("relu", "sigmoid", "tanh", "silu", "exp", "abs", "neg", "softplus", "hardswish", "erf", "sin", "cos", "sign"):
    CASES[_name] = Case(_name, ((X, NORMAL),), lambda g, x, _c=ane.UNARY_OPS[_name]: g.op(_c(x)))
for _name in ("log", "sqrt", "rsqrt", "reciprocal"):
    CASES[_name] = Case(_name, ((X, POSITIVE),), lambda g, x, _c=ane.UNARY_OPS[_name]: g.op(_c(x)))


@case(((2, 5), STEPS))
def rounding(g: Graph, x):
    """Integers and halves (ties): round to even, floor and ceil."""
    halves = g.op(ane.MulOp(x, g.const(np.full((1, 1), 0.5, np.float32))))
    return tuple(g.op(cls(v)) for cls in (ane.RoundOp, ane.FloorOp, ane.CeilOp) for v in (x, halves))


@case(X)
def gelu(g: Graph, x):
    return g.op(ane.GeluOp(x)), g.op(ane.GeluOp(x, "tanh"))


@case(X)
def parametric_activations(g: Graph, x):
    return (g.op(ane.LeakyReluOp(x, alpha=0.1)), g.op(ane.EluOp(x, alpha=0.7)), g.op(ane.ClampOp(x, min=-0.5, max=0.8)),
            g.op(ane.ClampOp(x, min=0.0, max=math.inf)), g.op(ane.ClampOp(x, min=-math.inf, max=0.25)),
            g.op(ane.HardsigmoidOp(x, alpha=0.2, beta=0.5)))


@case(X)
def softmax(g: Graph, x):
    return g.op(ane.SoftmaxOp(x, 1)), g.op(ane.SoftmaxOp(x, 3))


@case((1, 4, 5), (1, 1, 5))
def binary(g: Graph, a, b):
    return tuple(g.op(cls(a, b)) for cls in (ane.AddOp, ane.SubOp, ane.MulOp, ane.DivOp, ane.MaxOp, ane.MinOp))


@case(((1, 4, 5), POSITIVE), (1, 4, 1))
def power(g: Graph, a, b):
    return g.op(ane.PowOp(a, b))


@case(((2, 3, 4), STEPS), ((2, 1, 4), STEPS))
def compare_select(g: Graph, a, b):
    classes = (ane.EqualOp, ane.NotEqualOp, ane.GreaterOp, ane.GreaterEqualOp, ane.LessOp, ane.LessEqualOp)
    chosen = tuple(g.op(ane.SelectOp(g.op(cls(a, b)), a, b)) for cls in classes)
    mask = g.op(ane.SelectOp(g.op(ane.GreaterOp(a, b)), g.const(np.zeros((1, 1, 1), np.float32)), g.const(np.full((1, 1, 1), -1e4, np.float32))))
    return (*chosen, mask, g.op(ane.SelectOp(g.op(ane.LessOp(a, b)), b, g.const(np.ones((1, 1, 1), np.float32)))))


@case(((3, 4), ints), ((3, 4), nonzero_ints), host_only=True)
def integer_arithmetic(g: Graph, a, b):
    return g.op(ane.DivOp(a, b)), g.op(ane.MulOp(a, b)), g.op(ane.NegOp(a)), g.op(ane.AbsOp(b))


# -- MAC ops ------------------------------------------------------------------------------------


@case(X)
def conv(g: Graph, x):
    dense = g.op(ane.ConvOp(x, g.weight(6, 4, 3, 3), g.weight(6), strides=[2, 1], pads=[1, 0, 2, 1]))
    dense.owner.set_activation("relu")
    dilated = g.op(ane.ConvOp(x, g.weight(4, 1, 3, 3), pads=[2, 2, 2, 2], dilations=[2, 2], groups=4))
    dilated.owner.set_activation("leaky_relu", [0.2])
    grouped = g.op(ane.ConvOp(x, g.weight(6, 2, 1, 1), g.weight(6), groups=2))
    return dense, dilated, grouped


@case((1, 3, 10))
def conv_1d(g: Graph, x):
    y = g.op(ane.ConvOp(x, g.weight(5, 3, 3), g.weight(5), strides=[2], pads=[1, 1]))
    y.owner.set_activation("clamp", [0.0, 6.0])
    return y


@case(X, (6, 4, 3, 3), (6,))
def conv_dynamic_weight_and_bias(g: Graph, x, w, b):
    return g.op(ane.ConvOp(x, w, b, pads=[1, 1, 1, 1]))


@case((1, 4, 5, 5))
def conv_transpose(g: Graph, x):
    y = g.op(ane.ConvTransposeOp(x, g.weight(4, 3, 3, 3), g.weight(6), strides=[2, 2], pads=[1, 1, 1, 1], groups=2,
                                 output_padding=[1, 1]))
    y.owner.set_activation("sigmoid")
    return y, g.op(ane.ConvTransposeOp(x, g.weight(4, 2, 2, 2), strides=[2, 2]))


@case((2, 3, 4), (1, 4, 5), (2, 5, 4), (2, 3, 5))
def matmul(g: Graph, a, b, c, d):
    plain = g.op(ane.MatmulOp(a, b))
    transposed = g.op(ane.MatmulOp(a, c, transpose_rhs=True))
    both = g.op(ane.MatmulOp(c, d, transpose_lhs=True, transpose_rhs=True))
    return plain, transposed, both


@case(SEQ, (8,))
def linear(g: Graph, x, dynamic_bias):
    with_bias = g.op(ane.MatmulOp(x, g.weight(1, 8, 6), g.weight(6)))
    with_bias.owner.set_activation("gelu")
    transposed = g.op(ane.MatmulOp(x, g.weight(1, 7, 8), transpose_rhs=True))
    batched_weight = g.op(ane.MatmulOp(g.op(ane.ReshapeOp(x, (5, 1, 8))), g.weight(5, 8, 3)))
    bias_input = g.op(ane.MatmulOp(x, g.weight(1, 8, 8), dynamic_bias))
    return with_bias, transposed, batched_weight, bias_input


@case((1, 2, 5, 4), (1, 2, 6, 4), (1, 2, 6, 3), (1, 1, 5, 6))
def sdpa(g: Graph, q, k, v, mask):
    return g.op(ane.SdpaOp(q, k, v, mask)), g.op(ane.SdpaOp(q, k, v, scale=0.3))


# -- reductions, pooling, norms ----------------------------------------------------------------


@case(X)
def reductions(g: Graph, x):
    classes = (ane.ReduceSumOp, ane.ReduceMeanOp, ane.ReduceMaxOp, ane.ReduceMinOp, ane.ReduceL2Op, ane.ReduceLogSumExpOp)
    return tuple(g.op(cls(x, axes, keep)) for cls, axes, keep in zip(classes, ([1], [2, 3], [3], [1, 2], [3], [1]), (True, False) * 3))


@case((X, STEPS))
def arg_reductions(g: Graph, x):
    return (g.op(ane.ArgmaxOp(x, 1)), g.op(ane.ArgminOp(x, 3, keepdims=False)),
            g.op(ane.ArgmaxOp(x, 2, select_last_index=True)), g.op(ane.ArgminOp(x, 1, keepdims=False, select_last_index=True)))


@case(((2, 3, 7), STEPS))
def top_k(g: Graph, x):
    top, low = ane.TopkOp(x, 3, 2), ane.TopkOp(x, 7, 2, largest=False, sorted=False)
    g.op(top), g.op(low)
    return (*top.results, *low.results)


@case((1, 3, 7, 7))
def pooling(g: Graph, x):
    return (g.op(ane.MaxPoolOp(x, [3, 3], [2, 2], [1, 1, 1, 1])), g.op(ane.AvgPoolOp(x, [3, 2], [2, 1], [1, 0, 1, 1])),
            g.op(ane.AvgPoolOp(x, [3, 3], [2, 2], [1, 1, 1, 1], count_include_pad=True)), g.op(ane.L2PoolOp(x, [2, 2], [2, 2])),
            g.op(ane.GlobalAvgPoolOp(x)), g.op(ane.GlobalMaxPoolOp(x)))


@case((1, 3, 9))
def pooling_1d(g: Graph, x):
    return g.op(ane.MaxPoolOp(x, [3], [2], [1, 1])), g.op(ane.AvgPoolOp(x, [2], [1]))


@case(X)
def norms(g: Graph, x):
    channel = g.op(ane.LayerNormOp(x, g.weight(4), g.weight(4), axes=[1], epsilon=1e-5))
    spatial = g.op(ane.LayerNormOp(x, g.weight(6, 6), g.weight(6, 6), axes=[2, 3]))
    instance = g.op(ane.InstanceNormOp(x, g.weight(4), g.weight(4), epsilon=1e-5))
    group = g.op(ane.GroupNormOp(x, g.weight(4), g.weight(4), num_groups=2))
    return channel, spatial, instance, group, g.op(ane.L2NormOp(x, axes=[1]))


@case(SEQ, (8,), (8,))
def norms_with_dynamic_affine(g: Graph, x, scale, bias):
    y = g.op(ane.LayerNormOp(x, scale, bias, axes=[2]))
    image = g.op(ane.ReshapeOp(x, (1, 8, 5)))
    return y, g.op(ane.InstanceNormOp(image, scale, bias, epsilon=1e-3))


# -- data movement ------------------------------------------------------------------------------


@case(X)
def movement(g: Graph, x):
    return (g.op(ane.ReshapeOp(x, (1, 4, 36))), g.op(ane.TransposeOp(x, [0, 2, 3, 1])),
            g.op(ane.SliceOp(x, [0, 1, 0, 1], [1, 4, 100, 6], [1, 2, 3, 2])), g.op(ane.TileOp(x, [1, 2, 1, 3])),
            g.op(ane.BroadcastOp(g.op(ane.SliceOp(x, [0, 0, 0, 0], [1, 1, 6, 6])), (2, 4, 6, 6))))


@case((1, 2, 4, 5))
def padding(g: Graph, x):
    return (g.op(ane.PadOp(x, [0, 0, 1, 2, 0, 0, 2, 1], value=0.5)), g.op(ane.PadOp(x, [0, 0, 2, 1, 0, 0, 1, 3], "reflect")),
            g.op(ane.PadOp(x, [0, 1, 1, 0, 0, 1, 0, 2], "constant")), g.op(ane.PadOp(x, [0, 0, 0, 1, 0, 0, 2, 1], "edge")))


@case((1, 2, 3, 4))
def resize(g: Graph, x):
    def up(shape, mode, scales, coordinates, rounding="round_prefer_floor"):
        return g.op(ane.ResizeOp(x, shape, mode, scales, coordinates, rounding))
    return (up((1, 2, 6, 8), "nearest", [2, 2], "half_pixel"), up((1, 2, 9, 8), "nearest", [3, 2], "asymmetric", "floor"),
            up((1, 2, 6, 8), "bilinear", [2, 2], "half_pixel"), up((1, 2, 6, 12), "bilinear", [2, 3], "align_corners"),
            up((1, 2, 6, 8), "bilinear", [2, 2], "asymmetric"), up((1, 2, 4, 6), "bilinear", [1.5, 1.5], "pytorch_half_pixel"),
            up((1, 2, 3, 8), "bilinear", [2], "half_pixel"))


@case((1, 8, 2, 3))
def blocks(g: Graph, x):
    return (g.op(ane.DepthToSpaceOp(x, 2, "DCR")), g.op(ane.DepthToSpaceOp(x, 2, "CRD")),
            g.op(ane.SpaceToDepthOp(g.op(ane.DepthToSpaceOp(x, 2)), 2)))


@case((1, 3, 4), (1, 3, 2), (1, 3, 1))
def concat_split(g: Graph, a, b, c):
    joined = g.op(ane.ConcatOp([a, b, c], 2))
    first, second, third = g.op(ane.SplitOp(joined, 2, [3, 1, 3]))
    (whole,) = (g.op(ane.SplitOp(a, 1, [3])),)
    return joined, first, second, third, whole


@case(X, host_only=True)
def casts(g: Graph, x):
    as_int = g.op(ane.CastOp(x, xdsl_element_type(np.int32)))
    back = g.op(ane.CastOp(as_int, f32))
    as_bool = g.op(ane.CastOp(g.op(ane.GreaterOp(x, g.const(np.zeros((1, 1, 1, 1), np.float32)))), f32))
    return g.op(ane.CastOp(g.op(ane.CastOp(x, f16)), f32)), back, as_bool


# -- host ops -----------------------------------------------------------------------------------


def onnx(g: Graph, name: str, args: Sequence[SSAValue], results: Sequence[TensorType], **attrs) -> SSAValue | tuple:
    props = {k: IntegerAttr(v, 64) if isinstance(v, int) else StringAttr(v) for k, v in attrs.items()}
    return g.op(host.HostOp(name, args, results, props, version=17))


def t(shape: Sequence[int], element: Attribute = f32) -> TensorType:
    return TensorType(element, list(shape))


@case((10, 6), ((2, 3), indices(10)), host_only=True)
def gathers(g: Graph, table, ids):
    rows = onnx(g, "onnx.Gather", [table, ids], [t((2, 3, 6))], axis=0)
    cols = onnx(g, "onnx.Gather", [table, g.const(np.array([-1, 0, 2], np.int64))], [t((10, 3))], axis=1)
    return rows, cols


@case((3, 4), ((3, 2), indices(4)), host_only=True)
def gather_elements_nd(g: Graph, x, idx):
    elements = onnx(g, "onnx.GatherElements", [x, idx], [t((3, 2))], axis=1)
    nd = onnx(g, "onnx.GatherND", [x, g.const(np.array([[0, 1], [2, 3]], np.int64))], [t((2,))])
    return elements, nd


@case(((2, 3), STEPS), (2, 3), (1, 3), host_only=True)
def where_expand(g: Graph, c, a, b):
    cond = g.op(ane.GreaterOp(c, g.const(np.zeros((1, 1), np.float32))))
    chosen = onnx(g, "onnx.Where", [cond, a, b], [t((2, 3))])
    widened = onnx(g, "onnx.Where", [cond, b, g.const(np.ones((1, 1), np.float32))], [t((2, 3))])
    masked = g.op(ane.SelectOp(cond, g.const(np.zeros((1, 1), np.float32)), g.const(np.full((1, 1), -1e4, np.float32))))
    expanded = onnx(g, "onnx.Expand", [b, g.const(np.array([2, 2, 3], np.int64))], [t((2, 2, 3))])
    return chosen, widened, masked, expanded


@case((2, 5), host_only=True)
def topk_cumsum(g: Graph, x):
    values, idx = onnx(g, "onnx.TopK", [x, g.const(np.array([3], np.int64))], [t((2, 3)), t((2, 3), i64)], axis=1)
    low, _ = onnx(g, "onnx.TopK", [x, g.const(np.array([2], np.int64))], [t((2, 2)), t((2, 2), i64)], axis=1, largest=0)
    total = onnx(g, "onnx.CumSum", [x, g.const(np.array(1, np.int64))], [t((2, 5))])
    reverse = onnx(g, "onnx.CumSum", [x, g.const(np.array(1, np.int64))], [t((2, 5))], exclusive=1, reverse=1)
    return values, idx, low, total, reverse


@case((2, 3), host_only=True)
def static_shapes(g: Graph, x):
    shape = onnx(g, "onnx.Shape", [x], [t((2,), i64)])
    size = onnx(g, "onnx.Size", [x], [t((), i64)])
    filled = onnx(g, "onnx.ConstantOfShape", [g.const(np.array([2, 2], np.int64))], [t((2, 2))])
    counted = onnx(g, "onnx.Range", [g.const(np.array(1, np.int64)), g.const(np.array(7, np.int64)), g.const(np.array(2, np.int64))],
                   [t((3,), i64)])
    return shape, size, filled, counted


@case((2, 3, 4), (4, 3, 5), host_only=True)
def einsum_trilu(g: Graph, a, b):
    product = g.op(host.HostOp("onnx.Einsum", [a, b], [t((2, 3, 5))], {"equation": StringAttr("chw,whu->chu")}, version=17))
    upper = onnx(g, "onnx.Trilu", [a], [t((2, 3, 4))])
    lower = onnx(g, "onnx.Trilu", [a, g.const(np.array(1, np.int64))], [t((2, 3, 4))], upper=0)
    return product, upper, lower


@case((4, 3), (2, 3), ((4,), indices(5)), host_only=True)
def scatter_one_hot(g: Graph, data, updates, classes):
    nd = onnx(g, "onnx.ScatterND", [data, g.const(np.array([[3], [1]], np.int64)), updates], [t((4, 3))])
    elements = onnx(g, "onnx.ScatterElements", [data, g.const(np.array([[1, 0, 3], [2, 3, 0]], np.int64)), updates], [t((4, 3))], axis=0)
    hot = onnx(g, "onnx.OneHot", [classes, g.const(np.array(5, np.int64)), g.const(np.array([0.0, 1.0], np.float32))], [t((4, 5))])
    return nd, elements, hot


@case(((2, 5), STEPS), ((2, 5), POSITIVE), host_only=True)
def onnx_elementwise(g: Graph, x, p):
    unary = [onnx(g, f"onnx.{name}", [x if name not in ("Acos", "Asin", "Atanh") else g.op(ane.MulOp(p, g.const(np.full((1, 1), 0.4, np.float32))))],
                  [t((2, 5))]) for name in ("Floor", "Ceil", "Round", "Sign", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Atanh", "Softsign")]
    halves = g.op(ane.MulOp(x, g.const(np.full((1, 1), 0.5, np.float32))))
    rounded = onnx(g, "onnx.Round", [halves], [t((2, 5))])
    pos = g.op(ane.GreaterOp(x, g.const(np.zeros((1, 1), np.float32))))
    neg = g.op(ane.LessOp(x, g.const(np.ones((1, 1), np.float32))))
    logic = [onnx(g, f"onnx.{name}", [pos, neg], [t((2, 5), pos.type.element_type)]) for name in ("And", "Or", "Xor")]
    logic.append(onnx(g, "onnx.Not", [pos], [t((2, 5), pos.type.element_type)]))
    as_float = [g.op(ane.CastOp(v, f32)) for v in logic]
    special = g.op(ane.DivOp(x, g.const(np.zeros((1, 1), np.float32))))  # ±inf, and nan where x is 0
    checks = [onnx(g, "onnx.IsNaN", [special], [t((2, 5), pos.type.element_type)])]
    checks += [onnx(g, "onnx.IsInf", [special], [t((2, 5), pos.type.element_type)], detect_positive=p_, detect_negative=n_)
               for p_, n_ in ((1, 1), (1, 0), (0, 1))]
    as_float += [g.op(ane.CastOp(v, f32)) for v in checks]
    modulo = onnx(g, "onnx.Mod", [x, g.const(np.full((1, 1), 1.5, np.float32))], [t((2, 5))])
    cast = onnx(g, "onnx.Cast", [p], [t((2, 5), i64)], to=7)
    return (*unary, rounded, *as_float, modulo, cast, onnx(g, "onnx.Identity", [x], [t((2, 5))]))


@case(((1, 4, 2, 3), STEPS), host_only=True)
def bool_and_int_data(g: Graph, x):
    """Data movement on masks and integers, which several MIL ops take only as floats."""
    mask = g.op(ane.GreaterOp(x, g.const(np.zeros((1, 1, 1, 1), np.float32))))
    ints = g.op(ane.CastOp(x, xdsl_element_type(np.int32)))
    picked = onnx(g, "onnx.Gather", [mask, g.const(np.array([2, 0], np.int64))], [t((1, 2, 2, 3), i1)], axis=1)
    nd = onnx(g, "onnx.GatherND", [mask, g.const(np.array([[0, 1], [0, 3]], np.int64))], [t((2, 2, 3), i1)])
    padded = g.op(ane.PadOp(ints, [0, 0, 1, 0, 0, 0, 0, 2], value=7.0))
    moved = g.op(ane.DepthToSpaceOp(ints, 2))
    resized = g.op(ane.ResizeOp(mask, (1, 4, 4, 6), "nearest", [2, 2], "asymmetric", "floor"))
    return (*(g.op(ane.CastOp(v, f32)) for v in (picked, nd, resized)), padded, moved)


# -- building ------------------------------------------------------------------------------------


def input_name(case_name: str, index: int) -> str:
    return f"{case_name}_in{index}"


def build_module(cases: Sequence[Case], *, segments: bool) -> tuple[ModuleOp, dict[str, np.ndarray], list[str]]:
    """(module, inputs by name, output names): every case's graph in one `main` function."""
    store = WeightStore()
    arg_types: list[Attribute] = []
    names: list[str] = []
    feeds: dict[str, np.ndarray] = {}
    for c in cases:
        rng = np.random.default_rng(sum(map(ord, c.name)))
        for i, (shape, domain) in enumerate(c.inputs):
            value = domain(rng, shape)
            name = input_name(c.name, i)
            feeds[name] = value
            names.append(name)
            arg_types.append(t(shape, xdsl_element_type(value.dtype)))
    block = Block(arg_types=arg_types)
    args = iter(block.args)
    results: list[SSAValue] = []
    out_names: list[str] = []
    for c in cases:
        case_args = [next(args) for _ in c.inputs]
        outs = _segment(block, store, c, case_args) if segments and not c.host_only else _flat(block, store, c, case_args)
        results.extend(outs)
        out_names.extend(f"{c.name}_out{i}" for i in range(len(outs)))
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp("main", (arg_types, [r.type for r in results]), Region(block),
                     arg_attrs=ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(n)}) for n in names]),
                     res_attrs=ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(n)}) for n in out_names]))
    module = ModuleOp([fn])
    attach(module, store)
    module.verify()
    return module, feeds, out_names


def _as_tuple(values: SSAValue | tuple[SSAValue, ...]) -> tuple[SSAValue, ...]:
    return values if isinstance(values, tuple) else (values,)


def _flat(block: Block, store: WeightStore, c: Case, args: list[SSAValue]) -> tuple[SSAValue, ...]:
    return _as_tuple(c.build(Graph(block, store, f32, c.name), *args))


def _segment(block: Block, store: WeightStore, c: Case, args: list[SSAValue]) -> tuple[SSAValue, ...]:
    """The case inside an fp16 segment: cast in, compute at f16, cast float results out."""
    body = Block(arg_types=[a.type for a in args])
    g = Graph(body, store, f16, c.name)
    inner = [g.op(ane.CastOp(a, f16)) if ane.is_float(a.type.element_type) else a for a in body.args]
    outs = [g.op(ane.CastOp(v, f32)) if ane.is_float(v.type.element_type) else v for v in _as_tuple(c.build(g, *inner))]
    body.add_op(ane.YieldOp(*outs))
    segment = ane.SegmentOp(args, [v.type for v in outs], Region(body))
    segment.attributes[NAME_ATTR] = StringAttr(f"{c.name}/segment")
    block.add_op(segment)
    return tuple(segment.outputs)
