"""Semantic checks of a descriptor program: everything the simulator relies on, checked once.

A program that passes can be executed without further checks: every view lies inside its slot, every
write is to a distinct element, shapes agree with the kind's rules, coefficient streams lie inside the
weight section and hold enough elements, and no task would touch more elements than the 4 GiB a
26-bit, 64-byte-unit base address can reach.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from anec.descriptors.program import (
    ARENA_SLOT,
    COMMAND_SLOT,
    FIRST_IO_SLOT,
    SLOTS,
    WEIGHT_SLOT,
    Buffer,
    Program,
    Task,
    View,
    buffer_bytes,
    buffer_strides,
    coeff_range,
    dst_view,
    f32_value,
    kernel_stream_bytes,
    src1_view,
    src2_view,
)
from anec.errors import AnecError
from anec.isa.fields import GROUP_NAMES
from anec.isa.tasks import (
    BINARY,
    COORDINATE_MODES,
    KIND_CAPABILITIES,
    MODES,
    NEAREST_MODES,
    NEURONS,
    NORMS,
    PAD_MODES,
    REDUCTIONS,
    Coeff,
    Kind,
)
from anec.targets import get_target

MAX_SLOT_BYTES = (1 << 26) * 64
MAX_TASK_ELEMENTS = 1 << 31
MAX_PAD = 31
MAX_EXACT_INDEX = 2048
"""The largest index fp16 holds exactly (11 significant bits)."""


def _fail(what: str, where: str = "") -> AnecError:
    return AnecError(what, where=where)


def validate_buffers(program: Program) -> dict[int, int]:
    """Checks the buffer table; returns the size of every slot."""
    memory = get_target(program.arch).memory
    row_align, page = memory.row_alignment_bytes.value, memory.buffer_page_bytes.value
    io_slots: set[int] = set()
    for role in ("input", "output"):
        ports = [b.port for b in program.ports(role)]
        if ports != list(range(len(ports))):
            raise _fail(f"{role} ports {ports} are not 0..{len(ports) - 1}", "buffer table")
    for b in program.buffers:
        where = f"buffer in slot {b.slot}"
        _check_buffer_layout(b, where, row_align, page)
        if b.role == "weights" and (b.slot != WEIGHT_SLOT or b.offset):
            raise _fail("the weight buffer must be slot 1 at offset 0", where)
        if b.role in ("input", "output"):
            if not FIRST_IO_SLOT <= b.slot < SLOTS or b.slot in io_slots or b.offset:
                raise _fail(f"{b.role} buffers need a slot of their own from {FIRST_IO_SLOT} at offset 0", where)
            io_slots.add(b.slot)
        if b.role == "intermediate" and b.slot not in (ARENA_SLOT, ARENA_SLOT + 1):
            raise _fail("intermediates live in slots 2 and 3", where)
        if b.role != "input" and b.role != "output" and b.port:
            raise _fail("only inputs and outputs have ports", where)
    outputs = sorted(b.slot for b in program.outputs)
    inputs = sorted(b.slot for b in program.inputs)
    if outputs and inputs and max(outputs) > min(inputs):
        raise _fail("output slots come before input slots", "buffer table")
    if sum(1 for b in program.buffers if b.role == "weights") > 1:
        raise _fail("more than one weight buffer", "buffer table")
    last = len(program.tasks) - 1
    for b in program.buffers:
        if b.role != "intermediate" and (b.first_task, b.last_task) != (0, last):
            raise _fail(f"{b.role} buffers live for the whole program (tasks 0..{last})", f"buffer in slot {b.slot}")
        if not 0 <= b.first_task <= b.last_task <= last:
            raise _fail(f"lifetime {b.first_task}..{b.last_task} is not within tasks 0..{last}", f"buffer in slot {b.slot}")
    _check_reuse([b for b in program.buffers if b.role == "intermediate"])
    sizes = program.slot_sizes()
    weights = next((b for b in program.buffers if b.role == "weights"), None)
    if program.weights and (weights is None or weights.size < len(program.weights)):
        raise _fail(f"the {len(program.weights)}-byte weight section does not fit the weight buffer", "buffer table")
    if any(s > MAX_SLOT_BYTES for s in sizes.values()):
        raise _fail("a slot exceeds the 4 GiB a task can address", "buffer table")
    return sizes


def _check_reuse(buffers: list[Buffer]) -> None:
    """Intermediates may share bytes only when their lifetimes are disjoint. One sweep in task order
    keeps each slot's live byte ranges sorted: they never overlap while the check holds, so a new one
    need only be compared with its neighbours (a few thousand intermediates cost n log n, not n²)."""
    events = sorted([(b.last_task + 1, 0, i) for i, b in enumerate(buffers)] + [(b.first_task, 1, i) for i, b in enumerate(buffers)])
    live: dict[int, list[tuple[int, int, int]]] = {}  # slot -> (offset, end, buffer index), by offset
    for _, starts, i in events:
        b = buffers[i]
        ranges = live.setdefault(b.slot, [])
        entry = (b.offset, b.offset + b.size, i)
        if not starts:
            ranges.pop(bisect.bisect_left(ranges, entry))
            continue
        k = bisect.bisect_left(ranges, entry)
        for other in ranges[max(k - 1, 0):k + 1]:
            if other[0] < entry[1] and entry[0] < other[1]:
                raise _fail(f"intermediates at {min(other[0], b.offset)} and {max(other[0], b.offset)} share bytes while both are live",
                            f"slot {b.slot}")
        ranges.insert(k, entry)


def _check_buffer_layout(b: Buffer, where: str, row_align: int, page: int) -> None:
    if not 0 <= b.slot < SLOTS or b.slot == COMMAND_SLOT:
        raise _fail(f"slot {b.slot} is not a data slot (1..31)", where)
    if any(d < 1 for d in b.shape):
        raise _fail(f"shape {list(b.shape)} has an empty axis", where)
    layout = buffer_strides(b.shape, row_align)
    if b.role != "weights" and b.strides != layout:
        raise _fail(f"strides {list(b.strides)} of shape {list(b.shape)} are not the ANE layout {list(layout)}", where)
    if b.size % page or b.offset % page:
        raise _fail(f"offset {b.offset} and size {b.size} must be multiples of the {page}-byte page", where)
    if b.role != "weights" and b.size < buffer_bytes(b.shape, row_align):
        raise _fail(f"size {b.size} is smaller than the {buffer_bytes(b.shape, row_align)} bytes its shape needs", where)


def validate_program(program: Program) -> None:
    if not program.tasks:
        raise _fail("a program needs at least one task")
    sizes = validate_buffers(program)
    input_slots = {b.slot for b in program.inputs}
    fitting: set[tuple[str, str, int]] = set()
    for i, (task, live) in enumerate(zip(program.tasks, program.live_buffers())):
        validate_task(program, task, sizes, input_slots, f"task {i}" + (f" ({task.name})" if task.name else ""), fitting)
        for label, view in (("src1", src1_view(task)), ("src2", src2_view(task)), ("dst", dst_view(task))):
            if view is not None and not any(b.holds(view, i) for b in live):
                raise _fail(f"{label} reads or writes bytes no live buffer holds", f"task {i}")


def validate_task(program: Program, task: Task, sizes: dict[int, int], input_slots: set[int], where: str,
                  fitting: set[tuple[str, str, int]] | None = None) -> None:
    """`fitting`: (group, field, value) triples already checked against the field table; the tasks of
    an unrolled model repeat most of their field values, each checked once."""
    fitting = set() if fitting is None else fitting
    for group in task.regs:
        if group != "header" and group not in GROUP_NAMES:
            raise _fail(f"unknown register group {group}", where)
        for name, value in task.regs[group].items():
            if (group, name, value) in fitting:
                continue
            try:
                program.table.check(group, name, value)
            except AnecError as e:
                raise _fail(e.what, where) from None
            fitting.add((group, name, value))
    raw_kind = task.get("kernel_dma", "Kind")
    if raw_kind not in Kind._value2member_map_:
        raise _fail(f"unknown task kind {raw_kind}", where)
    kind = task.kind
    capability = KIND_CAPABILITIES.get(kind)
    if capability is not None and not get_target(program.arch).has(capability):
        raise _fail(f"{kind.name} needs the {capability} capability, which {get_target(program.arch)} lacks", where)
    modes = MODES.get(kind, ("",))
    if task.mode >= len(modes):
        raise _fail(f"mode {task.mode} is not defined for {kind.name}", where)
    if task.get("kernel_dma", "Neuron") >= len(NEURONS):
        raise _fail(f"neuron code {task.get('kernel_dma', 'Neuron')} is undefined", where)
    src1, src2, dst = src1_view(task), src2_view(task), dst_view(task)
    if src1 is None or dst is None:
        raise _fail("every task reads src1 and writes dst", where)
    wants_src2 = kind in (Kind.ELEMENTWISE, Kind.MATMUL) or (kind in (Kind.CONV, Kind.DECONV) and task.flag("KernelFromSrc2"))
    if wants_src2 != bool(task.get("header", "RBE1")):
        raise _fail(f"{kind.name} {'needs' if wants_src2 else 'takes no'} second source", where)
    for label, view in (("src1", src1), ("src2", src2), ("dst", dst)):
        if view is not None:
            _check_view(view, sizes, f"{where} {label}", write=label == "dst")
    if dst.slot == WEIGHT_SLOT or dst.slot in input_slots:
        raise _fail("writes into the weight section or a program input", where)
    _check_coefficients(program, task, where)
    _check_shapes(task, kind, where)


def _check_view(view: View, sizes: dict[int, int], where: str, write: bool) -> None:
    if any(e < 1 for e in view.extents):
        raise _fail(f"extents {list(view.extents)} include an empty axis", where)
    if math.prod(view.extents) > MAX_TASK_ELEMENTS:
        raise _fail(f"extents {list(view.extents)} exceed {MAX_TASK_ELEMENTS} elements", where)
    if view.slot not in sizes or view.slot == COMMAND_SLOT:
        raise _fail(f"slot {view.slot} is not in the buffer table", where)
    lo, hi = view.span
    if lo < 0 or hi > sizes[view.slot]:
        raise _fail(f"bytes {lo}..{hi} fall outside slot {view.slot} ({sizes[view.slot]} bytes)", where)
    if write:
        axes = sorted((abs(s), e) for s, e in zip(view.strides, view.extents) if e > 1)
        span = 2
        for stride, extent in axes:
            if stride < span:
                raise _fail("the destination view writes some elements twice", where)
            span = stride * extent


def _check_coefficients(program: Program, task: Task, where: str) -> None:
    used = False
    for channel in range(16):
        needed = task.coeff_elements(Coeff(channel)) if channel < len(Coeff) else 0
        span = coeff_range(task, channel)
        required = (channel == Coeff.KERNEL and needed) or (channel == Coeff.LUT and task.flag("LutEn"))
        if span is None:
            if required:
                raise _fail(f"coefficient stream {channel} is required but disabled", where)
            continue
        if channel == Coeff.LUT and not task.flag("LutEn"):
            raise _fail("an activation table is streamed but LutEn is off", where)
        if not needed:
            raise _fail(f"coefficient stream {channel} means nothing to {task.kind.name}", where)
        offset, size = span
        if size < (kernel_stream_bytes(task) if channel == Coeff.KERNEL else 2 * needed) or offset + size > len(program.weights):
            raise _fail(f"coefficient stream {channel} ({size} bytes at {offset}) does not hold {needed} values "
                        f"inside the {len(program.weights)}-byte weight section", where)
        used = True
    if used and (task.get("header", "KBase0") != WEIGHT_SLOT or not task.get("header", "KBE0")):
        raise _fail("coefficient streams must come from the weight slot (KBase0 = 1)", where)


def _same(a: tuple[int, ...], b: tuple[int, ...], what: str, where: str) -> None:
    if tuple(a) != tuple(b):
        raise _fail(f"{what}: {list(a)} vs {list(b)}", where)


def _window_crop(size_in: int, size_out: int, kernel: int, stride: int, dilation: int, pad: int, where: str) -> None:
    if min(kernel, stride, dilation) < 1:
        raise _fail("kernel, stride and dilation must be >= 1", where)
    end = (size_out - 1) * stride + dilation * (kernel - 1) + 1 - size_in - pad
    if not -size_in < end <= MAX_PAD:
        raise _fail(f"a window of {kernel} at stride {stride} cannot give {size_out} outputs from {size_in}", where)


ShapeRule = Callable[[Task, Kind, str], None]
"""One check of a task's shape fields; raises `_fail(..., where)` when they do not hold."""


def _depth_one(task: Task, kind: Kind, where: str) -> None:
    if (task.in_extents[1], task.out_extents[1]) != (1, 1):
        raise _fail(f"{kind.name} needs D = 1", where)


def _same_batch_and_depth(task: Task, kind: Kind, where: str) -> None:
    _same(task.in_extents[:2], task.out_extents[:2], "batch and depth", where)


def _window(task: Task, kind: Kind, where: str) -> None:
    src, out, c = task.in_extents, task.out_extents, task.get
    kh, kw = task.kernel_hw
    for size_in, size_out, k, s, d, p in ((src[3], out[3], kh, c("common", "Sy"), c("kernel_dma", "DilationY") or 1, c("common", "Py")),
                                          (src[4], out[4], kw, c("common", "Sx"), c("kernel_dma", "DilationX") or 1, c("common", "Px"))):
        _window_crop(size_in, size_out, k, s, d, p, where)


def _conv_groups(task: Task, kind: Kind, where: str) -> None:
    src, out, g = task.in_extents, task.out_extents, task.groups
    if src[2] % g or out[2] % g:
        raise _fail(f"{g} groups do not divide {src[2]} -> {out[2]} channels", where)


def _pool_channels(task: Task, kind: Kind, where: str) -> None:
    _same(task.in_extents[2:3], task.out_extents[2:3], "pool channels", where)


def _transposed_window(task: Task, kind: Kind, where: str) -> None:
    src, out, c, g = task.in_extents, task.out_extents, task.get, task.groups
    kh, kw = task.kernel_hw
    if src[2] % g or out[2] % g or min(kh, kw, c("common", "Sx"), c("common", "Sy")) < 1:
        raise _fail("transposed convolution groups, kernel or strides", where)
    for size_in, size_out, k, s, p in ((src[3], out[3], kh, c("common", "Sy"), c("common", "Py")),
                                       (src[4], out[4], kw, c("common", "Sx"), c("common", "Px"))):
        if not (p + size_out <= s * (size_in - 1) + k + MAX_PAD):
            raise _fail(f"a transposed window of {k} at stride {s} cannot give {size_out} outputs from {size_in}", where)


def _matmul_rows(task: Task, kind: Kind, where: str) -> None:
    src, out = task.in_extents, task.out_extents
    _same(src[:3], out[:3], "matmul batch axes", where)
    rows = src[4] if task.flag("TransposeLhs") else src[3]
    if rows != out[3]:
        raise _fail(f"matmul gives {rows} rows, the output has {out[3]}", where)


def _same_shape(task: Task, kind: Kind, where: str) -> None:
    _same(task.in_extents, task.out_extents, f"{kind.name} input and output", where)


def _one_axis(task: Task, kind: Kind, where: str) -> None:
    if task.get("planar", "AxisMask") not in (1, 2, 4, 8, 16):
        raise _fail(f"{'an arg-reduction' if kind == Kind.REDUCE else kind.name.lower()} needs exactly one axis", where)


def _arg_reduction_axis(task: Task, kind: Kind, where: str) -> None:
    if REDUCTIONS[task.mode] in ("argmax", "argmin"):
        _one_axis(task, kind, where)


def _norm_fields(task: Task, kind: Kind, where: str) -> None:
    norm, mask, g = NORMS[task.mode], task.get("planar", "AxisMask"), task.groups
    if norm in ("layer", "l2") and not mask:
        raise _fail(f"{norm} norm needs axes", where)
    if norm == "group" and task.out_extents[2] % g:
        raise _fail(f"{g} groups do not divide {task.out_extents[2]} channels", where)
    eps = f32_value(task.get("planar", "Epsilon"))
    if not (eps >= 0 and math.isfinite(eps)):
        raise _fail(f"epsilon {eps} must be finite and >= 0", where)


def _known_binary(task: Task, kind: Kind, where: str) -> None:
    if task.mode >= len(BINARY):
        raise _fail("unknown elementwise op", where)


def _reduced_shape(task: Task, kind: Kind, where: str) -> None:
    mask = task.get("planar", "AxisMask")
    if not mask:
        raise _fail("a reduction needs axes", where)
    _same(tuple(1 if mask >> i & 1 else e for i, e in enumerate(task.in_extents)), task.out_extents, "reduced shape", where)


def _element_count(task: Task, kind: Kind, where: str) -> None:
    src, out = task.in_extents, task.out_extents
    if math.prod(src) != math.prod(out):
        raise _fail(f"reshape {list(src)} -> {list(out)} changes the element count", where)


def _permutation(task: Task, kind: Kind, where: str) -> None:
    perm = [task.get("planar", "Perm") >> (3 * i) & 7 for i in range(5)]
    if sorted(perm) != list(range(5)):
        raise _fail(f"{perm} is not a permutation of 5 axes", where)
    _same(tuple(task.in_extents[p] for p in perm), task.out_extents, "transposed shape", where)


def _pads(task: Task, kind: Kind, where: str) -> None:
    src, out, c = task.in_extents, task.out_extents, task.get
    _same(src[:3], out[:3], "pad batch/depth/channels", where)
    mode = c("planar", "PadMode")
    if mode >= len(PAD_MODES):
        raise _fail("unknown pad mode", where)
    for size_in, size_out, before in ((src[3], out[3], c("common", "Py")), (src[4], out[4], c("common", "Px"))):
        after = size_out - size_in - before
        if not 0 <= after <= MAX_PAD or (PAD_MODES[mode] == "reflect" and max(before, after) >= size_in):
            raise _fail(f"padding {before}+{after} around {size_in}", where)


def _resample(task: Task, kind: Kind, where: str) -> None:
    c = task.get
    _same(task.in_extents[:3], task.out_extents[:3], "resize batch/depth/channels", where)
    scales = (f32_value(c("l2", "ResampleScaleH")), f32_value(c("l2", "ResampleScaleW")))
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise _fail(f"resample scales {scales} must be finite and > 0", where)
    if c("planar", "CoordMode") >= len(COORDINATE_MODES) or c("planar", "NearestMode") >= len(NEAREST_MODES):
        raise _fail("unknown resample coordinate or rounding mode", where)


def _block_rearrangement(task: Task, kind: Kind, where: str) -> None:
    src, out, b = task.in_extents, task.out_extents, task.get("planar", "BlockSize")
    rich, spatial = (src, out) if kind == Kind.DEPTH_TO_SPACE else (out, src)
    if b < 1 or (rich[0], rich[1], rich[2], rich[3] * b, rich[4] * b) != (spatial[0], spatial[1], spatial[2] * b * b, spatial[3], spatial[4]):
        raise _fail(f"{list(src)} -> {list(out)} is not a block-{b} rearrangement", where)


def _whole_repetition(task: Task, kind: Kind, where: str) -> None:
    src, out = task.in_extents, task.out_extents
    if any(o % i for i, o in zip(src, out)):
        raise _fail(f"{list(out)} is not a whole repetition of {list(src)}", where)


def _topk_rows(task: Task, kind: Kind, where: str) -> None:
    """Each dst row holds k values then k indices of its src1 row; indices are exact in fp16 up to 2048."""
    src, out = task.in_extents, task.out_extents
    _same(src[:4], out[:4], "top-k rows", where)
    if out[4] % 2 or not 1 <= out[4] // 2 <= src[4]:
        raise _fail(f"a row of {out[4]} is not k values and k indices of a row of {src[4]}", where)
    if src[4] > MAX_EXACT_INDEX:
        raise _fail(f"indices of a row of {src[4]} are not exact in fp16 (at most {MAX_EXACT_INDEX})", where)


SHAPE_RULES: dict[Kind, tuple[ShapeRule, ...]] = {
    Kind.CONV: (_depth_one, _same_batch_and_depth, _window, _conv_groups),
    Kind.POOL: (_depth_one, _same_batch_and_depth, _window, _pool_channels),
    Kind.DECONV: (_depth_one, _same_batch_and_depth, _transposed_window),
    Kind.MATMUL: (_matmul_rows,),
    Kind.ELEMENTWISE: (_same_shape, _known_binary),
    Kind.NEURON: (_same_shape,),
    Kind.SOFTMAX: (_same_shape, _one_axis),
    Kind.NORM: (_same_shape, _norm_fields),
    Kind.COPY: (_same_shape,),
    Kind.REDUCE: (_arg_reduction_axis, _reduced_shape),
    Kind.RESHAPE: (_element_count,),
    Kind.TRANSPOSE: (_permutation,),
    Kind.PAD: (_pads,),
    Kind.RESIZE: (_resample,),
    Kind.DEPTH_TO_SPACE: (_depth_one, _block_rearrangement),
    Kind.SPACE_TO_DEPTH: (_depth_one, _block_rearrangement),
    Kind.TILE: (_whole_repetition,),
    Kind.TOPK: (_topk_rows,),
}
"""The shape checks of each task kind, in order (like `anec.legality.RULES` for ops)."""


def _check_shapes(task: Task, kind: Kind, where: str) -> None:
    for rule in SHAPE_RULES.get(kind, ()):
        rule(task, kind, where)
