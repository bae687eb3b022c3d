"""Partition: outline runs of ANE-legal ops into `ane.segment`s; everything else runs on the CPU.

Legality comes from the one predicate, `anec.legality.legality` (limits the tile pass removes do not
count). Segments are chosen to keep switches between the ANE and the CPU few. Every op gets a
*phase*: ANE ops take even phases, CPU ops odd ones, and each op takes the earliest phase of its
kind not before its operands' phases. All ANE ops of one phase form one segment: no path leaves
such a group through a CPU op and comes back (the CPU op would push the return to a later phase),
so each group is a valid program, and since every op sits as early as it can, the segments are as
few as any path through the graph forces (the most ANE runs any one path has). Segments with fewer
than `min_segment_ops` ops are not worth a dispatch, nor are segments beside CPU ops that only move
data (reshape, transpose, slice, concat) and that the timing model predicts faster on the CPU than
the dispatch they cost: their ops go to the CPU and phases are recomputed (the CPU ops on either
side then run as one, and ANE segments around them may merge).

Constants a segment uses are cloned into it (segments are isolated from above). Each op left on
the CPU carries `ane.reason`: its first failing legality rule, or the importer's more specific
reason for a `host.op` it could not map.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import IsTerminator

from anec.analysis import flops
from anec.dialects import ane, host
from anec.dialects.discardable import REASON_ATTR
from anec.legality import legality
from anec.sim.timing import cost, host_seconds, op_work, program_seconds
from anec.targets import Target, get_target


@dataclass(frozen=True)
class PartitionPass(ModulePass):
    name = "ane-partition"

    target: str = "m1"
    min_segment_ops: int = 1

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and fn.body.blocks:
                partition_block(fn.body.block, target, self.min_segment_ops)


def partition_block(block: Block, target: Target, min_segment_ops: int = 1) -> list[ane.SegmentOp]:
    """Outline the ANE segments of `block` in place; returns them in program order."""
    for seg in [op for op in block.ops if isinstance(op, ane.SegmentOp)]:
        _inline_segment(seg)
    compute = [op for op in block.ops if not isinstance(op, ane.ConstOp) and not op.has_trait(IsTerminator)]
    reasons: dict[Operation, str] = {}
    for op in compute:
        verdict = legality(op, target)
        if not verdict.ok:
            reasons[op] = verdict.reason
    while True:
        phases = _phases(compute, reasons)
        groups: dict[int, list[Operation]] = defaultdict(list)
        for op in compute:
            if op not in reasons:
                groups[phases[op]].append(op)
        small = [g for g in groups.values() if len(g) < min_segment_ops]
        for g in small:
            for op in g:
                reasons[op] = f"a run of {len(g)} ANE op(s) is below min-segment-ops={min_segment_ops}, so it stays on the CPU"
        idle = [(g, why) for g in groups.values() if g not in small and (why := _unearned_copies(g, reasons, target))]
        for g, why in idle:
            for op in g:
                reasons[op] = why
        if not small and not idle:
            break
    _reorder(block, compute, phases)
    segments = [_outline(block, groups[phase]) for phase in sorted(groups)]
    for op in compute:
        if op in reasons:
            if not (isinstance(op, host.HostOp) and REASON_ATTR in op.attributes):
                op.attributes[REASON_ATTR] = StringAttr(reasons[op])
        else:
            op.attributes.pop(REASON_ATTR, None)
    return segments


def _unearned_copies(group: list[Operation], cpu: dict[Operation, str], target: Target) -> str | None:
    """Why a segment next to CPU work that only moves data (no op the timing model counts arithmetic
    for: reshapes, transposes, slices, concats) should run on the CPU: its predicted time there is
    below the dispatch and tasks it costs on the ANE. None when it earns its dispatch."""
    if any(flops(op) for op in group):
        return None
    members = set(group)
    neighbours = {v.owner for op in group for v in op.operands} | {u.operation for op in group for r in op.results for u in r.uses}
    if not any(n in cpu for n in neighbours - members):
        return None
    ane_s = program_seconds([cost(op_work(op, target), target) for op in group], target)
    host_s = sum(host_seconds(op, target) for op in group)
    if host_s >= ane_s:
        return None
    return (f"a segment that only copies data between CPU ops is predicted at {host_s * 1e6:.0f} µs on the CPU, "
            f"{ane_s * 1e6:.0f} µs on the ANE with its dispatch, so it stays on the CPU")


def _phases(ops: list[Operation], cpu: dict[Operation, str]) -> dict[Operation, int]:
    """The earliest phase of each op's kind (ANE even, CPU odd) after its operands' (program order)."""
    phase: dict[Operation, int] = {}
    for op in ops:
        parity = 1 if op in cpu else 0
        earliest = max((phase[v.owner] for v in op.operands if v.owner in phase), default=-1)
        phase[op] = earliest if earliest % 2 == parity else earliest + 1
    return phase


def _reorder(block: Block, ops: list[Operation], phases: dict[Operation, int]) -> None:
    """Constants first, then ops by phase, each phase in program order (phases never decrease
    along a use, so this respects every use)."""
    consts = [op for op in block.ops if isinstance(op, ane.ConstOp)]
    terminator = block.last_op
    order = sorted(range(len(ops)), key=lambda i: (phases[ops[i]], i))
    for op in [*consts, *(ops[i] for i in order)]:
        block.detach_op(op)
        block.insert_op_before(op, terminator) if terminator is not None else block.add_op(op)


def _outline(block: Block, ops: list[Operation]) -> ane.SegmentOp:
    """Move `ops` (consecutive in `block`) into a new segment that takes their outside operands."""
    members = set(ops)
    inputs: list[SSAValue] = []
    consts: list[ane.ConstOp] = []
    for op in ops:
        for v in op.operands:
            owner = v.owner
            if owner in members:
                continue
            if isinstance(owner, ane.ConstOp):
                if owner not in consts:
                    consts.append(owner)
            elif v not in inputs:
                inputs.append(v)
    outputs = [r for op in ops for r in op.results if any(u.operation not in members for u in r.uses)]
    anchor = ops[-1].next_op
    body = Block(arg_types=[v.type for v in inputs])
    for v, arg in zip(inputs, body.args):
        arg.name_hint = v.name_hint
        _replace_uses_in(v, arg, members)
    for c in consts:
        inner = c.clone()
        body.add_op(inner)
        _replace_uses_in(c.result, inner.result, members)
    for op in ops:
        block.detach_op(op)
        body.add_op(op)
    body.add_op(ane.YieldOp(*outputs))
    segment = ane.SegmentOp(inputs, [r.type for r in outputs], Region(body))
    block.insert_op_before(segment, anchor) if anchor is not None else block.add_op(segment)
    for inner, outer in zip(outputs, segment.outputs):
        outer.name_hint = inner.name_hint
        for use in list(inner.uses):
            if use.operation.parent_block() is not body:
                use.operation.operands[use.index] = outer
    for c in consts:
        if not c.result.uses:
            block.erase_op(c)
    return segment


def _replace_uses_in(value: SSAValue, new: SSAValue, users: set[Operation]) -> None:
    for use in list(value.uses):
        if use.operation in users:
            use.operation.operands[use.index] = new


def _inline_segment(segment: ane.SegmentOp) -> None:
    """Undo an earlier partition: the segment's ops move back into the enclosing block."""
    block = segment.parent_block()
    assert block is not None
    body = segment.body.block
    for arg, v in zip(body.args, segment.inputs):
        arg.replace_all_uses_with(v)
    yield_op = body.last_op
    assert isinstance(yield_op, ane.YieldOp)
    for result, v in zip(segment.outputs, yield_op.values):
        result.replace_all_uses_with(v)
    body.erase_op(yield_op)
    for op in list(body.ops):
        body.detach_op(op)
        block.insert_op_before(op, segment)
    block.erase_op(segment)
