"""The functional simulator: executes a decoded descriptor program with the ANE's numerics.

Memory is one byte array per slot; every DMA is a strided numpy view of a slot, built from the
task's fields alone (`anec.descriptors.program`), so what runs here is exactly what the file says.
Numerics follow the target's `Numerics` facts:

- storage is fp16; every task computes in float32 from fp16 operands and rounds its result to fp16
  once, round-half-to-even (numpy's conversion; fp32 then fp16 is innocuous double rounding for
  + − × ÷ √ since 24 ≥ 2·11 + 2);
- MAC tasks (conv, transposed conv, matmul) accumulate in float32 and leave through the MAC port,
  which saturates at ±2^15 (a value that rounds to 32768 or more becomes ±inf); denormal operands
  and results are flushed inside the MAC when the target does so; bias and activation follow in fp16;
- NaN never exists in memory: inputs and weights have NaN coerced to +inf, and an indeterminate
  result (inf − inf, 0 · inf, sqrt(−1), log(−1)) is stored as +0; log(0) gives the target's value;
- a source view starting inside a row (a width slice with a nonzero begin) goes through the Q.4 crop
  DMA on targets that have it: magnitudes above its limit become ±inf;
- activations are exact functions, or the 33-knot piecewise-linear table when a task streams one.

Everything is vectorized numpy over BLAS (`anec.kernels`), and bit-deterministic.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from anec import kernels
from anec.descriptors.ops import (
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
    Coeff,
    Kind,
)
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
    src1_view,
    src2_view,
)
from anec.errors import AnecError
from anec.targets import Numerics, get_target

FP16_MIN_NORMAL = np.float32(2.0**-14)
MOVES = frozenset({Kind.COPY, Kind.RESHAPE, Kind.TRANSPOSE, Kind.TILE, Kind.PAD, Kind.DEPTH_TO_SPACE, Kind.SPACE_TO_DEPTH})
"""Kinds that only move fp16 values: the simulator moves them without converting."""
FP16_OPERANDS = MOVES | {Kind.NEURON, Kind.ELEMENTWISE}
"""Kinds the simulator runs on fp16 operands: moves, activations (a table of fp16 bits) and
elementwise operations (converted block by block)."""


@dataclass
class Machine:
    """The slots of one program and the numerics of its target."""

    program: Program
    numerics: Numerics
    slots: dict[int, np.ndarray]
    _coefficients: dict[tuple[int, int], np.ndarray | None] = field(default_factory=dict)
    plan: list[Task] = field(default_factory=list)
    """The tasks in execution order, output-channel tiles of one convolution merged (`merged_tiles`)."""
    _recent: OrderedDict[tuple, np.ndarray] = field(default_factory=OrderedDict)
    """The last source views converted (tiles of one op read the same input), dropped when written."""

    @classmethod
    def for_program(cls, program: Program) -> Machine:
        slots = {slot: np.zeros(size, dtype=np.uint8) for slot, size in program.slot_sizes().items()}
        if program.weights:
            weights = np.frombuffer(program.weights, dtype=np.uint8)
            slots[WEIGHT_SLOT][:weights.size] = weights
            coerce_nan(slots[WEIGHT_SLOT][:weights.size - weights.size % 2].view(np.float16))
        machine = cls(program, get_target(program.arch).numerics, slots)
        machine.plan = machine.merged_tiles()
        return machine

    def merged_tiles(self) -> list[Task]:
        """The program's tasks, with each run of output-channel tiles of one convolution (same input,
        same fields, outputs adjacent along C) executed as one task: each output channel is computed
        as its tile computes it, with one GEMM instead of one per tile."""
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
        for channel in (Coeff.KERNEL, Coeff.BIAS):
            parts = [self.coefficients(t, channel) for t in tiles]
            self._coefficients[(id(merged), channel)] = None if parts[0] is None else np.concatenate(parts)
        self._coefficients[(id(merged), Coeff.LUT)] = self.coefficients(tiles[0], Coeff.LUT)
        return merged

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
        lo, hi = view.byte_span()
        for key in [k for k in self._recent if k[0].slot == view.slot and _overlap(k[0].byte_span(), (lo, hi))]:
            del self._recent[key]

    def load(self, view: View, pixel_offset: int, dtype: type = np.float32) -> np.ndarray:
        """A source view (float32 to compute on, fp16 to move); a view starting inside a row passes
        the Q.4 crop DMA."""
        return self.cached((view, pixel_offset, dtype), lambda: self._load(view, pixel_offset, dtype))

    def _load(self, view: View, pixel_offset: int, dtype: type) -> np.ndarray:
        x = self.array(view).astype(dtype)
        limit = self.numerics.width_slice_overflow.value
        if pixel_offset and limit is not None:
            x = np.where(np.abs(x) > limit, np.copysign(dtype(np.inf), x), x)
        return x

    def load_mac(self, view: View, pixel_offset: int) -> np.ndarray:
        """A MAC operand as float32, denormals flushed where the target flushes them (one table lookup)."""
        return self.cached((view, pixel_offset, "mac"), lambda: self._load_mac(view, pixel_offset))

    def _load_mac(self, view: View, pixel_offset: int) -> np.ndarray:
        x = lookup(mac_input_table(self.numerics.mac_flushes_denormals.value), self.array(view))
        limit = self.numerics.width_slice_overflow.value
        if pixel_offset and limit is not None:
            x = np.where(np.abs(x) > limit, np.copysign(np.float32(np.inf), x), x)
        return x

    def constant(self, task: Task, view: View) -> np.ndarray:
        """A MAC operand read from the weight section (a constant right-hand side), converted once."""
        key = (id(task), -2)
        if key not in self._coefficients:
            self._coefficients[key] = self.load_mac(view, task.get("tile_src", "Src2PixelOffset"))
        return self._coefficients[key]  # type: ignore[return-value]

    def kernel(self, task: Task) -> np.ndarray | None:
        """The kernel coefficient stream as a MAC operand (flushed once per machine)."""
        key = (id(task), -1)
        if key not in self._coefficients:
            weights = self.coefficients(task, Coeff.KERNEL)
            self._coefficients[key] = None if weights is None else \
                lookup(mac_input_table(self.numerics.mac_flushes_denormals.value), weights.astype(np.float16))
        return self._coefficients[key]

    def coefficients(self, task: Task, channel: Coeff) -> np.ndarray | None:
        """A coefficient stream as float32 (read once per machine: the weight section is read-only)."""
        key = (id(task), channel)
        if key not in self._coefficients:
            span = coeff_range(task, channel)
            self._coefficients[key] = None if span is None else np.frombuffer(
                self.slots[WEIGHT_SLOT], dtype=np.float16, count=task.coeff_elements(channel), offset=span[0]).astype(np.float32)
        return self._coefficients[key]

    def store(self, view: View, result: np.ndarray) -> None:
        """Round to fp16 (half to even) into the destination; an indeterminate result is stored as +0."""
        self.forget(view)
        target = self.array(view)
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(target, result, casting="unsafe")
        if has_nan(result):  # rounding to fp16 makes NaN of NaN only: test the (cheaper) result
            target[np.isnan(target)] = np.float16(self.numerics.indeterminate_result.value)

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

    def execute(self, task: Task) -> None:
        src1, src2, dst = src1_view(task), src2_view(task), dst_view(task)
        assert src1 is not None and dst is not None
        kind = task.kind
        if kind in MAC_KINDS:
            x = self.load_mac(src1, task.get("tile_src", "PixelOffset0"))
            y = None if src2 is None else self.constant(task, src2) if src2.slot == WEIGHT_SLOT else \
                self.load_mac(src2, task.get("tile_src", "Src2PixelOffset"))
            self.store(dst, self.mac(task, x, y))
            return
        dtype = np.float16 if kind in FP16_OPERANDS else np.float32
        x = self.load(src1, task.get("tile_src", "PixelOffset0"), dtype)
        y = self.load(src2, task.get("tile_src", "Src2PixelOffset"), dtype) if src2 is not None else None
        self.store(dst, EXECUTORS[kind](self, task, x, y))

    def mac(self, task: Task, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """A MAC task: float32 accumulation, the saturating MAC port, then post-scale, bias, activation
        (elementwise: done by blocks that stay in cache)."""
        weights = y if y is not None else self.kernel(task)
        with np.errstate(invalid="ignore", over="ignore"):
            acc = MAC_EXECUTORS[task.kind](self, task, x, weights)
        bias = self.coefficients(task, Coeff.BIAS)
        if bias is not None:
            shape = [1] * 5
            shape[4 if task.kind == Kind.MATMUL else 2] = -1
            bias = bias.reshape(shape)
        post_scale = np.float32(fp16_value(task.get("neural", "PostScale"))) if task.get("neural", "PostScaleMode") else None
        table = self.activation_table(task) if task.get("kernel_dma", "Neuron") else None
        port_facts = (self.numerics.mac_saturation.value, self.numerics.mac_flushes_denormals.value)

        def leave(acc: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
            if post_scale is None and bias is None:
                out = lookup(mac_port_table(*port_facts), fp16(acc)).view(np.float16)
            else:
                value = fp16_values(acc, *port_facts)
                if post_scale is not None:
                    value = fp16_values(value * post_scale)
                out = fp16(value if bias is None else np.add(value, bias, out=value))
            return out if table is None else lookup(table, out).view(np.float16)

        return blockwise(leave, acc, bias)

    def activation_table(self, task: Task) -> np.ndarray:
        """fp16 bits -> the fp16 bits of the task's activation (computed in float32, then rounded): on
        fp16 operands an elementwise activation followed by rounding is a function of 2^16 inputs.
        NaN stays NaN (as every exact activation keeps it), to be stored as the indeterminate result."""
        key = (id(task), "activation")
        if key not in self._coefficients:
            values = _fp16_values()
            nan = np.isnan(values)
            table = fp16(self.activation(task, np.where(nan, np.float32(0), values))).view(np.uint16)
            table[nan] = np.float16(np.nan).view(np.uint16)
            self._coefficients[key] = table
        return self._coefficients[key]  # type: ignore[return-value]

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


def _continues(previous: Task, task: Task) -> bool:
    """Whether `task` is the next output-channel tile of the convolution `previous` belongs to."""
    if task.kind != Kind.CONV or previous.kind != Kind.CONV or task.groups != 1 or task.flag("KernelFromSrc2"):
        return False
    groups = set(task.regs) | set(previous.regs)
    if any(task.regs.get(g, {}).get(k) != previous.regs.get(g, {}).get(k)
           for g in groups for k in set(task.regs.get(g, {})) | set(previous.regs.get(g, {})) if (g, k) not in TILE_FIELDS):
        return False
    a, b, src = dst_view(previous), dst_view(task), src1_view(task)
    assert a is not None and b is not None and src is not None
    adjacent = a.slot == b.slot and a.strides == b.strides and a.base + a.extents[2] * a.strides[2] == b.base
    return adjacent and (src.slot != b.slot or not _overlap(src.byte_span(), (a.base, b.byte_span()[1])))



def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def fp16(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(np.float16)


BLOCK_ELEMENTS = 1 << 16
"""Elements per block of `blockwise`: a block and its temporaries stay in the core's cache."""


def blockwise(fn: Callable[[np.ndarray, np.ndarray | None], np.ndarray], x: np.ndarray, operand: np.ndarray | None) -> np.ndarray:
    """`fn(x, operand)` for an elementwise `fn` returning fp16, computed by blocks along x's outermost
    axis longer than 1 (`operand` broadcasts against x): each output element is computed as the
    whole-array call computes it, with the temporaries in cache. (A thread pool for the blocks was
    slower on 2 cores: OpenBLAS threads spin after each GEMM.)"""
    if operand is not None and np.broadcast_shapes(x.shape, operand.shape) != x.shape:
        return fn(x, operand)  # x broadcasts against the operand: one block
    if operand is not None:
        operand = operand.reshape((1,) * (x.ndim - operand.ndim) + operand.shape)
    axis = next((i for i, extent in enumerate(x.shape) if extent > 1), 0)
    step = max(1, BLOCK_ELEMENTS * x.shape[axis] // max(x.size, 1))
    out = np.empty(x.shape, dtype=np.float16)

    for start in range(0, x.shape[axis], step):
        part = (slice(None),) * axis + (slice(start, start + step),)
        out[part] = fn(x[part], operand if operand is None or operand.shape[axis] == 1 else operand[part])
    return out


def lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`table` indexed by the bits of the fp16 array `x` (np.take: about twice as fast as indexing)."""
    return np.take(table, x.view(np.uint16))


def has_nan(x: np.ndarray) -> bool:
    """Whether `x` holds a NaN (on fp16, a test of the bits: numpy's fp16 isnan is a slow loop)."""
    if x.dtype == np.float16:
        return bool(((x.view(np.uint16) & 0x7FFF) > 0x7C00).any())
    return bool(np.isnan(x).any())


def coerce_nan(x: np.ndarray) -> None:
    """NaN is coerced to +inf where values enter the ANE (in place)."""
    if np.isnan(x).any():
        x[np.isnan(x)] = np.inf


def _fp16_values() -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def _flushed(values: np.ndarray) -> np.ndarray:
    return np.where((values != 0) & (np.abs(values) < FP16_MIN_NORMAL), np.copysign(np.float32(0), values), values)


@functools.cache
def mac_input_table(flush: bool) -> np.ndarray:
    """fp16 bits -> the float32 value the MAC multiplies (denormals become zero of the same sign)."""
    values = _fp16_values()
    return _flushed(values) if flush else values


@functools.cache
def mac_port_table(saturation: float, flush: bool) -> np.ndarray:
    """fp16 bits -> fp16 bits leaving the MAC port: magnitudes of 2^15 and above become ±inf, and
    denormal results become zero where the target flushes them."""
    values = _fp16_values()
    with np.errstate(invalid="ignore"):
        out = np.where(np.abs(values) >= saturation, np.copysign(np.float32(np.inf), values), values)
    out = _flushed(out) if flush else out
    return out.astype(np.float16).view(np.uint16)


SIGN_BIT = np.int32(-0x80000000)
EXPONENT_BITS = np.int32(0x7F800000)
FP16_MIN_NORMAL_BITS = np.int32(0x38800000)
FP16_QUANTUM_SHIFT = np.int32(13 << 23)
"""Added to a float32's exponent bits: a power of two whose last place is the fp16 quantum there."""


def fp16_values(x: np.ndarray, saturation: float = 65536.0, flush: bool = False) -> np.ndarray:
    """float32 `x` rounded to fp16 (half to even), as float32 — what converting to fp16 and back
    gives, without the conversions (numpy's are scalar loops): |x| + 2^(e+13) has the fp16 quantum of
    |x|'s binade e (at least 2^-14's) as its last place, so float32 addition rounds |x| there, half to
    even, and subtracting 2^(e+13) back is exact. Magnitudes of `saturation` or more become ±inf (the
    MAC port saturates at 2^15; 2^16 is fp16's overflow); with `flush`, denormal results become zero.
    NaN stays NaN. Equal to the conversion on all 2^32 float32 values (checked once, exhaustively;
    tests/sim/test_numerics.py samples every class of value)."""
    magnitude = np.minimum(np.abs(x), np.float32(65536))
    place = magnitude.view(np.int32) & EXPONENT_BITS
    np.maximum(place, FP16_MIN_NORMAL_BITS, out=place)
    place += FP16_QUANTUM_SHIFT
    rounded = magnitude + place.view(np.float32)
    rounded -= place.view(np.float32)
    rounded[rounded >= saturation] = np.inf
    if flush:
        rounded[rounded < FP16_MIN_NORMAL] = 0
    rounded.view(np.int32)[...] |= x.view(np.int32) & SIGN_BIT  # x's sign (np.copysign is slower)
    return rounded


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
EXECUTORS: dict[Kind, Executor] = {}
MAC_EXECUTORS: dict[Kind, Executor] = {}


def executes(table: dict[Kind, Executor], *kinds: Kind) -> Callable[[Executor], Executor]:
    def register(fn: Executor) -> Executor:
        for k in kinds:
            table[k] = fn
        return fn
    return register


def _window(task: Task) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, strides, leading pads, dilations) as (H, W) pairs."""
    c, k = task.regs["common"], task.regs["kernel_dma"]
    return ((c.get("Kh", 0), c.get("Kw", 0)), (c.get("Sy", 0), c.get("Sx", 0)), (c.get("Py", 0), c.get("Px", 0)),
            (k.get("DilationY", 0) or 1, k.get("DilationX", 0) or 1))


def _fit_window(x: np.ndarray, task: Task, fill: float = 0.0) -> tuple[np.ndarray, list[int]]:
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


@executes(MAC_EXECUTORS, Kind.CONV)
def _conv(m: Machine, task: Task, x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    (kh, kw), strides, _, dilations = _window(task)
    cout, cin = task.out_extents[2], task.in_extents[2]
    x, pads = _fit_window(x, task)
    weight = np.asarray(w).reshape(cout, cin // task.groups, kh, kw)
    return kernels.conv(x[:, 0], weight, strides, pads, dilations, task.groups)[:, None]


@executes(MAC_EXECUTORS, Kind.DECONV)
def _deconv(m: Machine, task: Task, x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    (kh, kw), strides, (py, px), dilations = _window(task)
    cout, cin = task.out_extents[2], task.in_extents[2]
    weight = np.asarray(w).reshape(cin, cout // task.groups, kh, kw)
    full = kernels.conv_transpose(x[:, 0], weight, strides, [0, 0, 0, 0], dilations, task.groups, [0, 0])
    _, _, _, hout, wout = task.out_extents
    grow = [(0, 0), (0, 0), (0, max(py + hout - full.shape[2], 0)), (0, max(px + wout - full.shape[3], 0))]
    return np.pad(full, grow)[:, :, py:py + hout, px:px + wout][:, None]


@executes(MAC_EXECUTORS, Kind.MATMUL)
def _matmul(m: Machine, task: Task, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    return kernels.matmul(a, np.asarray(b), task.flag("TransposeLhs"), task.flag("TransposeRhs"))


@executes(EXECUTORS, Kind.ELEMENTWISE)
def _elementwise(m: Machine, task: Task, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    operation = kernels.BINARY[BINARY[task.mode]]

    def apply(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fp16(operation(a.astype(np.float32), np.asarray(b).astype(np.float32)).astype(np.float32, copy=False))
    return blockwise(apply, a, b)


@executes(EXECUTORS, Kind.NEURON)
def _neuron(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return lookup(m.activation_table(task), x).view(np.float16)


def _axes(task: Task) -> tuple[int, ...]:
    mask = task.get("planar", "AxisMask")
    return tuple(i for i in range(5) if mask >> i & 1)


@executes(EXECUTORS, Kind.SOFTMAX)
def _softmax(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return kernels.softmax(x, _axes(task)[0])


@executes(EXECUTORS, Kind.REDUCE)
def _reduce(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    mode, axes = REDUCTIONS[task.mode], _axes(task)
    with np.errstate(all="ignore"):
        if mode in ("argmax", "argmin"):
            return kernels.arg_reduce(x, axes[0], True, task.flag("SelectLast"), mode == "argmax").astype(np.float32)
        return kernels.REDUCE[f"reduce_{mode}"](x, axes, True)


@executes(EXECUTORS, Kind.POOL)
def _pool(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    kind = POOLS[task.mode]
    x, pads = _fit_window(x, task, -np.inf if kind == "max" else 0.0)
    kernel, strides, _, _ = _window(task)
    with np.errstate(all="ignore"):
        return kernels.pool(kind, x[:, 0], kernel, strides, pads, task.flag("CountIncludePad"))[:, None]


@executes(EXECUTORS, Kind.NORM)
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


@executes(EXECUTORS, Kind.COPY)
def _copy(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return x


@executes(EXECUTORS, Kind.RESHAPE)
def _reshape(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return x.reshape(task.out_extents)


@executes(EXECUTORS, Kind.TRANSPOSE)
def _transpose(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    perm = task.get("planar", "Perm")
    return np.transpose(x, [perm >> (3 * i) & 7 for i in range(5)])


@executes(EXECUTORS, Kind.PAD)
def _pad(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    (_, _, _, hin, win), (_, _, _, hout, wout) = task.in_extents, task.out_extents
    py, px = task.get("common", "Py"), task.get("common", "Px")
    widths = [(0, 0), (0, 0), (0, 0), (py, hout - hin - py), (px, wout - win - px)]
    mode = PAD_MODES[task.get("planar", "PadMode")]
    if mode == "constant":
        return np.pad(x, widths, constant_values=np.float32(fp16_value(task.get("planar", "BiasScalar"))))
    return np.pad(x, widths, mode=mode)


@executes(EXECUTORS, Kind.RESIZE)
def _resize(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    scales = (f32_value(task.get("l2", "ResampleScaleH")), f32_value(task.get("l2", "ResampleScaleW")))
    return kernels.resize(x, task.out_extents, RESIZE_MODES[task.mode], scales, COORDINATE_MODES[task.get("planar", "CoordMode")],
                          NEAREST_MODES[task.get("planar", "NearestMode")])


@executes(EXECUTORS, Kind.DEPTH_TO_SPACE)
def _depth_to_space(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return kernels.depth_to_space(x[:, 0], task.get("planar", "BlockSize"), ("DCR", "CRD")[task.mode])[:, None]


@executes(EXECUTORS, Kind.SPACE_TO_DEPTH)
def _space_to_depth(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return kernels.space_to_depth(x[:, 0], task.get("planar", "BlockSize"))[:, None]


@executes(EXECUTORS, Kind.TILE)
def _tile(m: Machine, task: Task, x: np.ndarray, _: np.ndarray | None) -> np.ndarray:
    return np.tile(x, [o // i for i, o in zip(task.in_extents, task.out_extents)])


def run_program(program: Program, inputs: Sequence[np.ndarray], machine: Machine | None = None) -> list[np.ndarray]:
    """Execute `program` on fp16 copies of `inputs`; returns its outputs (fp16, buffer shapes)."""
    return (machine or Machine.for_program(program)).run(inputs)
