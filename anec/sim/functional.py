"""The functional simulator: executes a decoded descriptor program with the ANE's numerics.

Memory is one byte array per slot; every DMA is a strided numpy view of a slot, built from the
task's fields alone (`anec.descriptors.program`), so what runs here is exactly what the file says.
Numerics follow the target's `Numerics` facts:

- storage is fp16; every task computes in float32 from fp16 operands and rounds its result to fp16
  once, round-half-to-even (fp32 then fp16 is innocuous double rounding for + − × ÷ √ since
  24 ≥ 2·11 + 2);
- MAC tasks (conv, transposed conv, matmul) accumulate in float32 and leave through the MAC port,
  which saturates at ±2^15 (a value that rounds to 32768 or more becomes ±inf); denormal operands
  and results are flushed inside the MAC when the target does so; bias and activation follow in fp16;
- NaN never exists in memory: inputs and weights have NaN coerced to +inf, and an indeterminate
  result (inf − inf, 0 · inf, sqrt(−1), log(−1)) is stored as +0; log(0) gives the target's value;
- a source view starting inside a row (a width slice with a nonzero begin) goes through the Q.4 crop
  DMA on targets that have it: magnitudes above its limit become ±inf;
- activations are exact functions, or the 33-knot piecewise-linear table when a task streams one.

Compute is vectorized numpy over BLAS (`anec.kernels`); every conversion between a slot's fp16 and
float32 goes through the fp16 storage kernels (`anec.sim.fp16_kernels`: C, with numpy twins that
give the same bits). Bit-deterministic.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from anec import kernels
from anec.compression import decode_kernel_stream
from anec.descriptors.program import (
    WEIGHT_SLOT,
    Buffer,
    Program,
    Task,
    View,
    coeff_range,
    dst_view,
    f32_value,
    fp16_value,
    kernel_stream_form,
    src1_view,
    src2_view,
)
from anec.errors import AnecError
from anec.isa.tasks import (
    BINARY,
    COORDINATE_MODES,
    LUT_KNOTS,
    MAC_KINDS,
    NEAREST_MODES,
    NEURONS,
    NORMS,
    PAD_MODES,
    POOLS,
    REDUCTIONS,
    RESIZE_MODES,
    TOPK_MODES,
    Coeff,
    Kind,
)
from anec.registry import Registry
from anec.sim import fp16_kernels
from anec.sim.fp16_kernels import BINARY_OPS, Fp16Kernels, fp16, store_fp16, widening_table
from anec.targets import Numerics, get_target

MOVES = frozenset({Kind.COPY, Kind.RESHAPE, Kind.TRANSPOSE, Kind.TILE, Kind.PAD, Kind.DEPTH_TO_SPACE, Kind.SPACE_TO_DEPTH})
"""Kinds that only move fp16 values: the simulator moves them without converting."""
FP16_OPERANDS = MOVES | {Kind.NEURON}
"""Kinds the simulator runs on fp16 operands: moves, and activations (a table of fp16 bits); max
pooling too (`fp16_operands`)."""


@dataclass
class Machine:
    """The slots of one program and the numerics of its target."""

    program: Program
    numerics: Numerics
    slots: dict[int, np.ndarray]
    kernels: Fp16Kernels = fp16_kernels.ACTIVE
    """Every conversion between a slot's fp16 and float32 goes through these."""
    _coefficients: dict[tuple, np.ndarray | None] = field(default_factory=dict)
    """Coefficient streams, MAC operands and activation tables, converted once per machine and keyed by
    what they are read from (`stream_key`), not by task: the steps of an unrolled recurrence stream the
    same weights and tables, which are decoded and held once."""
    _merged: dict[tuple[int, int], tuple] = field(default_factory=dict)
    """The stream keys of the merged convolutions' concatenated coefficients, by (task id, stream)."""
    plan: list[Task] = field(default_factory=list)
    """The tasks in execution order, output-channel tiles of one convolution merged (`merged_tiles`)."""
    _recent: OrderedDict[tuple, np.ndarray] = field(default_factory=OrderedDict)
    """The last source views converted (tiles of one op read the same input), dropped when written."""
    _views: dict[int, tuple[View | None, View | None, View | None]] = field(default_factory=dict)
    """Each task's source and destination views (`views`), derived from its fields once."""

    @classmethod
    def for_program(cls, program: Program, kernels: Fp16Kernels = fp16_kernels.ACTIVE) -> Machine:
        slots = {slot: np.zeros(size, dtype=np.uint8) for slot, size in program.slot_sizes().items()}
        if program.weights:
            weights = np.frombuffer(program.weights, dtype=np.uint8)
            slots[WEIGHT_SLOT][:weights.size] = weights
            coerce_nan(slots[WEIGHT_SLOT][:weights.size - weights.size % 2].view(np.float16))
        machine = cls(program, get_target(program.arch).numerics, slots, kernels)
        machine.plan = machine.merged_tiles()
        return machine

    def merged_tiles(self) -> list[Task]:
        """The program's tasks, with each run of output-channel tiles of one convolution (same input,
        same fields, outputs adjacent along C) executed as one task: one GEMM instead of one per tile.
        Each output channel is still a float32 dot product over the same inputs; BLAS may sum it in
        another order than the tile's own GEMM would (fp32-class accumulation either way)."""
        plan: list[Task] = []
        run: list[Task] = []
        for task in [*self.program.tasks, None]:
            if task is not None and run and _continues(run[-1], task):
                run.append(task)
                continue
            if run:
                plan.append(run[0] if len(run) == 1 else self.merge(run))
            run = [task] if task is not None else []
        return plan

    def merge(self, tiles: list[Task]) -> Task:
        regs = {g: dict(v) for g, v in tiles[0].regs.items()}
        regs["common"]["Cout"] = sum(t.out_extents[2] for t in tiles)
        merged = Task(regs, tiles[0].name)
        for channel in (Coeff.KERNEL, Coeff.BIAS, Coeff.LUT):
            keys = tuple(self.stream_key(t, channel) for t in (tiles if channel != Coeff.LUT else tiles[:1]))
            key = self._merged[(id(merged), channel)] = ("merged", keys)
            if key not in self._coefficients:
                parts = [part for t in tiles[:len(keys)] if (part := self.coefficients(t, channel)) is not None]
                assert len(parts) in (0, len(keys)), f"{merged.name}: the tiles of one op stream the same coefficients"
                self._coefficients[key] = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else None
        return merged

    @property
    def converted(self) -> int:
        """How many coefficient streams, constant operands and activation tables the machine holds converted."""
        return len(self._coefficients)

    def stream_key(self, task: Task, channel: Coeff) -> tuple:
        """What coefficient stream `channel` of `task` is read from: its bytes, form and element count."""
        merged = self._merged.get((id(task), channel))
        if merged is not None:
            return merged
        return (channel, coeff_range(task, channel), kernel_stream_form(task) if channel == Coeff.KERNEL else None,
                task.coeff_elements(channel), task.out_extents[2])

    # -- memory ----------------------------------------------------------------------------------

    def array(self, view: View) -> np.ndarray:
        return np.ndarray(view.extents, dtype=np.float16, buffer=self.slots[view.slot], offset=view.base, strides=view.strides)

    def cached(self, key: tuple, convert: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key]
        value = self._recent[key] = convert()
        if len(self._recent) > RECENT_VIEWS:
            self._recent.popitem(last=False)
        return value

    def forget(self, view: View) -> None:
        """Drop converted copies of anything a write to `view` may change."""
        lo, hi = view.span
        for key in [k for k in self._recent if k[0].slot == view.slot and _overlap(k[0].span, (lo, hi))]:
            del self._recent[key]

    def load(self, view: View, pixel_offset: int, dtype: type = np.float32, flush: bool = False) -> np.ndarray:
        """A source view (float32 to compute on, with denormals flushed if asked; fp16 to move); a
        view starting inside a row passes the Q.4 crop DMA."""
        return self.cached((view, pixel_offset, dtype, flush), lambda: self._load(view, pixel_offset, dtype, flush))

    def _load(self, view: View, pixel_offset: int, dtype: type, flush: bool) -> np.ndarray:
        x = self.widened(self.array(view), flush) if dtype == np.float32 else self.array(view).copy()
        if self.crops(pixel_offset):
            limit = self.numerics.width_slice_overflow.value
            x = np.where(np.abs(x) > limit, np.copysign(dtype(np.inf), x), x)
        return x

    def crops(self, pixel_offset: int) -> bool:
        """Whether a view starting `pixel_offset` elements into a row passes a limiting crop DMA."""
        return bool(pixel_offset) and self.numerics.width_slice_overflow.value is not None

    def load_mac(self, view: View, pixel_offset: int) -> np.ndarray:
        """A MAC operand as float32, denormals flushed where the target flushes them."""
        return self.load(view, pixel_offset, np.float32, self.numerics.mac_flushes_denormals.value)

    def mac_source(self, task: Task, view: View) -> np.ndarray:
        return self.load_mac(view, task.get("tile_src", "PixelOffset0"))

    def constant(self, task: Task, view: View) -> np.ndarray:
        """A MAC operand read from the weight section (a constant right-hand side), converted once."""
        key = ("constant", view, task.get("tile_src", "Src2PixelOffset"))
        operand = self._coefficients.get(key)
        if operand is None:
            operand = self._coefficients[key] = self.load_mac(view, task.get("tile_src", "Src2PixelOffset"))
        return operand

    def kernel(self, task: Task) -> np.ndarray | None:
        """The kernel coefficient stream as a MAC operand (flushed once per machine)."""
        key = ("kernel", self.stream_key(task, Coeff.KERNEL))
        if key not in self._coefficients:
            weights = self.coefficients(task, Coeff.KERNEL)
            self._coefficients[key] = None if weights is None else \
                self.widened(weights.astype(np.float16), self.numerics.mac_flushes_denormals.value)
        return self._coefficients[key]

    def coefficients(self, task: Task, channel: Coeff) -> np.ndarray | None:
        """A coefficient stream as float32 (read once per machine: the weight section is read-only)."""
        key = self.stream_key(task, channel)
        if key not in self._coefficients:
            span = coeff_range(task, channel)
            form = kernel_stream_form(task) if channel == Coeff.KERNEL else None
            if span is not None and form is not None:
                self._coefficients[key] = self.decompressed(task, form, span[0])
            else:
                self._coefficients[key] = None if span is None else np.frombuffer(
                    self.slots[WEIGHT_SLOT], dtype=np.float16, count=task.coeff_elements(channel), offset=span[0]).astype(np.float32)
        return self._coefficients[key]

    def decompressed(self, task: Task, form: str, offset: int) -> np.ndarray:
        """A compressed kernel stream expanded as the kernel DMA does (read from the program's bytes:
        the fp16 NaN coercion of the weight slot does not apply to packed integers)."""
        count, channels = task.coeff_elements(Coeff.KERNEL), task.out_extents[2]
        raw = np.frombuffer(self.program.weights, dtype=np.uint8)[offset:]
        kernel = decode_kernel_stream(raw, form, count, channels)
        coerce_nan(kernel)
        return kernel.astype(np.float32)

    def widened(self, x: np.ndarray, flush: bool) -> np.ndarray:
        out = np.empty(x.shape, dtype=np.float32)
        self.kernels.widen(x, out, flush)
        return out

    def destination(self, view: View) -> np.ndarray:
        """The slot view a task writes, after dropping converted copies of what it overwrites."""
        self.forget(view)
        return self.array(view)

    def store(self, view: View, result: np.ndarray) -> None:
        """Round to fp16 (half to even) into the destination; an indeterminate result is stored as +0."""
        target, indeterminate = self.destination(view), self.numerics.indeterminate_result.value
        result = np.broadcast_to(result, target.shape)
        if result.dtype == np.float32:
            self.kernels.narrow(result, target, indeterminate)
            return
        with np.errstate(over="ignore", invalid="ignore"):
            store_fp16(target, result.astype(np.float16, copy=False), indeterminate)

    # -- I/O -------------------------------------------------------------------------------------

    def write_input(self, buffer: Buffer, value: np.ndarray) -> None:
        data = np.asarray(value)
        with np.errstate(over="ignore", invalid="ignore"):
            data = data.astype(np.float16)
        coerce_nan(data)
        self.buffer_array(buffer)[...] = data.reshape(buffer.shape)

    def read_output(self, buffer: Buffer) -> np.ndarray:
        return self.buffer_array(buffer).copy()

    def buffer_array(self, buffer: Buffer) -> np.ndarray:
        return np.ndarray(buffer.shape, dtype=np.float16, buffer=self.slots[buffer.slot], offset=buffer.offset, strides=buffer.strides)

    # -- execution -------------------------------------------------------------------------------

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        ports = self.program.inputs
        if len(inputs) != len(ports):
            raise AnecError(f"program {self.program.name or ''} takes {len(ports)} inputs, got {len(inputs)}")
        self._recent.clear()
        for buffer, value in zip(ports, inputs):
            if int(np.prod(np.shape(value))) != int(np.prod(buffer.shape)):
                raise AnecError(f"input {buffer.port} has shape {list(np.shape(value))}, the program expects {list(buffer.shape)}")
            self.write_input(buffer, value)
        for task in self.plan:
            self.execute(task)
        return [self.read_output(b) for b in self.program.outputs]

    def views(self, task: Task) -> tuple[View | None, View | None, View | None]:
        """(first source, second source, destination) of a task, derived once per machine."""
        key = id(task)
        if key not in self._views:
            self._views[key] = (src1_view(task), src2_view(task), dst_view(task))
        return self._views[key]

    def execute(self, task: Task) -> None:
        src1, src2, dst = self.views(task)
        assert src1 is not None and dst is not None
        kind = task.kind
        if kind in MAC_KINDS:
            y = None if src2 is None else self.constant(task, src2) if src2.slot == WEIGHT_SLOT else \
                self.load_mac(src2, task.get("tile_src", "Src2PixelOffset"))
            weights = y if y is not None else self.kernel(task)
            assert weights is not None, f"{task.name}: a MAC task without a second operand streams a kernel"
            with np.errstate(invalid="ignore", over="ignore"):
                acc = MAC_EXECUTORS[kind](self, task, src1, weights)
            self.mac(task, acc, self.destination(dst))
            return
        if kind == Kind.ELEMENTWISE and self.binary(task, src1, src2, dst):
            return
        offset = task.get("tile_src", "PixelOffset0")
        if kind == Kind.NEURON:
            x = self.array(src1) if self.streams(dst, src1) and not self.crops(offset) else self.load(src1, offset, np.float16)
            self.kernels.lookup(x, self.destination(dst), self.activation_table(task), self.numerics.indeterminate_result.value)
            return
        dtype = np.float16 if fp16_operands(task) else np.float32
        x = self.load(src1, offset, dtype)
        y = self.load(src2, task.get("tile_src", "Src2PixelOffset"), dtype) if src2 is not None else None
        self.store(dst, EXECUTORS[kind](self, task, x, y))

    @staticmethod
    def streams(dst: View, *sources: View) -> bool:
        """Whether a one-pass kernel may read `sources` straight from their slots while it writes
        `dst`: each source is `dst` itself (in place) or lies apart from it."""
        return all(v == dst or v.slot != dst.slot or not _overlap(v.span, dst.span) for v in sources)

    def binary(self, task: Task, a: View, b: View | None, dst: View) -> bool:
        """An add, subtract or multiply of two slot views in one pass of the fp16 kernels (computed as
        the float32 path computes it); not when a source passes the crop DMA or cannot be streamed."""
        op = BINARY[task.mode]
        if b is None or op not in BINARY_OPS or self.crops(task.get("tile_src", "PixelOffset0")) \
                or self.crops(task.get("tile_src", "Src2PixelOffset")) or not self.streams(dst, a, b):
            return False
        target = self.destination(dst)
        a_values, b_values = (np.broadcast_to(self.array(v), target.shape) for v in (a, b))
        self.kernels.binary(op, a_values, b_values, target, self.numerics.indeterminate_result.value)
        return True

    def mac(self, task: Task, acc: np.ndarray, target: np.ndarray) -> None:
        """The MAC port (saturation, post-scale, bias, activation) from the sums `acc` into `target`."""
        post_scale = fp16_value(task.get("neural", "PostScale")) if task.get("neural", "PostScaleMode") else None
        table = self.activation_table(task) if task.get("kernel_dma", "Neuron") else None
        n = self.numerics
        self.kernels.mac_port(acc.astype(np.float32, copy=False), target, self.coefficients(task, Coeff.BIAS),
                              4 if task.kind == Kind.MATMUL else 2, post_scale, n.mac_saturation.value,
                              n.mac_flushes_denormals.value, table, n.indeterminate_result.value)

    def activation_table(self, task: Task) -> np.ndarray:
        """fp16 bits -> the fp16 bits of the task's activation (computed in float32, then rounded): on
        fp16 operands an elementwise activation followed by rounding is a function of 2^16 inputs.
        NaN stays NaN (as every exact activation keeps it), to be stored as the indeterminate result."""
        key = ("activation", task.get("kernel_dma", "Neuron"), task.get("planar", "ScaleScalar"), task.get("planar", "BiasScalar"),
               self.stream_key(task, Coeff.LUT) if task.flag("LutEn") else None)
        table = self._coefficients.get(key)
        if table is None:
            values = widening_table(False)
            nan = np.isnan(values)
            table = fp16(self.activation(task, np.where(nan, np.float32(0), values))).view(np.uint16)
            table[nan] = np.float16(np.nan).view(np.uint16)
            self._coefficients[key] = table
        return table

    def activation(self, task: Task, x: np.ndarray) -> np.ndarray:
        name = NEURONS[task.get("kernel_dma", "Neuron")]
        params = (fp16_value(task.get("planar", "ScaleScalar")), fp16_value(task.get("planar", "BiasScalar")))
        table = self.coefficients(task, Coeff.LUT) if task.flag("LutEn") else None
        with np.errstate(all="ignore"):
            if table is not None:
                return piecewise_linear(x, table)
            return neuron(name, x, params, self.numerics)


RECENT_VIEWS = 8
TILE_FIELDS = {("common", "Cout"), ("common", "OCGSize"), ("common", "ActiveNE"), ("tile_dst", "BaseAddr"),
               ("header", "TID"), ("header", "EON"), ("header", "NextSize"), ("header", "NextPointer")} | {("kernel_dma", f"Coeff{f}{i}") for f in ("BaseAddr", "BfrSize") for i in range(16)}
"""Fields in which output-channel tiles of one convolution may differ."""
ONE_CHANNEL_FIELDS = {("tile_dst", "PlaneStride")}
"""Fields a tile of one output channel leaves unset (a last tile: 512 channels in tiles of 7)."""


def _continues(previous: Task, task: Task) -> bool:
    """Whether `task` is the next output-channel tile of the convolution `previous` belongs to."""
    if task.kind != Kind.CONV or previous.kind != Kind.CONV or task.groups != 1 or task.flag("KernelFromSrc2"):
        return False
    free = TILE_FIELDS | (ONE_CHANNEL_FIELDS if task.out_extents[2] == 1 else set())
    groups = set(task.regs) | set(previous.regs)
    if any(task.regs.get(g, {}).get(k) != previous.regs.get(g, {}).get(k)
           for g in groups for k in set(task.regs.get(g, {})) | set(previous.regs.get(g, {})) if (g, k) not in free):
        return False
    a, b, src = dst_view(previous), dst_view(task), src1_view(task)
    assert a is not None and b is not None and src is not None
    same_layout = all(stride == a.strides[axis] for axis, (stride, extent) in enumerate(zip(b.strides, b.extents)) if extent > 1)
    adjacent = a.slot == b.slot and same_layout and a.base + a.extents[2] * a.strides[2] == b.base
    return adjacent and (src.slot != b.slot or not _overlap(src.span, (a.base, b.span[1])))



def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def coerce_nan(x: np.ndarray) -> None:
    """NaN is coerced to +inf where values enter the ANE (in place)."""
    if np.isnan(x).any():
        x[np.isnan(x)] = np.inf


def neuron(name: str, x: np.ndarray, params: tuple[float, float], numerics: Numerics) -> np.ndarray:
    """An exact activation in float32 with the ANE's special values."""
    if name == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(x)
        return np.where(x == 0, np.float32(numerics.log_of_zero.value), y)
    if name == "reciprocal":
        with np.errstate(divide="ignore"):
            return np.where(x == 0, np.float32(np.inf), 1.0 / x)
    if name == "affine":
        return x * np.float32(params[0]) + np.float32(params[1])
    if name == "gelu_tanh":
        return kernels.gelu(x, "tanh")
    count = {"leaky_relu": 1, "elu": 1, "clamp": 2, "hardsigmoid": 2}.get(name, 0)
    return kernels.UNARY[name](x, *params[:count])


def piecewise_linear(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The 33-knot table: [lo, hi, slope below, slope above, knots…] (see lowering/to_anehw.pwl_table)."""
    lo, hi, below, above = (np.float32(v) for v in table[:4])
    knots = table[4:4 + LUT_KNOTS]
    segments = LUT_KNOTS - 1
    t = (np.clip(x, lo, hi) - lo) * (segments / (hi - lo))
    i = np.minimum(np.floor(t).astype(np.int64), segments - 1)
    y = knots[i] + (knots[i + 1] - knots[i]) * (t - i)
    y = np.where(x < lo, knots[0] + below * (x - lo), y)
    return np.where(x > hi, knots[-1] + above * (x - hi), y).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Task kinds
# ------------------------------------------------------------------------------------------------

Executor = Callable[[Machine, Task, np.ndarray, np.ndarray | None], np.ndarray]
EXECUTORS: Registry[Executor] = Registry("simulator executor")
MacExecutor = Callable[[Machine, Task, View, np.ndarray], np.ndarray]
"""(machine, task, source view, weights) -> float32 sums: a MAC reads its source itself."""
MAC_EXECUTORS: Registry[MacExecutor] = Registry("simulator MAC executor")




def _window(task: Task) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, strides, leading pads, dilations) as (H, W) pairs."""
    c, k = task.regs["common"], task.regs["kernel_dma"]
    return ((c.get("Kh", 0), c.get("Kw", 0)), (c.get("Sy", 0), c.get("Sx", 0)), (c.get("Py", 0), c.get("Px", 0)),
            (k.get("DilationY", 0) or 1, k.get("DilationX", 0) or 1))


def _fit_window(x: np.ndarray, task: Task) -> tuple[np.ndarray, list[int]]:
    """Crop or pad the input's trailing edge so its windows give exactly the output extents."""
    (kh, kw), (sy, sx), (py, px), (dy, dx) = _window(task)
    _, _, _, hout, wout = task.out_extents
    ends = []
    for axis, (size_out, k, s, d, p) in ((3, (hout, kh, sy, dy, py)), (4, (wout, kw, sx, dx, px))):
        end = (size_out - 1) * s + d * (k - 1) + 1 - x.shape[axis] - p
        if end < 0:
            x = np.take(x, np.arange(x.shape[axis] + end), axis=axis)
        ends.append(max(end, 0))
    return x, [py, px, ends[0], ends[1]]


@MAC_EXECUTORS.register(Kind.CONV)
def _conv(m: Machine, task: Task, src: View, w: np.ndarray) -> np.ndarray:
    """A convolution that needs its windows gathered (not 1x1, not depthwise) gathers them as float32
    columns straight from the fp16 source (unless the source passes a limiting crop DMA)."""
    kernel, strides, pads, dilations = _window(task)
    (n, _, cin, _, _), (_, _, cout, hout, wout) = task.in_extents, task.out_extents
    weight = np.asarray(w).reshape(cout, cin // task.groups, *kernel)
    pointwise = kernel == (1, 1) and strides == (1, 1) and pads == (0, 0) and task.in_extents[3:] == task.out_extents[3:]
    depthwise = cin == cout == task.groups
    if not (pointwise or depthwise or m.crops(task.get("tile_src", "PixelOffset0"))):
        cols = np.empty((n, cin, *kernel, hout, wout), dtype=np.float32)
        m.kernels.windows(m.array(src)[:, 0], cols, kernel, strides, pads, dilations, m.numerics.mac_flushes_denormals.value)
        return kernels.conv_columns(cols, weight, task.groups, m.kernels.matmul)[:, None]
    x, all_pads = _fit_window(m.mac_source(task, src), task)
    return kernels.conv(x[:, 0], weight, strides, all_pads, dilations, task.groups, m.kernels.matmul)[:, None]


@MAC_EXECUTORS.register(Kind.DECONV)
def _deconv(m: Machine, task: Task, src: View, w: np.ndarray) -> np.ndarray:
    x = m.mac_source(task, src)
    (kh, kw), strides, (py, px), dilations = _window(task)
    cout, cin = task.out_extents[2], task.in_extents[2]
    weight = np.asarray(w).reshape(cin, cout // task.groups, kh, kw)
    full = kernels.conv_transpose(x[:, 0], weight, strides, [0, 0, 0, 0], dilations, task.groups, [0, 0], m.kernels.matmul)
    _, _, _, hout, wout = task.out_extents
    grow = [(0, 0), (0, 0), (0, max(py + hout - full.shape[2], 0)), (0, max(px + wout - full.shape[3], 0))]
    return np.pad(full, grow)[:, :, py:py + hout, px:px + wout][:, None]


@MAC_EXECUTORS.register(Kind.MATMUL)
def _matmul(m: Machine, task: Task, src: View, b: np.ndarray) -> np.ndarray:
    return kernels.matmul(m.mac_source(task, src), np.asarray(b), task.flag("TransposeLhs"), task.flag("TransposeRhs"),
                          m.kernels.matmul)


@EXECUTORS.register(Kind.ELEMENTWISE)
def _elementwise(m: Machine, task: Task, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    with np.errstate(all="ignore"):
        return kernels.BINARY[BINARY[task.mode]](a, np.asarray(b)).astype(np.float32, copy=False)


def _axes(task: Task) -> tuple[int, ...]:
    mask = task.get("planar", "AxisMask")
    return tuple(i for i in range(5) if mask >> i & 1)


@EXECUTORS.register(Kind.SOFTMAX)
def _softmax(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return kernels.softmax(x, _axes(task)[0])


@EXECUTORS.register(Kind.REDUCE)
def _reduce(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    mode, axes = REDUCTIONS[task.mode], _axes(task)
    with np.errstate(all="ignore"):
        if mode in ("argmax", "argmin"):
            return kernels.arg_reduce(x, axes[0], True, task.flag("SelectLast"), mode == "argmax").astype(np.float32)
        return kernels.REDUCE[f"reduce_{mode}"](x, axes, True)


@EXECUTORS.register(Kind.TOPK)
def _topk(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    """Compares the fp16 values exactly (their float32 widening), equal values by lower index first
    (ONNX TopK's order; -0 and +0 are equal); each row: the k values, then their indices."""
    values, indices = kernels.topk(x, task.out_extents[4] // 2, 4, TOPK_MODES[task.mode] == "largest")
    return np.concatenate([values, indices.astype(np.float32)], axis=4)


def fp16_operands(task: Task) -> bool:
    """Whether a planar task runs on its fp16 operands as stored (see FP16_OPERANDS)."""
    return task.kind in FP16_OPERANDS or (task.kind == Kind.POOL and POOLS[task.mode] == "max")


def ordered(x: np.ndarray) -> np.ndarray:
    """fp16 bits (as int16) -> int16 keys in the order of the values, −0 just below +0; the map is its
    own inverse. Slots hold no NaN."""
    return x ^ ((x >> 15) & np.int16(0x7FFF))


LOWEST_KEY = ordered(np.array(np.float16(-np.inf)).view(np.int16))
"""The key of −inf: what max pooling pads with."""


@EXECUTORS.register(Kind.POOL)
def _pool(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    """Max pooling compares fp16 operands by their keys (`ordered`): exact, with no conversion, and
    independent of the taps' order; average and L2 pooling compute in float32."""
    kind = POOLS[task.mode]
    kernel, strides = _window(task)[:2]
    if kind == "max":
        keys, pads = _fit_window(ordered(x.view(np.int16)), task)
        return ordered(kernels.window_reduce(keys[:, 0], kernel, strides, pads, LOWEST_KEY,
                                             lambda a, b: np.maximum(a, b, out=a))).view(np.float16)[:, None]
    x, pads = _fit_window(x, task)
    with np.errstate(all="ignore"):
        return kernels.pool(kind, x[:, 0], kernel, strides, pads, task.flag("CountIncludePad"))[:, None]


@EXECUTORS.register(Kind.NORM)
def _norm(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    norm, axes = NORMS[task.mode], _axes(task)
    eps = f32_value(task.get("planar", "Epsilon"))
    with np.errstate(all="ignore"):
        if norm == "l2":
            return kernels.l2_norm(x, axes, eps)
        if norm == "group":
            n, d, c, h, w = x.shape
            g = task.groups
            y = kernels.normalize(x.reshape(n, d, g, c // g, h, w), (1, 3, 4, 5), eps).reshape(x.shape)
        else:
            y = kernels.normalize(x, axes, eps)
    affine_shape = tuple(e if i in axes else 1 for i, e in enumerate(x.shape)) if norm == "layer" else (1, 1, -1, 1, 1)
    scale, bias = m.coefficients(task, Coeff.SCALE), m.coefficients(task, Coeff.BIAS)
    if scale is not None:
        y = y * scale.reshape(affine_shape)
    if bias is not None:
        y = y + bias.reshape(affine_shape)
    return y


@EXECUTORS.register(Kind.COPY)
def _copy(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return x


@EXECUTORS.register(Kind.RESHAPE)
def _reshape(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return x.reshape(task.out_extents)


@EXECUTORS.register(Kind.TRANSPOSE)
def _transpose(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    perm = task.get("planar", "Perm")
    return np.transpose(x, [perm >> (3 * i) & 7 for i in range(5)])


@EXECUTORS.register(Kind.PAD)
def _pad(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    (hin, win), (hout, wout) = task.in_extents[3:], task.out_extents[3:]
    py, px = task.get("common", "Py"), task.get("common", "Px")
    widths = [(0, 0), (0, 0), (0, 0), (py, hout - hin - py), (px, wout - win - px)]
    mode = PAD_MODES[task.get("planar", "PadMode")]
    if mode == "constant":
        return np.pad(x, widths, constant_values=np.float32(fp16_value(task.get("planar", "BiasScalar"))))
    return np.pad(x, widths, mode=mode)


@EXECUTORS.register(Kind.RESIZE)
def _resize(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    scales = (f32_value(task.get("l2", "ResampleScaleH")), f32_value(task.get("l2", "ResampleScaleW")))
    return kernels.resize(x, task.out_extents, RESIZE_MODES[task.mode], scales, COORDINATE_MODES[task.get("planar", "CoordMode")],
                          NEAREST_MODES[task.get("planar", "NearestMode")])


@EXECUTORS.register(Kind.DEPTH_TO_SPACE)
def _depth_to_space(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return kernels.depth_to_space(x[:, 0], task.get("planar", "BlockSize"), ("DCR", "CRD")[task.mode])[:, None]


@EXECUTORS.register(Kind.SPACE_TO_DEPTH)
def _space_to_depth(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return kernels.space_to_depth(x[:, 0], task.get("planar", "BlockSize"))[:, None]


@EXECUTORS.register(Kind.TILE)
def _tile(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return np.tile(x, [o // i for i, o in zip(task.in_extents, task.out_extents)])


def run_program(program: Program, inputs: Sequence[np.ndarray], machine: Machine | None = None) -> list[np.ndarray]:
    """Execute `program` on fp16 copies of `inputs`; returns its outputs (fp16, buffer shapes)."""
    return (machine or Machine.for_program(program)).run(inputs)

