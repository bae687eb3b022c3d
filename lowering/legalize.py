"""ane-legalize: compound and frontend-shaped ops become the primitives the ANE runs.

Frontends spell one operation many ways: GELU as an erf or tanh formula, softmax and layer norm
written out, attention with a mask (which the ANE's fused attention silently ignores), reductions
without kept dimensions or over more axes than one task reduces, integral floats cast to an integer
type and back. Each pattern here recognizes one such shape and replaces it with what the hardware
has; results are unchanged (exactly, or within float rounding for the recognized formulas). What
only fp16 needs (integer sums scaled before they are summed) is ane-fp16's, so the float32 graph
stays the import's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from anec.builder import RewriteBuilder
from anec.dialects import ane
from anec.dialects.ane import as_tuple, element_type_of, shape_of
from anec.lowering.rewriting import constant_of, prune_weights, scalar_of, single_user
from anec.targets import Target, get_target
from anec.types import numpy_dtype


def _close(value: float | None, expected: float, rel: float = 1e-3) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=rel)


def _owner(value: SSAValue, cls: type[ane.IRDLOperation]):
    return value.owner if isinstance(value.owner, cls) else None


def product_factors(value: SSAValue, root: bool = True) -> list[SSAValue]:
    """The factors of a tree of `ane.mul`s; inner products must have no other use."""
    op = value.owner
    if isinstance(op, ane.MulOp) and (root or value.has_one_use()):
        return product_factors(op.lhs, False) + product_factors(op.rhs, False)
    return [value]


def _is_inner_product(op: ane.MulOp) -> bool:
    """True when a larger product contains `op` (the pattern then matches at the outer mul)."""
    user = single_user(op.result)
    return isinstance(user, ane.MulOp)


def _split_scalar(factors: list[SSAValue]) -> tuple[float, list[SSAValue]]:
    """Multiply the constant scalar factors together; returns (coefficient, the other factors)."""
    coefficient, rest = 1.0, []
    for f in factors:
        s = scalar_of(f)
        if s is not None:
            coefficient *= s
        else:
            rest.append(f)
    return coefficient, rest


def _one_plus(value: SSAValue, cls: type[ane.UnaryOp]) -> SSAValue | None:
    """If `value` is `1 + cls(arg)` (either operand order), the `arg`."""
    add = _owner(value, ane.AddOp)
    if add is None:
        return None
    for one, other in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        if _close(scalar_of(one), 1.0) and isinstance(other.owner, cls):
            return other.owner.input
    return None


def _scaled(value: SSAValue) -> tuple[float, SSAValue] | None:
    """If `value` is `x * c` or `x / c` with a scalar constant c, (the factor, x)."""
    if (div := _owner(value, ane.DivOp)) is not None and (c := scalar_of(div.rhs)) not in (None, 0.0):
        return 1.0 / c, div.lhs
    coefficient, rest = _split_scalar(product_factors(value))
    return (coefficient, rest[0]) if len(rest) == 1 and coefficient != 1.0 else None


def _is_cube_of(value: SSAValue, x: SSAValue) -> bool:
    if (pow_op := _owner(value, ane.PowOp)) is not None:
        return pow_op.lhs is x and _close(scalar_of(pow_op.rhs), 3.0)
    factors = product_factors(value)
    return len(factors) == 3 and all(f is x for f in factors)


def _tanh_gelu_input(arg: SSAValue) -> SSAValue | None:
    """If `arg` is sqrt(2/pi) * (x + 0.044715 x^3), the x."""
    scaled = _scaled(arg)
    if scaled is None or not _close(scaled[0], math.sqrt(2 / math.pi)):
        return None
    add = _owner(scaled[1], ane.AddOp)
    if add is None:
        return None
    for x, cubic in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        coefficient, rest = _split_scalar(product_factors(cubic))
        if _close(coefficient, 0.044715) and (
            (len(rest) == 1 and _is_cube_of(rest[0], x)) or (len(rest) == 3 and all(f is x for f in rest))
        ):
            return x
    return None


class FuseGelu(RewritePattern):
    """0.5·x·(1 + erf(x/√2)) and 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) → ane.gelu."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MulOp, rewriter: PatternRewriter) -> None:
        if _is_inner_product(op):
            return
        coefficient, factors = _split_scalar(product_factors(op.result))
        if len(factors) != 2 or not _close(coefficient, 0.5):
            return
        for x, bracket in ((factors[0], factors[1]), (factors[1], factors[0])):
            if (arg := _one_plus(bracket, ane.ErfOp)) is not None:
                scaled = _scaled(arg)
                if scaled is not None and scaled[1] is x and _close(scaled[0], 1 / math.sqrt(2)):
                    RewriteBuilder(op, rewriter).replace(ane.GeluOp(x, "none"))
                    return
            if (arg := _one_plus(bracket, ane.TanhOp)) is not None and _tanh_gelu_input(arg) is x:
                RewriteBuilder(op, rewriter).replace(ane.GeluOp(x, "tanh"))
                return


def _single_axis(op: ane.ReduceOp) -> int | None:
    axes = as_tuple(op.axes)
    return axes[0] if len(axes) == 1 and op.keepdims.value.data else None


class RaiseSoftmax(RewritePattern):
    """exp(x - max(x)) / sum(exp(x - max(x))) over one axis → ane.softmax."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.DivOp, rewriter: PatternRewriter) -> None:
        exp, total = _owner(op.lhs, ane.ExpOp), _owner(op.rhs, ane.ReduceSumOp)
        if exp is None or total is None or total.input is not op.lhs or (axis := _single_axis(total)) is None:
            return
        sub = _owner(exp.input, ane.SubOp)
        peak = _owner(sub.rhs, ane.ReduceMaxOp) if sub is not None else None
        if peak is not None and peak.input is sub.lhs and _single_axis(peak) == axis:
            RewriteBuilder(op, rewriter).replace(ane.SoftmaxOp(sub.lhs, axis))


def _mean_axis(value: SSAValue) -> tuple[int, SSAValue] | None:
    mean = _owner(value, ane.ReduceMeanOp)
    if mean is None or (axis := _single_axis(mean)) is None:
        return None
    return axis, mean.input


def _affine(value: SSAValue, cls: type[ane.BinaryOp], shape: tuple[int, ...], axis: int) -> tuple[SSAValue, np.ndarray] | None:
    """If the only user of `value` is `value (op) c` with c constant along `axis`: (result, c as [C])."""
    user = single_user(value)
    if not isinstance(user, cls):
        return None
    other = user.rhs if user.lhs is value else user.lhs
    if cls is ane.SubOp and other is user.lhs:
        return None
    array = constant_of(other)
    if array is None or array.ndim != len(shape) or any(d != 1 for i, d in enumerate(array.shape) if i != axis):
        return None
    return user.result, np.broadcast_to(array, [shape[axis] if i == axis else 1 for i in range(len(shape))]).reshape(-1)


class RaiseLayerNorm(RewritePattern):
    """(x - mean(x)) / sqrt(mean((x - mean(x))²) + eps) [· γ + β] over one axis → ane.layer_norm."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.SubOp, rewriter: PatternRewriter) -> None:
        if (mean := _mean_axis(op.rhs)) is None or mean[1] is not op.lhs:
            return
        axis, x = mean
        centered = op.result
        divide = next((u for u in (use.operation for use in centered.uses) if isinstance(u, ane.DivOp) and u.lhs is centered), None)
        if divide is None or (root := _owner(divide.rhs, ane.SqrtOp)) is None or (shifted := _owner(root.input, ane.AddOp)) is None:
            return
        eps = next((scalar_of(v) for v in (shifted.lhs, shifted.rhs) if scalar_of(v) is not None), None)
        var = next((v for v in (shifted.lhs, shifted.rhs) if scalar_of(v) is None), None)
        if eps is None or var is None or (v_mean := _mean_axis(var)) is None or v_mean[0] != axis:
            return
        square = v_mean[1]
        is_square = (isinstance(square.owner, ane.MulOp) and square.owner.lhs is centered and square.owner.rhs is centered) or (
            isinstance(square.owner, ane.PowOp) and square.owner.lhs is centered and _close(scalar_of(square.owner.rhs), 2.0))
        if not is_square:
            return
        shape = shape_of(x)
        result: SSAValue = divide.result
        scale, bias = np.ones(shape[axis], np.float32), np.zeros(shape[axis], np.float32)
        if (scaled := _affine(result, ane.MulOp, shape, axis)) is not None:
            result, scale = scaled
        if (shifted_out := _affine(result, ane.AddOp, shape, axis)) is not None:
            result, bias = shifted_out
        last = result.owner
        assert isinstance(last, Operation), "the division and _affine's matches are op results"
        build = RewriteBuilder(last, rewriter)
        norm = ane.LayerNormOp(x, build.constant(scale, x), build.constant(bias, x), axes=[axis], epsilon=float(eps))
        build.replace(norm)


class SplitMaskedAttention(RewritePattern):
    """sdpa with a mask → matmul, + mask, softmax, matmul: the ANE's fused attention ignores masks."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.SdpaOp, rewriter: PatternRewriter) -> None:
        if op.mask is None:
            return
        build = RewriteBuilder(op, rewriter)
        rank = len(shape_of(op.query))
        query = build.add(ane.MulOp(op.query, build.scalar(op.scale.value.data, op.query)), "scale")
        scores = build.add(ane.MatmulOp(query, op.key, transpose_rhs=True), "scores")
        masked = build.add(ane.AddOp(scores, op.mask), "mask")
        probs = build.add(ane.SoftmaxOp(masked, rank - 1), "softmax")
        build.replace(build.add(ane.MatmulOp(probs, op.value), "context"))


class KeepReducedDims(RewritePattern):
    """Reductions keep their reduced axes (size 1), then reshape: the ANE's reductions keep rank.
    (Arg-reductions are left alone: reshaping their integer indices would leave the ANE.)"""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.ReduceOp, rewriter: PatternRewriter) -> None:
        if op.keepdims.value.data:
            return
        build = RewriteBuilder(op, rewriter)
        kept = build.add(type(op)(op.input, as_tuple(op.axes), keepdims=True))
        build.replace(build.reshape(kept, shape_of(op.result)))


@dataclass(frozen=True)
class SplitWideReduction(RewritePattern):
    """A reduction over more axes than one task reduces becomes two nested reductions (exact for
    sum, mean, max, min, L2 and log-sum-exp)."""

    target: Target

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.ReduceOp, rewriter: PatternRewriter) -> None:
        axes, limit = as_tuple(op.axes), self.target.limits.max_reduce_axes.value
        if len(axes) <= limit or not op.keepdims.value.data:
            return
        build = RewriteBuilder(op, rewriter)
        inner = build.add(type(op)(op.input, axes[:limit], keepdims=True), "inner")
        build.replace(type(op)(inner, axes[limit:], keepdims=True))


class FoldMatmulDepth(RewritePattern):
    """A rank-5 matmul [N, D, C, M, K] folds D into the batch axes; the ANE needs D = 1."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MatmulOp, rewriter: PatternRewriter) -> None:
        a, b = shape_of(op.lhs), shape_of(op.rhs)
        if len(a) != 5 or (a[1] == 1 and b[1] == 1) or a[:3] != b[:3]:
            return
        build = RewriteBuilder(op, rewriter)
        fold = lambda v: build.reshape(v, (shape_of(v)[0] * shape_of(v)[1], *shape_of(v)[2:]))  # noqa: E731
        lhs, rhs = fold(op.lhs), fold(op.rhs)
        folded = ane.MatmulOp(lhs, rhs, op.bias, transpose_lhs=op.flags()[0], transpose_rhs=op.flags()[1])
        if op.activation is not None:
            folded.set_activation(op.activation.data, as_tuple(op.activation_params))
        build.replace(build.reshape(build.add(folded), shape_of(op.result)))


class PadChannelsByConcat(RewritePattern):
    """Constant padding of N/C axes (which the ANE cannot pad) becomes a concat with filled blocks."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.PadOp, rewriter: PatternRewriter) -> None:
        pads, n = list(as_tuple(op.pads)), len(shape_of(op.input))
        outer = [i for i in range(max(n - 2, 0)) if pads[i] or pads[n + i]]
        if not outer or op.mode.data != "constant":
            return
        build = RewriteBuilder(op, rewriter)
        x = op.input
        for axis in outer:
            pieces = []
            for size in (pads[axis], None, pads[n + axis]):
                if size is None:
                    pieces.append(x)
                elif size:
                    shape = list(shape_of(x))
                    shape[axis] = size
                    fill = build.constant(np.full((1,) * n, op.value.value.data), x)
                    pieces.append(build.add(ane.BroadcastOp(fill, shape), "fill"))
            x = build.add(ane.ConcatOp(pieces, axis), "concat")
            pads[axis] = pads[n + axis] = 0
        rest = build.add(ane.PadOp(x, pads, "constant", op.value.value.data)) if any(pads) else x
        build.replace(rest)


INTEGRAL = (ane.RoundOp, ane.FloorOp, ane.CeilOp)
"""Ops whose float results are integers."""


class DropIntegerRoundTrip(RewritePattern):
    """A float that is an integer already (a round, floor or ceil), cast to a 32- or 64-bit integer and
    back, through reshapes: the float itself, reshaped. quantize_dynamic's bias is `Cast(Floor(b / s),
    int32)`, added to the int32 sums and cast back; integer tensors never reach the ANE, so the bias would
    split the sums from their scale. Exact wherever the integer cast is defined (below 2^31)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.CastOp, rewriter: PatternRewriter) -> None:
        value = op.input
        while isinstance(value.owner, ane.ReshapeOp):
            value = value.owner.input
        to_integer = value.owner
        if (not isinstance(to_integer, ane.CastOp) or not isinstance(to_integer.input.owner, INTEGRAL)
                or numpy_dtype(element_type_of(value)) not in (np.int32, np.int64)
                or element_type_of(to_integer.input) != element_type_of(op.result)):
            return
        build = RewriteBuilder(op, rewriter)
        build.replace(build.reshape(to_integer.input, shape_of(op.result)))


@dataclass(frozen=True)
class ExplicitPoolPadding(RewritePattern):
    """Pool padding beyond the hardware's limit moves into an explicit pad (max: -inf fill)."""

    target: Target

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MaxPoolOp, rewriter: PatternRewriter) -> None:
        pads = as_tuple(op.pads)
        if max(pads, default=0) <= self.target.limits.max_pad.value:
            return
        build = RewriteBuilder(op, rewriter)
        n, k = len(shape_of(op.input)), len(pads) // 2
        full = [0] * (n - k) + list(pads[:k]) + [0] * (n - k) + list(pads[k:])
        padded = build.add(ane.PadOp(op.input, full, "constant", float("-inf")), "pad")
        build.replace(ane.MaxPoolOp(padded, as_tuple(op.kernel), as_tuple(op.strides)))


PATTERNS: tuple[Callable[[Target], RewritePattern], ...] = (
    lambda t: DropIntegerRoundTrip(),
    lambda t: FuseGelu(),
    lambda t: RaiseSoftmax(),
    lambda t: RaiseLayerNorm(),
    lambda t: SplitMaskedAttention(),
    lambda t: KeepReducedDims(),
    SplitWideReduction,
    lambda t: FoldMatmulDepth(),
    lambda t: PadChannelsByConcat(),
    ExplicitPoolPadding,
)
"""Every legalization, each built for the target (some limits differ per chip)."""


@dataclass(frozen=True)
class LegalizePass(ModulePass):
    name = "ane-legalize"

    target: str = "m1"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        patterns: list[RewritePattern] = [make(target) for make in PATTERNS]
        PatternRewriteWalker(GreedyRewritePatternApplier(patterns)).rewrite_module(op)
        prune_weights(op)

