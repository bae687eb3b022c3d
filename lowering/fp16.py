"""ane-fp16: ANE segments compute in fp16; what fp16 cannot hold is fixed where safe, else reported.

The ANE stores every tensor as fp16 (largest finite value 65504) and its MAC output port saturates
at 2^15. This pass

1. lints the graph statically: normalization epsilons below 1e-7 (they vanish in fp16), softmax and
   log-sum-exp written without subtracting the maximum (exp overflows past x ≈ 11), masks of -inf or
   of float32's lowest value, constants beyond 65504;
2. always (no samples needed) bounds every tensor by interval arithmetic from the input ranges (`input_ranges`,
   else the dtype's range for 8-bit and bool inputs, the table's for index inputs, else [-1, 1]) and the
   actual weights (`anec.lowering.fp16_ranges`), and flags by op overflow past 65504, MAC sums past
   2^15, reductions whose running sums can pass 65504, and divisors or log inputs that can round to
   zero — each *proven* (every input in range, or a witness input drawn from the ranges, reaches it)
   or *possible* (the bound passes the limit by at most 4×; looser bounds are not reported);
3. with sample inputs (`example_inputs`, or `calibrate` for seeded random ones) runs the graph in
   float32 and flags tensors above 65504 and conv/matmul outputs above 2^15, by op name;
4. applies the safe fixes (scale integer sums before they are summed, `anec.lowering.integer_sums`;
   raise the epsilon, subtract the maximum, make masks finite at -1e4; with samples, compute a sum
   or mean that overflows scaled down by a power of two and scale it back where it fits again, see
   `rescale_sums`) and records each as `ane.fp16_fixes` on the op concerned; the rest become
   `ane.fp16_warnings`;
5. converts every `ane.segment` to f16, with `ane.cast` only at the segment's edges, and spells
   `ane.round` (which the ANE has no neuron for) in fp16 adds that round half to even, `ane.floor`
   and `ane.ceil` as that rounding and a one-step correction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import Float32Type, FloatAttr, ModuleOp, f16, f32, f64
from xdsl.ir import Block, Operation, SSAValue, Use
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriteWalker
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.transforms.dead_code_elimination import dce

from anec.builder import RewriteBuilder
from anec.dialects import ane
from anec.dialects.ane import as_tuple, float_attr, shape_of, tensor
from anec.dialects.discardable import (
    FP16_FIXES_ATTR,
    FP16_PEAK_ATTR,
    FP16_WARNINGS_ATTR,
    append_note,
    name_of,
)
from anec.errors import AnecError
from anec.interpreter import entry_function, input_names, interpret
from anec.lowering.fp16_attribution import Reference, attribute
from anec.lowering.fp16_ranges import flag_ranges
from anec.lowering.integer_sums import ScaleIntoMac
from anec.lowering.rewriting import (
    ane_blocks,
    constant_of,
    prune_weights,
    scalar_of,
    segments,
    users,
)
from anec.targets import Target, get_target
from anec.types import numpy_dtype
from anec.weights import make_const, store_of

MIN_EPSILON = 1e-7
"""Apple's fp16 guidance: epsilons below 1e-7 round away next to fp16 variances."""
MASK_VALUE = -1e4
"""A finite 'minus infinity' for additive masks: exp(-1e4 - max) is 0 in fp16, and sums of a few
such masks stay finite."""

_MAC_OPS = (ane.ConvOp, ane.ConvTransposeOp, ane.MatmulOp)


def fix(op: Operation, note: str) -> None:
    append_note(op, FP16_FIXES_ATTR, note)


def warn(op: Operation, note: str) -> None:
    append_note(op, FP16_WARNINGS_ATTR, note)


# ------------------------------------------------------------------------------------------------
# Static lint and safe fixes
# ------------------------------------------------------------------------------------------------


def scale_integer_sums(block: Block) -> None:
    """Integer sums scaled before they are summed (`anec.lowering.integer_sums`): fp16 cannot hold the
    sums. Here, not in ane-legalize: the re-association changes float32 results by rounding, which a
    model that requantizes layer after layer (ddddocr's 21 `DynamicQuantizeLinear`s) amplifies; only
    what runs in fp16 takes it."""
    region = block.parent
    assert region is not None, "an ANE block belongs to a segment or a function"
    PatternRewriteWalker(ScaleIntoMac()).rewrite_region(region)


def raise_epsilons(block: Block) -> None:
    for op in block.ops:
        if isinstance(op, ane.NormOp) and 0 <= (eps := op.epsilon.value.data) < MIN_EPSILON:
            op.properties["epsilon"] = float_attr(MIN_EPSILON)
            fix(op, f"epsilon {eps:.0e} raised to {MIN_EPSILON:.0e}: smaller values vanish next to fp16 variances")


def _max_subtracted(x: SSAValue) -> bool:
    """Is `x` of the form y - max(y)?"""
    sub = x.owner
    return isinstance(sub, ane.SubOp) and isinstance(peak := sub.rhs.owner, ane.ReduceMaxOp) and peak.input is sub.lhs


def _unsubtracted_softmax(op: Operation) -> tuple[SSAValue, int] | None:
    """exp(x) / sum(exp(x)) along one axis, x not already max-subtracted: (x, axis)."""
    if not isinstance(op, ane.DivOp) or not isinstance(exp := op.lhs.owner, ane.ExpOp) or _max_subtracted(exp.input):
        return None
    total = op.rhs.owner
    if not isinstance(total, ane.ReduceSumOp) or total.input is not op.lhs or len(as_tuple(total.axes)) != 1:
        return None
    return exp.input, as_tuple(total.axes)[0]


def _unsubtracted_logsumexp(op: Operation) -> tuple[SSAValue, Sequence[int]] | None:
    """log(sum(exp(x))) or ane.reduce_logsumexp: (x, axes)."""
    if isinstance(op, ane.ReduceLogSumExpOp):
        return op.input, as_tuple(op.axes)
    if (isinstance(op, ane.LogOp) and isinstance(total := op.input.owner, ane.ReduceSumOp)
            and isinstance(exp := total.input.owner, ane.ExpOp) and not _max_subtracted(exp.input)):
        return exp.input, as_tuple(total.axes)
    return None


def subtract_maxima(block: Block) -> None:
    """Softmax and log-sum-exp without max subtraction overflow fp16: rewrite them with it."""
    for op in list(block.ops):
        if (found := _unsubtracted_softmax(op)) is not None:
            x, axis = found
            build = RewriteBuilder(op)
            softmax = build.insert(ane.SoftmaxOp(x, axis))
            fix(softmax, "softmax written as exp(x)/sum(exp(x)) overflows fp16 above x = 11; computed with max subtraction")
            build.replace(softmax.result)
        elif (found_lse := _unsubtracted_logsumexp(op)) is not None:
            x, axes = found_lse
            build = RewriteBuilder(op)
            peak = build.add(ane.ReduceMaxOp(x, axes), "max")
            total = build.add(ane.ReduceSumOp(build.add(ane.ExpOp(build.add(ane.SubOp(x, peak), "shift")), "exp"), axes), "sum")
            out = build.insert(ane.AddOp(build.add(ane.LogOp(total), "log"), peak))
            fix(out, "log-sum-exp without max subtraction overflows fp16 above x = 11; the maximum is subtracted first")
            build.replace(build.reshape(out.result, shape_of(op.results[0])))


_MASK_PATH = (ane.AddOp, ane.SubOp, ane.MulOp, ane.SelectOp, ane.BroadcastOp, ane.ReshapeOp, ane.TransposeOp, ane.TileOp,
              ane.SliceOp, ane.ConcatOp, ane.CastOp, ane.NegOp, ane.MinOp, ane.MaxOp)


def mask_uses(value: SSAValue) -> tuple[list[ane.SoftmaxOp], bool]:
    """(the softmaxes `value` reaches through additive-mask arithmetic and data movement, whether
    the model also inspects the mask values themselves: compares or reduces them)."""
    seen: set[int] = set()
    found: list[ane.SoftmaxOp] = []
    inspected = False
    todo = [value]
    while todo:
        v = todo.pop()
        for user in users(v):
            if isinstance(user, ane.SoftmaxOp):
                found.append(user)
            elif isinstance(user, ane.CompareOp | ane.ReduceOp):
                inspected = True
            elif isinstance(user, _MASK_PATH) and id(user) not in seen:
                seen.add(id(user))
                todo.extend(user.results)
    return found, inspected


def _nan_guarded(softmax: ane.SoftmaxOp) -> bool:
    """Does the model replace NaN probabilities (rows masked entirely with -inf) itself?"""
    return any(isinstance(u, ane.NotEqualOp) and u.lhs is u.rhs for u in users(softmax.result))


def finite_masks_and_constants(block: Block, fp16_max: float) -> None:
    """Constants beyond fp16's range. Masks of a softmax become a finite -1e4: exact for finite
    values (float32's lowest is -inf in fp16), and for -inf it keeps every row that is not masked
    entirely — unless the model handles such rows itself (compares the mask, or replaces the NaN
    of the softmax), then -inf stays (a warning).
    Any other constant beyond the range is a warning."""
    for op in list(block.ops):
        if not isinstance(op, ane.ConstOp) or (array := constant_of(op.result)) is None or array.dtype.kind != "f":
            continue
        big = ~np.isfinite(array) | (np.abs(array) > fp16_max)
        if not big.any():
            continue
        worst = float(array[big].flat[0])
        softmaxes, inspected = mask_uses(op.result)
        guarded = np.isinf(array[big]).any() and (inspected or any(_nan_guarded(s) for s in softmaxes))
        if softmaxes and (array[big] < 0).all() and not guarded:
            build = RewriteBuilder(op)
            masked = build.constant(np.where(big, MASK_VALUE, array).astype(array.dtype), op.result, "finite")
            for user in users(op.result):
                fix(user, f"mask value {worst:.3g} is not finite in fp16; replaced by {MASK_VALUE:g}")
            op.result.replace_all_uses_with(masked)
            op.detach()
            op.erase()
        elif softmaxes and guarded:
            for user in users(op.result):
                warn(user, f"mask value {worst:.3g} kept: the model handles fully masked rows itself, "
                           "but the ANE turns their NaN into +inf")
        else:
            for user in users(op.result):
                warn(user, f"constant operand holds {worst:.3g}, beyond the fp16 range (max {fp16_max:g})")


# ------------------------------------------------------------------------------------------------
# Calibration: an f32 run over sample inputs
# ------------------------------------------------------------------------------------------------


@dataclass
class Ranges:
    """Largest finite magnitude and whether a non-finite value was seen, per op."""

    peak: dict[int, float] = field(default_factory=dict)
    nonfinite: set[int] = field(default_factory=set)

    def observe(self, op: Operation, outs: list[np.ndarray]) -> None:
        for x in outs:
            if x.dtype.kind != "f" or x.size == 0:
                continue
            finite = np.isfinite(x)
            if not finite.all():
                self.nonfinite.add(id(op))
            if finite.any():
                self.peak[id(op)] = max(self.peak.get(id(op), 0.0), float(np.abs(x[finite]).max()))


def sample_inputs(module: ModuleOp, given: Any, synthesize: bool) -> Sequence[np.ndarray] | Mapping[str, np.ndarray] | None:
    """The inputs to calibrate with: the given ones, seeded random ones, or None."""
    if given is not None:
        if isinstance(given, Mapping):
            samples = {k: np.asarray(v) for k, v in given.items()}
            check_samples(module, samples)
            return samples
        return [np.asarray(v) for v in (given if isinstance(given, Sequence) else [given])]
    if not synthesize:
        return None
    rng = np.random.default_rng(0)
    out = []
    for arg in entry_function(module).args:
        dtype = numpy_dtype(ane.element_type_of(arg))
        shape = shape_of(arg)
        out.append(rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype))
    return out


def check_samples(module: ModuleOp, samples: Mapping[str, np.ndarray]) -> None:
    """One sample per model input, named and shaped as the model's: else a one-line error saying which."""
    fn = entry_function(module)
    shapes = {name: shape_of(arg) for name, arg in zip(input_names(fn), fn.args)}
    hint = f"the model's inputs: {', '.join(f'{n} {list(s)}' for n, s in shapes.items())}"
    if missing := sorted(set(shapes) - set(samples)):
        raise AnecError(f"example inputs lack {', '.join(map(repr, missing))}", why="every model input needs a sample", hint=hint)
    if extra := sorted(set(samples) - set(shapes)):
        raise AnecError(f"example inputs name {', '.join(map(repr, extra))}, which the model has no input of", hint=hint)
    for name, shape in shapes.items():
        if tuple(samples[name].shape) != tuple(shape):
            raise AnecError(f"example input {name!r} has shape {list(samples[name].shape)}, the model's input {list(shape)}", hint=hint)


def calibrate(module: ModuleOp, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], blocks: list[Block], target: Target,
              reference: Reference) -> None:
    """Run in float32 and flag, by op, values fp16 cannot hold and MAC outputs past the port's limit;
    keep every op's float32 output in `reference` for the error attribution after retyping."""
    ranges = Ranges()

    def observe(op: Operation, outs: list[np.ndarray]) -> None:
        ranges.observe(op, outs)
        reference.observe(op, outs)

    interpret(module, inputs, precision="f32", segments="f32", observe=observe)
    fp16_max, mac_limit = target.numerics.fp16_max.value, target.numerics.mac_saturation.value
    for block in blocks:
        rescale_sums(block, ranges, reference, fp16_max)
    fn = entry_function(module)
    arg_peaks: dict[SSAValue, float] = {arg: float(np.abs(np.asarray(x, np.float64)).max(initial=0.0)) for arg, x in _bound(module, inputs)}
    names: dict[SSAValue, str] = dict(zip(fn.args, input_names(fn)))
    for segment in segments(module):
        for outer, inner in zip(segment.inputs, segment.body.block.args):
            owner = outer.owner
            peak = ranges.peak.get(id(owner), 0.0) if isinstance(owner, Operation) else arg_peaks.get(outer, 0.0)
            if peak > fp16_max:
                source = name_of(owner) if isinstance(owner, Operation) else f"input {names.get(outer, '?')!r}"
                for user in users(inner):
                    warn(user, f"{source} reaches {peak:.3g} on the sample inputs, above fp16's {fp16_max:g} (inf in the ANE)")
    for block in blocks:
        for op in block.ops:
            if isinstance(op, ane.ConstOp | ane.YieldOp):
                continue
            peak = ranges.peak.get(id(op), 0.0)
            if id(op) in ranges.peak:  # the report's fp16 range column
                op.attributes[FP16_PEAK_ATTR] = FloatAttr(peak, f64)
            if isinstance(op, _MAC_OPS) and peak >= mac_limit:
                warn(op, f"output reaches {peak:.3g} on the sample inputs, past the MAC port's limit of {mac_limit:g} (saturates)")
            elif peak > fp16_max:
                warn(op, f"output reaches {peak:.3g} on the sample inputs, above fp16's {fp16_max:g} (becomes inf)")
            if id(op) in ranges.nonfinite:
                warn(op, "produces inf or NaN on the sample inputs")


# ------------------------------------------------------------------------------------------------
# Exact rescaling of sums that overflow
# ------------------------------------------------------------------------------------------------


SUM_HEADROOM = 2.0**14
"""A rescaled sum is brought below this, a quarter of fp16's range, for inputs beyond the samples'."""


def rescale_sums(block: Block, ranges: Ranges, reference: Reference, fp16_max: float) -> None:
    """A sum or mean whose input or result exceeds fp16's range on the samples, and whose value is
    in range again where it is used (a mean, a sum scaled by a constant, a mean of squares), is
    computed on its input scaled by 2^-k and scaled back by 2^k after: the variance/LayerNorm
    overflow fix. Powers of two are exact in binary arithmetic, so the result is bit for bit the
    unscaled one wherever that one did not overflow (only addends below 2^(k-14), which fp16 holds
    as subnormals, lose bits: at most N·2^(k-14) against a sum that overflowed 2^16).

    The scale goes in at the cheapest exact place: into the constant of `x · c`, on the operand of
    a square `x · x` or `x ^ 2` (2^-k/2 each), else as a multiply of the input (when the input fits); it comes
    back out in the constant of a `· c` or `/ c` that uses the sum, else as a multiply after it
    (when the true sum fits)."""
    for op in list(block.ops):
        if not isinstance(op, ane.ReduceSumOp | ane.ReduceMeanOp):
            continue
        source, total = op.input, ranges.peak.get(id(op), 0.0)
        addends = ranges.peak.get(id(source.owner), 0.0) if isinstance(source.owner, Operation) else 0.0
        if max(addends, total) <= fp16_max:
            continue
        squared = _is_square(source)
        k = max(1, math.ceil(math.log2(max(addends, total) / SUM_HEADROOM)))
        k += k % 2 if squared else 0
        back = _scale_back(op, 2.0**k, ranges, total, fp16_max)
        if back is None:
            continue
        scaled = _scaled_down(op, source, 2.0**-k, squared, addends <= fp16_max)
        if scaled is None:
            continue
        op.operands = [scaled]
        back()
        ranges.peak[id(op)] = total * 2.0**-k
        reference.values.pop(op, None)  # its output is scaled now: no longer float32's
        if isinstance(source.owner, Operation) and not source.uses:
            ranges.peak.pop(id(source.owner), None)
            reference.values.pop(source.owner, None)
            source.owner.detach()
            source.owner.erase()
        fix(op, f"{'addends reach' if addends > fp16_max else 'result reaches'} {max(addends, total):.3g} on the sample inputs, "
                f"beyond fp16's {fp16_max:g}: summed scaled by 2^-{k} and scaled back after (exact: powers of two)")


def _is_square(value: SSAValue) -> bool:
    """x · x or x ^ 2."""
    op = value.owner
    return (isinstance(op, ane.MulOp) and op.lhs is op.rhs) or (isinstance(op, ane.PowOp) and scalar_of(op.rhs) == 2.0)


def _exactly_scaled(value: SSAValue, factor: float) -> np.ndarray | None:
    """The constant `value` times `factor` when that is exact in fp16 (no under- or overflow)."""
    array = constant_of(value)
    if array is None or array.dtype.kind != "f":
        return None
    scaled = array.astype(np.float64) * factor
    with np.errstate(over="ignore", under="ignore"):
        exact = np.array_equal(scaled.astype(np.float16).astype(np.float64) / factor, array.astype(np.float16).astype(np.float64))
    return scaled.astype(array.dtype) if exact and np.all(np.isfinite(scaled.astype(np.float16))) else None


def _scaled_down(reduction: Operation, source: SSAValue, factor: float, squared: bool, fits: bool) -> SSAValue | None:
    """`source` times `factor`, computed without `source` itself (which may overflow)."""
    producer = source.owner
    if squared:
        assert isinstance(producer, ane.MulOp | ane.PowOp)
        build = RewriteBuilder(producer)
        half = build.add(ane.MulOp(producer.lhs, build.scalar(math.sqrt(factor), producer.lhs)), "scaled")
        return build.add(ane.MulOp(half, half), "scaled_square")
    if isinstance(producer, ane.MulOp):
        for x, c in ((producer.lhs, producer.rhs), (producer.rhs, producer.lhs)):
            if (scaled := _exactly_scaled(c, factor)) is not None:
                build = RewriteBuilder(producer)
                return build.add(ane.MulOp(x, build.constant(scaled, c)) if x is producer.lhs else ane.MulOp(build.constant(scaled, c), x), "scaled")
    if fits:
        build = RewriteBuilder(reduction)
        return build.add(ane.MulOp(source, build.scalar(factor, source)), "scale_down")
    return None


def _scale_back(reduction: Operation, factor: float, ranges: Ranges, total: float, fp16_max: float) -> Callable[[], None] | None:
    """How to undo the scaling where the sum is used, or None when nowhere keeps it within fp16."""
    result = reduction.results[0]
    found = users(result)
    user = found[0] if len(found) == 1 else None
    if isinstance(user, ane.MulOp | ane.DivOp) and ranges.peak.get(id(user), math.inf) <= fp16_max:
        index = 1 if user.lhs is result else 0
        if isinstance(user, ane.MulOp) or index == 1:
            constant = user.operands[index]
            scaled = _exactly_scaled(constant, factor if isinstance(user, ane.MulOp) else 1 / factor)
            if scaled is not None:
                def fold() -> None:
                    user.operands = [*user.operands[:index], RewriteBuilder(user).constant(scaled, constant, "rescaled"), *user.operands[index + 1:]]
                return fold
    if total <= fp16_max:
        def multiply() -> None:
            assert reduction.next_op is not None  # a block ends with its terminator
            build = RewriteBuilder(reduction.next_op, name=name_of(reduction))
            restored = build.add(ane.MulOp(result, build.scalar(factor, result)), "scale_back")
            result.replace_uses_with_if(restored, lambda use: use.operation is not restored.owner)
        return multiply
    return None


def _bound(module: ModuleOp, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[tuple[SSAValue, np.ndarray]]:
    fn = entry_function(module)
    if isinstance(inputs, Mapping):
        return [(arg, inputs[name]) for arg, name in zip(fn.args, input_names(fn)) if name in inputs]
    return list(zip(fn.args, inputs))


# ------------------------------------------------------------------------------------------------
# Conversion to f16
# ------------------------------------------------------------------------------------------------


def _is_f32(value: SSAValue) -> bool:
    return isinstance(getattr(value.type, "element_type", None), Float32Type)


def _not_used_by(op: Operation) -> Callable[[Use], bool]:
    return lambda use: use.operation is not op


def to_f16(segment: ane.SegmentOp, converted: dict[str, str]) -> None:
    """Retype the segment's body to f16; cast its f32 inputs and results at the edges."""
    block = segment.body.block
    first = block.first_op
    assert first is not None, "a verified ane.segment ends with ane.yield"
    for arg, outer in zip(block.args, segment.inputs):
        if _is_f32(arg) and arg.uses:
            cast = ane.CastOp(arg, f16)
            RewriteBuilder(first, name=f"{name_of(outer.owner) if isinstance(outer.owner, Operation) else 'input'}#to_f16").insert(cast)
            arg.replace_uses_with_if(cast.result, _not_used_by(cast))
    for op in list(block.ops):
        if isinstance(op, ane.ConstOp) and _is_f32(op.result):
            _const_to_f16(op, converted)
        elif not isinstance(op, ane.YieldOp):
            for r in op.results:
                if _is_f32(r):
                    Rewriter.replace_value_with_new_type(r, tensor(shape_of(r), f16))
    terminator = block.last_op
    assert isinstance(terminator, ane.YieldOp)
    for i, v in enumerate(list(terminator.values)):
        if _is_f32(segment.outputs[i]) and not _is_f32(v):
            cast = ane.CastOp(v, f32)
            RewriteBuilder(terminator, name=f"{name_of(v.owner) if isinstance(v.owner, Operation) else 'input'}#to_f32").insert(cast)
            terminator.operands = [*terminator.operands[:i], cast.result, *terminator.operands[i + 1:]]
    _drop_identity_casts(block)
    for op in list(block.ops):
        if isinstance(op, ane.FloorOp | ane.CeilOp):
            op = expand_floor(op)
        if isinstance(op, ane.RoundOp):
            expand_round(op)


ROUNDING_SHIFT = 1536.0
"""1.5 · 2^10: fp16's spacing is one on [1024, 2048), so `(x + 1536) - 1536` is x rounded half to even
(the ANE's rounding) for |x| < 512."""
INTEGERS_FROM = 1024.0
"""2^10: every fp16 number of this magnitude or more is an integer."""


def _clamped_within(value: SSAValue, bound: float) -> bool:
    owner = value.owner
    return isinstance(owner, ane.ClampOp) and max(abs(p) for p in owner.param_values()) < bound


def expand_round(op: ane.RoundOp) -> None:
    """`ane.round` in fp16 adds, whose round-half-to-even rounds. A clamp within ±512 before it (what
    QuantizeLinear imports to) needs one shift, `(x + 1536) - 1536`; any other input is rounded on its
    magnitude a = |x|, whole range: m = min(a, 1024), `((m + 1024) - 1024) + (a - m)` (the last
    difference is exact, and nonzero only where a is already an integer), times sign(x)."""
    build = RewriteBuilder(op)
    x = op.input
    if _clamped_within(x, ROUNDING_SHIFT / 3):
        shifted = build.add(ane.AddOp(x, build.scalar(ROUNDING_SHIFT, x)), "shift")
        build.replace(ane.SubOp(shifted, build.scalar(ROUNDING_SHIFT, x)))
        return
    magnitude = build.add(ane.AbsOp(x), "abs")
    low = build.add(ane.MinOp(magnitude, build.scalar(INTEGERS_FROM, x)), "low")
    shifted = build.add(ane.AddOp(low, build.scalar(INTEGERS_FROM, x)), "shift")
    rounded = build.add(ane.SubOp(shifted, build.scalar(INTEGERS_FROM, x)), "rounded")
    whole = build.add(ane.AddOp(rounded, build.add(ane.SubOp(magnitude, low), "high")), "magnitude")
    build.replace(ane.MulOp(whole, build.add(ane.SignOp(x), "sign")))


def expand_floor(op: ane.FloorOp | ane.CeilOp) -> ane.RoundOp:
    """`ane.floor` as `round(x) - (round(x) > x)`, `ane.ceil` as `round(x) + (round(x) < x)`: the
    nearest integer is one step from the answer at most, and the step is exact; returns the round,
    for `expand_round` to spell in fp16 adds."""
    build = RewriteBuilder(op)
    x = op.input
    rounded = ane.RoundOp(x)
    r = build.add(rounded, "round")
    floor = isinstance(op, ane.FloorOp)
    past = build.add((ane.GreaterOp if floor else ane.LessOp)(r, x), "past")
    step = build.add((ane.SubOp if floor else ane.AddOp)(r, build.scalar(1.0, x)), "step")
    build.replace(ane.SelectOp(past, step, r))
    return rounded


def _const_to_f16(op: ane.ConstOp, converted: dict[str, str]) -> None:
    """Replace an f32 constant by its fp16 copy (one copy per weight handle)."""
    typ = tensor(shape_of(op.result), f16)
    if op.stored is not None and op.handle is not None:  # a compressed weight's value is exact in fp16: the same stored weight, read as f16
        new = ane.ConstOp(typ, handle=op.handle.data, stored=op.stored.data)
    elif op.handle is not None and op.handle.data in converted:
        new = ane.ConstOp(typ, handle=converted[op.handle.data])
    else:
        array = constant_of(op.result)
        assert array is not None
        name = op.handle.data if op.handle is not None else "const"
        with np.errstate(over="ignore"):  # beyond ±65504 is inf in fp16, as on the ANE (the lint has said so)
            half = array.astype(np.float16)
        new = make_const(half, name, store_of(op), f16)
        if op.handle is not None and new.handle is not None:
            converted[op.handle.data] = new.handle.data
    Rewriter.insert_op(new, InsertPoint.before(op))
    op.result.replace_all_uses_with(new.result)
    op.detach()
    op.erase()


def _drop_identity_casts(block: Block) -> None:
    for op in list(block.ops):
        if isinstance(op, ane.CastOp) and op.input.type == op.result.type:
            op.result.replace_all_uses_with(op.input)
            op.detach()
            op.erase()


# ------------------------------------------------------------------------------------------------
# The pass
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fp16Pass(ModulePass):
    """fp16 on the ANE: lint, safe fixes, f16 segments with casts at their edges."""

    name = "ane-fp16"

    target: str = "m1"
    calibrate: bool = False
    """Calibrate the range lint on seeded random inputs when no `example_inputs` are given."""
    example_inputs: Any = None
    """Sample inputs (name -> array, or a list in argument order) to calibrate the range lint on."""
    input_ranges: Any = None
    """Input name -> (lo, hi) for the range analysis; undeclared inputs get their dtype's range or a default."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        blocks = ane_blocks(op)
        for block in blocks:
            scale_integer_sums(block)
            raise_epsilons(block)
            subtract_maxima(block)
            finite_masks_and_constants(block, target.numerics.fp16_max.value)
        flag_ranges(op, blocks, target, self.input_ranges, warn)
        inputs = sample_inputs(op, self.example_inputs, self.calibrate)
        reference = Reference()
        if inputs is not None:
            try:
                calibrate(op, inputs, blocks, target, reference)
            except AnecError as e:
                raise AnecError("cannot calibrate the fp16 lint on the sample inputs", why=e.one_line(),
                                hint="give one array per model input, named as the model names them") from None
        converted: dict[str, str] = {}
        for segment in segments(op):
            to_f16(segment, converted)
        dce(op)
        prune_weights(op)
        if inputs is not None:
            attribute(op, inputs, reference, target, warn)
