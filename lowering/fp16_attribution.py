"""Where fp16 error enters a model: float32 and fp16 runs side by side, op by op (ane-fp16's
calibrated mode; see `anec.lowering.fp16`).

The float32 run is the calibration run before the segments are retyped; the fp16 run is the same
module after, with fp16 storage inside the segments. When a model output misses the agreement bar
(`anec.agreement`), each op whose own output misses it while every input it reads still meets it
— or whose error is ten times its inputs' — is where error *enters*. Each such op is warned with
its kind: overflow, MAC saturation, underflow, cancellation, a discontinuity (a comparison, arg
reduction or cast to an integer that flips), a function near its pole, or plain rounding; the
output that misses the bar names them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects.builtin import FloatAttr, IntegerType, ModuleOp, f64
from xdsl.ir import Operation, OpResult, SSAValue

from anec.agreement import FP16_MIN_NORMAL, Error, error
from anec.dialects import ane, host
from anec.dialects.discardable import FP16_ENTERS_ATTR, name_of
from anec.interpreter import entry_function, interpret, output_names
from anec.lowering.rewriting import constant_of
from anec.targets import Target

AMPLIFIED = 10.0
"""An op whose error is this many times its inputs' amplifies error rather than passing it on."""
DISCONTINUOUS = frozenset({"equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "argmax", "argmin",
                           "greaterorequal", "lessorequal", "floor", "ceil", "round", "sign", "topk"})
"""Ops whose result jumps when an input crosses a threshold (ANE kinds, and host ops' source names
lower-cased: `onnx.Floor` is `floor`)."""
POLES = frozenset({"div", "reciprocal", "rsqrt", "log", "pow", "tan"})


@dataclass
class Reference:
    """The float32 outputs of every op, recorded during calibration (keyed by the op itself)."""

    values: dict[Operation, list[np.ndarray]] = field(default_factory=dict)

    def observe(self, op: Operation, outs: list[np.ndarray]) -> None:
        if not isinstance(op, ane.ConstOp):
            self.values[op] = [np.asarray(x) for x in outs]


def attribute(module: ModuleOp, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], reference: Reference,
              target: Target, warn: Callable[[Operation, str], None]) -> None:
    """Run the retyped module with fp16 segments; warn where error enters when an output misses the bar."""
    errors: dict[Operation, Error] = {}

    def observe(op: Operation, outs: list[np.ndarray]) -> None:
        want = reference.values.get(op)
        if want and outs and want[0].shape == np.shape(outs[0]) and np.asarray(outs[0]).dtype.kind in "fiub":
            errors[op] = error(outs[0], want[0], np.float32)  # every op's output: float32 arithmetic is ample and 2x cheaper

    with np.errstate(over="ignore", invalid="ignore"):  # fp16 overflow is what is being measured
        got = interpret(module, inputs, precision="f32", segments="f16", observe=observe)
    fn = entry_function(module)
    ret = fn.body.block.last_op
    assert ret is not None
    missing: list[tuple[str, Operation, Error]] = []
    for name, value, y in zip(output_names(fn), ret.operands, got):
        source = _source(value)
        want = None
        if isinstance(source, OpResult) and (recorded := reference.values.get(source.op)) is not None and source.index < len(recorded):
            want = recorded[source.index]
        if want is None or np.shape(want) != np.shape(y) or (e := error(np.asarray(y, np.float64), np.asarray(want, np.float64))).ok:
            continue
        assert isinstance(source.owner, Operation)
        missing.append((name, source.owner, e))
    entering = [op for op in errors if _enters(op, errors) or (missing and _flips(op, errors))]
    for name, producer, e in missing:
        named = [f"{name_of(op)} ({kind(op, reference, target)})" for op in entering][:3]
        where = f"; error enters at {', '.join(named)}" if named else ""
        warn(producer, f"output {name!r} differs from float32 on the sample inputs beyond fp16 tolerance "
                       f"(cosine {e.cosine:.4f}, rel L2 {e.rel_l2:.2g}){where}")
    for op in entering:
        e = errors[op]
        op.attributes[FP16_ENTERS_ATTR] = FloatAttr(e.rel_l2, f64)
        inputs_error = max((errors[p].rel_l2 for p in producers(op) if p in errors), default=0.0)
        warn(op, f"fp16 error enters here ({kind(op, reference, target)}): rel L2 {e.rel_l2:.2g} against float32, "
                 f"its inputs {inputs_error:.2g}")


def _source(value: SSAValue) -> SSAValue:
    """The value computing `value`, looked through segment results and edge casts."""
    owner = value.owner
    if isinstance(value, OpResult) and isinstance(owner, ane.SegmentOp):
        yielded = owner.body.block.last_op
        assert yielded is not None
        return _source(yielded.operands[value.index])
    if isinstance(owner, ane.CastOp) and isinstance(owner.input.owner, Operation):
        return _source(owner.input)
    return value


def _producer(value: SSAValue) -> Operation | None:
    owner = _source(value).owner
    return owner if isinstance(owner, Operation) else None


def producers(op: Operation) -> list[Operation]:
    return [p for v in op.operands if (p := _producer(v)) is not None]


def _enters(op: Operation, errors: Mapping[Operation, Error]) -> bool:
    e = errors[op]
    if e.ok or isinstance(op, ane.SegmentOp | ane.CastOp):
        return False
    before = [errors[p] for p in producers(op) if p in errors]
    worst = max((b.rel_l2 for b in before), default=0.0)
    return all(b.ok for b in before) or e.rel_l2 > AMPLIFIED * worst


def _kind_name(op: Operation) -> str:
    """`conv` for `ane.conv`, `floor` for `host.op "onnx.Floor"`, else the op's name."""
    if isinstance(op, host.HostOp):
        return op.source_op.lower()
    return ane.kind(op) if ane.is_ane(op) else op.name


def _reads_constant_beyond(op: Operation, fp16_max: float) -> bool:
    """Whether a constant operand of `op` is beyond fp16's range (inf once stored in fp16)."""
    arrays = [a for v in op.operands if (a := constant_of(v)) is not None and a.dtype.kind == "f"]
    return any(not np.isfinite(a).all() or float(np.abs(a).max(initial=0.0)) > fp16_max for a in arrays)


def _discontinuous(op: Operation) -> bool:
    """A comparison, rounding, arg reduction or cast to an integer: a tiny input change flips it."""
    name = _kind_name(op)
    return name in DISCONTINUOUS or (name == "cast" and bool(op.results)
                                     and isinstance(ane.element_type_of(op.results[0]), IntegerType))


def _flips(op: Operation, errors: Mapping[Operation, Error]) -> bool:
    """A discontinuous op whose result changed anywhere while every input it reads meets the bar: a
    few flipped elements pass the bar themselves (a rounding that lands on the other integer), and
    the ops after them amplify it."""
    return _discontinuous(op) and errors[op].max_abs > 0 and all(errors[p].ok for p in producers(op) if p in errors)


def kind(op: Operation, reference: Reference, target: Target) -> str:
    """Why fp16 changes this op's output, from its kind and its float32 values."""
    out = reference.values.get(op, [np.zeros(0)])[0].astype(np.float64, copy=False)
    peak = float(np.abs(out[np.isfinite(out)]).max(initial=0.0)) if out.size else 0.0
    name = _kind_name(op)
    if peak > target.numerics.fp16_max.value or _reads_constant_beyond(op, target.numerics.fp16_max.value):
        return "overflow"
    if isinstance(op, ane.ConvOp | ane.MatmulOp | ane.ConvTransposeOp) and peak >= target.numerics.mac_saturation.value:
        return "MAC saturation"
    if _discontinuous(op):
        return "discontinuity"
    if name in POLES:
        return "near a pole"
    operands = [constant_of(v) if (p := _producer(v)) is None or isinstance(p, ane.ConstOp) else reference.values.get(p, [None])[0]
                for v in op.operands]
    if name in ("add", "sub") and operands and all(x is not None for x in operands):
        scale = max(float(np.abs(np.asarray(x, np.float64)).mean()) for x in operands)
        if scale > 0 and float(np.abs(out).mean()) < 1e-2 * scale:
            return "cancellation"
    nonzero = out[out != 0]
    if nonzero.size and float(np.mean(np.abs(nonzero) < FP16_MIN_NORMAL)) > 0.1:
        return "underflow"
    return "rounding"
