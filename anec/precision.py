"""`--precision auto`: the fewest ops kept in float32 that bring the fp16 outputs within a tolerance.

The ANE computes in fp16 only, so an op kept in float32 runs on the CPU (`ane-partition`'s
`auto_fp32`). The choice is greedy and guided by the calibrated error attribution, which marks each
op where fp16 error enters with `ane.fp16_enters` (its relative L2 against float32):

1. compile with the ops kept so far, run the result on the samples and compare every output with
   the float32 run of the imported model (`anec.agreement`, relative L2 bound = the tolerance);
2. while an output misses, keep the ANE op where the most error enters. If that op already runs on
   the CPU, error reaches it through its fp16 inputs (cancellation of rounded operands): its
   producers on the ANE are kept next, the worst first. When the op's float32 value on the samples
   is beyond fp16's range, the ANE ops that read it (transitively, while their values are too) move
   with it: each would read inf on the ANE whatever else moved;
3. stop when every output meets the tolerance, when no op is left to move (said why), or after
   `MAX_STEPS` compiles. Short of the tolerance, what moved stays only if it helped: fewer outputs
   miss, or the worst error halved (rounding spread over a deep network is no one op's doing, and
   moving ops then only costs time).

The predicted latency before and after (segments, dispatches, milliseconds) comes from the report of
the first and last compile, so the cost of what moved is read off the same timing model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from xdsl.dialects.builtin import AnyFloat, FloatAttr, ModuleOp
from xdsl.ir import Operation, SSAValue

from anec.agreement import Error, error
from anec.dialects import ane
from anec.dialects.discardable import (
    FP16_ENTERS_AT_ATTR,
    FP16_ENTERS_ATTR,
    FP16_PEAK_ATTR,
    FP16_WARNINGS_ATTR,
    name_of,
    notes,
    string_attr,
)
from anec.interpreter import entry_function, interpret, output_names
from anec.lowering.fp16_attribution import producers
from anec.report import ERROR_ENTERS, build_report
from anec.targets import Target

MAX_STEPS = 8
"""Compiles `--precision auto` tries before it gives up (each after the first moves one op, or
one overflow region)."""

Samples = Sequence[np.ndarray] | Mapping[str, np.ndarray]
Trial = Callable[[tuple[str, ...]], ModuleOp]
"""Compile the model through the graph passes, calibrated on the samples, with these ops (and the
user's `--keep-fp32`) kept in float32."""


@dataclass(frozen=True)
class Cost:
    """What a compile predicts: time, ANE segments (one dispatch each), ops on the CPU."""

    latency_ms: float
    segments: int
    cpu_ops: int


@dataclass(frozen=True)
class PrecisionChoice:
    """What `--precision auto` moved to float32 and what it costs."""

    moved: tuple[str, ...]
    """Op names kept in float32, in the order chosen."""
    samples: str
    """Which inputs the outputs were measured on."""
    tolerance: float
    met: bool
    worst_before: float
    """The largest relative L2 error of an output against float32 before anything moved."""
    worst_after: float
    before: Cost
    after: Cost
    steps: int
    why: str = ""
    """When the tolerance is not met: why nothing more could move."""

    def summary(self) -> str:
        """One line for the compile summary."""
        moved = ", ".join(self.moved) or "nothing"
        outcome = (f"outputs within rel L2 {self.tolerance:g} (worst {self.worst_before:.2g} → {self.worst_after:.2g})" if self.met
                   else f"tolerance {self.tolerance:g} NOT met (worst {self.worst_before:.2g} → {self.worst_after:.2g}): {self.why}")
        return (f"precision auto on {self.samples}: moved {len(self.moved)} op(s) to float32 on the CPU ({moved}); {outcome}; "
                f"predicted {self.before.latency_ms:.3g} → {self.after.latency_ms:.3g} ms, segments (dispatches) "
                f"{self.before.segments} → {self.after.segments}, CPU ops {self.before.cpu_ops} → {self.after.cpu_ops}")

    def to_json(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def choose_fp32_ops(trial: Trial, imported: ModuleOp, inputs: Samples, samples: str, target: Target, tolerance: float) -> PrecisionChoice:
    """Greedy by attribution: the ops to keep in float32 so that every output of the compiled model
    meets `tolerance` on `inputs`."""
    reference = dict(zip(output_names(entry_function(imported)), interpret(imported, inputs, segments="f32")))
    moved: list[str] = []
    first: ModuleOp | None = None
    worst_before = worst = 0.0
    missed_before = 0
    why = ""
    module = imported
    for step in range(1, MAX_STEPS + 1):
        module = trial(tuple(moved))
        first = module if first is None else first
        errors = _errors(module, inputs, reference)
        misses = [name for name, e in errors.items() if not e.meets(tolerance)]
        worst = max((e.rel_l2 for e in errors.values()), default=0.0)
        if step == 1:
            worst_before, missed_before = worst, len(misses)
        if not misses:
            break
        if step == MAX_STEPS:
            why = f"{len(misses)} output(s) still miss it after {MAX_STEPS} compiles ({', '.join(misses)})"
            if (amplifier := _amplifier(module)) is not None:
                why += "; " + _stuck(amplifier)
            break
        candidates = _next_ops(module, set(moved), target.numerics.fp16_max.value)
        if not candidates:
            why = _stuck(_amplifier(module))
            break
        moved += candidates
    assert first is not None
    if why and moved and not (len(misses) < missed_before or worst < worst_before / 2):
        why += "; what moved did not reduce the error, so nothing stays in float32"
        moved, module, worst = [], first, worst_before
    return PrecisionChoice(tuple(moved), samples, tolerance, not why, worst_before, worst, _cost(first, target), _cost(module, target),
                           step, why)


def _errors(module: ModuleOp, inputs: Samples, reference: Mapping[str, np.ndarray]) -> dict[str, Error]:
    """Each output's error against float32."""
    with np.errstate(over="ignore", invalid="ignore"):  # fp16 overflow is what is measured
        got = interpret(module, inputs)
    return {name: error(np.asarray(y, np.float64), np.asarray(reference[name], np.float64))
            for name, y in zip(output_names(entry_function(module)), got)}


def _next_ops(module: ModuleOp, kept: set[str], fp16_max: float) -> list[str]:
    """The ANE ops to keep next: every op where error enters as an overflow (fp16 inf, float32
    finite) when there are several, else the op where the most error enters (or, for an op on the
    CPU that error still enters, its worst nearest ANE ancestor: producers first, through the CPU ops
    already kept), with its overflow region."""
    entering = sorted((op for op in module.walk() if FP16_ENTERS_ATTR in op.attributes), key=_entered, reverse=True)
    overflowing = [op for op in entering if _on_ane(op) and _entered(op) == np.inf]
    if len(overflowing) > 1:  # each gives inf on the ANE whatever else moves: all of them in one step
        moving = [string_attr(op, FP16_ENTERS_AT_ATTR) or name_of(op) for op in overflowing]
        moving += [name_of(o) for op in overflowing for o in _overflow_region(op, fp16_max)[1:]]
        if fresh := [name for name in dict.fromkeys(moving) if name not in kept]:
            return fresh
    for op in entering:
        folded = string_attr(op, FP16_ENTERS_AT_ATTR)  # error entered at an op ane-fuse folded into this one
        if _on_ane(op) and folded is not None and folded not in kept:
            return [folded]
        if _on_ane(op) and name_of(op) not in kept:
            return [name_of(o) for o in _overflow_region(op, fp16_max) if name_of(o) not in kept]
        if not _on_ane(op) and (feeding := _nearest_ane_ancestors(op, kept)):
            worst = max(feeding, key=_entered)
            return [name_of(o) for o in _overflow_region(worst, fp16_max) if name_of(o) not in kept]
    return []


def _nearest_ane_ancestors(op: Operation, kept: set[str]) -> list[Operation]:
    """The ANE ops not yet kept that feed `op`, directly or through ops on the CPU (the nearest
    layer of them: the producers when any is on the ANE, else their producers' …)."""
    layer, seen = producers(op), {op}
    while layer:
        found = [p for p in layer if _on_ane(p) and name_of(p) not in kept]
        if found:
            return found
        seen.update(layer)
        layer = [q for p in layer if not _on_ane(p) for q in producers(p) if q not in seen]
    return []


def _amplifier(module: ModuleOp) -> Operation | None:
    """The op where the most error still enters, when it already runs in float32 on the CPU."""
    worst = max((op for op in module.walk() if FP16_ENTERS_ATTR in op.attributes), key=_entered, default=None)
    return None if worst is None or _on_ane(worst) else worst


def _stuck(worst: Operation | None) -> str:
    """Why moving more does not help: the worst op where error still enters runs in float32 already
    and amplifies the rounding its inputs carry, which every fp16 op upstream adds a little to."""
    if worst is None:
        return ("no op left on the ANE where fp16 error enters (the attribution names none beyond those kept): "
                "the rounding is spread over many ops")
    inputs = next((float(m["inputs"]) for w in notes(worst, FP16_WARNINGS_ATTR)
                   if (m := ERROR_ENTERS.match(w)) is not None and m["inputs"] is not None), 0.0)
    amplified = f", {_entered(worst) / inputs:.1f}× its inputs' rel L2 {inputs:.2g}" if inputs > 0 else ""
    return (f"error still enters at {name_of(worst)}, in float32 on the CPU (rel L2 {_entered(worst):.2g}{amplified}): "
            "it amplifies the fp16 rounding of its inputs, which comes from the whole network upstream, not from one op")


def _overflow_region(op: Operation, fp16_max: float) -> list[Operation]:
    """`op` and, when its float32 value on the samples is beyond fp16's range, every ANE op that reads
    such a value, transitively: each of them gets inf on the ANE whatever else moves."""
    region, todo = [op], [op]
    while todo:
        current = todo.pop()
        if _peak(current) <= fp16_max:
            continue
        for reader in (r for v in current.results for r in _readers(v)):
            if _on_ane(reader) and reader not in region:
                region.append(reader)
                todo.append(reader)
    return region


def _readers(value: SSAValue) -> list[Operation]:
    """The ops that compute with `value`, looked through segment edges and their float casts."""
    found: list[Operation] = []
    for use in value.uses:
        user = use.operation
        if isinstance(user, ane.YieldOp) and isinstance(segment := user.parent_op(), ane.SegmentOp):
            found += _readers(segment.outputs[use.index])
        elif isinstance(user, ane.SegmentOp):
            found += _readers(user.body.block.args[use.index])
        elif isinstance(user, ane.CastOp) and _is_float(user.result) and _is_float(user.input):
            found += _readers(user.result)
        else:
            found.append(user)
    return found


def _is_float(value: SSAValue) -> bool:
    return isinstance(getattr(value.type, "element_type", None), AnyFloat)


def _peak(op: Operation) -> float:
    attr = op.attributes.get(FP16_PEAK_ATTR)
    return attr.value.data if isinstance(attr, FloatAttr) else 0.0


def _entered(op: Operation) -> float:
    attr = op.attributes.get(FP16_ENTERS_ATTR)
    return attr.value.data if isinstance(attr, FloatAttr) else 0.0


def _on_ane(op: Operation) -> bool:
    return isinstance(op.parent_op(), ane.SegmentOp)


def _cost(module: ModuleOp, target: Target) -> Cost:
    report = build_report(module, target)
    return Cost((report.predicted_latency_s or 0.0) * 1e3, report.segments, len(report.host_ops))
