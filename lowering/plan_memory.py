"""`plan-memory`: place every tensor and weight of each `anehw.program`, then turn views into fields.

Layout rules (targets.Memory): rows are padded to 64 bytes, outer axes are dense, every buffer is a
whole number of 16 KB pages. Slots follow the hardware convention: 1 the weight section, 2 the arena
of intermediates, then the outputs, then the inputs, one slot each. Intermediates share the arena:
a buffer's lifetime runs from the first to the last task that touches it, and buffers whose
lifetimes do not overlap may take the same bytes (first fit, largest first). Weights are laid out
64-byte aligned in declaration order; a weight a tile DMA reads is stored in the tensor layout.

Afterwards every task's header names its slots (RBase0/RBase1/WBase, KBase0) and its DMA groups hold
bases, strides and pixel offsets in the hardware's 64-byte units.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from anec.compression import weight_stream_nbytes
from anec.descriptors.program import (
    ARENA_SLOT,
    FIRST_IO_SLOT,
    SLOTS,
    WEIGHT_SLOT,
    buffer_bytes,
    round_up,
)
from anec.descriptors.validate import MAX_SLOT_BYTES
from anec.dialects import anehw
from anec.dialects.anehw import FIELD_GROUPS
from anec.dialects.discardable import NAME_ATTR, string_attr
from anec.errors import AnecError
from anec.isa.fields import FieldTable, table_for
from anec.targets import Memory, get_target
from anec.weights import WeightStore, store_of

COEFF_CHANNELS = {name: i for i, name in enumerate(anehw.COEFF_NAMES)}


@dataclass(frozen=True)
class Placement:
    slot: int
    offset: int      # bytes into the slot
    row_bytes: int   # bytes per row of this tensor


def weight_bytes(weight: anehw.WeightOp, memory: Memory, store: WeightStore) -> int:
    if weight.encoding is not None:
        stored = store.compressed(weight.handle.data)
        assert stored is not None, f"{weight.handle.data} is encoded, so its weight is stored compressed"
        return round_up(weight_stream_nbytes(stored, weight.encoding.data), memory.row_alignment_bytes.value)
    if weight.layout.data == "tensor":
        return buffer_bytes(weight.dims, memory.row_alignment_bytes.value)
    return round_up(2 * _count(weight.dims), memory.row_alignment_bytes.value)


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _lifetimes(program: anehw.ProgramOp) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    for i, task in enumerate(program.tasks()):
        for view in (task.src1, task.src2, task.dst):
            if view is not None:
                name = view.buffer.data
                first, _ = spans.get(name, (i, i))
                spans[name] = (first, i)
    return spans


PACKING_WINDOW = 64
"""Tasks per bucket of `pack_arena`'s time index."""


def pack_arena(sizes: dict[str, int], spans: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Offsets for buffers of `sizes` so that no two with overlapping lifetimes share bytes: each in
    turn (largest first) at the lowest offset clear of the placed buffers live at the same time. The
    placed buffers are indexed by windows of `PACKING_WINDOW` tasks, so finding those costs the
    buffers near a lifetime, not all placed so far (an unrolled recurrence has thousands)."""
    placed: list[tuple[int, int, int, int]] = []   # offset, size, first, last
    by_window: dict[int, list[int]] = {}           # window -> indices into placed of the buffers live in it
    offsets: dict[str, int] = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], spans.get(n, (0, 0)), n)):
        first, last = spans.get(name, (0, 0))
        windows = range(first // PACKING_WINDOW, last // PACKING_WINDOW + 1)
        near = {i for w in windows for i in by_window.get(w, ())}
        busy = sorted((o, o + s) for o, s, f, l in (placed[i] for i in near) if f <= last and first <= l)
        offset = 0
        for lo, hi in busy:
            if offset + sizes[name] <= lo:
                break
            offset = max(offset, hi)
        offsets[name] = offset
        for w in windows:
            by_window.setdefault(w, []).append(len(placed))
        placed.append((offset, sizes[name], first, last))
    return offsets


def plan_program(program: anehw.ProgramOp) -> None:
    memory = get_target(program.arch.data).memory
    align, page = memory.row_alignment_bytes.value, memory.buffer_page_bytes.value
    places: dict[str, Placement] = {}
    store = store_of(program)

    offset = 0
    for weight in program.weights():
        size = weight_bytes(weight, memory, store)
        weight.properties["offset"], weight.properties["size"] = anehw.int_attr(offset), anehw.int_attr(size)
        places[weight.sym_name.data] = Placement(WEIGHT_SLOT, offset, round_up(2 * weight.dims[-1], align))
        offset += size

    buffers = program.buffers()
    outputs = sorted((b for b in buffers if b.role.data == "output"), key=anehw.BufferOp.port_index)
    inputs = sorted((b for b in buffers if b.role.data == "input"), key=anehw.BufferOp.port_index)
    if FIRST_IO_SLOT + len(outputs) + len(inputs) > SLOTS:
        raise AnecError(f"a program with {len(inputs)} inputs and {len(outputs)} outputs needs more than the {SLOTS} buffer slots",
                        hint="fewer values crossing between the ANE and the CPU (fewer host ops in the middle of the model)")
    sizes = {b.sym_name.data: round_up(buffer_bytes(b.dims, align), page) for b in buffers}
    for slot, b in enumerate([*outputs, *inputs], start=FIRST_IO_SLOT):
        places[b.sym_name.data] = Placement(slot, 0, round_up(2 * b.dims[-1], align))
    arena = [b for b in buffers if b.role.data == "intermediate"]
    spans = _lifetimes(program)
    offsets = pack_arena({b.sym_name.data: sizes[b.sym_name.data] for b in arena}, spans)
    _check_slot_sizes(program, sizes, offsets)
    whole = (0, max(len(program.tasks()) - 1, 0))
    for b in arena:
        places[b.sym_name.data] = Placement(ARENA_SLOT, offsets[b.sym_name.data], round_up(2 * b.dims[-1], align))
    for b in buffers:
        place = places[b.sym_name.data]
        live = spans.get(b.sym_name.data, (0, 0)) if b.role.data == "intermediate" else whole
        b.properties.update(slot=anehw.int_attr(place.slot), offset=anehw.int_attr(place.offset), size=anehw.int_attr(sizes[b.sym_name.data]),
                            live=anehw.ints(live))

    weights = {w.sym_name.data: w for w in program.weights()}
    tasks = program.tasks()
    table = table_for(program.arch.data)
    for index, task in enumerate(tasks):
        _fill_task(task, index, index == len(tasks) - 1, places, weights)
        _check_fields(task, index, table)


def _check_fields(task: anehw.TaskOp, index: int, table: FieldTable) -> None:
    """A field this pass filled that overflows is one line naming the task, not a verifier error
    printing the whole module."""
    for group in FIELD_GROUPS:
        for name, value in task.fields(group).items():
            try:
                table.check(group, name, value)
            except AnecError as e:
                where = task_name if (task_name := string_attr(task, NAME_ATTR)) is not None else f"task {index}"
                raise AnecError(f"cannot place the buffers of task {index} for {table.arch}", where=where, why=e.what,
                                hint="the tile pass must split it further") from None


def _check_slot_sizes(program: anehw.ProgramOp, sizes: dict[str, int], offsets: dict[str, int]) -> None:
    """A slot larger than a task's 32-bit addresses cannot be encoded (its offsets and strides overflow
    their fields): refuse it here, in one line that says how big, before any run allocates it."""
    arena = max((offsets[n] + sizes[n] for n in offsets), default=0)
    largest = max(program.buffers(), key=lambda b: sizes[b.sym_name.data], default=None)
    if largest is None or max(arena, sizes[largest.sym_name.data]) <= MAX_SLOT_BYTES:
        return
    shape = "x".join(map(str, largest.dims))
    what = (f"its largest buffer, {largest.sym_name.data} ({shape} fp16), needs {_gib(sizes[largest.sym_name.data])}"
            if sizes[largest.sym_name.data] > MAX_SLOT_BYTES else f"its intermediates need {_gib(arena)} at once")
    raise AnecError(f"an ANE program does not fit the {_gib(MAX_SLOT_BYTES)} a task can address", why=what,
                    hint="smaller input shapes, or fewer large tensors alive at once")


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.3g} GiB"


PIXEL_OFFSET_MAX = (1 << 16) - 1
"""The pixel-offset fields (`PixelOffset0`, `Src2PixelOffset`, `ResultPixelOffset`) are 16 bits."""


def _dma_fields(view: anehw.ViewAttr, place: Placement, prefix: str = "") -> tuple[dict[str, int], int]:
    """The base and stride fields of a view, and its pixel offset. A W origin past the 16-bit pixel
    offset (a window of a row wider than 65536, as tiles of a wide concatenation are) moves whole
    64-byte units (32 elements) into the base address: the address is the same, and the pixel offset
    stays nonzero, as the cropped read it was."""
    unit = 64
    strides = [r * place.row_bytes // unit for r in view.row_strides]
    pixel = view.w_offset.data
    moved = (pixel - PIXEL_OFFSET_MAX + unit // 2 - 1) // (unit // 2) if pixel > PIXEL_OFFSET_MAX else 0
    fields = {
        f"{prefix}BaseAddr": (place.offset + view.offset.data * place.row_bytes) // unit + moved,
        f"{prefix}GroupStride": strides[0], f"{prefix}DepthStride": strides[1],
        f"{prefix}PlaneStride": strides[2], f"{prefix}RowStride": strides[3],
    }
    return fields, pixel - moved * (unit // 2)


def _fill_task(task: anehw.TaskOp, index: int, last: bool, places: dict[str, Placement], weights: dict[str, anehw.WeightOp]) -> None:
    header: dict[str, int] = {"TID": index, "EON": int(last)}
    if task.src1 is not None:
        place = places[task.src1.buffer.data]
        header.update(RBase0=place.slot, RBE0=1)
        fields, pixel = _dma_fields(task.src1, place)
        task.update_fields("tile_src", fields | {"En": 1, "PixelOffset0": pixel, "WStep": task.src1.w_step.data})
    if task.src2 is not None:
        place = places[task.src2.buffer.data]
        header.update(RBase1=place.slot, RBE1=1)
        fields, pixel = _dma_fields(task.src2, place, "Src2")
        task.update_fields("tile_src", fields | {"Src2En": 1, "Src2PixelOffset": pixel, "Src2WStep": task.src2.w_step.data})
    if task.dst is not None:
        place = places[task.dst.buffer.data]
        header.update(WBase=place.slot, WBE=1)
        fields, pixel = _dma_fields(task.dst, place)
        task.update_fields("tile_dst", fields | {"En": 1})
        task.update_fields("l2", {"ResultPixelOffset": pixel})
    coeffs: dict[str, int] = {}
    for name, channel in COEFF_CHANNELS.items():
        ref = task.coefficient(name)
        if ref is None:
            continue
        offset, size = weights[ref].placement()
        coeffs.update({f"CoeffEn{channel}": 1, f"CoeffBaseAddr{channel}": offset // 64, f"CoeffBfrSize{channel}": size // 64})
    if coeffs:
        header.update(KBase0=WEIGHT_SLOT, KBE0=1)
        task.update_fields("kernel_dma", coeffs)
    task.update_fields("header", header)


@dataclass(frozen=True)
class PlanMemoryPass(ModulePass):
    """Give every buffer of every `anehw.program` a slot, an offset and a size, and fill the DMA fields."""

    name = "plan-memory"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for program in [p for p in op.walk() if isinstance(p, anehw.ProgramOp)]:
            plan_program(program)
