"""The discardable attributes anec puts on IR, declared once, beside the dialects that own them.

Passes write them, and the report, the emitters and the runtime read them: every module that tags
or reads an op imports its names and helpers from here (as xDSL's `gpu` dialect declares
`gpu.known_block_size`), never from a consumer such as the report.

Derived names: an op a pass makes in place of another is named `<source>#<what>` (`/conv1#tile3`,
`/attn#layout`); `derived_name` builds such a name and `source_name` recovers the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from xdsl.dialects.builtin import ArrayAttr, FloatAttr, StringAttr
from xdsl.ir import Operation

NAME_ATTR = "ane.name"
"""On ops: the source-model node an op comes from. On function arguments and results: the I/O name."""
REASON_ATTR = "ane.reason"
"""On ops outside ANE segments: why the op is not on the ANE (the first failing legality rule)."""
TILE_OF_ATTR = "ane.tile_of"
"""On each op the tile pass makes: the `ane.name` of the op it was split from."""
FP16_WARNINGS_ATTR = "ane.fp16_warnings"
"""Findings of the fp16 lint on an op (strings)."""
FP16_FIXES_ATTR = "ane.fp16_fixes"
"""Rewrites the fp16 pass applied to an op (strings)."""
FP16_PEAK_ATTR = "ane.fp16_peak"
"""On each segment op calibrated by ane-fp16: the largest magnitude its output reached in float32."""
FP16_ENTERS_ATTR = "ane.fp16_enters"
"""On each op where the calibrated error attribution found fp16 error entering: its output's
relative L2 error against float32 (what `--precision auto` ranks ops by)."""
FP16_ENTERS_AT_ATTR = "ane.fp16_enters_at"
"""On an op another was folded into after the attribution (`ane-fuse`: a scale into a MAC's
weights): the `ane.name` of the folded op where fp16 error entered, which `--precision auto` keeps
in float32 (that keeps it out of the fold)."""

COMPRESSION_ATTR = "ane.compression"
"""On a MAC op whose weight `ane-compress` compressed: the form and the weight's relative error."""
OP_ATTR = "ane.op"
"""On `anehw.task`s: the kind of `ane` op the task computes (`conv`, `matmul`, …)."""
SOURCE_ATTR = "ane.source"
"""On the module: the model file it was compiled from (so `anec run --check` finds the reference)."""
WEIGHTS_FILE_ATTR = "ane.weights_file"
"""On a saved module: the `.npz` weight store its `ane.const` handles refer into."""

ARG_SLOTS_ATTR = "host.arg_slots"
"""On a `host.op` whose source op skips optional inputs: each operand's position among them."""
RESULT_SLOTS_ATTR = "host.result_slots"
"""On a `host.op` whose source op skips optional outputs: each result's position among them."""
CAPTURED_ATTR = "host.captured"
"""On a `host.op` whose subgraphs read values of the enclosing graph: their names, one per trailing operand."""

DERIVED_SEPARATOR = "#"
TILE = "tile"
"""Tiles are named `derived_name(<op name>, f"{TILE}{n}")`."""

OpT = TypeVar("OpT", bound=Operation)


def derived_name(base: str, what: str) -> str:
    """The name of an op a pass made from the op named `base` (`what` says which piece or role)."""
    return f"{base}{DERIVED_SEPARATOR}{what}" if what else base


def source_name(name: str) -> str:
    """The source-model name an op's (possibly derived) name comes from."""
    return name.split(DERIVED_SEPARATOR, 1)[0]


def name_of(op: Operation) -> str:
    """The op's `ane.name`, or its op name when it has none."""
    attr = op.attributes.get(NAME_ATTR)
    return attr.data if isinstance(attr, StringAttr) else op.name


def set_name(op: OpT, name: str) -> OpT:
    op.attributes[NAME_ATTR] = StringAttr(name)
    return op


def string_attr(op: Operation, key: str) -> str | None:
    """A string attribute's value, or None when the op lacks it."""
    attr = op.attributes.get(key)
    return attr.data if isinstance(attr, StringAttr) else None


def notes(op: Operation, key: str) -> list[str]:
    """The strings of an array-of-strings attribute (`ane.fp16_warnings`, `ane.fp16_fixes`)."""
    attr = op.attributes.get(key)
    return [a.data for a in attr.data if isinstance(a, StringAttr)] if isinstance(attr, ArrayAttr) else []


def append_note(op: Operation, key: str, note: str) -> None:
    """Add one string to an array-of-strings attribute, once."""
    old = notes(op, key)
    if note not in old:
        op.attributes[key] = ArrayAttr([StringAttr(n) for n in [*old, note]])


def fold_fp16_findings(source: Operation, target: Operation) -> None:
    """`source` is being folded into `target`: its fp16 warnings, and where fp16 error enters, move
    with it, so the report and `--precision auto` still see them once `source` is gone."""
    for note in notes(source, FP16_WARNINGS_ATTR):
        append_note(target, FP16_WARNINGS_ATTR, f"{note} (in {name_of(source)}, folded into this op)")
    entered, kept = source.attributes.get(FP16_ENTERS_ATTR), target.attributes.get(FP16_ENTERS_ATTR)
    if isinstance(entered, FloatAttr) and not (isinstance(kept, FloatAttr) and kept.value.data >= entered.value.data):
        target.attributes[FP16_ENTERS_ATTR] = entered
        target.attributes[FP16_ENTERS_AT_ATTR] = StringAttr(string_attr(source, FP16_ENTERS_AT_ATTR) or name_of(source))


def tiled_name(origin: str, index: int) -> str:
    """The name of the `index`-th tile of the op named `origin`."""
    return derived_name(origin, f"{TILE}{index}")


def tile_origin(name: str) -> str:
    """The name of the op a tile (or a task lowered from one) was split from; `name` if not a tile."""
    return name.split(f"{DERIVED_SEPARATOR}{TILE}", 1)[0]


@dataclass(frozen=True)
class Fp16Flag:
    """A finding of the fp16 range analysis, as an `ane.fp16_warnings` note the report can read back:
    `range analysis: overflow (proven): bound 1.2e+05, limit 65504; <why>`."""

    kind: str
    """overflow, MAC saturation, partial-sum overflow or underflow."""
    verdict: str
    """proven or possible."""
    bound: float
    """How far the value can go: the largest magnitude (for underflow, the smallest)."""
    limit: float
    why: str = ""

    PREFIX = "range analysis: "

    def note(self) -> str:
        return f"{self.PREFIX}{self.kind} ({self.verdict}): bound {self.bound:.3g}, limit {self.limit:g}" + (f"; {self.why}" if self.why else "")

    @classmethod
    def parse(cls, note: str) -> Fp16Flag | None:
        """The flag a note holds, or None for any other note."""
        found = _FLAG.fullmatch(note)
        if found is None:
            return None
        return cls(found["kind"], found["verdict"], float(found["bound"]), float(found["limit"]), found["why"] or "")


_FLAG = re.compile(re.escape(Fp16Flag.PREFIX) + r"(?P<kind>[^(]+) \((?P<verdict>proven|possible)\): bound (?P<bound>\S+), "
                   r"limit (?P<limit>[^;]+)(?:; (?P<why>.*))?", re.DOTALL)
