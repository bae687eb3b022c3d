"""The timing model: how long a program (or an op, before tiling) takes on a chip's Neural Engine.

Per task, two overlapping times: the engine's (a fixed overhead plus compute) and the DMA's
(weights plus activations that cross DRAM).

- Compute. MAC tasks run at the fitted NE rate, slowed by idle cores and by narrow output-channel
  groups: a kernel of k taps fills floor_pow2(8/k) output channels per accumulator group (OCG), so a
  3×3 convolution fills one lane of four; the cost is (OCG/lanes)^γ with γ fitted per generation
  (γ = 1 would be the decompiled lane count taken literally; the chips measure milder). Cout/OCG
  groups spread over at most next_pow2 cores. Planar-engine and DMA tasks stream their bytes at the
  planar rate (L2 to L2; a program input or output also crosses DRAM, overlapped).
- Data movement. Weights stream at the weight-stream rate (a weight above the kernel memory is tiled
  into output-channel groups that stream one after another), a compressed kernel at its stored size
  where the chip streams its form (`weight_traffic`; the fp16 expansion elsewhere), but no faster than
  the kernel DMA expands it (`decode_speedup`: its palette-LUT coefficient stream yields fp16 weights
  at 2.37x the weight stream on M1, not the 4x of a 4-bit palette's bytes; a sparse kernel at 1.6x,
  not the 1.78x of half the weights pruned); activations cross DRAM at the
  activation rate when they are program inputs or outputs, except a source an earlier tile of the
  same op read (tiles read their op's input once from DRAM, then from L2). Intermediate tensors stay
  in L2 and cost no DMA. When the largest tensor a task touches exceeds the L2 cliff, the task
  streams from DRAM: its activations all cross DRAM and its compute slows by the cliff factor.
- Per program: the dispatch floor once, then the tasks pipelined (`pipelined_s`): the DMA of a task
  overlaps its own compute and the previous task's, so N tasks never pay N times an overhead the
  hardware hides. Utilization is the roofline time (max of peak compute and DRAM traffic) over the
  predicted time.

Every parameter is a `Fact` of `anec.targets`, fitted to the published measurements
(`anec.calibration`) by `benchmarks/timing_calibration.py --fit`, which also prints each error.
The same `Work` record describes a decoded task and a graph-level `ane` op, so the report's per-op
prediction and `anec profile` share one model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from xdsl.ir import Operation

from anec.analysis import (
    activation_operands,
    ane_bytes,
    dense_bytes,
    flops,
    largest_operand_bytes,
    weight_bytes,
)
from anec.descriptors.program import (
    FIRST_IO_SLOT,
    WEIGHT_SLOT,
    Buffer,
    Program,
    Task,
    View,
    buffer_bytes,
    coeff_range,
    dst_view,
    kernel_stream_form,
    src1_view,
    src2_view,
)
from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.dialects.discardable import tile_origin
from anec.isa.tasks import (
    DMA_KINDS,
    NE_KINDS,
    NEURONS,
    Coeff,
    Kind,
    active_cores,
    mode_name,
    ocg_size,
)
from anec.legality import kernel_bytes, streamed_kernel
from anec.targets import Target, get_target
from anec.weights import compressed_of

Engine = Literal["ne", "pe", "dma"]


@dataclass(frozen=True)
class Work:
    """What a task (or an op) asks of the engine."""

    engine: Engine
    flops: float
    read_bytes: int = 0
    write_bytes: int = 0
    weight_bytes: int = 0
    dram_bytes: int = 0           # activation bytes that cross DRAM (program I/O)
    largest_bytes: int = 0        # the largest tensor touched, in the ANE layout (the cliff criterion)
    lane_utilization: float = 1.0
    core_utilization: float = 1.0
    tasks: int = 1
    reread_bytes: int = 0         # source bytes an earlier tile of the same op already brought in
    decoded_bytes: int = 0        # fp16 bytes the kernel DMA expands from a streamed palette or sparse kernel
    decoded_form: str = ""        # that kernel's stream form (its decode rate caps the weight stream)
    passes: float = 1.0           # times a planar task streams its source through the engine (`selection_passes`)


Bound = Literal["dispatch", "overhead", "compute", "weights", "activations", "l2-cliff"]


@dataclass(frozen=True)
class Cost:
    """One task's engine time (overhead + compute) and DMA time (weights + activations). The two
    overlap: a task streams its data while it computes, and prefetches behind the previous task."""

    overhead_s: float
    compute_s: float
    weight_s: float = 0.0
    activation_s: float = 0.0
    cliff: bool = False           # the task streams past the L2 cliff
    engine: Engine = "ne"         # planar and DMA tasks "compute" by moving activations

    @property
    def memory_s(self) -> float:
        return self.weight_s + self.activation_s

    @property
    def engine_s(self) -> float:
        return self.overhead_s + self.compute_s

    @property
    def total_s(self) -> float:
        """The task alone (no neighbour to hide behind)."""
        return max(self.engine_s, self.memory_s)

    @property
    def bound(self) -> Bound:
        """The term that sets the task's time: what would have to shrink to make it faster."""
        if self.engine_s >= self.memory_s:
            term: Bound = "overhead" if self.overhead_s > self.compute_s else "compute" if self.engine == "ne" else "activations"
        else:
            term = "weights" if self.weight_s >= self.activation_s else "activations"
        return "l2-cliff" if self.cliff and term in ("compute", "activations") else term


def decode_speedup(form: str | None, target: Target) -> float | None:
    """How many times the weight stream's rate the kernel DMA expands a stream `form` to fp16 (None:
    no decode bound, as for fp16 and affine kernels): the published streaming gains on M1."""
    if form == "palette4":
        return target.perf.palette_decode_speedup.value
    return target.perf.sparse_decode_speedup.value if form == "sparse" else None


def cost(work: Work, target: Target) -> Cost:
    """Engine time: a fixed per-task overhead, then MACs at the fitted NE rate (narrow output-channel
    groups and idle cores slow it) or bytes at the planar rate for planar/DMA tasks. DMA time:
    weights at the weight-stream rate (a palette no faster than its LUT decode), activations at the
    activation rate when they cross DRAM."""
    p, memory = target.perf, target.memory
    overhead = work.tasks * p.task_overhead_s.value
    streams = work.largest_bytes > memory.l2_cliff_bytes.value
    if work.engine == "ne":
        lanes = work.lane_utilization ** p.narrow_kernel_exponent.value
        compute = work.flops / (p.ne_flops_per_s.value * lanes * work.core_utilization)
    else:
        compute = (work.read_bytes * work.passes + work.write_bytes) / p.planar_bytes_per_s.value
    dram = work.read_bytes - work.reread_bytes + work.write_bytes if streams else work.dram_bytes
    if streams:
        compute *= p.cliff_slowdown.value
    speedup = decode_speedup(work.decoded_form, target)
    decoded = work.decoded_bytes / speedup if speedup is not None else 0.0
    weights = max(work.weight_bytes, decoded) / p.weight_stream_bytes_per_s.value
    return Cost(overhead, compute, weights, dram / p.activation_bytes_per_s.value, streams, work.engine)


def pipelined_s(costs: Sequence[Cost]) -> float:
    """Tasks in order on two engines that overlap: the DMA streams task i's data while task i
    computes, and may start it as soon as task i-1 is computing (double-buffered, one task of
    lookahead). So a run of DMA-bound tasks costs its DMA time and a run of compute-bound tasks its
    engine time: a per-task overhead is paid only where the engine is the bottleneck."""
    dma_end = engine_end = previous_start = 0.0
    for c in costs:
        dma_start = max(dma_end, previous_start)
        dma_end = dma_start + c.memory_s
        start = max(engine_end, dma_start)
        engine_end = max(start + c.engine_s, dma_end)
        previous_start = start
    return engine_end


def selection_passes(k: int) -> int:
    """Compare passes of a top-k over its source: a k-entry selection heap takes ceil(log2(k + 1))
    compares per element (k = 1 is a running max, as argmax and reduce_max stream). Assumption: no
    timing of the ANE's top-k is published, so each compare costs what the planar engine takes to
    stream one element (its fitted rate), and a sort (k = N) is the heap with every element kept."""
    return max(1, math.ceil(math.log2(k + 1)))


def program_seconds(costs: Sequence[Cost], target: Target) -> float:
    """One dispatch of a program: the dispatch floor once, then its tasks pipelined."""
    return target.perf.dispatch_floor_s.value + pipelined_s(costs)


def roofline_s(work_flops: float, dram_bytes: float, target: Target) -> float:
    """The least time the chip's roofline allows for this much compute and DRAM traffic."""
    return max(work_flops / target.perf.peak_fp16_flops.value, dram_bytes / target.perf.dram_bytes_per_s.value)


# ------------------------------------------------------------------------------------------------
# Decoded tasks
# ------------------------------------------------------------------------------------------------


def _engine(kind: Kind) -> Engine:
    return "ne" if kind in NE_KINDS else "dma" if kind in DMA_KINDS else "pe"


def view_bytes(view: View) -> int:
    """Bytes a view touches (a broadcast axis reads its elements once)."""
    return 2 * math.prod(e for e, s in zip(view.extents, view.strides) if s != 0)


def task_flops(task: Task) -> float:
    kind, out = task.kind, task.out_extents
    cin = task.in_extents[2]
    kh, kw = task.kernel_hw
    if kind == Kind.CONV:
        return 2.0 * math.prod(out) * (cin // task.groups) * kh * kw
    if kind == Kind.DECONV:
        return 2.0 * math.prod(task.in_extents) * (out[2] // task.groups) * kh * kw
    if kind == Kind.MATMUL:
        k = task.in_extents[3] if task.flag("TransposeLhs") else task.in_extents[4]
        return 2.0 * math.prod(out) * k
    if kind == Kind.POOL:
        return float(math.prod(out) * kh * kw)
    if kind in DMA_KINDS:
        return 0.0
    if kind == Kind.TOPK:
        return float(math.prod(task.in_extents) * selection_passes(out[4] // 2))
    per_element = {Kind.SOFTMAX: 5, Kind.NORM: 5}.get(kind, 1)
    return float(per_element * max(math.prod(task.in_extents), math.prod(out)))


def source_keys(task: Task) -> set[tuple[int, int]]:
    """The (slot, base address) of each tensor a task reads."""
    return {(v.slot, v.base) for v in (src1_view(task), src2_view(task)) if v is not None}


def task_work(program: Program, index: int, target: Target, read_before: set[tuple[int, int]] | frozenset,
              live: Sequence[Buffer]) -> Work:
    """The work of one task; sources in `read_before` (read by an earlier tile of the same op) cost no DRAM.
    `live`: the buffers live at the task (`Program.live_buffers`), to look its views' holders up in."""
    task = program.tasks[index]
    kind = task.kind
    align = target.memory.row_alignment_bytes.value
    read = write = weights = dram = largest = reread = 0
    for role, view in (("src", src1_view(task)), ("src", src2_view(task)), ("dst", dst_view(task))):
        if view is None:
            continue
        n = view_bytes(view)
        if view.slot == WEIGHT_SLOT:
            weights += n
            continue
        read, write = (read + n, write) if role == "src" else (read, write + n)
        again = role == "src" and (view.slot, view.base) in read_before
        reread += n if again else 0
        dram += n if view.slot >= FIRST_IO_SLOT and not again else 0
        holder = next((b for b in live if b.holds(view, index)), None)
        largest = max(largest, buffer_bytes(holder.shape, align) if holder is not None else n)
    for channel in Coeff:
        span = coeff_range(task, channel)
        weights += span[1] if span is not None else 0
    form = kernel_stream_form(task)
    decoded = 2 * task.coeff_elements(Coeff.KERNEL) if decode_speedup(form, target) is not None else 0
    lanes, cores = target.perf.output_channels_per_cycle.value, target.perf.cores.value
    ocg, active = 1 << task.get("common", "OCGSize"), 1 << task.get("common", "ActiveNE")
    engine = _engine(kind)
    return Work(engine, task_flops(task), read, write, weights, dram, largest,
                lane_utilization=min(ocg, lanes) / lanes if engine == "ne" else 1.0,
                core_utilization=min(active, cores) / cores if engine == "ne" else 1.0, reread_bytes=reread, decoded_bytes=decoded,
                decoded_form=form or "", passes=selection_passes(task.out_extents[4] // 2) if kind == Kind.TOPK else 1.0)


@dataclass(frozen=True)
class TaskTime:
    index: int
    name: str
    kind: str
    shape: tuple[int, ...]     # output extents without leading unit axes
    work: Work
    cost: Cost


@dataclass
class ProgramTime:
    name: str
    tasks: list[TaskTime]
    dispatch_s: float
    target: Target = field(repr=False)

    @property
    def total_s(self) -> float:
        return self.dispatch_s + pipelined_s([t.cost for t in self.tasks])

    @property
    def bound(self) -> Bound:
        """What sets the program's time: the dispatch floor when it outweighs all the tasks, else
        the bound that accounts for most of the tasks' time."""
        busy = self.total_s - self.dispatch_s
        if self.dispatch_s >= busy or not self.tasks:
            return "dispatch"
        share: dict[Bound, float] = {}
        for t in self.tasks:
            share[t.cost.bound] = share.get(t.cost.bound, 0.0) + t.cost.total_s
        return max(share, key=lambda b: share[b])

    def retimed(self, target: Target) -> ProgramTime:
        """The same tasks costed with another target's parameters (the fitter's inner loop)."""
        tasks = [replace(t, cost=cost(t.work, target)) for t in self.tasks]
        return ProgramTime(self.name, tasks, target.perf.dispatch_floor_s.value, target)

    @property
    def flops(self) -> float:
        return sum(t.work.flops for t in self.tasks)

    @property
    def dram_bytes(self) -> float:
        return sum(t.work.dram_bytes + t.work.weight_bytes for t in self.tasks)

    @property
    def utilization(self) -> float:
        """Roofline time over predicted time: 1.0 is as fast as the chip's roof allows."""
        return roofline_s(self.flops, self.dram_bytes, self.target) / self.total_s if self.total_s else 0.0


def describe(task: Task) -> str:
    """A short label of what a task does: kind, mode and activation."""
    text = task.kind.name.lower()
    if task.kind in (Kind.ELEMENTWISE, Kind.REDUCE, Kind.POOL, Kind.NORM, Kind.RESIZE, Kind.TOPK):
        text += f".{mode_name(task.kind, task.mode)}"
    if task.get("kernel_dma", "Neuron"):
        text += f"+{NEURONS[task.get('kernel_dma', 'Neuron')]}"
    return text


def program_time(program: Program, target: Target | None = None) -> ProgramTime:
    target = target or get_target(program.arch)
    times = []
    read_by_op: dict[str, set[tuple[int, int]]] = {}
    for i, (task, live) in enumerate(zip(program.tasks, program.live_buffers())):
        read = read_by_op.setdefault(tile_origin(task.name), set())
        work = task_work(program, i, target, read, live)
        read |= source_keys(task)
        shape: tuple[int, ...] = task.out_extents
        while len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
        times.append(TaskTime(i, task.name, describe(task), shape, work, cost(work, target)))
    return ProgramTime(program.name, times, target.perf.dispatch_floor_s.value, target)


# ------------------------------------------------------------------------------------------------
# Graph-level ops (before tiling): what the report predicts per op
# ------------------------------------------------------------------------------------------------


def _free(op: Operation) -> bool:
    """Casts and reshapes that keep the innermost axis move no data on the ANE."""
    if isinstance(op, ane.CastOp):
        return True
    return isinstance(op, ane.ReshapeOp) and (shape_of(op.input) or (1,))[-1] == (shape_of(op.result) or (1,))[-1]


@dataclass(frozen=True)
class WeightTraffic:
    """An op's weights: their fp16 (logical) bytes, the bytes the model stores, the bytes the weight
    stream carries on a chip, and the compressed form (empty: fp16)."""

    logical_bytes: int
    stored_bytes: int
    streamed_bytes: int
    form: str = ""
    streamed: bool = False
    """Whether the chip streams the form compressed (else it expands it to fp16 in DRAM first)."""
    decoded_bytes: int = 0
    """The fp16 bytes the kernel DMA expands from a streamed palette or sparse kernel (its decode rate bounds it)."""
    stream_form: str = ""


def weight_traffic(op: Operation, target: Target) -> WeightTraffic:
    """The weight bytes of `op` on `target`: a compressed kernel costs its stored bytes where the chip
    streams its form (`anec.legality.kernel_bytes`), its fp16 expansion elsewhere."""
    logical = weight_bytes(op)
    owner = op.weight.owner if isinstance(op, ane.ConvBase) else op.rhs.owner if isinstance(op, ane.MatmulOp) else None
    weight = compressed_of(owner) if isinstance(owner, ane.ConstOp) else None
    if weight is None:
        return WeightTraffic(logical, logical, logical)
    others = logical - dense_bytes(weight.shape)  # the bias
    streamed = streamed_kernel(op, target)
    form = streamed[1] if streamed is not None else None
    decoded = dense_bytes(weight.shape) if decode_speedup(form, target) is not None else 0
    return WeightTraffic(logical, others + weight.stored_nbytes, kernel_bytes(op, target), weight.form, form is not None, decoded, form or "")


def op_work(op: Operation, target: Target) -> Work:
    """The work of one `ane` op as a whole (the tile pass may split it into several tasks)."""
    if _free(op) or isinstance(op, ane.ConstOp):
        return Work("dma", 0.0, tasks=0)
    read = sum(ane_bytes(shape_of(v)) for v in activation_operands(op))
    write = sum(ane_bytes(shape_of(r)) for r in op.results)
    traffic = weight_traffic(op, target)
    weights = traffic.streamed_bytes
    largest = largest_operand_bytes(op)
    lanes, cores = target.perf.output_channels_per_cycle.value, target.perf.cores.value
    if isinstance(op, ane.ConvBase | ane.PoolOp):
        kernel = op.kernel() if isinstance(op, ane.ConvBase) else ane.as_tuple(op.kernel)
        kh, kw = (1, kernel[0]) if len(kernel) == 1 else kernel
        ocg = ocg_size(kh, kw)
        cout = shape_of(op.results[0])[1]
        tasks = max(1, -(-weights // target.memory.kernel_memory_bytes.value))
        return Work("ne", flops(op), read, write, weights, 0, largest, min(ocg, lanes) / lanes,
                    active_cores(cout, ocg, cores) / cores, tasks, decoded_bytes=traffic.decoded_bytes, decoded_form=traffic.stream_form)
    if isinstance(op, ane.MatmulOp | ane.SdpaOp):
        tasks = max(1, -(-weights // target.memory.kernel_memory_bytes.value))
        return Work("ne", flops(op), read, write, weights, 0, largest, tasks=tasks, decoded_bytes=traffic.decoded_bytes, decoded_form=traffic.stream_form)
    if isinstance(op, ane.TopkOp):
        return Work("pe", flops(op), read, write, weights, 0, largest, passes=selection_passes(op.k.value.data))
    movement = isinstance(op, ane.MovementOp | ane.ConcatOp | ane.SplitOp)
    return Work("dma" if movement else "pe", flops(op), read, write, weights, 0, largest)


def op_seconds(op: Operation, target: Target) -> float:
    """Predicted ANE time of a graph-level op inside a segment."""
    return cost(op_work(op, target), target).total_s


def host_seconds(op: Operation, target: Target) -> float:
    """Predicted CPU time of an op left on the host (Core ML's segmenter CPU anchors)."""
    p = target.perf
    moved = sum(4 * math.prod(shape_of(v)) for v in (*op.operands, *op.results) if hasattr(v.type, "get_shape"))
    return max(flops(op) / p.host_flops_per_s.value, moved / p.host_bytes_per_s.value)
