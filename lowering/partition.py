"""Partition: outline runs of ANE-legal ops into `ane.segment`s; everything else runs on the CPU.

Legality comes from the one predicate, `anec.legality.legality` (limits the tile pass removes do not
count). Segments are chosen to keep switches between the ANE and the CPU few. Every op gets a
*phase*: ANE ops take even phases, CPU ops odd ones, and each op takes the earliest phase of its
kind not before its operands' phases. All ANE ops of one phase form one segment: no path leaves
such a group through a CPU op and comes back (the CPU op would push the return to a later phase),
so each group is a valid program, and since every op sits as early as it can, the segments are as
few as any path through the graph forces (the most ANE runs any one path has); a group whose inputs
and outputs exceed a program's buffer slots is cut into consecutive runs that fit. Segments with fewer
than `min_segment_ops` ops are not worth a dispatch, nor are segments beside CPU ops that only move
data (reshape, transpose, slice, concat) and that the timing model predicts faster on the CPU than
the dispatch they cost: their ops go to the CPU and phases are recomputed (the CPU ops on either
side then run as one, and ANE segments around them may merge).

Constants a segment uses are cloned into it (segments are isolated from above). Each op left on
the CPU carries `ane.reason`: its first failing legality rule, or the importer's more specific
reason for a `host.op` it could not map.

Ops kept in float32 (`keep_fp32`, `--keep-fp32`; `auto_fp32`, chosen by `--precision auto`) stay on
the CPU too, since the ANE has no float32: the fp16 pass then casts at the edges of the segments
around them. An entry names ops by

- name: an op's `ane.name` as the report shows it (`/ln#var`), or its source node's name (`/ln`,
  which keeps every op that node became);
- op type: anec's (`ane.softmax`), a host op's (`onnx.TopK`, `aten.cumsum.default`), or the source
  model's (`Softmax`: every ONNX node of that type, from `source_op_types`); each op of that type
  keeps every op its source node became (a reshape the layout pass put after it, too).

An entry that matches no op is an error naming the closest names and types.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import IsTerminator

from anec.analysis import flops
from anec.descriptors.program import FIRST_IO_SLOT, SLOTS
from anec.dialects import ane, host
from anec.dialects.discardable import REASON_ATTR, name_of, source_name
from anec.errors import AnecError
from anec.legality import legality
from anec.sim.timing import cost, host_seconds, op_work, program_seconds
from anec.targets import Target, get_target


@dataclass(frozen=True)
class PartitionPass(ModulePass):
    name = "ane-partition"

    target: str = "m1"
    min_segment_ops: int = 1
    keep_fp32: tuple[str, ...] = ()
    """Ops to keep on the CPU in float32, by name or op type (`--keep-fp32`)."""
    auto_fp32: tuple[str, ...] = ()
    """Ops `--precision auto` keeps in float32 (names read off an earlier compile of the same model)."""
    source_op_types: Any = field(default=None, hash=False)
    """Source node name -> its op type in the source model (ONNX), so entries can name those types."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        blocks = [fn.body.block for fn in op.ops if isinstance(fn, func.FuncOp) and fn.body.blocks]
        types = self.source_op_types or {}
        kept = {**kept_in_fp32(blocks, self.auto_fp32, types, KEPT_BY_AUTO, strict=False),
                **kept_in_fp32(blocks, self.keep_fp32, types, KEPT_BY_USER)}
        for block in blocks:
            partition_block(block, target, self.min_segment_ops, kept)


KEPT_BY_USER = "kept in float32 by --keep-fp32 (the ANE computes in fp16)"
KEPT_BY_AUTO = "kept in float32 by --precision auto to meet the tolerance (see the summary's precision line)"


def op_types(op: Operation, source_op_types: Mapping[str, str]) -> list[str]:
    """The types an op answers to: anec's (`ane.softmax`), a host op's source op (`onnx.TopK`), the
    source model's (`Softmax`)."""
    types = [op.op_name.data if isinstance(op, host.HostOp) else op.name]
    if (source := source_op_types.get(source_name(name_of(op)))) is not None:
        types.append(source)
    return types


def kept_in_fp32(blocks: Iterable[Block], entries: Iterable[str], source_op_types: Mapping[str, str], reason: str, *,
                 strict: bool = True) -> dict[Operation, str]:
    """The compute ops the entries name (by name, source name or op type), each with `reason`. An
    entry that names no op is an `AnecError` listing the closest names and types; unless not
    `strict` (names `--precision auto` read off a compiled module: one a later pass made stands for
    the ops of its source name, and one that names nothing here, for nothing)."""
    entries = list(entries)
    if not entries:
        return {}
    placed = [inner for block in blocks for op in block.ops
              for inner in (op.body.block.ops if isinstance(op, ane.SegmentOp) else (op,))]
    compute = [op for op in placed if not isinstance(op, ane.ConstOp) and not op.has_trait(IsTerminator)]
    keys = {op: {name_of(op), source_name(name_of(op)), *op_types(op, source_op_types)} for op in compute}
    kept: dict[Operation, str] = {}
    for entry in entries:
        matched = [op for op in compute if entry in keys[op]]
        if matched and entry in op_types(matched[0], source_op_types):  # a type keeps the whole nodes of its ops (their reshapes too)
            nodes = {source_name(name_of(op)) for op in matched}
            matched = [op for op in compute if source_name(name_of(op)) in nodes]
        if not matched and not strict:
            matched = [op for op in compute if source_name(entry) in keys[op]]
        if not matched and strict:
            known = sorted(set().union(*keys.values())) if keys else []
            close = difflib.get_close_matches(entry, known, n=5, cutoff=0.5)
            raise AnecError(f"--keep-fp32 {entry!r} names no op of the model",
                            why="an entry is an op name as the report shows it, or an op type (ane.softmax, Softmax, onnx.TopK)",
                            hint=f"did you mean {', '.join(close)}?" if close else "see the op names in `anec compile`'s placement table "
                            "(--all-ops) or the report")
        kept.update((op, reason) for op in matched)
    return kept


def partition_block(block: Block, target: Target, min_segment_ops: int = 1, kept: Mapping[Operation, str] | None = None) -> list[ane.SegmentOp]:
    """Outline the ANE segments of `block` in place; returns them in program order. Ops in `kept`
    stay on the CPU with the reason given."""
    for seg in [op for op in block.ops if isinstance(op, ane.SegmentOp)]:
        _inline_segment(seg)
    compute = [op for op in block.ops if not isinstance(op, ane.ConstOp) and not op.has_trait(IsTerminator)]
    reasons: dict[Operation, str] = {}
    for op in compute:
        verdict = legality(op, target)
        if not verdict.ok:
            reasons[op] = verdict.reason
        elif kept and op in kept:
            reasons[op] = kept[op]
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
    segments = [_outline(block, run) for phase in sorted(groups) for run in within_slots(groups[phase])]
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
        earliest = max((phase[owner] for v in op.operands if isinstance(owner := v.owner, Operation) and owner in phase),
                       default=-1)
        phase[op] = earliest if earliest % 2 == parity else earliest + 1
    return phase


IO_SLOTS = SLOTS - FIRST_IO_SLOT
"""Inputs plus outputs one program can have: each takes a buffer slot of its own."""


def within_slots(ops: list[Operation]) -> list[list[Operation]]:
    """`ops` (one phase, in program order) cut into consecutive runs whose values crossing in and out
    fit a program's buffer slots: a static KV cache gives a program two inputs and two outputs per
    layer. Each run is as long as it can be (the longest prefix that fits, since a longer run can
    fit again once the values it outputs are used inside it)."""
    runs: list[list[Operation]] = []
    start = 0
    while start < len(ops):
        members: set[Operation] = set()
        inputs: set[SSAValue] = set()
        outside_uses: dict[SSAValue, int] = {}  # a result of the run -> its uses outside the run
        fits = start + 1
        for end in range(start, len(ops)):
            op = ops[end]
            for v in op.operands:
                if v in outside_uses:
                    outside_uses[v] -= 1
                elif not isinstance(v.owner, ane.ConstOp):
                    inputs.add(v)
            members.add(op)
            outside_uses.update({r: sum(1 for _ in r.uses) for r in op.results})
            if len(inputs) > IO_SLOTS:
                break
            if len(inputs) + sum(1 for n in outside_uses.values() if n > 0) <= IO_SLOTS:
                fits = end + 1
        runs.append(ops[start:fits])
        start = fits
    return runs


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
    for result, outer in zip(outputs, segment.outputs):
        outer.name_hint = result.name_hint
        for use in list(result.uses):
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
