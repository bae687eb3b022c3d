"""fp16 range analysis without samples: intervals through the graph, hazards by op (ane-fp16's static
mode; see `anec.lowering.fp16`).

Every tensor gets a sound interval [lo, hi] — one pair per tensor, or per channel where that is
cheap (a conv's output channels from its actual weights, per-channel constants) — propagated from
the model's input ranges through the ops; an op without a rule gives (-inf, inf), never a wrong
bound. Input ranges come from, in order: the ones declared (`--input-range NAME=LO,HI`,
`input_ranges=`), the input's dtype (uint8 [0, 255], int8, bool), for an integer input used only
as an index or in equality tests with constants the values that select something, or
`DEFAULT_RANGE`, which each flag that depends on it says.

Ops in ANE segments are then flagged with a kind — overflow (a value past 65504), MAC saturation (a
conv/matmul sum past the output port's 2^15), partial-sum overflow (a reduction whose running sum
can pass 65504 while its result does not), underflow (a divisor or a log's input that is positive
but can round to zero in fp16) — and a verdict:

- **proven**: every input in range overflows (the interval lies wholly past the limit), or a
  *witness* does: the model is run in float32 on an input drawn from the ranges (seeded uniform) and,
  for bounds within `LOOSE_FACTOR` of the limit, on every input at the top and at the bottom of its
  range, and the op reaches the limit on one of them;
- **possible**: the bound passes the limit by at most `LOOSE_FACTOR` and the witnesses came within
  that factor of it too (partial sums, underflow, and models over `WITNESS_BUDGET_FLOPS`, which get
  no witness run: the bound alone). Anything else is not reported: interval arithmetic compounds
  through layers (a deep conv net's bound grows by the sum of |w| per layer, thousands of times
  what the activations reach), so a bound alone says little. Nor is an op downstream of a proven
  overflow or of a constant beyond fp16 (the lint names it): the first op is where it enters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerType, ModuleOp, StringAttr
from xdsl.ir import Block, Operation, SSAValue

from anec.analysis import flops
from anec.dialects import ane, host
from anec.dialects.ane import as_tuple, element_type_of, shape_of
from anec.dialects.discardable import Fp16Flag
from anec.errors import AnecError
from anec.interpreter import entry_function, input_names, interpret
from anec.lowering.rewriting import constant_of
from anec.targets import Target
from anec.types import numpy_dtype

DEFAULT_RANGE = (-1.0, 1.0)
"""Assumed for float (and wide integer) inputs nobody declared: normalized data, audio samples."""
LOOSE_FACTOR = 4.0
"""A bound past the limit by more than this is interval arithmetic's looseness, not evidence."""
ROUNDS_TO_ZERO = float(np.finfo(np.float16).smallest_subnormal) / 2
"""Half fp16's smallest subnormal (2^-25): smaller magnitudes round to zero."""
MAX_ELEMENTS = 4096
"""Largest per-element interval kept; bigger ones collapse to their hull."""
TINY = float(np.nextafter(0.0, 1.0))
"""A lower bound that says 'positive, however small' (exp, sigmoid, softmax outputs)."""
WITNESSES = ("uniform", "high", "low")
"""Witness inputs, in the order tried: seeded uniform draws, every input at the top, at the bottom."""
WITNESS_BUDGET_FLOPS = 2e9
"""Witness runs (a float32 interpretation each) only for models up to this size: one of ResNet-50
(8 GFLOP) costs about half its compile time. Larger models rest on their bounds alone."""


# ------------------------------------------------------------------------------------------------
# Intervals
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """[lo, hi] per element: arrays of the tensor's rank whose axes are 1 or the tensor's extent."""

    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def of(lo: float | np.ndarray, hi: float | np.ndarray, rank: int) -> Interval:
        """Bounds given as scalars or trailing-aligned arrays, as an interval of rank `rank`."""
        def shaped(bound: float | np.ndarray, pick: Callable[[np.ndarray], float]) -> np.ndarray:
            a = np.asarray(bound, np.float64)
            return a.reshape((1,) * (rank - a.ndim) + a.shape) if a.ndim <= rank else np.full((1,) * rank, pick(a))
        return Interval(shaped(lo, np.min), shaped(hi, np.max))

    @staticmethod
    def top(rank: int) -> Interval:
        return Interval.of(-np.inf, np.inf, rank)

    @property
    def rank(self) -> int:
        return self.lo.ndim

    def hull(self, rank: int | None = None) -> Interval:
        rank = self.rank if rank is None else rank
        return Interval.of(float(self.lo.min(initial=np.inf)), float(self.hi.max(initial=-np.inf)), rank)

    def along(self, axes: tuple[int, ...]) -> Interval:
        """Collapsed over every axis but `axes`."""
        other = tuple(a for a in range(self.rank) if a not in axes)
        return Interval(self.lo.min(axis=other, keepdims=True), self.hi.max(axis=other, keepdims=True))

    @property
    def magnitude(self) -> np.ndarray:
        return np.maximum(np.abs(self.lo), np.abs(self.hi))

    def fit(self) -> Interval:
        """Per-element detail only while it stays small."""
        return self if self.lo.size <= MAX_ELEMENTS and self.hi.size <= MAX_ELEMENTS else self.hull()


def _map(iv: Interval, fn: Callable[[np.ndarray], np.ndarray], increasing: bool = True) -> Interval:
    with np.errstate(all="ignore"):
        a, b = fn(iv.lo), fn(iv.hi)
    return Interval(a, b) if increasing else Interval(b, a)


def _clip(iv: Interval, lo: float, hi: float) -> Interval:
    return Interval(np.clip(iv.lo, lo, hi), np.clip(iv.hi, lo, hi))


def _add(a: Interval, b: Interval) -> Interval:
    with np.errstate(invalid="ignore"):
        return Interval(np.nan_to_num(a.lo + b.lo, nan=-np.inf), np.nan_to_num(a.hi + b.hi, nan=np.inf))


def _neg(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo)


def _mul(a: Interval, b: Interval) -> Interval:
    with np.errstate(invalid="ignore"):
        products = np.stack(np.broadcast_arrays(a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi))
    products = np.nan_to_num(products, nan=0.0, posinf=np.inf, neginf=-np.inf)  # 0·inf: 0 for a bound
    return Interval(products.min(axis=0), products.max(axis=0))


def _square(a: Interval) -> Interval:
    low = np.where((a.lo <= 0) & (a.hi >= 0), 0.0, np.minimum(a.lo ** 2, a.hi ** 2))
    return Interval(low, np.maximum(a.lo ** 2, a.hi ** 2))


def _reciprocal(a: Interval) -> Interval:
    excludes_zero = (a.lo > 0) | (a.hi < 0)
    with np.errstate(divide="ignore"):
        return Interval(np.where(excludes_zero, 1 / a.hi, -np.inf), np.where(excludes_zero, 1 / a.lo, np.inf))


def _hull_of(intervals: list[Interval], rank: int) -> Interval:
    hulls = [iv.hull(rank) for iv in intervals]
    return Interval(np.minimum.reduce([h.lo for h in hulls]), np.maximum.reduce([h.hi for h in hulls]))


# ------------------------------------------------------------------------------------------------
# Rules: op -> intervals of its results, from its operands' intervals
# ------------------------------------------------------------------------------------------------

Rule = Callable[[Operation, list[Interval]], list[Interval]]
RULES: dict[type[Operation], Rule] = {}


def rule(*op_types: type[Operation]) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for t in op_types:
            RULES[t] = fn
        return fn
    return register


def _rank(op: Operation) -> int:
    return len(shape_of(op.results[0]))


def _one(fn: Callable[[Operation, Interval], Interval]) -> Rule:
    return lambda op, ins: [fn(op, ins[0])]


MONOTONE: dict[type[Operation], Callable[[np.ndarray], np.ndarray]] = {
    ane.ReluOp: lambda x: np.maximum(x, 0.0),
    ane.ExpOp: lambda x: np.maximum(np.exp(x), TINY),
    ane.SigmoidOp: lambda x: np.clip(1 / (1 + np.exp(-x)), TINY, 1.0),
    ane.TanhOp: np.tanh,
    ane.SignOp: np.sign,
    ane.RoundOp: np.rint,
    ane.FloorOp: np.floor,
    ane.CeilOp: np.ceil,
    ane.SoftplusOp: lambda x: np.maximum(np.logaddexp(0.0, x), TINY),
    ane.ErfOp: np.vectorize(math.erf, otypes=[float]),
    ane.SqrtOp: lambda x: np.sqrt(np.maximum(x, 0.0)),
    ane.LogOp: lambda x: np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), -np.inf),
    ane.EluOp: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


@rule(*MONOTONE)
def _monotone(op: Operation, ins: list[Interval]) -> list[Interval]:
    scale = getattr(op, "alpha", None)
    out = _map(ins[0], MONOTONE[type(op)])
    if isinstance(op, ane.EluOp) and scale is not None:  # alpha·(e^x - 1) below zero
        alpha = float(scale.value.data)
        out = Interval(np.where(out.lo < 0, alpha * out.lo, out.lo), np.where(out.hi < 0, alpha * out.hi, out.hi))
    return [out]


@rule(ane.NegOp)
def _negate(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [_neg(ins[0])]


@rule(ane.AbsOp)
def _abs(op: Operation, ins: list[Interval]) -> list[Interval]:
    x = ins[0]
    return [Interval(np.where((x.lo <= 0) & (x.hi >= 0), 0.0, np.minimum(np.abs(x.lo), np.abs(x.hi))), x.magnitude)]


@rule(ane.ReciprocalOp)
def _recip(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [_reciprocal(ins[0])]


@rule(ane.RsqrtOp)
def _rsqrt(op: Operation, ins: list[Interval]) -> list[Interval]:
    x = ins[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return [Interval(np.where(x.hi > 0, 1 / np.sqrt(np.maximum(x.hi, 0.0)), np.inf), np.where(x.lo > 0, 1 / np.sqrt(np.maximum(x.lo, TINY)), np.inf))]


@rule(ane.SinOp, ane.CosOp)
def _trig(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [Interval.of(-1.0, 1.0, _rank(op))]


GLOBAL_MINIMUM: dict[type[Operation], float] = {ane.GeluOp: -0.1700406, ane.SiluOp: -0.2784645, ane.HardswishOp: -0.375}
"""Smallest value of the activations that dip below zero; each is at most max(x, 0) above it."""


@rule(*GLOBAL_MINIMUM)
def _dipping(op: Operation, ins: list[Interval]) -> list[Interval]:
    x = ins[0]
    lo, hi = np.broadcast_arrays(np.where(x.lo >= 0, 0.0, GLOBAL_MINIMUM[type(op)]), np.maximum(x.hi, 0.0))
    return [Interval(lo, hi)]


@rule(ane.LeakyReluOp)
def _leaky(op: Operation, ins: list[Interval]) -> list[Interval]:
    assert isinstance(op, ane.LeakyReluOp)
    alpha = float(op.alpha.value.data)
    if alpha < 0:
        return [Interval.top(_rank(op))]
    return [_map(ins[0], lambda x: np.where(x > 0, x, alpha * x))]


@rule(ane.ClampOp)
def _clamp(op: Operation, ins: list[Interval]) -> list[Interval]:
    lo, hi = (float(getattr(op, k).value.data) if getattr(op, k, None) is not None else default
              for k, default in (("min", -np.inf), ("max", np.inf)))
    return [_clip(ins[0], lo, hi)]


@rule(ane.HardsigmoidOp, ane.SoftmaxOp, ane.L2NormOp)
def _unit(op: Operation, ins: list[Interval]) -> list[Interval]:
    if isinstance(op, ane.L2NormOp):
        return [Interval.of(-1.0, 1.0, _rank(op))]
    if isinstance(op, ane.SoftmaxOp):  # each term ≥ exp(lo - max hi) / N
        x, n = ins[0].hull(), shape_of(op.results[0])[ane.reduced_axes(op)[0]]
        return [Interval.of(max(float(np.exp(x.lo.min() - x.hi.max())) / n, TINY), 1.0, _rank(op))]
    return [Interval.of(0.0, 1.0, _rank(op))]


@rule(ane.AddOp)
def _plus(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [_add(ins[0], ins[1]).fit()]


@rule(ane.SubOp)
def _minus(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [_add(ins[0], _neg(ins[1])).fit()]


@rule(ane.MulOp)
def _times(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [(_square(ins[0]) if op.operands[0] is op.operands[1] else _mul(ins[0], ins[1])).fit()]


@rule(ane.DivOp)
def _divide(op: Operation, ins: list[Interval]) -> list[Interval]:
    if isinstance(ane.element_type_of(op.results[0]), IntegerType):
        return [Interval.top(_rank(op))]
    return [_mul(ins[0], _reciprocal(ins[1])).fit()]


@rule(ane.MaxOp, ane.MinOp)
def _extremum(op: Operation, ins: list[Interval]) -> list[Interval]:
    pick = np.maximum if isinstance(op, ane.MaxOp) else np.minimum
    return [Interval(pick(ins[0].lo, ins[1].lo), pick(ins[0].hi, ins[1].hi)).fit()]


@rule(ane.PowOp)
def _power(op: Operation, ins: list[Interval]) -> list[Interval]:
    exponent = constant_of(op.operands[1])
    if exponent is None or np.unique(exponent).size != 1:
        return [Interval.top(_rank(op))]
    p, x = float(exponent.flat[0]), ins[0]
    if p == 2:
        return [_square(x)]
    if p > 0 and ((p == int(p) and int(p) % 2 == 1) or bool((x.lo >= 0).all())):
        return [_map(x, lambda v: np.sign(v) * np.abs(v) ** p)]
    return [Interval.top(_rank(op))]


@rule(ane.EqualOp, ane.NotEqualOp, ane.GreaterOp, ane.GreaterEqualOp, ane.LessOp, ane.LessEqualOp)
def _compare(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [Interval.of(0.0, 1.0, _rank(op))]


@rule(ane.SelectOp)
def _select(op: Operation, ins: list[Interval]) -> list[Interval]:
    a, b = ins[1], ins[2]
    return [Interval(np.minimum(a.lo, b.lo), np.maximum(a.hi, b.hi)).fit()]


@rule(ane.CastOp)
def _cast(op: Operation, ins: list[Interval]) -> list[Interval]:
    x, typ = ins[0], ane.element_type_of(op.results[0])
    if not isinstance(typ, IntegerType):
        return [x]
    if typ.width.data == 1:
        return [Interval.of(0.0, 1.0, _rank(op))]
    info = np.iinfo(numpy_dtype(typ))
    return [_clip(Interval(np.floor(x.lo), np.ceil(x.hi)), float(info.min), float(info.max))]


def _macs(a: Interval, b: Interval, terms: int) -> Interval:
    """A sum of `terms` products of elements of a and b."""
    p = _mul(a.hull(), b.hull())
    return Interval(p.lo * terms, p.hi * terms)


def _linear(x: Interval, weight: np.ndarray, groups: int, padded: bool, rank: int) -> Interval:
    """Per output channel: Σ w·x over input channels and taps, x per input channel (axis 1);
    weight (C_out, C_in/groups, taps…)."""
    cin = weight.shape[1] * groups
    per_channel = x.along((1,)) if x.lo.shape[1] in (1, cin) else x.hull()
    lo = np.broadcast_to(per_channel.lo.reshape(-1), (cin,))
    hi = np.broadcast_to(per_channel.hi.reshape(-1), (cin,))
    if padded:  # taps over the padding read zeros
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    w = weight.reshape(weight.shape[0], weight.shape[1], -1)
    pos = np.maximum(w, 0).sum(axis=2, dtype=np.float64)  # (C_out, C_in/g)
    neg = np.minimum(w, 0).sum(axis=2, dtype=np.float64)
    pos, neg = pos.reshape(groups, -1, weight.shape[1]), neg.reshape(groups, -1, weight.shape[1])  # (g, C_out/g, C_in/g)
    lo_g, hi_g = lo.reshape(groups, -1), hi.reshape(groups, -1)  # (g, C_in/g)
    with np.errstate(invalid="ignore"):  # 0·inf is NaN: unbounded, conservatively
        out_hi = np.nan_to_num(np.einsum("goc,gc->go", pos, hi_g) + np.einsum("goc,gc->go", neg, lo_g), nan=np.inf)
        out_lo = np.nan_to_num(np.einsum("goc,gc->go", pos, lo_g) + np.einsum("goc,gc->go", neg, hi_g), nan=-np.inf)
    shape = (1, weight.shape[0]) + (1,) * (rank - 2)
    return Interval(out_lo.reshape(shape), out_hi.reshape(shape))


def _probabilities(value: SSAValue, axis: int) -> bool:
    """Is `value` non-negative with sums of at most 1 along `axis`: a softmax, or one with rows zeroed
    by a select (the NaN guard of fully masked attention rows)?"""
    owner = value.owner
    if isinstance(owner, ane.SoftmaxOp):
        return ane.reduced_axes(owner)[0] == axis
    if isinstance(owner, ane.SelectOp):
        return all(_probabilities(b, axis) or ((c := constant_of(b)) is not None and not c.any()) for b in owner.operands[1:])
    return False


def mac_sum(op: Operation, ins: list[Interval]) -> Interval:
    """The interval of a conv's or matmul's sum of products, before its bias: what the MAC port sees."""
    rank = _rank(op)
    if isinstance(op, ane.ConvBase):
        weight = constant_of(op.weight)
        groups = op.groups.value.data
        padded = any(as_tuple(op.pads))
        if weight is None:
            return _macs(ins[0], ins[1], int(np.prod(shape_of(op.weight)[1:])))
        if isinstance(op, ane.ConvTransposeOp):  # (C_in, C_out/g, taps) -> (C_out, C_in/g, taps)
            cig, cog = weight.shape[0] // groups, weight.shape[1]
            weight = weight.reshape(groups, cig, cog, *weight.shape[2:]).swapaxes(1, 2).reshape(groups * cog, cig, *weight.shape[2:])
            padded = True  # outputs at the border sum fewer taps
        return _linear(ins[0], weight, groups, padded, rank)
    assert isinstance(op, ane.MatmulOp)
    ta, tb = op.flags()
    k = shape_of(op.lhs)[-2 if ta else -1]
    for weights, other, axis in ((op.lhs, ins[1], -2 if ta else -1), (op.rhs, ins[0], -1 if tb else -2)):
        if _probabilities(weights, len(shape_of(weights)) + axis):  # attention: Σ p·v with p ≥ 0, Σ p ≤ 1
            v = other.hull(rank)
            return Interval(np.minimum(v.lo, 0.0), np.maximum(v.hi, 0.0))
    b = constant_of(op.rhs)
    if b is None or b.ndim != 2:
        return _macs(ins[0], ins[1], k)
    b = b.T if tb else b  # (K, N)
    x = ins[0].hull()
    pos, neg = np.maximum(b, 0.0), np.minimum(b, 0.0)
    with np.errstate(invalid="ignore"):
        hi = np.nan_to_num((pos * x.hi.flat[0] + neg * x.lo.flat[0]).sum(axis=0), nan=np.inf)
        lo = np.nan_to_num((pos * x.lo.flat[0] + neg * x.hi.flat[0]).sum(axis=0), nan=-np.inf)
    return Interval.of(lo, hi, rank).fit()


def _epilogue(op: Operation, out: Interval, ins: list[Interval]) -> Interval:
    """A conv's or matmul's result from its sum of products: + bias, then its fused activation."""
    if getattr(op, "bias", None) is not None:  # shape (channels,): a conv's axis 1, a matmul's last
        rank, axis = _rank(op), 1 if isinstance(op, ane.ConvBase) else _rank(op) - 1
        shape = tuple(-1 if a == axis else 1 for a in range(rank))
        bias = ins[-1] if ins[-1].lo.size == 1 else Interval(ins[-1].lo.reshape(shape), ins[-1].hi.reshape(shape))
        out = _add(out, bias if bias.rank == rank else bias.hull(rank))
    activation = epilogue.data if isinstance(epilogue := getattr(op, "activation", None), StringAttr) else None
    if activation == "relu":
        out = _map(out, lambda v: np.maximum(v, 0.0))
    elif activation is not None:
        return Interval.top(_rank(op))
    return out.fit()


@rule(ane.SdpaOp)
def _attention(op: Operation, ins: list[Interval]) -> list[Interval]:
    return [ins[2].hull(_rank(op))]  # a convex combination of the values


def _reduced(op: Operation) -> tuple[tuple[int, ...], int]:
    """(reduced axes of the input, how many elements each result sums)."""
    shape = shape_of(op.operands[0])
    axes = tuple(range(2, len(shape))) if isinstance(op, ane.GlobalPoolOp) else tuple(ane.reduced_axes(op))
    return axes, int(np.prod([shape[a] for a in axes]))


def _sum_over(x: Interval, axes: tuple[int, ...], shape: tuple[int, ...]) -> Interval:
    lo, hi = x.lo, x.hi
    for a in axes:
        lo = lo * shape[a] if lo.shape[a] == 1 else lo.sum(axis=a, keepdims=True)
        hi = hi * shape[a] if hi.shape[a] == 1 else hi.sum(axis=a, keepdims=True)
    return Interval(lo, hi)


def _keep(op: Operation, iv: Interval, axes: tuple[int, ...]) -> Interval:
    """`iv` reduced over `axes` with kept dims, shaped for the op's result."""
    if len(shape_of(op.results[0])) == iv.rank:
        return iv
    return Interval(np.squeeze(iv.lo, axis=axes), np.squeeze(iv.hi, axis=axes))


def partial_sums(op: Operation, x: Interval) -> Interval:
    """Bounds of a reduction's running sums: the positive parts and the negative parts alone."""
    axes, _ = _reduced(op)
    return _sum_over(Interval(np.minimum(x.lo, 0.0), np.maximum(x.hi, 0.0)), axes, shape_of(op.operands[0]))


@rule(ane.ReduceSumOp, ane.ReduceMeanOp, ane.ReduceMaxOp, ane.ReduceMinOp, ane.ReduceL2Op, ane.ReduceLogSumExpOp,
      ane.GlobalAvgPoolOp, ane.GlobalMaxPoolOp)
def _reduce(op: Operation, ins: list[Interval]) -> list[Interval]:
    axes, n = _reduced(op)
    x = ins[0]
    if isinstance(op, ane.ReduceSumOp):
        out = _sum_over(x, axes, shape_of(op.operands[0]))
    elif isinstance(op, ane.ReduceL2Op):
        out = Interval(np.zeros_like(x.lo), x.magnitude * np.sqrt(n)).hull()
    else:
        kept = tuple(a for a in range(x.rank) if a not in axes)
        out = x.along(kept)
        if isinstance(op, ane.ReduceLogSumExpOp):
            out = Interval(out.lo, out.hi + np.log(n))
    return [_keep(op, out, axes).fit()]


@rule(ane.MaxPoolOp, ane.AvgPoolOp, ane.L2PoolOp)
def _pool(op: Operation, ins: list[Interval]) -> list[Interval]:
    x = ins[0].along((0, 1))
    if isinstance(op, ane.L2PoolOp):
        return [Interval(np.zeros_like(x.lo), x.magnitude * np.sqrt(int(np.prod(as_tuple(op.kernel)))))]
    if isinstance(op, ane.AvgPoolOp) and any(as_tuple(op.pads)) and op.count_include_pad.value.data:
        x = Interval(np.minimum(x.lo, 0.0), np.maximum(x.hi, 0.0))
    return [x]


@rule(ane.LayerNormOp, ane.InstanceNormOp, ane.GroupNormOp)
def _normalized(op: Operation, ins: list[Interval]) -> list[Interval]:
    """(x - mean)/sqrt(var + eps) over N elements lies within ±sqrt(N - 1); then the affine."""
    x_shape = shape_of(op.operands[0])
    axes = tuple(ane.reduced_axes(op))
    n = int(np.prod([x_shape[a] for a in axes])) if not isinstance(op, ane.GroupNormOp) else \
        int(np.prod(x_shape[1:])) // op.num_groups.value.data
    r = float(np.sqrt(max(n - 1, 0)))
    rank = len(x_shape)
    scale, bias = (s if s.rank == rank else s.hull(rank) for s in ins[1:3])  # per channel when shaped like x
    return [_add(_mul(Interval.of(-r, r, rank), scale), bias).fit()]


@rule(ane.TransposeOp)
def _transpose(op: Operation, ins: list[Interval]) -> list[Interval]:
    assert isinstance(op, ane.TransposeOp)
    perm = as_tuple(op.perm)
    return [Interval(ins[0].lo.transpose(perm), ins[0].hi.transpose(perm))]


@rule(ane.BroadcastOp)
def _broadcast(op: Operation, ins: list[Interval]) -> list[Interval]:
    x = ins[0]
    return [x if x.rank == _rank(op) else x.hull(_rank(op))]


@rule(ane.PadOp)
def _pad(op: Operation, ins: list[Interval]) -> list[Interval]:
    assert isinstance(op, ane.PadOp)
    x = ins[0].hull()
    if op.mode.data == "constant":
        fill = float(op.value.value.data)
        x = Interval(np.minimum(x.lo, fill), np.maximum(x.hi, fill))
    return [x]


@rule(ane.ResizeOp)
def _resize(op: Operation, ins: list[Interval]) -> list[Interval]:
    # nearest and linear sampling are convex combinations; cubic overshoots
    assert isinstance(op, ane.ResizeOp)
    return [ins[0].hull() if op.mode.data in ("nearest", "linear") else Interval.top(_rank(op))]


@rule(ane.ReshapeOp, ane.SliceOp, ane.TileOp, ane.DepthToSpaceOp, ane.SpaceToDepthOp, ane.ConcatOp, ane.SplitOp)
def _movement(op: Operation, ins: list[Interval]) -> list[Interval]:
    hull = _hull_of(ins, _rank(op))
    return [hull.hull(len(shape_of(r))) for r in op.results]


@rule(ane.ArgmaxOp, ane.ArgminOp)
def _index(op: Operation, ins: list[Interval]) -> list[Interval]:
    assert isinstance(op, ane.ArgReduceOp)
    return [Interval.of(0.0, float(shape_of(op.operands[0])[op.axis.value.data] - 1), _rank(op))]


@rule(ane.TopkOp)
def _selection(op: Operation, ins: list[Interval]) -> list[Interval]:
    """Values are some of the input's; indices are positions along the axis."""
    assert isinstance(op, ane.TopkOp)
    n = shape_of(op.input)[op.axis.value.data]
    return [ins[0].hull(_rank(op)), Interval.of(0.0, float(n - 1), _rank(op))]


LOOKUPS = {"onnx.Gather": 0, "onnx.GatherElements": 0, "onnx.GatherND": 0, "aten.embedding.default": 0}
"""Host ops whose output holds values of one operand (the table): position of that operand."""


def _host(op: host.HostOp, ins: list[Interval]) -> list[Interval]:
    table = LOOKUPS.get(op.op_name.data)
    if table is not None:
        return [ins[table].hull(len(shape_of(r))) for r in op.results]
    return [Interval.top(len(shape_of(r))) for r in op.results]


# ------------------------------------------------------------------------------------------------
# Input ranges
# ------------------------------------------------------------------------------------------------

InputRanges = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class InputRange:
    lo: float
    hi: float
    source: str
    """"declared", "dtype", "indices" (an integer input only used as an index: the table's extent) or "default"."""
    integer: bool = False


def input_ranges(fn: func.FuncOp, declared: InputRanges | None) -> dict[str, InputRange]:
    """Each input's range: declared, implied by its dtype, or `DEFAULT_RANGE`."""
    declared = dict(declared or {})
    names = input_names(fn)
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise AnecError(f"--input-range names {', '.join(map(repr, unknown))}, which the model has no input of",
                        hint=f"the inputs are {', '.join(map(repr, names))}")
    out = {}
    for name, arg in zip(names, fn.args):
        dtype = numpy_dtype(element_type_of(arg))
        integer = dtype.kind in "iub"
        if name in declared:
            lo, hi = (float(b) for b in declared[name])
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise AnecError(f"the range of input {name!r} is [{lo:g}, {hi:g}]", why="it needs finite bounds, low first",
                                hint="e.g. input_ranges={'x': (0, 1)} or --input-range x=0,1")
            out[name] = InputRange(lo, hi, "declared", integer)
        elif dtype.kind == "b":
            out[name] = InputRange(0.0, 1.0, "dtype", True)
        elif dtype.kind in "iu" and dtype.itemsize == 1:
            info = np.iinfo(dtype)
            out[name] = InputRange(float(info.min), float(info.max), "dtype", True)
        elif integer and (indices := _index_bound(arg)) is not None:
            out[name] = InputRange(*indices, "indices", True)
        else:
            out[name] = InputRange(*DEFAULT_RANGE, "default", integer)
    return out


def _index_bound(arg: SSAValue) -> tuple[float, float] | None:
    """For an integer input used only as an index or in equality tests with constants (one-hot
    encodings) — looked through reshapes and casts —, the values that mean something."""
    bounds: list[tuple[float, float]] = []
    todo = [arg]
    while todo:
        v = todo.pop()
        for use in v.uses:
            user = use.operation
            if isinstance(user, ane.ReshapeOp | ane.CastOp | ane.TransposeOp) and isinstance(ane.element_type_of(user.results[0]), IntegerType):
                todo.append(user.results[0])
            elif isinstance(user, host.HostOp) and user.op_name.data in ("onnx.Gather", "aten.embedding.default") and use.index == 1:
                extent = shape_of(user.operands[0])[0]
                bounds.append((0.0, float(extent - 1)))
            elif isinstance(user, ane.EqualOp) and (c := constant_of(user.operands[1 - use.index])) is not None and c.size:
                bounds.append((float(c.min()), float(c.max())))
            else:
                return None
    return (min(b[0] for b in bounds), max(b[1] for b in bounds)) if bounds else None


# ------------------------------------------------------------------------------------------------
# Propagation
# ------------------------------------------------------------------------------------------------


def _constant(array: np.ndarray) -> Interval:
    """A constant's values, element by element while small, else its hull (without a float64 copy)."""
    if array.size <= MAX_ELEMENTS:
        a = array.astype(np.float64)
        return Interval(a, a)
    return Interval.of(float(array.min()), float(array.max()), array.ndim)


@dataclass
class Analysis:
    """Intervals of every SSA value of the entry function (segment bodies included)."""

    intervals: dict[SSAValue, Interval] = field(default_factory=dict)
    mac_sums: dict[Operation, Interval] = field(default_factory=dict)
    """Of each conv and matmul: its sum of products before the bias (what the MAC port sees)."""

    def of(self, value: SSAValue) -> Interval:
        found = self.intervals.get(value)
        return found if found is not None else Interval.top(len(shape_of(value)))

    def run_block(self, block: Block) -> None:
        for op in block.ops:
            if isinstance(op, ane.SegmentOp):
                for arg, outer in zip(op.body.block.args, op.inputs):
                    self.intervals[arg] = self.of(outer)
                self.run_block(op.body.block)
                yielded = op.body.block.last_op
                assert yielded is not None
                for r, v in zip(op.results, yielded.operands):
                    self.intervals[r] = self.of(v)
            elif isinstance(op, ane.ConstOp):
                array = constant_of(op.result)
                if array is not None and array.dtype.kind in "fiub" and array.size:
                    self.intervals[op.result] = _constant(array)
            elif op.results and all(hasattr(r.type, "get_shape") for r in op.results):
                self.intervals.update(zip(op.results, self.rule_of(op)))

    def rule_of(self, op: Operation) -> list[Interval]:
        ins = [self.of(v) for v in op.operands]
        fn = RULES.get(type(op))
        try:
            if isinstance(op, ane.ConvBase | ane.MatmulOp):
                self.mac_sums[op] = mac_sum(op, ins)
                return [_epilogue(op, self.mac_sums[op], ins)]
            if fn is not None:
                return fn(op, ins)
            if isinstance(op, host.HostOp):
                return _host(op, ins)
        except (ValueError, IndexError):  # a shape the rule does not cover: no bound rather than a wrong one
            pass
        return [Interval.top(len(shape_of(r))) for r in op.results]


def analyze(module: ModuleOp, ranges: Mapping[str, InputRange]) -> Analysis:
    fn = entry_function(module)
    analysis = Analysis()
    for name, arg in zip(input_names(fn), fn.args):
        r = ranges[name]
        analysis.intervals[arg] = Interval.of(r.lo, r.hi, len(shape_of(arg)))
    analysis.run_block(fn.body.block)
    return analysis


# ------------------------------------------------------------------------------------------------
# Hazards
# ------------------------------------------------------------------------------------------------

DIVISORS: dict[type[Operation], int] = {ane.DivOp: 1, ane.ReciprocalOp: 0, ane.RsqrtOp: 0, ane.LogOp: 0}
"""Ops with an operand that must not round to zero: its position."""


@dataclass(frozen=True)
class Hazard:
    op: Operation
    kind: str
    bound: float
    limit: float
    everywhere: bool
    """True when every input in range reaches it."""
    enters: bool
    """True when no operand's bound is past the limit already (the hazard starts here)."""
    witness_of: SSAValue
    """The value a witness run checks."""


def _everywhere_past(iv: Interval, limit: float) -> bool:
    """Some element is past the limit, finite (an infinity is float32's too, not fp16's), for every input."""
    lo, hi = np.broadcast_arrays(iv.lo, iv.hi)
    return bool((((lo >= limit) | (hi <= -limit)) & np.isfinite(lo) & np.isfinite(hi)).any())


PASS_THROUGH = (ane.MovementOp, ane.ConcatOp, ane.SplitOp, ane.CastOp, ane.SelectOp, ane.MaxPoolOp, ane.GlobalMaxPoolOp,
                ane.ReduceMaxOp, ane.ReduceMinOp)
"""Ops whose outputs are values of their inputs: a value out of range is flagged where it is computed."""


def hazards(blocks: list[Block], analysis: Analysis, target: Target) -> Iterator[Hazard]:
    fp16_max, mac_limit = target.numerics.fp16_max.value, target.numerics.mac_saturation.value
    for block in blocks:
        for op in block.ops:
            if not ane.is_ane(op) or isinstance(op, (ane.ConstOp, ane.YieldOp, ane.SegmentOp, *PASS_THROUGH)):
                continue
            within = all(float(analysis.of(v).magnitude.max(initial=0.0)) <= fp16_max for v in op.operands)
            if (position := DIVISORS.get(type(op))) is not None:
                d = analysis.of(op.operands[position])
                smallest = np.where(d.lo > 0, d.lo, np.where(d.hi < 0, -d.hi, np.nan))
                if np.isfinite(smallest).any() and float(np.nanmin(smallest)) < ROUNDS_TO_ZERO:
                    yield Hazard(op, "underflow", float(np.nanmin(smallest)), ROUNDS_TO_ZERO,
                                 bool((d.magnitude < ROUNDS_TO_ZERO).all()), True, op.operands[position])
            if (acc := analysis.mac_sums.get(op)) is not None and float(acc.magnitude.max()) >= mac_limit:
                yield Hazard(op, "MAC saturation", float(acc.magnitude.max()), mac_limit,
                             _everywhere_past(acc, mac_limit), within, op.results[0])
                continue
            r = op.results[0] if op.results else None
            if r is not None and not isinstance(ane.element_type_of(r), IntegerType) and r in analysis.intervals:
                iv = analysis.of(r)
                if float(iv.magnitude.max()) > fp16_max:
                    yield Hazard(op, "overflow", float(iv.magnitude.max()), fp16_max,
                                 _everywhere_past(iv, fp16_max), within, r)
                    continue
            if isinstance(op, ane.ReduceSumOp | ane.ReduceMeanOp):
                partial = partial_sums(op, analysis.of(op.operands[0]))
                if float(partial.magnitude.max()) > fp16_max:
                    yield Hazard(op, "partial-sum overflow", float(partial.magnitude.max()), fp16_max, False, within, op.results[0])


def witness_inputs(module: ModuleOp, ranges: Mapping[str, InputRange]) -> Iterator[tuple[str, list[np.ndarray]]]:
    """Inputs inside the ranges: seeded uniform draws, then every input at its high end, then its low end."""
    fn = entry_function(module)
    bounds = []
    for name, arg in zip(input_names(fn), fn.args):
        r = ranges[name]
        bounds.append(((r.lo, r.hi), numpy_dtype(element_type_of(arg)), shape_of(arg), r.integer))
    rng = np.random.default_rng(0)
    for kind in WITNESSES:
        inputs = []
        for (lo, hi), dtype, shape, integer in bounds:
            if kind == "uniform":
                x = rng.integers(int(lo), int(hi), size=shape, endpoint=True) if integer else rng.uniform(lo, hi, size=shape)
            else:
                x = np.full(shape, hi if kind == "high" else lo)
            inputs.append(x.astype(dtype))
        yield kind, inputs


def _watch(module: ModuleOp, inputs: list[np.ndarray], watched: set[SSAValue]) -> dict[SSAValue, np.ndarray]:
    """The float32 values of `watched` when the module runs on `inputs`."""
    seen: dict[SSAValue, np.ndarray] = {}

    def observe(op: Operation, outs: list[np.ndarray]) -> None:
        for r, x in zip(op.results, outs):
            if r in watched:
                seen[r] = np.asarray(x, np.float64)

    with np.errstate(all="ignore"):
        interpret(module, inputs, precision="f32", segments="f32", observe=observe)
    return seen


@dataclass
class Witnessed:
    reached: dict[Hazard, str] = field(default_factory=dict)
    """Hazard -> the witness that reached its limit."""
    peak: dict[Hazard, float] = field(default_factory=dict)
    """Hazard -> the largest finite magnitude its value took on the witnesses."""


def confirm(module: ModuleOp, found: list[Hazard], ranges: Mapping[str, InputRange]) -> Witnessed:
    """Run the float32 graph on witness inputs until each hazard not proven by its bound is reached (or
    the witnesses are exhausted)."""
    open_ = {h for h in found if not h.everywhere}
    watched = {h.witness_of for h in open_}
    out = Witnessed()
    for kind, inputs in witness_inputs(module, ranges):
        if kind != "uniform":  # the range's ends can attain a bound near the limit; a loose one, hardly
            open_ = {h for h in open_ if h.bound <= LOOSE_FACTOR * h.limit}
        if not open_:
            break
        seen = _watch(module, inputs, watched)
        for h in list(open_):
            x = seen.get(h.witness_of)
            if x is None or x.size == 0:
                continue
            if h.kind == "underflow":
                nonzero = np.abs(x[x != 0])
                hit = nonzero.size > 0 and float(nonzero.min()) < ROUNDS_TO_ZERO
            else:
                finite = np.abs(x[np.isfinite(x)])  # an infinity is float32's too, not fp16's
                out.peak[h] = max(out.peak.get(h, 0.0), float(finite.max(initial=0.0)))
                hit = out.peak[h] >= h.limit
            if hit:
                out.reached[h] = kind
                open_.discard(h)
    return out


def _where_they_enter(blocks: list[Block], found: list[Hazard], reached: Mapping[Hazard, str], analysis: Analysis,
                      fp16_max: float) -> list[Hazard]:
    """The proven hazards and the ones whose bound is the first past the limit, without those downstream
    of a proven overflow (a value computed from one that overflowed is that overflow's consequence) or
    of a constant beyond fp16's range (the lint has named it)."""
    by_op: dict[Operation, list[Hazard]] = {}
    for h in found:
        by_op.setdefault(h.op, []).append(h)
    overflowed: set[SSAValue] = {op.result for block in blocks for op in block.ops
                                 if isinstance(op, ane.ConstOp) and float(analysis.of(op.result).magnitude.max()) > fp16_max}
    kept: list[Hazard] = []
    for block in blocks:
        for op in block.ops:
            downstream = any(v in overflowed for v in op.operands)
            if downstream and (isinstance(op, PASS_THROUGH) or op in by_op):
                overflowed.update(op.results)
                continue
            for h in by_op.get(op, []):
                if h.everywhere or h in reached or h.enters:
                    kept.append(h)
                if (h.everywhere or h in reached) and h.kind in ("overflow", "MAC saturation"):
                    overflowed.update(op.results)
    return kept


WITNESS_TEXT = {"uniform": "a seeded input drawn uniformly from the input ranges", "high": "every input at the top of its range",
                "low": "every input at the bottom of its range"}


def _near(h: Hazard, witnessed: Witnessed | None) -> bool:
    """A hazard not proven is worth reporting when its bound is within `LOOSE_FACTOR` of the limit and
    (for values the witnesses measure, when they ran) they came within that factor too."""
    if h.kind == "underflow":
        return True
    if h.bound > LOOSE_FACTOR * h.limit:
        return False
    if h.kind == "partial-sum overflow" or witnessed is None:
        return h.enters
    return witnessed.peak.get(h, 0.0) * LOOSE_FACTOR >= h.limit


def _seen(h: Hazard, witnessed: Witnessed | None) -> str:
    if witnessed is None:
        return f"; no witness run (over the {WITNESS_BUDGET_FLOPS / 1e9:g} GFLOP budget)"
    return f"; witnesses reached {witnessed.peak[h]:.3g}" if h in witnessed.peak else ""


def flag_ranges(module: ModuleOp, blocks: list[Block], target: Target, declared: InputRanges | None,
                warn: Callable[[Operation, str], None]) -> None:
    """Analyze, flag the hazards that are proven or near the limit, each as an fp16 warning on its op."""
    fn = entry_function(module)
    ranges = input_ranges(fn, declared)
    with np.errstate(all="ignore"):  # bounds past float64's range are inf, as they should be
        analysis = analyze(module, ranges)
        found = list(hazards(blocks, analysis, target))
    if not found:
        return
    work = sum(flops(op) for block in blocks for op in block.ops)
    witnessed = confirm(module, found, ranges) if work <= WITNESS_BUDGET_FLOPS else None
    reached = witnessed.reached if witnessed is not None else {}
    assumed = sorted(n for n, r in ranges.items() if r.source == "default")
    assumption = (f"assuming {', '.join(map(repr, assumed))} in [{DEFAULT_RANGE[0]:g}, {DEFAULT_RANGE[1]:g}]; "
                  "declare with --input-range NAME=LO,HI" if assumed else "")
    for h in _where_they_enter(blocks, found, reached, analysis, target.numerics.fp16_max.value):
        if h.everywhere or h in reached:
            why = "every input in range" if h.everywhere else WITNESS_TEXT[reached[h]]
            verdict = "proven"
        elif _near(h, witnessed):
            why, verdict = f"the interval bound{_seen(h, witnessed)}", "possible"
        else:
            continue
        warn(h.op, Fp16Flag(h.kind, verdict, h.bound, h.limit, "; ".join(filter(None, [why, assumption]))).note())

