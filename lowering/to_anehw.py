"""`to-anehw`: each `ane.segment` becomes an `anehw.program` of task descriptors.

Every op of a segment becomes one or more `anehw.task`s through a table of lowerings (a select is four
elementwise tasks, attention three, a concatenation one copy per piece). A lowering states *what* a
task computes (its kind, mode and shape fields) and which tensor each of its DMAs walks, as a view in
rows of a buffer; it never decides *where* a tensor lives (`plan-memory` does). Reshapes that keep
the innermost axis are free: the ANE layout (W contiguous, rows padded to 64 bytes, outer axes dense)
is the same for both shapes, so the result aliases the input's buffer.

Segment edges: the program's inputs and outputs are fp16 buffers; `ane.cast`s between f32 and f16
cost nothing inside (the runtime converts at the boundary, as Core ML's Cast ops do).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from anec import kernels
from anec.compression import KERNEL_FORMATS
from anec.descriptors.program import f32_bits, fp16_bits
from anec.dialects import ane, anehw
from anec.dialects.ane import as_tuple, shape_of
from anec.dialects.discardable import (
    FP16_FIXES_ATTR,
    FP16_PEAK_ATTR,
    FP16_WARNINGS_ATTR,
    NAME_ATTR,
    OP_ATTR,
    TILE_OF_ATTR,
    name_of,
)
from anec.errors import AnecError
from anec.isa.fields import FieldTable, table_for
from anec.isa.tasks import (
    BINARY,
    COORDINATE_MODES,
    LUT_KNOTS,
    LUT_WORDS,
    NEAREST_MODES,
    NEURON_PARAMS,
    NEURONS,
    NORMS,
    PAD_MODES,
    POOLS,
    REDUCTIONS,
    RESIZE_MODES,
    TOPK_MODES,
    Kind,
    active_cores,
    ocg_size,
)
from anec.legality import streamed_form
from anec.registry import Registry
from anec.targets import Target, get_target
from anec.weights import WeightStore, compressed_of, const_value, store_of

Shape = tuple[int, ...]
Extents = tuple[int, int, int, int, int]
AxisMap = tuple[int | None, int | None, int | None, int | None, int | None]

CARRIED_ATTRS = (NAME_ATTR, TILE_OF_ATTR, FP16_WARNINGS_ATTR, FP16_FIXES_ATTR, FP16_PEAK_ATTR)
"""Attributes a task inherits from its op, so the report and `anec profile` can name it."""


def dims(value: SSAValue) -> Shape:
    """The shape of a value as the ANE stores it (a scalar is one element)."""
    return shape_of(value) or (1,)


def std_axes(rank: int) -> AxisMap:
    """Right-aligned placement of a rank-r tensor on [N, D, C, H, W] (the guide's rule)."""
    return (*([None] * (5 - rank)), *range(rank))


def spatial_axes(rank: int) -> AxisMap:
    """N, C, (H,) W placement for convolution-like ops (a 1-D op has H = 1)."""
    return (0, None, 1, 2, 3) if rank == 4 else (0, None, 1, None, 2)


def extents(shape: Shape, axes: AxisMap) -> Extents:
    n, d, c, h, w = (1 if a is None else shape[a] for a in axes)
    return n, d, c, h, w


@dataclass(frozen=True)
class Tensor:
    """A value of the segment: a window of the buffer (or weight) holding it.

    `layout` is the shape the buffer is laid out in (rows of its last axis, outer axes dense); the
    value starts at `origin` and takes every `steps`-th element along each axis (0 repeats one
    element: a broadcast). A whole buffer has origin 0 and steps 1. Slices, broadcasts and the pieces
    of a concatenation are windows, so they cost no task.
    """

    buffer: str
    shape: Shape
    layout: Shape = ()
    origin: tuple[int, ...] = ()
    steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.layout:
            object.__setattr__(self, "layout", self.shape)
            object.__setattr__(self, "origin", (0,) * len(self.shape))
            object.__setattr__(self, "steps", (1,) * len(self.shape))

    @property
    def whole(self) -> bool:
        return self.layout == self.shape and not any(self.origin) and all(s == 1 for s in self.steps)

    def window(self, shape: Shape, origin: Sequence[int] = (), steps: Sequence[int] = ()) -> Tensor:
        """The sub-window of `shape` starting at `origin` of this tensor, every `steps` (0 repeats)."""
        origin = tuple(origin) or (0,) * len(shape)
        steps = tuple(steps) or (1,) * len(shape)
        return Tensor(self.buffer, tuple(shape), self.layout, tuple(o + a * s for o, a, s in zip(self.origin, origin, self.steps)),
                      tuple(a * s for a, s in zip(steps, self.steps)))

    def view(self, axes: AxisMap, want: Extents, offsets: Sequence[int] = (), steps: Sequence[int] = ()) -> anehw.ViewAttr:
        """The DMA view walking this tensor (from `offsets`, every `steps`) with extents `want`; an axis
        of extent 1 here repeats."""
        rank = len(self.layout)
        if axes[4] not in (None, rank - 1):
            raise AnecError(f"internal: the W axis of a view must be the innermost axis (got {axes})")
        inner = self.window(self.shape, offsets, steps) if offsets or steps else self
        rows = [math.prod(self.layout[i + 1:rank - 1]) for i in range(rank)]
        strides = []
        for k, a in enumerate(axes[:4]):
            if a is None or want[k] == 1 or self.shape[a] == 1:
                strides.append(0)
            else:
                strides.append(rows[a] * inner.steps[a])
        offset = sum(inner.origin[i] * rows[i] for i in range(rank - 1))
        w_step = 0 if self.shape[-1] == 1 and want[4] > 1 else (inner.steps[-1] if want[4] > 1 else 1)
        return anehw.view(self.buffer, tuple(strides), offset, inner.origin[-1], w_step)


@dataclass
class SegmentLowering:
    """Builds one program: declarations, tasks, and the tensor of every value."""

    target: Target
    table: FieldTable
    store: WeightStore
    lut: bool
    decls: list[Operation] = field(default_factory=list)
    tasks: list[anehw.TaskOp] = field(default_factory=list)
    values: dict[SSAValue, Tensor] = field(default_factory=dict)
    roles: dict[str, anehw.BufferOp] = field(default_factory=dict)
    origin: Operation | None = None
    planned: dict[SSAValue, Tensor] = field(default_factory=dict)
    """Values whose producer writes straight into their window of a concatenation."""
    _names: set[str] = field(default_factory=set)
    _weights: dict[tuple[str, str, Shape], str] = field(default_factory=dict)
    """The weight entry declared for each (handle, layout, shape)."""
    _constants: dict[tuple[str, str, Shape], Tensor] = field(default_factory=dict)
    """The weight entry of each (stored constant's handle, layout, shape): the tiles and steps of
    an unrolled model read the same constants over and over, converted and hashed once."""
    _luts: dict[tuple[str, tuple[float, ...]], str] = field(default_factory=dict)
    """The activation table entry of each (activation, parameters)."""
    _noted: set[int] = field(default_factory=set)

    # -- declarations ----------------------------------------------------------------------------

    def _fresh(self, base: str) -> str:
        name, n = base, 0
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def buffer(self, shape: Shape, role: str = "intermediate", port: int | None = None, base: str = "t") -> Tensor:
        name = self._fresh(f"{base}{port}" if port is not None else f"{base}{len(self.roles)}")
        op = anehw.BufferOp(name, role, shape, port)
        self.roles[name] = op
        self.decls.append(op)
        return Tensor(name, shape)

    def weight(self, array: np.ndarray, label: str, layout: str, shape: Shape | None = None) -> Tensor:
        """A weight-section entry holding `array`; equal arrays (one handle: the store keeps each once)
        in the same layout share one entry, so the steps of an unrolled recurrence read the same bytes."""
        shape = tuple(shape or array.shape or (1,))
        handle = self.store.add(np.asarray(array, dtype=np.float16).reshape(shape), f"{label}.fp16")
        if (name := self._weights.get((handle, layout, shape))) is None:
            name = self._weights[(handle, layout, shape)] = self._fresh(f"w{len(self.decls)}")
            self.decls.append(anehw.WeightOp(name, handle, layout, shape))
        return Tensor(name, shape)

    def constant(self, owner: ane.ConstOp, label: str, layout: str, shape: Shape) -> Tensor:
        """`weight` of the constant `owner` defines, looked up by its stored handle first (equal arrays
        share one entry whatever their label, so the lookup gives what `weight` would)."""
        if owner.handle is None:
            return self.weight(const_value(owner, self.store), label, layout, shape)
        key = (owner.handle.data, layout, shape)
        if key not in self._constants:
            self._constants[key] = self.weight(const_value(owner, self.store), label, layout, shape)
        return self._constants[key]

    def tensor(self, value: SSAValue) -> Tensor:
        """The tensor holding `value`; a constant becomes a tensor-layout weight on first use. A window
        stepping along W by more than the DMA's `WStep` field holds is first copied out densely."""
        if value not in self.values:
            owner = value.owner
            if not isinstance(owner, ane.ConstOp):
                raise AnecError(f"internal: {value} has no tensor yet")
            self.values[value] = self.constant(owner, name_of(owner), "tensor", tuple(dims(value)))
        tensor = self.values[value]
        if tensor.steps and tensor.steps[-1] > self.table.field("tile_src", "WStep").max:
            tensor = self.values[value] = self.dense_w(tensor)
        return tensor

    def dense_w(self, tensor: Tensor) -> Tensor:
        """`tensor` (a window whose W step exceeds the `WStep` field) in a buffer of its own: the W span
        is transposed to rows, where the step is a row stride (a 32-bit field), and transposed back."""
        lift = (1,) if len(tensor.shape) == 1 else ()
        step = tensor.steps[-1]
        span = (tensor.shape[-1] - 1) * step + 1
        dense = Tensor(tensor.buffer, (*lift, *tensor.shape[:-1], span), (*lift, *tensor.layout),
                       ((0,) * len(lift) + tensor.origin), (*lift, *tensor.steps[:-1], 1))
        swap = [*range(len(dense.shape) - 2), len(dense.shape) - 1, len(dense.shape) - 2]
        rows = self.transpose(dense, swap)
        picked = rows.window((*rows.shape[:-2], tensor.shape[-1], rows.shape[-1]), steps=(*([1] * (len(rows.shape) - 2)), step, 1))
        out = self.transpose(picked, swap)
        return Tensor(out.buffer, tensor.shape) if lift else out

    def transpose(self, x: Tensor, perm: Sequence[int], out: Tensor | None = None) -> Tensor:
        """`x` with its axes permuted, into `out` or a new buffer (one transpose task)."""
        rank = len(x.shape)
        axes = std_axes(rank)
        out = out or self.buffer(tuple(x.shape[p] for p in perm))
        perm5 = list(range(5 - rank)) + [5 - rank + p for p in perm]
        self.task(Kind.TRANSPOSE, extents(x.shape, axes), extents(out.shape, axes), src1=x.view(axes, extents(x.shape, axes)),
                  dst=out.view(axes, extents(out.shape, axes)), planar={"Perm": sum(p << (3 * i) for i, p in enumerate(perm5))})
        return out

    def streamed_kernel(self, op: ane.ConvOp) -> tuple[str, dict[str, int]] | None:
        """The weight of `op` as a compressed kernel stream and its `neural` format fields, when it is
        stored compressed in a form this chip streams (else None: it is expanded to fp16)."""
        owner = op.weight.owner
        if not isinstance(owner, ane.ConstOp):
            return None
        weight = compressed_of(owner, self.store)
        form = streamed_form(op, weight, self.target) if weight is not None else None
        if weight is None or form is None:
            return None
        name = self._fresh(f"w{len(self.decls)}")
        self.decls.append(anehw.WeightOp(name, self.store.add_compressed(weight, f"{name_of(owner)}.kernel"), "dense",
                                         weight.shape, encoding=form))
        fields = ({"PalettizedEn": 1, "PalettizedBits": 4} if form == "palette4" else {"SparseFmt": 1} if form == "sparse"
                  else {"KernelFmt": KERNEL_FORMATS[form]})
        return name, fields

    def coefficient(self, value: SSAValue, label: str) -> str | None:
        """A constant operand as a dense coefficient stream (None when it is computed at run time)."""
        owner = value.owner
        if not isinstance(owner, ane.ConstOp):
            return None
        return self.constant(owner, f"{name_of(owner)}.{label}", "dense", (math.prod(shape_of(value)),)).buffer

    def result(self, value: SSAValue, shape: Shape | None = None) -> Tensor:
        """Where an op writes `value`: its window of a concatenation planned in place, else a new buffer."""
        tensor = self.planned.get(value) if shape is None else None
        tensor = tensor or self.buffer(tuple(shape or dims(value)))
        self.values[value] = tensor
        return tensor

    def as_shape(self, tensor: Tensor, shape: Shape) -> Tensor:
        """`tensor` under another shape: an alias when W is unchanged, else a reshape task."""
        if tensor.shape == shape:
            return tensor
        if tensor.whole and tensor.shape[-1] == shape[-1]:
            return Tensor(tensor.buffer, shape)
        out = self.buffer(shape)
        src_ext, dst_ext = extents(tensor.shape, std_axes(len(tensor.shape))), extents(shape, std_axes(len(shape)))
        self.task(Kind.RESHAPE, src_ext, dst_ext, src1=tensor.view(std_axes(len(tensor.shape)), src_ext),
                  dst=out.view(std_axes(len(shape)), dst_ext))
        return out

    # -- tasks -----------------------------------------------------------------------------------

    def task(self, kind: Kind, src_ext: Extents, dst_ext: Extents, *, src1: anehw.ViewAttr, dst: anehw.ViewAttr,
             src2: anehw.ViewAttr | None = None, coeffs: dict[str, str | None] | None = None,
             **groups: dict[str, int]) -> anehw.TaskOp:
        fields: dict[str, dict[str, int]] = {g: dict(v) for g, v in groups.items()}
        fields.setdefault("kernel_dma", {}).update(Kind=int(kind), InBatch=src_ext[0], OutBatch=dst_ext[0])
        fields.setdefault("common", {}).update(InputDepth=src_ext[1], Cin=src_ext[2], Hin=src_ext[3], Win=src_ext[4],
                                               OutDepth=dst_ext[1], Cout=dst_ext[2], Hout=dst_ext[3], Wout=dst_ext[4])
        where = name_of(self.origin) if self.origin is not None else "segment"
        for group, vals in fields.items():
            for name, value in vals.items():
                try:
                    self.table.check(group, name, value)
                except AnecError as e:
                    raise AnecError(f"cannot encode {self.origin.name if self.origin else 'a task'} for the {self.target}",
                                    where=where, why=e.what, hint="the tile pass must split it further") from None
        op = anehw.TaskOp(fields, src1=src1, src2=src2, dst=dst, coeffs={k: v for k, v in (coeffs or {}).items() if v})
        if self.origin is not None:
            first = id(self.origin) not in self._noted
            self._noted.add(id(self.origin))
            for key in CARRIED_ATTRS:
                if key in self.origin.attributes and (first or key in (NAME_ATTR, TILE_OF_ATTR)):
                    op.attributes[key] = self.origin.attributes[key]
            op.attributes[OP_ATTR] = StringAttr(ane.kind(self.origin))
        self.tasks.append(op)
        return op

    def elementwise(self, mode: str, a: Tensor, b: Tensor, out: Tensor) -> None:
        axes = std_axes(len(out.shape))
        ext = extents(out.shape, axes)
        self.task(Kind.ELEMENTWISE, ext, ext, src1=a.view(axes, ext), src2=b.view(axes, ext), dst=out.view(axes, ext),
                  kernel_dma={"Mode": BINARY.index(mode)})

    def neuron(self, name: str, params: Sequence[float], x: Tensor, out: Tensor) -> None:
        axes = std_axes(len(out.shape))
        ext = extents(out.shape, axes)
        groups, coeffs = self.activation_fields(name, params)
        self.task(Kind.NEURON, ext, ext, src1=x.view(axes, ext), dst=out.view(axes, ext), coeffs=coeffs,
                  kernel_dma=groups.get("kernel_dma", {}), planar=groups.get("planar", {}))

    def activation_fields(self, name: str | None, params: Sequence[float]) -> tuple[dict[str, dict[str, int]], dict[str, str | None]]:
        """Neuron code, fp16 parameters and (optionally) a PWL table for an activation."""
        if name is None:
            return {}, {}
        if name not in NEURONS:
            raise AnecError(f"the ANE has no activation {name!r}", where=name_of(self.origin) if self.origin else "")
        scalars = [fp16_bits(p) for p in params][:NEURON_PARAMS.get(name, 0)]
        planar = dict(zip(("ScaleScalar", "BiasScalar"), scalars))
        kernel_dma = {"Neuron": NEURONS.index(name)}
        coeffs: dict[str, str | None] = {}
        if self.lut and name in LUT_RANGES:
            kernel_dma["LutEn"] = 1
            key = (name, tuple(params))
            if key not in self._luts:
                self._luts[key] = self.weight(pwl_table(name, params), f"{name}.lut", "dense").buffer
            coeffs["lut"] = self._luts[key]
        return {"kernel_dma": kernel_dma, "planar": planar}, coeffs


# ------------------------------------------------------------------------------------------------
# Piecewise-linear activation tables (the guide: 33 knots, 32 segments)
# ------------------------------------------------------------------------------------------------

LUT_RANGES: dict[str, tuple[float, float, float, float]] = {
    "sigmoid": (-8.0, 8.0, 0.0, 0.0), "tanh": (-4.0, 4.0, 0.0, 0.0), "erf": (-3.0, 3.0, 0.0, 0.0),
    "gelu": (-4.0, 4.0, 0.0, 1.0), "gelu_tanh": (-4.0, 4.0, 0.0, 1.0), "silu": (-8.0, 8.0, 0.0, 1.0),
    "softplus": (-8.0, 8.0, 0.0, 1.0), "elu": (-8.0, 8.0, 0.0, 1.0), "hardswish": (-4.0, 4.0, 0.0, 1.0),
}
"""Functions the ANE evaluates by table: (lo, hi, slope below lo, slope above hi)."""


def reference_activation(name: str, params: Sequence[float] = ()) -> Callable[[np.ndarray], np.ndarray]:
    """The exact function of a neuron code, in float32."""
    if name == "gelu_tanh":
        return lambda x: kernels.gelu(x, "tanh")
    if name == "affine":
        return lambda x: x * params[0] + params[1]
    fn = kernels.UNARY[name]
    return lambda x: fn(x, *params)


def pwl_table(name: str, params: Sequence[float] = ()) -> np.ndarray:
    """[lo, hi, slope below, slope above, 33 knots, 6 reserved] as fp16."""
    lo, hi, below, above = LUT_RANGES[name]
    knots = reference_activation(name, params)(np.linspace(lo, hi, LUT_KNOTS, dtype=np.float32))
    table = np.zeros(LUT_WORDS, dtype=np.float32)
    table[:4] = (lo, hi, below, above)
    table[4:4 + LUT_KNOTS] = knots
    return table.astype(np.float16)


# ------------------------------------------------------------------------------------------------
# Lowerings, one per op family
# ------------------------------------------------------------------------------------------------

TaskLowering = Callable[[SegmentLowering, Operation], None]
LOWERINGS: Registry[TaskLowering] = Registry("task-descriptor lowering")
lowers = LOWERINGS.register


def neuron_name(op: Operation) -> str:
    if isinstance(op, ane.GeluOp):
        return "gelu_tanh" if op.approximate.data == "tanh" else "gelu"
    return ane.kind(op)


@lowers(ane.UnaryOp)
def _unary(L: SegmentLowering, op: ane.UnaryOp) -> None:
    L.neuron(neuron_name(op), op.param_values(), L.tensor(op.input), L.result(op.result))


@lowers(ane.SoftmaxOp)
def _softmax(L: SegmentLowering, op: ane.SoftmaxOp) -> None:
    x, out = L.tensor(op.input), L.result(op.result)
    axes = std_axes(len(out.shape))
    ext = extents(out.shape, axes)
    L.task(Kind.SOFTMAX, ext, ext, src1=x.view(axes, ext), dst=out.view(axes, ext),
           planar={"AxisMask": 1 << axes.index(op.axis.value.data)})


@lowers(ane.BinaryOp, ane.CompareOp)
def _binary(L: SegmentLowering, op: Operation) -> None:
    L.elementwise(ane.kind(op), L.tensor(op.operands[0]), L.tensor(op.operands[1]), L.result(op.results[0]))


@lowers(ane.SelectOp)
def _select(L: SegmentLowering, op: ane.SelectOp) -> None:
    """cond·a + (1 − cond)·b: exact for a 0/1 condition, and 0·inf is +0 on the ANE."""
    cond, a, b = L.tensor(op.cond), L.tensor(op.on_true), L.tensor(op.on_false)
    shape = dims(op.result)
    kept, inverse, dropped = L.buffer(shape), L.buffer(cond.shape), L.buffer(shape)
    L.elementwise("mul", cond, a, kept)
    L.neuron("affine", (-1.0, 1.0), cond, inverse)
    L.elementwise("mul", inverse, b, dropped)
    L.elementwise("add", kept, dropped, L.result(op.result))


def _window_fields(kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int]) -> dict[str, int]:
    """Kh/Kw, strides, leading pads and dilations; 1-D windows have H = 1."""
    k = len(kernel)
    kh, kw = (1, kernel[0]) if k == 1 else kernel
    sy, sx = (1, strides[0]) if k == 1 else strides
    py, px = (0, pads[0]) if k == 1 else (pads[0], pads[1])
    dy, dx = (1, dilations[0]) if k == 1 else dilations
    return {"Kh": kh, "Kw": kw, "Sy": sy, "Sx": sx, "Py": py, "Px": px, "DilationY": dy, "DilationX": dx}


def _mac_epilogue(L: SegmentLowering, op: ane.EpilogueOp, bias: SSAValue | None, out_value: SSAValue,
                  emit: Callable[[Tensor, dict[str, dict[str, int]], dict[str, str | None]], None], channel_axis: int) -> None:
    """Emit a MAC task with bias and activation folded in; a bias computed at run time is added after."""
    activation = op.activation.data if op.activation is not None else None
    params = as_tuple(op.activation_params)
    bias_coeff = L.coefficient(bias, "bias") if bias is not None else None
    if bias is None or bias_coeff is not None:
        groups, coeffs = L.activation_fields(activation, params)
        emit(L.result(out_value), groups, coeffs | {"bias": bias_coeff})
        return
    shape = dims(out_value)
    raw = L.buffer(shape)
    emit(raw, {}, {})
    bias_shape = tuple(shape[i] if i == channel_axis else 1 for i in range(len(shape)))
    biased = L.result(out_value) if activation is None else L.buffer(shape)
    L.elementwise("add", raw, L.as_shape(L.tensor(bias), bias_shape), biased)
    if activation is not None:
        L.neuron(activation, params, biased, L.result(out_value))


def _ne_fields(target: Target, cout: int, kh: int, kw: int) -> dict[str, int]:
    ocg = ocg_size(kh, kw)
    return {"OCGSize": ocg.bit_length() - 1, "ActiveNE": active_cores(cout, ocg, target.perf.cores.value).bit_length() - 1}


@lowers(ane.ConvOp, ane.ConvTransposeOp)
def _conv(L: SegmentLowering, op: ane.ConvBase) -> None:
    rank = len(shape_of(op.input))
    axes = spatial_axes(rank)
    x = L.tensor(op.input)
    kind = Kind.CONV if isinstance(op, ane.ConvOp) else Kind.DECONV
    window = _window_fields(op.kernel(), as_tuple(op.strides), as_tuple(op.pads), as_tuple(op.dilations))
    streamed = L.streamed_kernel(op) if isinstance(op, ane.ConvOp) else None
    kernel, kernel_format = streamed if streamed is not None else (L.coefficient(op.weight, "kernel"), {})
    src2 = None
    src_ext, out_ext = extents(dims(op.input), axes), extents(dims(op.result), axes)
    if kernel is None:
        w = L.tensor(op.weight)
        src2 = w.view(spatial_axes(rank), extents(w.shape, spatial_axes(rank)))
    flags = {"DilationX": window.pop("DilationX"), "DilationY": window.pop("DilationY"), "KernelFromSrc2": int(kernel is None)}
    common = window | {"NumGroups": op.groups.value.data} | _ne_fields(L.target, out_ext[2], window["Kh"], window["Kw"])

    def emit(out: Tensor, groups: dict[str, dict[str, int]], coeffs: dict[str, str | None]) -> None:
        L.task(kind, src_ext, out_ext, src1=x.view(axes, src_ext), src2=src2, dst=out.view(axes, out_ext),
               coeffs=coeffs | {"kernel": kernel}, common=common, neural=groups.get("neural", {}) | kernel_format,
               kernel_dma=groups.get("kernel_dma", {}) | flags, planar=groups.get("planar", {}))

    _mac_epilogue(L, op, op.bias, op.result, emit, 1)


@lowers(ane.MatmulOp)
def _matmul(L: SegmentLowering, op: ane.MatmulOp) -> None:
    out_shape = dims(op.result)
    axes = std_axes(len(out_shape))
    a, b = L.tensor(op.lhs), L.tensor(op.rhs)
    out_ext = extents(out_shape, axes)
    t_lhs, t_rhs = op.flags()
    a_ext = (*out_ext[:3], a.shape[-2], a.shape[-1])
    b_ext = (*out_ext[:3], b.shape[-2], b.shape[-1])
    flags = {"TransposeLhs": int(t_lhs), "TransposeRhs": int(t_rhs)}

    def emit(out: Tensor, groups: dict[str, dict[str, int]], coeffs: dict[str, str | None]) -> None:
        L.task(Kind.MATMUL, a_ext, out_ext, src1=a.view(axes, a_ext), src2=b.view(axes, b_ext), dst=out.view(axes, out_ext),
               coeffs=coeffs, kernel_dma=groups.get("kernel_dma", {}) | flags, planar=groups.get("planar", {}),
               common=_ne_fields(L.target, out_ext[4], 1, 1))

    _mac_epilogue(L, op, op.bias, op.result, emit, len(out_shape) - 1)


def _matmul_task(L: SegmentLowering, a: Tensor, b: Tensor, out: Tensor, transpose_rhs: bool, scale: float | None) -> None:
    axes = std_axes(len(out.shape))
    out_ext = extents(out.shape, axes)
    a_ext, b_ext = (*out_ext[:3], a.shape[-2], a.shape[-1]), (*out_ext[:3], b.shape[-2], b.shape[-1])
    neural = {"PostScaleMode": 1, "PostScale": fp16_bits(scale)} if scale is not None else {}
    L.task(Kind.MATMUL, a_ext, out_ext, src1=a.view(axes, a_ext), src2=b.view(axes, b_ext), dst=out.view(axes, out_ext),
           kernel_dma={"TransposeRhs": int(transpose_rhs)}, neural=neural, common=_ne_fields(L.target, out_ext[4], 1, 1))


@lowers(ane.SdpaOp)
def _sdpa(L: SegmentLowering, op: ane.SdpaOp) -> None:
    """q·kᵀ·scale, softmax over keys, ·v: three tasks (legalize splits masked attention before this)."""
    q, k, v = L.tensor(op.query), L.tensor(op.key), L.tensor(op.value)
    scores = L.buffer((*q.shape[:-1], k.shape[-2]))
    _matmul_task(L, q, k, scores, True, op.scale.value.data)
    probs = L.buffer(scores.shape)
    ext = extents(scores.shape, std_axes(len(scores.shape)))
    L.task(Kind.SOFTMAX, ext, ext, src1=scores.view(std_axes(len(scores.shape)), ext), dst=probs.view(std_axes(len(scores.shape)), ext),
           planar={"AxisMask": 1 << 4})
    _matmul_task(L, probs, v, L.result(op.result), False, None)


def _reduce_into(L: SegmentLowering, op: Operation, x: Tensor, reduced_axes: Sequence[int], mode: str, result: SSAValue,
                 **kernel_dma: int) -> None:
    """A reduction written with kept dimensions, then viewed (or reshaped) as the result."""
    axes = std_axes(len(x.shape))
    kept = tuple(1 if i in reduced_axes else d for i, d in enumerate(x.shape))
    src_ext, out_ext = extents(x.shape, axes), extents(kept, axes)
    mask = sum(1 << axes.index(a) for a in reduced_axes)
    out = L.buffer(kept)
    L.task(Kind.REDUCE, src_ext, out_ext, src1=x.view(axes, src_ext), dst=out.view(axes, out_ext),
           kernel_dma={"Mode": REDUCTIONS.index(mode)} | kernel_dma, planar={"AxisMask": mask})
    L.values[result] = L.as_shape(out, dims(result))


@lowers(ane.ReduceOp)
def _reduce(L: SegmentLowering, op: ane.ReduceOp) -> None:
    _reduce_into(L, op, L.tensor(op.input), as_tuple(op.axes), ane.kind(op).removeprefix("reduce_"), op.result)


@lowers(ane.ArgReduceOp)
def _arg_reduce(L: SegmentLowering, op: ane.ArgReduceOp) -> None:
    mode = "argmax" if isinstance(op, ane.ArgmaxOp) else "argmin"
    _reduce_into(L, op, L.tensor(op.input), [op.axis.value.data], mode, op.result, SelectLast=int(bool(op.select_last_index.value.data)))


@lowers(ane.TopkOp)
def _topk(L: SegmentLowering, op: ane.TopkOp) -> None:
    """One TOPK task along W: each row of its result holds the k values, then the k indices (fp16),
    and the op's two results are the two windows of that buffer."""
    x, k = L.tensor(op.input), op.k.value.data
    rows = dims(op.values)
    pair = L.buffer((*rows[:-1], 2 * k))
    axes = std_axes(len(x.shape))
    src_ext, out_ext = extents(x.shape, axes), extents(pair.shape, axes)
    L.task(Kind.TOPK, src_ext, out_ext, src1=x.view(axes, src_ext), dst=pair.view(axes, out_ext),
           kernel_dma={"Mode": TOPK_MODES.index("largest" if op.largest.value.data else "smallest")})
    L.values[op.values] = pair.window(rows)
    L.values[op.indices] = pair.window(rows, (0,) * (len(rows) - 1) + (k,))


@lowers(ane.GlobalPoolOp)
def _global_pool(L: SegmentLowering, op: ane.GlobalPoolOp) -> None:
    x = L.tensor(op.input)
    mode = "mean" if isinstance(op, ane.GlobalAvgPoolOp) else "max"
    _reduce_into(L, op, x, range(2, len(x.shape)), mode, op.result)


@lowers(ane.PoolOp)
def _pool(L: SegmentLowering, op: ane.PoolOp) -> None:
    rank = len(shape_of(op.input))
    axes = spatial_axes(rank)
    x, out = L.tensor(op.input), L.result(op.result)
    window = _window_fields(as_tuple(op.kernel), as_tuple(op.strides), as_tuple(op.pads), [1] * len(as_tuple(op.kernel)))
    dilation = {"DilationX": window.pop("DilationX"), "DilationY": window.pop("DilationY")}
    include_pad = isinstance(op, ane.AvgPoolOp) and bool(op.count_include_pad.value.data)
    kind = {ane.MaxPoolOp: "max", ane.AvgPoolOp: "avg", ane.L2PoolOp: "l2"}[type(op)]
    src_ext, out_ext = extents(x.shape, axes), extents(out.shape, axes)
    common = window | _ne_fields(L.target, out_ext[2], window["Kh"], window["Kw"])
    L.task(Kind.POOL, src_ext, out_ext, src1=x.view(axes, src_ext), dst=out.view(axes, out_ext), common=common,
           kernel_dma={"Mode": POOLS.index(kind), "CountIncludePad": int(include_pad)} | dilation)


def _norm(L: SegmentLowering, op: Operation, mode: str, axes_of_x: Sequence[int], scale: SSAValue | None, bias: SSAValue | None,
          epsilon: float, num_groups: int = 0) -> None:
    x = L.tensor(op.operands[0])
    shape = x.shape
    # per-channel norms need the channel on C: a rank-5 [N, C, D, H, W] is normalized as the free
    # alias [N, C, D·H, W] (std_axes would put C on D and the per-channel affine on the wrong axis)
    fold = mode in ("instance", "group") and len(shape) == 5
    if fold:
        shape = (shape[0], shape[1], shape[2] * shape[3], shape[4])
        x = L.as_shape(x, shape)
        axes_of_x = [a for a in (1, 2, 3) if a >= 2 or mode == "group"]

    def result() -> Tensor:
        return L.buffer(shape) if fold else L.result(op.results[0])

    axes = std_axes(len(shape)) if mode in ("layer", "l2") else spatial_axes(len(shape)) if len(shape) in (3, 4) else std_axes(len(shape))
    ext = extents(shape, axes)
    mask = sum(1 << axes.index(a) for a in axes_of_x)
    scale_c = L.coefficient(scale, "scale") if scale is not None else None
    bias_c = L.coefficient(bias, "bias") if bias is not None else None
    affine_on_ane = (scale is None or scale_c is not None) and (bias is None or bias_c is not None)
    out = result() if affine_on_ane else L.buffer(shape)
    coeffs = {"scale": scale_c, "bias": bias_c} if affine_on_ane else {}
    L.task(Kind.NORM, ext, ext, src1=x.view(axes, ext), dst=out.view(axes, ext), coeffs=coeffs,
           kernel_dma={"Mode": NORMS.index(mode)}, planar={"AxisMask": mask, "Epsilon": f32_bits(epsilon)},
           common={"NumGroups": num_groups})
    if not affine_on_ane:
        assert scale is not None, "an affine norm has a scale and a bias; l2 has neither"
        affine_axes = set(axes_of_x) if mode == "layer" else {1}
        affine_shape = tuple(d if i in affine_axes else 1 for i, d in enumerate(shape))
        scaled = L.buffer(shape) if bias is not None else result()
        L.elementwise("mul", out, L.as_shape(L.tensor(scale), affine_shape), scaled)
        out = scaled
        if bias is not None:
            out = result()
            L.elementwise("add", scaled, L.as_shape(L.tensor(bias), affine_shape), out)
    if fold:
        L.values[op.results[0]] = L.as_shape(out, dims(op.results[0]))


@lowers(ane.LayerNormOp)
def _layer_norm(L: SegmentLowering, op: ane.LayerNormOp) -> None:
    _norm(L, op, "layer", as_tuple(op.axes), op.scale, op.bias, op.epsilon.value.data)


@lowers(ane.InstanceNormOp)
def _instance_norm(L: SegmentLowering, op: ane.InstanceNormOp) -> None:
    _norm(L, op, "instance", range(2, len(dims(op.input))), op.scale, op.bias, op.epsilon.value.data)


@lowers(ane.GroupNormOp)
def _group_norm(L: SegmentLowering, op: ane.GroupNormOp) -> None:
    _norm(L, op, "group", range(1, len(dims(op.input))), op.scale, op.bias, op.epsilon.value.data, op.num_groups.value.data)


@lowers(ane.L2NormOp)
def _l2_norm(L: SegmentLowering, op: ane.L2NormOp) -> None:
    _norm(L, op, "l2", as_tuple(op.axes), None, None, op.epsilon.value.data)


@lowers(ane.ReshapeOp, ane.CastOp)
def _reshape(L: SegmentLowering, op: Operation) -> None:
    """Free when the innermost axis is kept; casts change nothing in fp16 storage."""
    L.values[op.results[0]] = L.as_shape(L.tensor(op.operands[0]), dims(op.results[0]))


def _copy(L: SegmentLowering, src: Tensor, dst: Tensor, shape: Shape) -> None:
    """Copy the `shape` tensor `src` into `dst` (both may be windows)."""
    axes = std_axes(len(shape))
    ext = extents(shape, axes)
    L.task(Kind.COPY, ext, ext, src1=src.view(axes, ext), dst=dst.view(axes, ext))


@lowers(ane.SliceOp)
def _slice(L: SegmentLowering, op: ane.SliceOp) -> None:
    """A window of the input: the consumers' DMAs read it in place."""
    L.values[op.result] = L.tensor(op.input).window(dims(op.result), as_tuple(op.starts), as_tuple(op.steps))


@lowers(ane.BroadcastOp)
def _broadcast(L: SegmentLowering, op: ane.BroadcastOp) -> None:
    """A window repeating the input's unit axes (stride 0)."""
    x = L.tensor(op.input)
    L.values[op.result] = x.window(dims(op.result), steps=[0 if a == 1 and b > 1 else 1 for a, b in zip(x.shape, dims(op.result))])


def _pieces(values: Sequence[SSAValue], axis: int) -> list[tuple[SSAValue, Shape, list[int]]]:
    """Each piece of a concatenation or split along `axis`: its shape and its origin in the whole."""
    pieces, start = [], 0
    for value in values:
        shape = dims(value)
        pieces.append((value, shape, [start if i == axis else 0 for i in range(len(shape))]))
        start += shape[axis]
    return pieces


def plan_concatenations(L: SegmentLowering, block: Block) -> None:
    """Let producers write their pieces of a concatenation in place: a piece qualifies when the op
    that makes it is in the segment and the concatenation is its only user. Outer concatenations
    are planned first, so nested ones land in their window of the outer buffer."""
    for op in reversed(list(block.ops)):
        if not isinstance(op, ane.ConcatOp):
            continue
        out = L.planned.get(op.result) or L.buffer(dims(op.result))
        L.planned[op.result] = out
        for value, shape, origin in _pieces(op.inputs, op.axis.value.data):
            owner = value.owner
            if isinstance(owner, Operation) and not isinstance(owner, ane.ConstOp) and value.has_one_use() and value not in L.planned:
                L.planned[value] = out.window(shape, origin)


@lowers(ane.ConcatOp)
def _concat(L: SegmentLowering, op: ane.ConcatOp) -> None:
    """Pieces already written in place cost nothing; the others are copied into their window."""
    out = L.result(op.result)
    for value, shape, origin in _pieces(op.inputs, op.axis.value.data):
        window = out.window(shape, origin)
        if L.values.get(value) != window:  # not written in place (a nested concatenation is planned, but elsewhere)
            _copy(L, L.tensor(value), window, shape)


@lowers(ane.SplitOp)
def _split(L: SegmentLowering, op: ane.SplitOp) -> None:
    x = L.tensor(op.input)
    for value, shape, origin in _pieces(op.outputs, op.axis.value.data):
        L.values[value] = x.window(shape, origin)


@lowers(ane.TransposeOp)
def _transpose(L: SegmentLowering, op: ane.TransposeOp) -> None:
    x = L.tensor(op.input)
    L.transpose(x, as_tuple(op.perm), L.result(op.result))


@lowers(ane.PadOp)
def _pad(L: SegmentLowering, op: ane.PadOp) -> None:
    x, out = L.tensor(op.input), L.result(op.result)
    rank = len(x.shape)
    pads = as_tuple(op.pads)
    if any(pads[i] or pads[rank + i] for i in range(max(rank - 2, 0))):
        raise AnecError("the ANE pads only H and W", where=name_of(op), hint="legality keeps such pads on the CPU")
    axes = std_axes(rank)
    before = {"Px": pads[rank - 1], "Py": pads[rank - 2] if rank >= 2 else 0}
    L.task(Kind.PAD, extents(x.shape, axes), extents(out.shape, axes), src1=x.view(axes, extents(x.shape, axes)),
           dst=out.view(axes, extents(out.shape, axes)), common=before,
           planar={"PadMode": PAD_MODES.index(op.mode.data), "BiasScalar": fp16_bits(op.value.value.data)})


@lowers(ane.TileOp)
def _tile(L: SegmentLowering, op: ane.TileOp) -> None:
    x, out = L.tensor(op.input), L.result(op.result)
    axes = std_axes(len(x.shape))
    L.task(Kind.TILE, extents(x.shape, axes), extents(out.shape, axes), src1=x.view(axes, extents(x.shape, axes)),
           dst=out.view(axes, extents(out.shape, axes)))


@lowers(ane.ResizeOp)
def _resize(L: SegmentLowering, op: ane.ResizeOp) -> None:
    x, out = L.tensor(op.input), L.result(op.result)
    axes = std_axes(len(x.shape))
    scales = as_tuple(op.scales)
    scale_h, scale_w = (1.0, scales[0]) if len(scales) == 1 else scales
    L.task(Kind.RESIZE, extents(x.shape, axes), extents(out.shape, axes), src1=x.view(axes, extents(x.shape, axes)),
           dst=out.view(axes, extents(out.shape, axes)), kernel_dma={"Mode": RESIZE_MODES.index(op.mode.data)},
           l2={"ResampleScaleH": f32_bits(scale_h), "ResampleScaleW": f32_bits(scale_w)},
           planar={"CoordMode": COORDINATE_MODES.index(op.coordinate_mode.data), "NearestMode": NEAREST_MODES.index(op.nearest_mode.data)})


@lowers(ane.DepthToSpaceOp, ane.SpaceToDepthOp)
def _block(L: SegmentLowering, op: ane.BlockOp) -> None:
    x, out = L.tensor(op.input), L.result(op.result)
    axes = spatial_axes(4)
    to_space = isinstance(op, ane.DepthToSpaceOp)
    mode = ("DCR", "CRD").index(op.mode.data) if isinstance(op, ane.DepthToSpaceOp) else 0
    L.task(Kind.DEPTH_TO_SPACE if to_space else Kind.SPACE_TO_DEPTH, extents(x.shape, axes), extents(out.shape, axes),
           src1=x.view(axes, extents(x.shape, axes)), dst=out.view(axes, extents(out.shape, axes)),
           kernel_dma={"Mode": mode}, planar={"BlockSize": op.block_size.value.data})


@lowers(ane.ConstOp)
def _const(L: SegmentLowering, op: ane.ConstOp) -> None:
    """Constants become weights when an op first reads them."""


# ------------------------------------------------------------------------------------------------
# The pass
# ------------------------------------------------------------------------------------------------


def lowering_for(op: Operation) -> TaskLowering:
    if (lowering := LOWERINGS.lookup(op)) is not None:
        return lowering
    raise AnecError(f"{op.name} has no task-descriptor lowering", where=name_of(op),
                    hint="the partition pass should have left it on the CPU")


def lower_segment(segment: ane.SegmentOp, target: Target, store: WeightStore, lut: bool = False) -> anehw.ProgramOp:
    L = SegmentLowering(target, table_for(target.arch), store, lut)
    block = segment.body.block
    for i, arg in enumerate(block.args):
        L.values[arg] = L.buffer(dims(arg), "input", i, base="in")
    plan_concatenations(L, block)
    yielded: list[SSAValue] = []
    for op in block.ops:
        if isinstance(op, ane.YieldOp):
            yielded = list(op.values)
            break
        L.origin = op
        lowering_for(op)(L, op)
    L.origin = None
    _bind_outputs(L, yielded)
    inputs = [b for b in L.decls if isinstance(b, anehw.BufferOp) and b.role.data == "input"]
    others = [d for d in L.decls if d not in inputs]
    body = Region(Block([*inputs, *others, *L.tasks]))
    return anehw.ProgramOp(list(segment.inputs), [r.type for r in segment.outputs], target.arch, body)


def _bind_outputs(L: SegmentLowering, yielded: list[SSAValue]) -> None:
    """Make each yielded tensor an output port: in place when it is a fresh intermediate, else by a copy."""
    claimed: set[str] = set()
    for port, value in enumerate(yielded):
        tensor = L.tensor(value)
        decl = L.roles.get(tensor.buffer)
        if decl is not None and decl.role.data == "intermediate" and tensor.buffer not in claimed and tensor.whole:
            decl.properties["role"] = StringAttr("output")
            decl.properties["port"] = anehw.int_attr(port)
            decl.properties["shape"] = anehw.ints(tensor.shape)
            claimed.add(tensor.buffer)
            continue
        out = L.buffer(dims(value), "output", port, base="out")
        _copy(L, tensor, out, dims(value))


def has_empty_tensor(segment: ane.SegmentOp) -> bool:
    values = [*segment.body.block.args, *(r for op in segment.body.block.ops for r in op.results)]
    return any(0 in shape_of(v) for v in values)


def inline_on_cpu(segment: ane.SegmentOp) -> None:
    """A segment that touches an empty tensor does no work: its ops run on the CPU instead (a
    descriptor buffer holds at least one element)."""
    block = segment.body.block
    terminator = block.last_op
    assert isinstance(terminator, ane.YieldOp)
    results = list(terminator.values)
    Rewriter.erase_op(terminator)
    Rewriter.inline_block(block, InsertPoint.before(segment), list(segment.inputs))
    for old, new in zip(segment.results, results):
        old.replace_all_uses_with(new)
    Rewriter.erase_op(segment)


@dataclass(frozen=True)
class ToAneHwPass(ModulePass):
    """Lower every `ane.segment` to an `anehw.program` of task descriptors for `target`."""

    name = "to-anehw"
    target: str = "m1"
    lut_activations: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        store = store_of(op)
        for segment in [s for s in op.walk() if isinstance(s, ane.SegmentOp)]:
            if has_empty_tensor(segment):
                inline_on_cpu(segment)
                continue
            program = lower_segment(segment, target, store, self.lut_activations)
            for key, value in segment.attributes.items():
                program.attributes[key] = value
            Rewriter.replace_op(segment, program)
