"""The placement report: every op, where it runs and why not on the ANE, its cost and fp16 notes.

The report is derived from the final IR (segment membership, `ane.reason`, `ane.fp16_*` attributes,
tile origins) plus the statistics the pipeline driver gathered between passes, so it can never
disagree with what was compiled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

from xdsl.dialects import func
from xdsl.dialects.builtin import FloatAttr, ModuleOp, StringAttr
from xdsl.ir import Block, BlockArgument, Operation, OpResult, SSAValue

from anec.analysis import ane_bytes, flops
from anec.compression import MORE_BITS
from anec.descriptors.build import program_of
from anec.dialects import ane, anehw, host
from anec.dialects.ane import shape_of
from anec.dialects.discardable import (
    COMPRESSION_ATTR,
    FP16_FIXES_ATTR,
    FP16_PEAK_ATTR,
    FP16_WARNINGS_ATTR,
    NAME_ATTR,
    OP_ATTR,
    REASON_ATTR,
    TILE_OF_ATTR,
    Fp16Flag,
    name_of,
    notes,
)
from anec.sim.timing import (
    Cost,
    WeightTraffic,
    cost,
    host_seconds,
    op_work,
    program_seconds,
    program_time,
    weight_traffic,
)
from anec.targets import Target
from anec.weights import store_of

Placement = Literal["ane", "host"]

SUMMARY_NAMES = 8
"""Layers the weight summary names per palette width before it says how many more."""
ERROR_ENTERS = re.compile(r"fp16 error enters here \((?P<kind>[^)]+)\): rel L2 (?P<error>\S+) against float32(?:, its inputs (?P<inputs>[^\s,;()]+))?")
"""The note `anec.lowering.fp16_attribution` puts on an op where fp16 error enters (with samples)."""
OUTPUT_DIFFERS = re.compile(r"output '(?P<output>.+)' differs from float32 on the sample inputs")
"""The note it puts on the op computing a model output that misses the agreement bar."""


@dataclass
class OpRecord:
    name: str
    op: str
    placement: Placement
    reason: str
    flops: int
    bytes: int
    shape: list[int]
    predicted_s: float | None = None
    tiles: int = 1
    segment: int | None = None
    fp16_warnings: list[str] = field(default_factory=list)
    fp16_fixes: list[str] = field(default_factory=list)
    traffic_bytes: int = 0
    """Bytes read, written and streamed as weights (`bytes` counts the output only): the roofline's x."""
    fp16_peak: float | None = None
    """Largest magnitude of the output on the calibration inputs (None: not calibrated)."""
    inputs: list[int] = field(default_factory=list)
    """Indices in `Report.ops` of the ops whose outputs this op reads (the graph's edges)."""
    bound: str | None = None
    """What bounds the op on the ANE (its costliest tile's term: overhead, compute, weights,
    activations, l2-cliff); None on the CPU."""
    weight_bytes: int = 0
    """Its constant weights in fp16 (their logical size)."""
    stored_weight_bytes: int = 0
    """Its constant weights as the model stores them (smaller when compressed)."""
    weight_form: str = ""
    """A compressed weight's form and whether this chip streams it or expands it to fp16 first."""

    @property
    def fp16_flags(self) -> list[Fp16Flag]:
        """The range analysis's findings on this op."""
        return [f for w in self.fp16_warnings if (f := Fp16Flag.parse(w)) is not None]

    @property
    def fp16_error(self) -> tuple[str, float] | None:
        """(kind, relative L2 against float32) when fp16 error enters at this op on the sample inputs."""
        for w in self.fp16_warnings:
            if (found := ERROR_ENTERS.match(w)) is not None:
                return found["kind"], float(found["error"])
        return None


@dataclass
class Report:
    target: str
    ops: list[OpRecord]
    segments: int
    stats: dict[str, object] = field(default_factory=dict)
    """Figures the pipeline gathered: padding bytes before/after layout, pass timings, …"""

    def ran(self, pass_name: str) -> bool:
        """Whether the pipeline that produced this report ran `pass_name` (it timed every pass it ran)."""
        seconds = self.stats.get("pass_seconds")
        return isinstance(seconds, dict) and pass_name in seconds
    predicted_latency_s: float | None = None

    @property
    def host_ops(self) -> list[OpRecord]:
        return [r for r in self.ops if r.placement == "host"]

    @property
    def ane_flops_fraction(self) -> float:
        total = sum(r.flops for r in self.ops)
        return 1.0 if total == 0 else sum(r.flops for r in self.ops if r.placement == "ane") / total

    @property
    def fp16_warnings(self) -> list[str]:
        return [f"{r.name}: {w}" for r in self.ops for w in r.fp16_warnings]

    @property
    def fp16_fixes(self) -> list[str]:
        return [f"{r.name}: {w}" for r in self.ops for w in r.fp16_fixes]

    @property
    def fp16_flags(self) -> list[tuple[str, Fp16Flag]]:
        """(op name, finding) of the range analysis, proven first."""
        found = [(r.name, f) for r in self.ops for f in r.fp16_flags]
        return sorted(found, key=lambda nf: nf[1].verdict != "proven")

    @property
    def fp16_error_sources(self) -> list[tuple[str, str, float]]:
        """(op name, kind, relative L2) of every op where fp16 error enters on the sample inputs, worst first."""
        found = [(r.name, *e) for r in self.ops if (e := r.fp16_error) is not None]
        return sorted(found, key=lambda x: -x[2])

    @property
    def fp16_output_errors(self) -> list[str]:
        """Per model output that misses the bar on the sample inputs: its error and where the error enters."""
        return [w for r in self.ops for w in r.fp16_warnings if OUTPUT_DIFFERS.match(w)]

    @property
    def weight_bytes(self) -> int:
        return sum(r.weight_bytes for r in self.ops)

    @property
    def stored_weight_bytes(self) -> int:
        return sum(r.stored_weight_bytes for r in self.ops)

    @property
    def weight_summary(self) -> str | None:
        """Stored against fp16 weight bytes, when some weight is compressed (else None), and the layers
        `--compress palettize4` gave more bits."""
        compressed = [r for r in self.ops if r.weight_form and r.placement == "ane" and r.stored_weight_bytes < r.weight_bytes]
        if not compressed:
            return None
        expanded = sum("expanded" in r.weight_form for r in compressed)
        widened: dict[str, list[str]] = {}
        for r in self.ops:
            if MORE_BITS in r.weight_form:
                widened.setdefault(r.weight_form.split(",")[0] if r.stored_weight_bytes < r.weight_bytes else "fp16", []).append(r.name)
        more = "; ".join(f"{form}: {', '.join(names[:SUMMARY_NAMES])}{f' and {len(names) - SUMMARY_NAMES} more' if len(names) > SUMMARY_NAMES else ''}"
                         for form, names in sorted(widened.items()))
        return (f"weights: {self.stored_weight_bytes:,} bytes stored, {self.weight_bytes:,} in fp16 "
                f"({self.stored_weight_bytes / max(self.weight_bytes, 1):.2f}x); {len(compressed)} compressed op(s), "
                f"{len(compressed) - expanded} streamed compressed, {expanded} expanded to fp16 on this chip"
                + (f"; more bits for the layers that lose the most ({more})" if more else ""))

    @property
    def tiles(self) -> int:
        return sum(r.tiles for r in self.ops if r.placement == "ane" and r.tiles > 1)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "ane_flops_fraction": self.ane_flops_fraction,
            "host_ops": len(self.host_ops),
            "segments": self.segments,
            "predicted_latency_s": self.predicted_latency_s,
            "fp16_warnings": self.fp16_warnings,
            "fp16_fixes": self.fp16_fixes,
            "fp16": {"flags": [{"op": name, **asdict(flag)} for name, flag in self.fp16_flags],
                     "error_sources": [{"op": name, "kind": kind, "rel_l2": error} for name, kind, error in self.fp16_error_sources],
                     "outputs": self.fp16_output_errors},
            "tiles": self.tiles,
            "weight_bytes": self.weight_bytes,
            "stored_weight_bytes": self.stored_weight_bytes,
            "stats": self.stats,
            "ops": [asdict(r) for r in self.ops],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=str)


def _edge_cast(op: Operation) -> bool:
    """A cast the fp16 pass put at a segment edge: the segment's I/O conversion, not a model op."""
    if not isinstance(op, ane.CastOp):
        return False
    return isinstance(op.input.owner, Block) or all(isinstance(use.operation, ane.YieldOp) for use in op.result.uses)


def _walk_placed(module: ModuleOp) -> Iterator[tuple[Operation, int | None]]:
    """Every compute op with the index of its segment (None: CPU)."""
    segment_index = 0
    for fn in module.ops:
        if not isinstance(fn, func.FuncOp):
            continue
        for op in fn.body.block.ops:
            if isinstance(op, ane.SegmentOp):
                for inner in op.body.block.ops:
                    if not isinstance(inner, ane.YieldOp | ane.ConstOp) and not _edge_cast(inner):
                        yield inner, segment_index
                segment_index += 1
            elif isinstance(op, anehw.ProgramOp):
                for task in op.tasks():
                    yield task, segment_index
                segment_index += 1
            elif not isinstance(op, func.ReturnOp | ane.ConstOp):
                yield op, None


def _producers(module: ModuleOp) -> dict[int, list[Operation]]:
    """For every placed op (by id), the placed ops it reads from, followed through segment and
    program boundaries; inside a program, through the buffers its tasks read and write."""
    yielded = {id(s): s.body.block.last_op for s in module.walk() if isinstance(s, ane.SegmentOp)}
    outputs: dict[tuple[int, int], list[Operation]] = {}  # (program id, port) -> tasks writing that output

    def source(value: SSAValue) -> list[Operation]:
        if isinstance(value, BlockArgument):
            parent = value.block.parent_op()
            return source(parent.operands[value.index]) if isinstance(parent, ane.SegmentOp) else []
        assert isinstance(value, OpResult), value  # an SSA value is a block argument or an op's result
        owner = value.op
        if isinstance(owner, ane.SegmentOp):
            terminator = yielded[id(owner)]
            assert terminator is not None, "a verified ane.segment ends with ane.yield"
            return source(terminator.operands[value.index])
        if isinstance(owner, anehw.ProgramOp):
            return outputs.get((id(owner), value.index), [])
        if isinstance(owner, ane.ConstOp):
            return []
        return source(owner.operands[0]) if _edge_cast(owner) else [owner]

    out: dict[int, list[Operation]] = {}
    for op in module.walk():
        if isinstance(op, anehw.ProgramOp):
            buffers = {b.sym_name.data: b for b in op.buffers()}
            writers: dict[str, list[Operation]] = {}
            for task in op.tasks():
                reads: list[Operation] = []
                for view in (task.src1, task.src2):
                    buffer = buffers.get(view.buffer.data) if view is not None else None
                    if buffer is not None and buffer.role.data == "input" and buffer.port is not None:
                        reads += source(op.inputs[buffer.port.value.data])
                    elif buffer is not None:
                        reads += writers.get(buffer.sym_name.data, [])
                out[id(task)] = reads
                if task.dst is not None:
                    writers.setdefault(task.dst.buffer.data, []).append(task)
            for buffer in op.buffers():
                if buffer.role.data == "output" and buffer.port is not None:
                    outputs[(id(op), buffer.port.value.data)] = writers.get(buffer.sym_name.data, [])
        elif ane.is_ane(op) or isinstance(op, host.HostOp):
            out[id(op)] = [p for v in op.operands for p in source(v)]
    return out


@dataclass(frozen=True)
class _Cost:
    kind: str
    flops: int
    bytes: int
    shape: list[int]
    seconds: float
    traffic_bytes: int
    cost: Cost | None = None
    """The timing model's cost on the ANE (None: on the CPU), which the segment's pipeline overlaps."""
    weights: WeightTraffic | None = None


def _task_costs(module: ModuleOp, target: Target) -> dict[int, _Cost]:
    """Cost of every task of every `anehw.program`, from the timing model of its program."""
    out: dict[int, _Cost] = {}
    for program in [p for p in module.walk() if isinstance(p, anehw.ProgramOp)]:
        times = program_time(program_of(program, store_of(module), "", with_weights=False), target)
        for task, t in zip(program.tasks(), times.tasks):
            kind = task.attributes.get(OP_ATTR)
            out[id(task)] = _Cost(kind.data if isinstance(kind, StringAttr) else t.kind, int(t.work.flops), t.work.write_bytes, list(t.shape),
                                  t.cost.total_s, t.work.read_bytes + t.work.write_bytes + t.work.weight_bytes, t.cost)
    return out


def _op_cost(op: Operation, segment: int | None, target: Target) -> _Cost:
    kind = op.op_name.data if isinstance(op, host.HostOp) else ane.kind(op)
    written = sum(ane_bytes(shape_of(r)) for r in op.results)
    ane_cost = None
    if segment is None:
        read = sum(ane_bytes(shape_of(v)) for v in op.operands if hasattr(v.type, "get_shape"))
        seconds, traffic = host_seconds(op, target), read + written
    else:
        work = op_work(op, target)
        ane_cost = cost(work, target)
        seconds, traffic = ane_cost.total_s, work.read_bytes + work.write_bytes + work.weight_bytes
    return _Cost(kind, flops(op), written, list(shape_of(op.results[0])) if op.results else [], seconds, traffic, ane_cost,
                 weight_traffic(op, target) if segment is not None else None)


def _weight_form(weights: WeightTraffic | None, target: Target) -> str:
    if weights is None or not weights.form:
        return ""
    return f"{weights.form}, " + ("streamed compressed" if weights.streamed else f"expanded to fp16 on the {target.name}")


def build_report(module: ModuleOp, target: Target, stats: dict[str, object] | None = None) -> Report:
    """Read the placement, tiles, fp16 notes and predicted times off the compiled IR."""
    records: dict[str, OpRecord] = {}
    order: list[str] = []
    segments: set[int] = set()
    task_costs = _task_costs(module, target)
    producers = _producers(module)
    key_of: dict[int, str] = {}
    pipelines: dict[int, list[Cost]] = {}  # segment -> its ops' (or tasks') costs, in order
    rec_max: dict[str, float] = {}  # op -> its costliest piece's time (whose bound the op reports)
    host_s = 0.0
    for op, segment in _walk_placed(module):
        origin = op.attributes.get(TILE_OF_ATTR)
        named = isinstance(op.attributes.get(NAME_ATTR), StringAttr)
        key = origin.data if isinstance(origin, StringAttr) else name_of(op) if id(op) in task_costs and named else f"{name_of(op)}@{id(op)}"
        placement: Placement = "ane" if segment is not None else "host"
        if segment is not None:
            segments.add(segment)
        reason = op.attributes.get(REASON_ATTR)
        c = task_costs.get(id(op)) or _op_cost(op, segment, target)
        if c.cost is not None and segment is not None:
            pipelines.setdefault(segment, []).append(c.cost)
        else:
            host_s += c.seconds
        key_of[id(op)] = key
        if key in records:  # another tile (or task) of an op already recorded
            rec = records[key]
            rec.tiles += 1 if isinstance(origin, StringAttr) else 0
            rec.flops += c.flops
            rec.bytes += c.bytes
            rec.traffic_bytes += c.traffic_bytes
            if c.cost is not None and c.seconds > rec_max.get(key, 0.0):
                rec.bound, rec_max[key] = c.cost.bound, c.seconds
            rec.predicted_s = (rec.predicted_s or 0.0) + c.seconds
            if c.weights is not None:
                rec.weight_bytes += c.weights.logical_bytes
                rec.stored_weight_bytes += c.weights.stored_bytes
            continue
        records[key] = OpRecord(
            name=origin.data if isinstance(origin, StringAttr) else name_of(op),
            op=c.kind,
            placement=placement,
            reason="" if placement == "ane" else (reason.data if isinstance(reason, StringAttr) else "not placed on the ANE"),
            flops=c.flops,
            bytes=c.bytes,
            shape=c.shape,
            predicted_s=c.seconds,
            segment=segment,
            fp16_warnings=notes(op, FP16_WARNINGS_ATTR),
            fp16_fixes=notes(op, FP16_FIXES_ATTR),
            traffic_bytes=c.traffic_bytes,
            fp16_peak=peak.value.data if isinstance(peak := op.attributes.get(FP16_PEAK_ATTR), FloatAttr) else None,
            bound=c.cost.bound if c.cost is not None else None,
            weight_bytes=c.weights.logical_bytes if c.weights is not None else 0,
            stored_weight_bytes=c.weights.stored_bytes if c.weights is not None else 0,
            weight_form="; ".join(filter(None, [_weight_form(c.weights, target), *notes(op, COMPRESSION_ATTR)])),
        )
        rec_max[key] = c.seconds
        order.append(key)
    index = {key: i for i, key in enumerate(order)}
    for op_id, key in key_of.items():
        rec = records[key]
        reads = {index[key_of[id(p)]] for p in producers.get(op_id, []) if id(p) in key_of} - {index[key]}
        rec.inputs = sorted(set(rec.inputs) | reads)
    # Each segment is one dispatch whose ops overlap as the program model says (`predicted_s` is an
    # op alone); the CPU ops run in between.
    latency = host_s + sum(program_seconds(costs, target) for costs in pipelines.values())
    return Report(target=target.arch, ops=[records[k] for k in order], segments=len(segments), stats=dict(stats or {}),
                  predicted_latency_s=latency)
