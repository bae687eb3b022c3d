"""A descriptor program as data: the buffer table, the task descriptors and the weight section.

This is what `anec.descriptors.binary` writes and reads, what the simulator executes and what the
timing model costs. A task holds only register-field values; everything the simulator needs (the
5-D views its DMAs walk, the coefficient streams it reads) is derived here from those fields, so
the derivation exists once.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from anec.compression import KERNEL_FORMATS, kernel_stream_nbytes
from anec.isa.fields import GROUP_NAMES, FieldTable, table_for
from anec.isa.tasks import LUT_WORDS, NORMS, Coeff, Kind

Role = Literal["weights", "input", "output", "intermediate"]
ROLES: tuple[Role, ...] = ("weights", "input", "output", "intermediate")


def role_named(name: str) -> Role:
    """The buffer role called `name`."""
    for role in ROLES:
        if role == name:
            return role
    raise ValueError(f"no buffer role {name!r}; roles are {', '.join(ROLES)}")

COMMAND_SLOT, WEIGHT_SLOT, ARENA_SLOT, FIRST_IO_SLOT, SLOTS = 0, 1, 2, 4, 32
"""The BAR-slot convention (eco (c), eiln): 0 the TD stream, 1 weights, 2-3 intermediates, then
outputs, then inputs; 32 slots."""

Extents = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class View:
    """A 5-D strided window of a slot: fp16 elements at `base + sum(index * stride)` bytes."""

    slot: int
    base: int
    strides: Extents
    extents: Extents

    @cached_property
    def span(self) -> tuple[int, int]:
        """[lowest, highest] byte touched (inclusive of the last element's 2 bytes); computed once per view,
        as validation and the timing model look every view's holder up among the live buffers."""
        lo = hi = self.base
        for e, s in zip(self.extents, self.strides):
            if s > 0:
                hi += (e - 1) * s
            else:
                lo += (e - 1) * s
        return lo, hi + 2


def buffer_strides(shape: tuple[int, ...], row_align: int) -> tuple[int, ...]:
    """Byte strides of the ANE layout: fp16, W contiguous, rows padded to `row_align`, outer axes dense."""
    strides = [2] * len(shape)
    if len(shape) >= 2:
        strides[-2] = -(-2 * shape[-1] // row_align) * row_align
        for i in range(len(shape) - 3, -1, -1):
            strides[i] = strides[i + 1] * shape[i + 1]
    return tuple(strides)


def buffer_bytes(shape: tuple[int, ...], row_align: int) -> int:
    """Bytes a tensor of `shape` occupies in the ANE layout."""
    row = -(-2 * shape[-1] // row_align) * row_align
    return row * math.prod(shape[:-1])


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


@dataclass(frozen=True)
class Buffer:
    """One row of the buffer table: a tensor bound to a slot (or the weight section)."""

    slot: int
    role: Role
    port: int                    # input/output index (0 for weights and intermediates)
    offset: int                  # bytes into the slot
    size: int                    # bytes, a multiple of the 16 KB page
    shape: tuple[int, ...]       # logical shape (rank <= 5)
    strides: tuple[int, ...]     # byte strides per logical axis (the last is 2: W is contiguous fp16)
    first_task: int = 0          # the buffer holds its tensor from this task …
    last_task: int = 0           # … to this one (intermediates sharing bytes never overlap in time)

    def holds(self, view: View, task_index: int) -> bool:
        """Whether `view` lies inside this buffer while task `task_index` runs."""
        if view.slot != self.slot or not self.first_task <= task_index <= self.last_task:
            return False
        lo, hi = view.span
        return self.offset <= lo and hi <= self.offset + self.size


@dataclass
class Task:
    """One task descriptor: the header and the seven register groups, nonzero fields only."""

    regs: dict[str, dict[str, int]]
    name: str = ""

    def __post_init__(self) -> None:
        for g in ("header", *GROUP_NAMES):
            self.regs.setdefault(g, {})

    def get(self, group: str, name: str) -> int:
        return self.regs[group].get(name, 0)

    @property
    def kind(self) -> Kind:
        return Kind(self.get("kernel_dma", "Kind"))

    @property
    def mode(self) -> int:
        return self.get("kernel_dma", "Mode")

    @property
    def in_extents(self) -> Extents:
        c = self.regs["common"]
        return (self.get("kernel_dma", "InBatch"), c.get("InputDepth", 0), c.get("Cin", 0), c.get("Hin", 0), c.get("Win", 0))

    @property
    def out_extents(self) -> Extents:
        c = self.regs["common"]
        return (self.get("kernel_dma", "OutBatch"), c.get("OutDepth", 0), c.get("Cout", 0), c.get("Hout", 0), c.get("Wout", 0))

    @property
    def groups(self) -> int:
        return max(self.get("common", "NumGroups"), 1)

    def flag(self, name: str) -> bool:
        return bool(self.get("kernel_dma", name))

    def src2_extents(self) -> Extents | None:
        """What src2 holds, implied by the kind (the TD has no src2 shape registers)."""
        n, d, c, _, w = self.out_extents
        kind = self.kind
        if kind == Kind.ELEMENTWISE:
            return self.out_extents
        if kind == Kind.MATMUL:
            _, _, _, hin, win = self.in_extents
            k = hin if self.flag("TransposeLhs") else win
            return (n, d, c, w, k) if self.flag("TransposeRhs") else (n, d, c, k, w)
        if kind in (Kind.CONV, Kind.DECONV) and self.flag("KernelFromSrc2"):
            kh, kw = self.kernel_hw
            cin = self.in_extents[2]
            return (c, 1, cin // self.groups, kh, kw) if kind == Kind.CONV else (cin, 1, c // self.groups, kh, kw)
        return None

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return self.get("common", "Kh"), self.get("common", "Kw")

    def coeff_elements(self, channel: Coeff) -> int:
        """fp16 elements coefficient stream `channel` must hold for this task (0: unused)."""
        kind, (_, _, cout, _, wout), cin = self.kind, self.out_extents, self.in_extents[2]
        kh, kw = self.kernel_hw
        if channel == Coeff.KERNEL and kind in (Kind.CONV, Kind.DECONV) and not self.flag("KernelFromSrc2"):
            return cout * (cin // self.groups) * kh * kw if kind == Kind.CONV else cin * (cout // self.groups) * kh * kw
        if channel == Coeff.BIAS and kind in (Kind.CONV, Kind.DECONV):
            return cout
        if channel == Coeff.BIAS and kind == Kind.MATMUL:
            return wout
        if channel in (Coeff.BIAS, Coeff.SCALE) and kind == Kind.NORM:
            return norm_affine_elements(self)
        if channel == Coeff.LUT:
            return LUT_WORDS
        return 0


def norm_affine_elements(task: Task) -> int:
    """Scale/bias length of a NORM task: the normalized axes (layer), else the channels."""
    if NORMS[task.mode] == "layer":
        mask = task.get("planar", "AxisMask")
        return math.prod(e for i, e in enumerate(task.out_extents) if mask >> i & 1)
    return task.out_extents[2]


def _dma(task: Task, group: str, prefix: str, slot_field: str, w_offset: int, w_step: int) -> tuple[int, int, Extents]:
    r = task.regs[group]
    g = lambda n: r.get(prefix + n, 0)  # noqa: E731
    slot = task.get("header", slot_field)
    base = 64 * g("BaseAddr") + 2 * w_offset
    strides = (64 * g("GroupStride"), 64 * g("DepthStride"), 64 * g("PlaneStride"), 64 * g("RowStride"), 2 * w_step)
    return slot, base, strides


def src1_view(task: Task) -> View | None:
    if not task.get("header", "RBE0"):
        return None
    slot, base, strides = _dma(task, "tile_src", "", "RBase0", task.get("tile_src", "PixelOffset0"), task.get("tile_src", "WStep"))
    return View(slot, base, strides, task.in_extents)


def src2_view(task: Task) -> View | None:
    extents = task.src2_extents()
    if not task.get("header", "RBE1") or extents is None:
        return None
    slot, base, strides = _dma(task, "tile_src", "Src2", "RBase1", task.get("tile_src", "Src2PixelOffset"), task.get("tile_src", "Src2WStep"))
    return View(slot, base, strides, extents)


def dst_view(task: Task) -> View | None:
    if not task.get("header", "WBE"):
        return None
    slot, base, strides = _dma(task, "tile_dst", "", "WBase", task.get("l2", "ResultPixelOffset"), 1)
    return View(slot, base, strides, task.out_extents)


def coeff_range(task: Task, channel: int) -> tuple[int, int] | None:
    """(byte offset, byte size) of an enabled coefficient stream within the weight section."""
    if not task.get("kernel_dma", f"CoeffEn{channel}"):
        return None
    return 64 * task.get("kernel_dma", f"CoeffBaseAddr{channel}"), 64 * task.get("kernel_dma", f"CoeffBfrSize{channel}")


def kernel_stream_form(task: Task) -> str | None:
    """The compressed form of a task's kernel stream (its `neural` format fields), None for fp16."""
    if task.get("neural", "PalettizedEn"):
        return f"palette{task.get('neural', 'PalettizedBits')}"
    if task.get("neural", "SparseFmt"):
        return "sparse"
    fmt = task.get("neural", "KernelFmt")
    return next((form for form, code in KERNEL_FORMATS.items() if code == fmt), None) if fmt else None


def kernel_stream_bytes(task: Task) -> int:
    """The bytes a task's kernel stream must hold: fp16 values, or its compressed form (of a sparse
    kernel, at least its mask: how many values follow, the mask says)."""
    count, form = task.coeff_elements(Coeff.KERNEL), kernel_stream_form(task)
    return 2 * count if form is None else kernel_stream_nbytes(form, (task.out_extents[2], count // max(task.out_extents[2], 1)))


def fp16_bits(value: float) -> int:
    """The bits of `value` rounded to fp16 (half to even; beyond 65504 it is ±inf)."""
    import numpy as np

    with np.errstate(over="ignore"):
        return int(np.array(value, dtype=np.float32).astype(np.float16).view(np.uint16))


def fp16_value(bits: int) -> float:
    return struct.unpack("<e", struct.pack("<H", bits & 0xFFFF))[0]


def f32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def f32_value(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


@dataclass
class Program:
    """One ANE program (one segment): what `.anec` stores per program section."""

    arch: str
    buffers: list[Buffer]
    tasks: list[Task]
    weights: bytes | memoryview = b""
    """The weight section; decoded from a file, a view of the file's bytes (a 200 MB section is not copied)."""
    name: str = ""

    @property
    def table(self) -> FieldTable:
        return table_for(self.arch)

    def ports(self, role: Role) -> list[Buffer]:
        return sorted((b for b in self.buffers if b.role == role), key=lambda b: b.port)

    @property
    def inputs(self) -> list[Buffer]:
        return self.ports("input")

    @property
    def outputs(self) -> list[Buffer]:
        return self.ports("output")

    def live_buffers(self) -> list[list[Buffer]]:
        """Per task, the buffers live while it runs: one sweep over the table in task order, so checking
        every task's views costs tasks × live buffers, not tasks × all buffers (an unrolled LSTM has
        thousands of intermediates, a few dozen live at a time)."""
        starting = sorted(self.buffers, key=lambda b: b.first_task)
        live: list[Buffer] = []
        out: list[list[Buffer]] = []
        k = 0
        for index in range(len(self.tasks)):
            while k < len(starting) and starting[k].first_task <= index:
                live.append(starting[k])
                k += 1
            live = [b for b in live if b.last_task >= index]
            out.append(live)
        return out

    def slot_sizes(self) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for b in self.buffers:
            sizes[b.slot] = max(sizes.get(b.slot, 0), b.offset + b.size)
        return sizes


class ProgramRunner(Protocol):
    """What runs one program of a file (the simulator's `Machine`, a layer above)."""

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class AnecFile:
    """A whole compiled model: ANE programs, the host graph that calls them, and host-side weights."""

    arch: str
    programs: list[Program]
    graph: str                                   # textual IR: func.func with anehw.call and host ops
    host_weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""                             # the model file it was compiled from (informational)
    module: ModuleOp | None = field(default=None, compare=False, repr=False)
    """The parsed graph (a ModuleOp with the host weights attached), set by the decoder."""
    machines: dict[int, ProgramRunner] = field(default_factory=dict, compare=False, repr=False)
    """Simulator state per program index, kept between runs (anec.runtime)."""
