"""The placement report: every op, where it runs and why not on the ANE, its cost and fp16 notes.

The report is derived from the final IR (segment membership, `ane.reason`, `ane.fp16_*` attributes,
tile origins) plus the statistics the pipeline driver gathered between passes, so it can never
disagree with what was compiled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr
from xdsl.ir import Block, Operation

from anec.analysis import ane_bytes, flops
from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.targets import Target

NAME_ATTR = "ane.name"
REASON_ATTR = "ane.reason"
FP16_WARNINGS_ATTR = "ane.fp16_warnings"
FP16_FIXES_ATTR = "ane.fp16_fixes"
TILE_OF_ATTR = "ane.tile_of"
"""On each op the tile pass makes: the `ane.name` of the op it was split from."""

Placement = Literal["ane", "host"]


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


@dataclass
class Report:
    target: str
    ops: list[OpRecord]
    segments: int
    stats: dict[str, object] = field(default_factory=dict)
    """Figures the pipeline gathered: padding bytes before/after layout, pass timings, …"""
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
            "tiles": self.tiles,
            "stats": self.stats,
            "ops": [asdict(r) for r in self.ops],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=str)


def _strings(op: Operation, key: str) -> list[str]:
    attr = op.attributes.get(key)
    return [a.data for a in attr.data if isinstance(a, StringAttr)] if isinstance(attr, ArrayAttr) else []


def op_name(op: Operation) -> str:
    attr = op.attributes.get(NAME_ATTR)
    return attr.data if isinstance(attr, StringAttr) else op.name


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
            elif not isinstance(op, func.ReturnOp | ane.ConstOp):
                yield op, None


def build_report(module: ModuleOp, target: Target, stats: dict[str, object] | None = None) -> Report:
    """Read the placement, tiles and fp16 notes off the compiled IR."""
    records: dict[str, OpRecord] = {}
    order: list[str] = []
    segments: set[int] = set()
    for op, segment in _walk_placed(module):
        origin = op.attributes.get(TILE_OF_ATTR)
        key = origin.data if isinstance(origin, StringAttr) else f"{op_name(op)}@{id(op)}"
        placement: Placement = "ane" if segment is not None else "host"
        if segment is not None:
            segments.add(segment)
        reason = op.attributes.get(REASON_ATTR)
        out_shape = list(shape_of(op.results[0])) if op.results else []
        if key in records:  # another tile of an op already recorded
            rec = records[key]
            rec.tiles += 1
            rec.flops += flops(op)
            rec.bytes += sum(ane_bytes(shape_of(r)) for r in op.results)
            continue
        records[key] = OpRecord(
            name=origin.data if isinstance(origin, StringAttr) else op_name(op),
            op=op.name.removeprefix("ane.") if not op.name.startswith("host.") else op.op_name.data,  # type: ignore[attr-defined]
            placement=placement,
            reason="" if placement == "ane" else (reason.data if isinstance(reason, StringAttr) else "not placed on the ANE"),
            flops=flops(op),
            bytes=sum(ane_bytes(shape_of(r)) for r in op.results),
            shape=out_shape,
            segment=segment,
            fp16_warnings=_strings(op, FP16_WARNINGS_ATTR),
            fp16_fixes=_strings(op, FP16_FIXES_ATTR),
        )
        order.append(key)
    return Report(target=target.arch, ops=[records[k] for k in order], segments=len(segments), stats=dict(stats or {}))
