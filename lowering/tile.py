"""ane-tile: rewrite every ANE op that breaks a limit of the target so that it fits, then verify.

The legality predicate marks some limits *tileable*; this pass removes each one with the rewrite
the hardware's own compiler uses. First the limits on an op's form:

  conv kernel size     a large kernel in blocks, each reading a shifted window: on few channels
                       the windows concatenated for one conv, else a sum of convs
  strides > 2          convs: the input read in stride phases along each such axis (a 1-D or
                       2-D space-to-depth), one stride-1 conv of ceil(k/s) taps over the phases
                       concatenated along channels, or a sum of one conv per phase (many
                       channels, groups, run-time weights); pools: stride 2 (or 1), then subsample
  pool window          max pools cascade (a k-window is a k1- then a (k-k1+1)-window); average
                       pools sum weighted pools over shifted windows
  pads                 large pads become explicit pads, chained in legal steps
  group taps, batch    split groups or batch elements

then the size limits (L2 working set, kernel memory, dimensions, the span a strided slice is read
through) together: the tile shape is solved for, not searched for. For each axis of the output
(rows, channels, batch, width) and the contraction of a conv or matmul, the planner takes the
largest piece that keeps every tensor, kernel and input window (with its halo) of the piece within
every limit at once, as the legality predicate judges a candidate piece built detached; the axes the
hardware streams worst (width, then batch, then channels, then the contraction, whose pieces must be
summed) are kept as whole as cutting rows allows, and cuts fall on whole 64-byte rows, 4-channel
lanes and groups. A conv or matmul that this order would cut along batch or width is also planned
with its contraction cut first, and the plan the timing model predicts faster is kept: when the kernel
fills the kernel memory, every batch or width piece reloads the weights, while fewer input channels
shrink both the input and the kernel per output channel, at the price of summing partial products.
Each piece reads only its window of the inputs and the pieces are concatenated (or summed). A piece
is cut again only while it holds strictly less than the op it came from, so the pass always ends; an
op no tile shape fits is left for the verifier.

At the end every ANE op must satisfy `legality(op, target, strict=True)`; the verifier raises
otherwise. Every op the pass creates carries `ane.tile_of = "<original ane.name>"`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.transforms.dead_code_elimination import dce

from anec import legality as rules
from anec.analysis import ane_bytes, engine_tensors, weight_operands
from anec.builder import RewriteBuilder
from anec.dialects import ane
from anec.dialects.ane import as_tuple, element_type_of, shape_of, tensor, window_output_size
from anec.dialects.discardable import (
    FP16_FIXES_ATTR,
    FP16_WARNINGS_ATTR,
    NAME_ATTR,
    TILE_OF_ATTR,
    name_of,
    tiled_name,
)
from anec.errors import AnecError
from anec.legality import axis_limit, legality
from anec.lowering.rewriting import constant_of, functions, prune_weights, segments
from anec.sim.timing import Work, cost, op_seconds
from anec.targets import Target, get_target

Bounds = list[tuple[int, int]]

ROW_ELEMENTS = 32
"""fp16 elements per 64-byte row: width tiles start on row boundaries."""


def origin(op: Operation) -> str:
    attr = op.attributes.get(TILE_OF_ATTR)
    return attr.data if isinstance(attr, StringAttr) else name_of(op)


class Pieces:
    """Builds the ops that replace `op`, each named `<origin>#tile<n>` and marked `ane.tile_of`."""

    def __init__(self, op: Operation):
        self.op = op
        self.origin = origin(op)
        self.build = RewriteBuilder(op, name=self.origin)
        self.created: list[Operation] = []
        notes = {k: op.attributes[k] for k in (FP16_WARNINGS_ATTR, FP16_FIXES_ATTR) if k in op.attributes}
        self.notes: dict[str, Attribute] = notes

    def __call__(self, new: Operation) -> SSAValue:
        if not isinstance(new, ane.ConstOp):
            new.attributes[NAME_ATTR] = StringAttr(tiled_name(self.origin, len(self.created)))
            new.attributes[TILE_OF_ATTR] = StringAttr(self.origin)
            new.attributes.update(self.notes)
            self.created.append(new)
        return self.build.add(new)

    def const(self, array: np.ndarray, like: SSAValue) -> SSAValue:
        return self.build.constant(array, like, "tile")

    def slice(self, value: SSAValue, axis: int, lo: int, hi: int, step: int = 1) -> SSAValue:
        shape = shape_of(value)
        if lo == 0 and hi >= shape[axis] and step == 1:
            return value
        if constant_of(value) is not None:  # a compressed weight's slice stays compressed
            index = [slice(None)] * len(shape)
            index[axis] = slice(lo, hi, step)
            return self.build.derive(value, lambda a: a[tuple(index)], ("slice", axis, lo, hi, step), "tile")
        return self(self.slice_op(value, axis, lo, hi, step))

    @staticmethod
    def slice_op(value: SSAValue, axis: int, lo: int, hi: int, step: int = 1) -> ane.SliceOp:
        """The slice of `value` along `axis`, not yet inserted. A slice of a slice reads the original
        tensor, so a piece cut along two axes never holds the band of the first cut whole."""
        shape = shape_of(value)
        inner = value.owner
        if isinstance(inner, ane.SliceOp):
            starts, ends, steps = list(as_tuple(inner.starts)), list(as_tuple(inner.ends)), list(as_tuple(inner.steps))
            count = len(range(lo, min(hi, shape[axis]), step))
            starts[axis] += lo * steps[axis]
            steps[axis] *= step
            ends[axis] = starts[axis] + (count - 1) * steps[axis] + 1 if count else starts[axis]
            return ane.SliceOp(inner.input, starts, ends, steps)
        starts, ends, steps = [0] * len(shape), list(shape), [1] * len(shape)
        starts[axis], ends[axis], steps[axis] = lo, hi, step
        return ane.SliceOp(value, starts, ends, steps)

    def activation(self, value: SSAValue, mac: ane.EpilogueOp) -> SSAValue:
        """The epilogue activation of `mac` as a separate op (after an accumulation)."""
        if mac.activation is None:
            return value
        cls = ane.UNARY_OPS[mac.activation.data]
        return self(cls(value, **dict(zip(cls.PARAMS, as_tuple(mac.activation_params)))))

    def replace(self, *values: SSAValue) -> list[Operation]:
        """Replace the op by `values`, one per result."""
        self.build.replace(*values)
        return self.created


def _copy_on(op: Operation, operands: Sequence[SSAValue], result_shape: Sequence[int], **props) -> Operation:
    """A copy of `op` on new operands, each result of `result_shape` (a top-k's values and indices
    share one), with some properties replaced."""
    properties = dict(op.properties)
    properties.update({k: ane.ints(v) if isinstance(v, list | tuple) else v for k, v in props.items()})
    return type(op).create(operands=list(operands), result_types=[tensor(result_shape, element_type_of(r)) for r in op.results],
                           properties=properties)


def even_bounds(extent: int, pieces: int, align: int = 1) -> Bounds:
    """`extent` cut into at most `pieces` near-equal ranges, inner cuts on multiples of `align`."""
    pieces = max(1, min(pieces, extent))
    size = -(-extent // pieces)
    size = -(-size // align) * align if align > 1 and size > align else size
    return [(lo, min(lo + size, extent)) for lo in range(0, extent, size)]


def sized_bounds(extent: int, size: int, align: int = 1) -> Bounds:
    size = max(1, size - size % align if size >= 2 * align else size)
    return [(lo, min(lo + size, extent)) for lo in range(0, extent, size)]


# ------------------------------------------------------------------------------------------------
# Pieces of an op along one output axis
# ------------------------------------------------------------------------------------------------


def _window(op: ane.ConvBase | ane.PoolOp, i: int) -> tuple[int, int, int, int, int]:
    """(kernel, stride, dilation, pad begin, pad end) of spatial axis i."""
    k = len(shape_of(op.input)) - 2
    kernel = op.kernel()[i] if isinstance(op, ane.ConvBase) else as_tuple(op.kernel)[i]
    dilation = as_tuple(op.dilations)[i] if isinstance(op, ane.ConvBase) else 1
    pads = as_tuple(op.pads)
    return kernel, as_tuple(op.strides)[i], dilation, pads[i], pads[k + i]


def _spatial_piece(op: ane.ConvOp | ane.PoolOp, axis: int, lo: int, hi: int, p: Pieces, extra: Sequence[SSAValue]) -> Operation:
    """Output rows [lo, hi) of a window op along spatial `axis`: the input window with its halo."""
    i, k = axis - 2, len(shape_of(op.input)) - 2
    kernel, stride, dilation, pad_begin, _ = _window(op, i)
    size = shape_of(op.input)[axis]
    first, last = lo * stride - pad_begin, (hi - 1) * stride + (kernel - 1) * dilation - pad_begin + 1
    x = p.slice(op.input, axis, max(first, 0), min(last, size))
    pads = list(as_tuple(op.pads))
    pads[i], pads[k + i] = max(0, -first), max(0, last - size)
    out = list(shape_of(op.results[0]))
    out[axis] = hi - lo
    return _copy_on(op, [x, *extra], out, pads=pads)


def _same_axis_operands(op: Operation, axis: int, lo: int, hi: int, p: Pieces, operands: Sequence[SSAValue]) -> list[SSAValue]:
    out = shape_of(op.results[0])
    return [p.slice(v, axis, lo, hi) if len(shape_of(v)) == len(out) and shape_of(v)[axis] == out[axis] else v for v in operands]


def _elementwise_piece(op: Operation, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    if axis in ane.reduced_axes(op):
        return None
    shared = [op.operands[0]] if isinstance(op, ane.AffineNormOp) else list(op.operands)
    operands = _same_axis_operands(op, axis, lo, hi, p, shared)
    if isinstance(op, ane.InstanceNormOp | ane.GroupNormOp):
        if axis != 0:
            return None
        operands += list(op.operands[1:])
    elif isinstance(op, ane.AffineNormOp):
        operands += list(op.operands[1:])
    out = list(shape_of(op.results[0]))
    out[axis] = hi - lo
    return _copy_on(op, operands, out)


def _conv_piece(op: ane.ConvOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    w, groups = shape_of(op.weight), op.groups.value.data
    bias = [op.bias] if op.bias is not None else []
    if axis == 0:
        return _copy_on(op, [p.slice(op.input, 0, lo, hi), op.weight, *bias], (hi - lo, *shape_of(op.result)[1:]))
    if axis == 1:
        per_group = w[0] // groups
        if groups > 1 and (lo % per_group or hi % per_group):
            return None
        g0, g1 = lo // per_group, hi // per_group
        x = p.slice(op.input, 1, g0 * w[1], g1 * w[1]) if groups > 1 else op.input
        operands = [x, p.slice(op.weight, 0, lo, hi), *[p.slice(b, 0, lo, hi) for b in bias]]
        out = list(shape_of(op.result))
        out[1] = hi - lo
        new = _copy_on(op, operands, out)
        new.properties["groups"] = ane.int_attr(g1 - g0 if groups > 1 else 1)
        return new
    return _spatial_piece(op, axis, lo, hi, p, [op.weight, *bias])


def _pool_piece(op: ane.PoolOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    if axis < 2:
        return _copy_on(op, [p.slice(op.input, axis, lo, hi)], [hi - lo if a == axis else d for a, d in enumerate(shape_of(op.result))])
    return _spatial_piece(op, axis, lo, hi, p, [])


def _conv_transpose_piece(op: ane.ConvTransposeOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    bias = [op.bias] if op.bias is not None else []
    if axis == 0:
        return _copy_on(op, [p.slice(op.input, 0, lo, hi), op.weight, *bias], out)
    if axis == 1 and op.groups.value.data == 1:
        return _copy_on(op, [op.input, p.slice(op.weight, 1, lo, hi), *[p.slice(b, 0, lo, hi) for b in bias]], out)
    if axis >= 2:
        return _transposed_spatial_piece(op, axis, lo, hi, p, [op.weight, *bias])
    return None


def _transposed_spatial_piece(op: ane.ConvTransposeOp, axis: int, lo: int, hi: int, p: Pieces,
                              extra: Sequence[SSAValue]) -> Operation:
    """Output rows [lo, hi) of a transposed conv along spatial `axis`: the input rows that scatter
    into them, with the crop (pads) and trailing zeros (output padding) that place the piece.

    Input row i feeds the uncropped output rows i·s … i·s + (k-1)·d, and output row o is uncropped
    row o + pad_begin; a piece on input rows [first, last] starts at uncropped row first·s."""
    i, k = axis - 2, len(shape_of(op.input)) - 2
    kernel, stride, dilation, pad_begin, _ = _window(op, i)
    size = shape_of(op.input)[axis]
    span = (kernel - 1) * dilation
    first = max(0, (lo + pad_begin - span) // stride)
    last = min(size - 1, (hi - 1 + pad_begin) // stride)
    x = p.slice(op.input, axis, first, last + 1)
    full = stride * (last - first) + span + 1
    begin = lo + pad_begin - first * stride
    pads, output_padding = list(as_tuple(op.pads)), list(as_tuple(op.output_padding))
    pads[i], pads[k + i] = begin, max(0, full - begin - (hi - lo))
    output_padding[i] = max(0, (hi - lo) - (full - begin))
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    return _copy_on(op, [x, *extra], out, pads=pads, output_padding=output_padding)


def _matmul_piece(op: ane.MatmulOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    rank = len(shape_of(op.result))
    ta, tb = op.flags()
    lhs, rhs, bias = op.lhs, op.rhs, op.bias
    if axis < rank - 2:
        lhs, rhs = _same_axis_operands(op, axis, lo, hi, p, [lhs, rhs])
    elif axis == rank - 2:
        lhs = p.slice(lhs, rank - 1 if ta else rank - 2, lo, hi)
    else:
        rhs = p.slice(rhs, rank - 2 if tb else rank - 1, lo, hi)
        bias = p.slice(bias, 0, lo, hi) if bias is not None else None
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    return _copy_on(op, [lhs, rhs, *([bias] if bias is not None else [])], out)


def _transpose_piece(op: ane.TransposeOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation:
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    return _copy_on(op, [p.slice(op.input, as_tuple(op.perm)[axis], lo, hi)], out)


def _slice_piece(op: ane.SliceOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation:
    starts, ends, steps = list(as_tuple(op.starts)), list(as_tuple(op.ends)), list(as_tuple(op.steps))
    starts[axis], ends[axis] = starts[axis] + lo * steps[axis], starts[axis] + (hi - 1) * steps[axis] + 1
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    return _copy_on(op, [op.input], out, starts=starts, ends=ends)


def _concat_piece(op: ane.ConcatOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    if axis == op.axis.value.data:
        return None
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    return _copy_on(op, [p.slice(v, axis, lo, hi) for v in op.inputs], out)


def _pad_piece(op: ane.PadOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    """Output [lo, hi) of a pad: the input rows it covers, padded only where it meets the border."""
    pads, rank = list(as_tuple(op.pads)), len(shape_of(op.input))
    begin, end, size = pads[axis], pads[rank + axis], shape_of(op.input)[axis]
    if (begin or end) and op.mode.data != "constant":
        return None
    first, last = lo - begin, hi - begin
    out = list(shape_of(op.result))
    if last <= 0 or first >= size:
        # entirely in the padding: the nearest input row padded by the range's rows, then cropped
        # to them; one row more than the range, so never as wide as the op when cut
        before = last <= 0
        near = 0 if before else size - 1
        pads[axis], pads[rank + axis] = (hi - lo, 0) if before else (0, hi - lo)
        out[axis] = hi - lo + 1
        wide = p(_copy_on(op, [p.slice(op.input, axis, near, near + 1)], out, pads=pads))
        return p.slice_op(wide, axis, 0, hi - lo) if before else p.slice_op(wide, axis, 1, hi - lo + 1)
    x = p.slice(op.input, axis, max(first, 0), min(last, size))
    pads[axis], pads[rank + axis] = max(0, -first), max(0, last - size)
    out[axis] = hi - lo
    return _copy_on(op, [x], out, pads=pads)


def _tile_piece(op: ane.TileOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    """Output [lo, hi) of a tile: the same input range on an axis it does not repeat; fewer repeats
    of the whole input when the range covers whole copies (or the input has one element there)."""
    size, repeats = shape_of(op.input)[axis], list(as_tuple(op.repeats))
    out = list(shape_of(op.result))
    out[axis] = hi - lo
    if repeats[axis] == 1:
        return _copy_on(op, [p.slice(op.input, axis, lo, hi)], out)
    if size == 1 or (lo % size == 0 and (hi - lo) % size == 0):
        repeats[axis] = (hi - lo) // size
        return _copy_on(op, [op.input], out, repeats=repeats)
    return None


def _reshape_piece(op: ane.ReshapeOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    """A reshape can be cut along output `axis` when some input axis has the same extent and the
    same number of elements before it (unit axes aside): the piece is then that input slice,
    reshaped. A (1, C, 1, W) -> (C, W) reshape after a 1×1-conv matmul is the common case."""
    x, out = shape_of(op.input), list(shape_of(op.result))
    before = math.prod(out[:axis])
    source = next((b for b in range(len(x)) if x[b] == out[axis] and math.prod(x[:b]) == before), None)
    if source is None:
        return None
    out[axis] = hi - lo
    return _copy_on(op, [p.slice(op.input, source, lo, hi)], out)


def _resize_piece(op: ane.ResizeOp, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    """Output rows [lo, hi) of a resize. Along a resized axis only an integer scale with a
    translation-invariant coordinate mode splits: the input rows under the range plus one on each
    side (the rounding and interpolation neighbours), resized, then cropped to the range."""
    x, out = shape_of(op.input), list(shape_of(op.result))
    scales = as_tuple(op.scales)
    first_resized = len(x) - len(scales)
    if axis < first_resized:
        out[axis] = hi - lo
        return _copy_on(op, [p.slice(op.input, axis, lo, hi)], out)
    scale = scales[axis - first_resized]
    if scale != int(scale) or out[axis] != x[axis] * int(scale) or op.coordinate_mode.data == "align_corners":
        return None
    s = int(scale)
    first, last = max(0, lo // s - 1), min(x[axis], -(-hi // s) + 1)
    out[axis] = (last - first) * s
    resized = p(_copy_on(op, [p.slice(op.input, axis, first, last)], out))
    return p.slice_op(resized, axis, lo - first * s, hi - first * s)


PieceBuilder = Callable[[Any, int, int, int, Pieces], Operation | None]
"""Builds the piece of an op over [lo, hi) of an axis. Its first parameter is the op class `PIECES` keys
it by (a table cannot type that per entry, hence Any)."""

PIECES: dict[type[Operation], PieceBuilder] = {
    ane.ConvOp: _conv_piece,
    ane.ConvTransposeOp: _conv_transpose_piece,
    ane.PoolOp: _pool_piece,
    ane.MatmulOp: _matmul_piece,
    ane.TransposeOp: _transpose_piece,
    ane.SliceOp: _slice_piece,
    ane.ConcatOp: _concat_piece,
    ane.ReshapeOp: _reshape_piece,
    ane.PadOp: _pad_piece,
    ane.ResizeOp: _resize_piece,
    ane.TileOp: _tile_piece,
    ane.UnaryOp: _elementwise_piece, ane.BinaryOp: _elementwise_piece, ane.CompareOp: _elementwise_piece,
    ane.SelectOp: _elementwise_piece, ane.CastOp: _elementwise_piece, ane.NormOp: _elementwise_piece,
    ane.ReduceOp: _elementwise_piece, ane.ArgReduceOp: _elementwise_piece, ane.GlobalPoolOp: _elementwise_piece,
    ane.TopkOp: _elementwise_piece,
    ane.BroadcastOp: _elementwise_piece,
}
"""How to build the piece of an op that computes output range [lo, hi) along one axis."""


def piece_builder(op: Operation) -> PieceBuilder | None:
    return next((PIECES[c] for c in type(op).__mro__ if c in PIECES), None)


def split_along(op: Operation, axis: int, bounds: Bounds) -> list[Operation] | None:
    """Replace `op` by one piece per output range along `axis`, each result concatenated (the pieces
    of an op with several results, a top-k, have them all)."""
    build = piece_builder(op)
    if build is None or len(bounds) < 2:
        return None
    p = Pieces(op)
    outs: list[list[SSAValue]] = []
    for lo, hi in bounds:
        piece = build(op, axis, lo, hi, p)
        if piece is None:
            _abandon(p)
            return None
        p(piece)
        outs.append(list(piece.results))
    return p.replace(*(p(ane.ConcatOp(list(parts), axis)) for parts in zip(*outs)))


def _abandon(p: Pieces) -> None:
    for op in reversed(p.created):
        op.detach()
        op.erase()


def _contraction_piece(op: ane.ConvOp | ane.MatmulOp, lo: int, hi: int, p: Pieces) -> Operation | None:
    """The partial product of `op` over contraction (input-channel) range [lo, hi), without its
    activation; the bias only on the first range."""
    if isinstance(op, ane.ConvOp) and op.groups.value.data != 1:
        return None
    bias = [op.bias] if op.bias is not None and lo == 0 else []
    if isinstance(op, ane.ConvOp):
        operands = [p.slice(op.input, 1, lo, hi), p.slice(op.weight, 1, lo, hi), *bias]
    else:
        rank = len(shape_of(op.result))
        ta, tb = op.flags()
        operands = [p.slice(op.lhs, rank - 2 if ta else rank - 1, lo, hi), p.slice(op.rhs, rank - 1 if tb else rank - 2, lo, hi), *bias]
    part = _copy_on(op, operands, shape_of(op.result))
    for key in ("activation", "activation_params"):
        part.properties.pop(key, None)
    return part


def accumulate_input_channels(op: ane.ConvOp | ane.MatmulOp, bounds: Bounds) -> list[Operation] | None:
    """A sum of partial products over input-channel (contraction) ranges; bias on the first,
    the activation after the sum."""
    p = Pieces(op)
    total: SSAValue | None = None
    for lo, hi in bounds:
        if (part := _contraction_piece(op, lo, hi, p)) is None:
            _abandon(p)
            return None
        value = p(part)
        total = value if total is None else p(ane.AddOp(total, value))
    assert total is not None
    return p.replace(p.activation(total, op))


def _contraction(op: ane.ConvOp | ane.MatmulOp) -> int:
    if isinstance(op, ane.ConvOp):
        return shape_of(op.input)[1]
    a = shape_of(op.lhs)
    return a[-2] if op.flags()[0] else a[-1]


# ------------------------------------------------------------------------------------------------
# Size limits: the tile shape is solved for, then emitted
# ------------------------------------------------------------------------------------------------

SIZE_RULES: frozenset[rules.Rule] = frozenset({rules.DIMS, rules.WORKING_SET, rules.KERNEL_MEMORY, rules.slice_w_span})
"""The limits on how much an op holds (or spans) at once; one tile shape satisfies them together."""

CONTRACTION = -1
"""The input-channel (contraction) axis of a conv or matmul, cut into partial products that are summed."""

DRY_HANDLE = "ane-tile:candidate"


class CandidatePieces(Pieces):
    """Builds a candidate piece without inserting anything, so that the legality predicate can judge
    the exact tile the pass would emit; `discard` then removes every trace of it."""

    def __init__(self, op: Operation):
        self.op = op
        self.created = []
        self.made: set[Operation] = set()  # `created` as a set: candidates are looked up by membership
        self.notes = {}

    def __call__(self, new: Operation) -> SSAValue:
        self.keep(new)
        return new.results[0]

    def keep(self, new: Operation) -> None:
        self.created.append(new)
        self.made.add(new)

    def slice(self, value: SSAValue, axis: int, lo: int, hi: int, step: int = 1) -> SSAValue:
        shape = shape_of(value)
        if lo == 0 and hi >= shape[axis] and step == 1:
            return value
        if isinstance(value.owner, ane.ConstOp):
            sliced = list(shape)
            sliced[axis] = len(range(lo, min(hi, shape[axis]), step))
            return self(ane.ConstOp(tensor(sliced, element_type_of(value)), handle=DRY_HANDLE))
        return self(self.slice_op(value, axis, lo, hi, step))

    def discard(self) -> None:
        for op in reversed(self.created):
            op.erase(safe_erase=False)
        self.created, self.made = [], set()


def within_sizes(op: Operation, target: Target) -> bool:
    return all(rule.check(op, target) is None for rule in rules.rules_for(op) if rule in SIZE_RULES)


def _piece(op: Operation, axis: int, lo: int, hi: int, p: Pieces) -> Operation | None:
    if axis == CONTRACTION:
        return _contraction_piece(op, lo, hi, p) if isinstance(op, ane.ConvOp | ane.MatmulOp) else None
    build = piece_builder(op)
    return build(op, axis, lo, hi, p) if build is not None else None


@dataclass(frozen=True)
class Cut:
    """Pieces of at most `size` along `axis` (an output axis or CONTRACTION), in steps of `granule`."""

    axis: int
    size: int
    extent: int
    granule: int

    def bounds(self) -> Bounds:
        return even_bounds(self.extent, -(-self.extent // self.size), self.granule)

    def representatives(self) -> list[tuple[int, int]]:
        """The pieces that answer for all: the middle one of the widest (away from the edges, it keeps
        its whole halo) and the two at the edges (a pad's piece in the padding reads a row more)."""
        bounds = self.bounds()
        size = max(hi - lo for lo, hi in bounds)
        widest = [(lo, hi) for lo, hi in bounds if hi - lo == size]
        return list(dict.fromkeys([widest[len(widest) // 2], bounds[0], bounds[-1]]))


Ranges = tuple[tuple[int, int, int], ...]
"""A candidate piece: the (axis, lo, hi) of each cut, outermost first."""


class Trials:
    """The candidate pieces of one op while its plan is solved. A piece cut along several axes is
    built from the piece of its outer cuts, which the corners of every `fits` share, so each distinct
    candidate op is built once and judged once per plan: a search asks about the same pieces again
    and again (the other axes' representatives stay put while one axis is searched)."""

    def __init__(self, op: Operation, target: Target):
        self.op, self.target = op, target
        self.pieces = CandidatePieces(op)
        self.built: dict[Ranges, Operation | None] = {(): op}
        self.judged: dict[Operation, bool] = {}
        self.verdicts: dict[tuple, bool] = {}
        """`TilePlanner.fits` by the bounds its cuts give (sizes that round to the same pieces ask once)."""

    def piece(self, ranges: Ranges) -> Operation | None:
        """The piece of the op over `ranges` (None: it cannot be built)."""
        if ranges not in self.built:
            parent = self.piece(ranges[:-1])
            self.built[ranges] = None if parent is None else self._cut(parent, *ranges[-1])
        return self.built[ranges]

    def _cut(self, parent: Operation, axis: int, lo: int, hi: int) -> Operation | None:
        piece = _piece(parent, axis, lo, hi, self.pieces)
        if piece is None:
            return None
        self.pieces.keep(piece)
        if (isinstance(piece, ane.SliceOp) and not isinstance(self.op, ane.SliceOp) and isinstance(wider := piece.input.owner, Operation)
                and wider in self.pieces.made):
            return wider  # a crop of a wider piece (pads, resizes): the wider one is what is cut further
        return piece

    def fits(self, ranges: Ranges) -> bool:
        """Does the piece over `ranges`, with the slices and crops built for it, satisfy the size limits?"""
        piece = self.piece(ranges)
        return piece is not None and all(self._within(o) for o in _feeding(piece, self.pieces.made))

    def _within(self, op: Operation) -> bool:
        if op not in self.judged:
            self.judged[op] = within_sizes(op, self.target)
        return self.judged[op]

    def close(self) -> None:
        self.pieces.discard()


class TilePlanner:
    """Solves for the tile shape of an op that breaks a size limit: the largest pieces along each
    axis such that every tensor, kernel and window of the piece (and the slices that feed it) fits,
    keeping whole the axes the hardware streams worst (width, then batch, then channels) and cutting
    rows first, as the hardware's own compiler does. Feasibility is decided by the legality
    predicate itself on the candidate pieces, built detached and discarded; it only shrinks as a
    piece does, so each axis is a binary search (whole first: most axes stay whole), in whole lanes
    where a piece holds two or more, so the bounds judged are the bounds emitted. The pieces of one
    plan's search are built once each (`Trials`). Ops with the same shapes and properties share a plan."""

    def __init__(self, target: Target):
        self.target = target
        self.plans: dict[tuple, list[Cut] | None] = {}
        self.inherited: dict[tuple, list[Cut]] = {}  # signature: the rest of the plan of the op it is a piece of

    # -- what can be cut, and how finely ------------------------------------------------------------

    def axes(self, op: Operation) -> list[int]:
        """Cuttable axes, the one to cut first first: rows, channels, batch, width, any others, then
        the contraction (cutting it adds partial sums)."""
        out = shape_of(op.results[0])
        rank = len(out)
        order = [rank - 2, 1, 0, rank - 1] if rank >= 3 else list(range(rank))
        order = list(dict.fromkeys([*(a for a in order if 0 <= a < rank), *range(rank), CONTRACTION]))
        return [a for a in order if self.extent(op, a) >= 2 and self._buildable(op, a)]

    @staticmethod
    def extent(op: Operation, axis: int) -> int:
        if axis == CONTRACTION:
            return _contraction(op) if isinstance(op, ane.ConvOp | ane.MatmulOp) else 1
        return shape_of(op.results[0])[axis]

    def granule(self, op: Operation, axis: int) -> int:
        """Cuts fall on multiples of this: whole groups of a grouped conv, whole copies of a tile,
        whole 64-byte rows of the width (a MAC's output channels: see `lanes`)."""
        extent = self.extent(op, axis)
        if axis == CONTRACTION:
            return 1
        if isinstance(op, ane.ConvOp) and axis == 1 and op.groups.value.data > 1:
            return extent // op.groups.value.data
        if isinstance(op, ane.TileOp) and as_tuple(op.repeats)[axis] > 1 and shape_of(op.input)[axis] > 1:
            return shape_of(op.input)[axis]
        if axis == len(shape_of(op.results[0])) - 1 and extent > 2 * ROW_ELEMENTS:
            return ROW_ELEMENTS
        return 1

    def lanes(self, op: Operation, axis: int) -> int:
        """The output channels a MAC op computes together (its cuts keep whole lanes when a piece
        holds at least two)."""
        if weight_operands(op) and axis == _output_channel_axis(op):
            return self.target.perf.output_channels_per_cycle.value
        return 1

    def _buildable(self, op: Operation, axis: int) -> bool:
        p = CandidatePieces(op)
        try:
            return _piece(op, axis, 0, self.granule(op, axis), p) is not None
        finally:
            p.discard()

    # -- feasibility ----------------------------------------------------------------------------

    def fits(self, trials: Trials, cuts: list[Cut]) -> bool:
        """Do the pieces of the op cut by `cuts` satisfy the size limits? Along each axis the widest
        piece and the two edge pieces answer for all: the others hold no more than the widest."""
        active = [c for c in cuts if c.size < c.extent]
        key = tuple((c.axis, tuple(c.bounds())) for c in active)
        if key not in trials.verdicts:
            trials.verdicts[key] = all(trials.fits(tuple((c.axis, *r) for c, r in zip(active, corner)))
                                       for corner in _product([c.representatives() for c in active]))
        return trials.verdicts[key]

    # -- the plan -------------------------------------------------------------------------------

    def plan(self, op: Operation) -> list[Cut] | None:
        """The cuts that bring `op` within every size limit, outermost first (None: no tile shape fits)."""
        key = _signature(op)
        if key not in self.plans:
            hint = self.inherited.get(key)
            trials = Trials(op, self.target)
            try:
                self.plans[key] = hint if hint is not None and self.fits(trials, hint) else self._solve(op, trials)
            finally:
                trials.close()
        return self.plans[key]

    def _solve(self, op: Operation, trials: Trials) -> list[Cut] | None:
        """The plan of the axes in `axes` order; when it cuts the batch or width of a MAC op, also the
        plan that cuts its contraction before them (a conv whose kernel fills the kernel memory and
        whose input overflows the L2: each batch or width piece reloads every channel piece's
        weights, while halving the input channels halves both, so the channel pieces are twice as
        wide, at the price of summing partial products). The plan the timing model predicts faster
        is kept (`plan_seconds`); on a tie, the first."""
        axes = self.axes(op)
        plan = self._search(op, trials, axes)
        if not plan or CONTRACTION not in axes:
            return plan
        channels = _output_channel_axis(op)
        moved = axes.index(channels) + 1 if channels in axes else 0
        early = [a for a in axes[:moved] if a != CONTRACTION] + [CONTRACTION] + [a for a in axes[moved:] if a != CONTRACTION]
        if not any(c.axis in early[early.index(CONTRACTION) + 1:] for c in plan):
            return plan  # it cuts nothing the contraction would move ahead of
        other = self._search(op, trials, early)
        if other is None:
            return plan
        return other if self.plan_seconds(op, trials, other) < self.plan_seconds(op, trials, plan) else plan

    def plan_seconds(self, op: Operation, trials: Trials, cuts: list[Cut]) -> float:
        """The ANE time the timing model predicts for the pieces `cuts` emit (each distinct piece shape
        built once, `anec.sim.timing.op_seconds`) and the sums that join partial products; the
        concatenations are free (the pieces write into one buffer)."""
        classes = []  # per cut: (count, bounds) for each distinct piece size
        for cut in cuts:
            sizes: dict[int, tuple[int, tuple[int, int]]] = {}
            for lo, hi in cut.bounds():
                count, first = sizes.get(hi - lo, (0, (lo, hi)))
                sizes[hi - lo] = (count + 1, first)
            classes.append(list(sizes.values()))
        seconds = 0.0
        for combo in itertools.product(*classes):
            piece = trials.piece(tuple((cut.axis, lo, hi) for cut, (_, (lo, hi)) in zip(cuts, combo)))
            if piece is None:
                return math.inf
            seconds += math.prod(n for n, _ in combo) * op_seconds(piece, self.target)
        out, outer = list(shape_of(op.results[0])), 1
        for cut in cuts:  # a sum over the contraction adds whole partial outputs of the pieces outside it
            n = len(cut.bounds())
            if cut.axis == CONTRACTION:
                size = ane_bytes(tuple(out))
                seconds += outer * (n - 1) * cost(Work("pe", math.prod(out), 2 * size, size, largest_bytes=size), self.target).total_s
            else:
                out[cut.axis] = -(-out[cut.axis] // n)
            outer *= n
        return seconds

    def _search(self, op: Operation, trials: Trials, axes: list[int]) -> list[Cut] | None:
        """Cut the axes in `axes` order: the last kept as whole as cutting the others to their floor
        allows, then each earlier one as whole as that leaves room for."""
        cuts = {a: Cut(a, self.extent(op, a), self.extent(op, a), self.granule(op, a)) for a in axes}
        floor = {a: replace(c, size=min(c.granule, c.extent)) for a, c in cuts.items()}
        for i in reversed(range(len(axes))):  # the axes cut last are kept as whole as the others allow
            a = axes[i]
            others = {**cuts, **{b: floor[b] for b in axes[:i]}}
            whole = math.lcm(cuts[a].granule, self.lanes(op, a))  # whole lanes, and still whole groups
            lanes = self._widest(trials, others, replace(cuts[a], granule=whole)) if whole > cuts[a].granule else None
            # whole lanes unless that would waste most of a lane (a piece of one lane, or none fits: the finer granule)
            if lanes is not None and lanes.size >= min(2 * whole, lanes.extent) and self.fits(trials, list({**others, a: lanes}.values())):
                cuts[a] = lanes
            else:
                cuts[a] = self._widest(trials, others, cuts[a])
        if not self.fits(trials, list(cuts.values())):
            return None  # not even pieces of one granule along every axis fit: each search above assumed they do
        out = shape_of(op.results[0])
        over = [a for a in axes if a != CONTRACTION and out[a] > axis_limit(len(out), a, self.target)]
        order = [*over, *(a for a in axes if a not in over)]  # a concatenation holds its pieces' full extent on inner axes
        return [cuts[a] for a in order if cuts[a].size < cuts[a].extent]

    def _widest(self, trials: Trials, others: dict[int, Cut], cut: Cut) -> Cut:
        """`cut` with the largest size, in steps of its granule, whose pieces fit beside `others` (one
        granule when none does: the plan is checked whole at the end). The bounds judged are the
        bounds emitted."""
        steps = -(-cut.extent // cut.granule)
        lo, hi = 1, steps  # lo steps fit; find the most that do
        if self.fits(trials, list({**others, cut.axis: cut}.values())):
            lo = steps  # most axes stay whole: asked first, it ends their search at once
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.fits(trials, list({**others, cut.axis: replace(cut, size=min(mid * cut.granule, cut.extent))}.values())):
                lo = mid
            else:
                hi = mid - 1
        return replace(cut, size=min(lo * cut.granule, cut.extent))

    def tile(self, op: Operation) -> list[Operation] | None:
        """Emit the outermost cut of the plan; the pieces, planned again, take the rest."""
        cuts = self.plan(op)
        if not cuts:
            return None
        first, rest = cuts[0], cuts[1:]
        if first.axis == CONTRACTION:
            assert isinstance(op, ane.ConvOp | ane.MatmulOp)  # only they have a contraction to cut (`extent`)
            created = accumulate_input_channels(op, first.bounds())
        else:
            created = split_along(op, first.axis, first.bounds())
        for piece in created or []:
            self._inherit(piece, op, rest)
        return created

    def _inherit(self, piece: Operation, op: Operation, rest: list[Cut]) -> None:
        """A piece of `op` is offered the rest of `op`'s plan: one `fits` on the piece itself confirms
        it (the candidate pieces `_solve` judged can differ from the emitted ones, so the offer is
        checked, not trusted) instead of a search per distinct piece (edge pieces of every size are
        each a new signature). Only a piece of the same kind whose other axes keep their extents is
        offered it."""
        if piece.name == op.name and all(self.extent(piece, c.axis) == c.extent for c in rest):
            self.inherited.setdefault(_signature(piece), rest)


def _output_channel_axis(op: Operation) -> int:
    """The output axis a MAC op's weights are laid out along."""
    return len(shape_of(op.results[0])) - 1 if isinstance(op, ane.MatmulOp) else 1


def _feeding(piece: Operation, candidates: set[Operation]) -> list[Operation]:
    """`piece` and the candidate ops it reads from (slices and crops built for it), transitively."""
    found, stack = [], [piece]
    while stack:
        op = stack.pop()
        found.append(op)
        stack += [v.owner for v in op.operands if isinstance(v.owner, Operation) and v.owner in candidates and v.owner not in found]
    return found


def _signature(op: Operation) -> tuple:
    """What a plan depends on: the op's kind, properties and the shapes (and constness) of its tensors."""
    return (op.name, tuple(sorted(op.properties.items())),
            tuple((shape_of(v), isinstance(v.owner, ane.ConstOp)) for v in op.operands), tuple(shape_of(r) for r in op.results))


def tile_sizes(op: Operation, target: Target) -> list[Operation] | None:
    """Cut `op` so that every piece fits the L2, the kernel memory and the dimension limits."""
    return TilePlanner(target).tile(op)



PHASE_CHANNELS = 256
"""Most channels a concatenation of shifted or strided windows of a conv's input may have, for one
conv over them (`split_kernel`, `strided_conv`); past it the convs per window are summed."""


def split_kernel(op: Operation, target: Target) -> list[Operation] | None:
    """A conv with a kernel beyond the limits reads one shifted window per kernel block. With few
    channels (blocks·C ≤ PHASE_CHANNELS), constant weights and groups 1 the windows are concatenated
    along channels for one conv with a block-sized kernel (the gathered windows as one matrix product:
    the output is written once); otherwise each block is its own conv and the convs are summed."""
    if not isinstance(op, ane.ConvOp):
        return None
    if max(as_tuple(op.strides)) > target.limits.max_stride.value:
        return strided_conv(op, target)  # space-to-depth shrinks the kernel first
    k = len(shape_of(op.input)) - 2
    limits = (target.limits.max_kernel_height.value, target.limits.max_kernel_width_fp16.value)[2 - k:]
    p = Pieces(op)
    x = _explicit_pad(op, p, 0.0)
    out = shape_of(op.result)[2:]
    strides, dilations = as_tuple(op.strides), as_tuple(op.dilations)
    blocks = [even_bounds(op.kernel()[i], -(-op.kernel()[i] // limits[i])) for i in range(k)]
    corners = _product(blocks)
    weight = constant_of(op.weight)
    if weight is not None and op.groups.value.data == 1 and len(corners) * shape_of(op.input)[1] <= PHASE_CHANNELS:
        size = [b[0][1] - b[0][0] for b in blocks]  # the widest block (`even_bounds` puts it first)
        need = [(blocks[i][-1][0] + size[i] - 1) * dilations[i] + (out[i] - 1) * strides[i] + 1 for i in range(k)]
        extra = [max(0, need[i] - shape_of(x)[2 + i]) for i in range(k)]
        if any(extra):  # the last block's window runs past the input where its kernel is zero
            x = p(ane.PadOp(x, [0, 0] + [0] * k + [0, 0] + extra, "constant", 0.0))
        windows, parts = [], []
        for corner in corners:
            window = x
            for i, (k0, _) in enumerate(corner):
                window = p.slice(window, 2 + i, k0 * dilations[i], need[i] - (blocks[i][-1][0] - k0) * dilations[i])
            windows.append(window)
            block_weight = weight[(slice(None), slice(None), *(slice(k0, k1) for k0, k1 in corner))]
            parts.append(np.pad(block_weight, [(0, 0), (0, 0), *((0, size[i] - (k1 - k0)) for i, (k0, k1) in enumerate(corner))]))
        gathered = p(ane.ConcatOp(windows, 1))
        folded = p.const(np.ascontiguousarray(np.concatenate(parts, axis=1)), op.weight)
        return p.replace(p(_copy_on(op, [gathered, folded, *op.operands[2:]], shape_of(op.result), pads=[0] * 2 * k)))
    total: SSAValue | None = None
    for corner in corners:
        window = x
        for i, (k0, k1) in enumerate(corner):
            start = k0 * dilations[i]
            window = p.slice(window, 2 + i, start, start + (out[i] - 1) * strides[i] + (k1 - k0 - 1) * dilations[i] + 1)
        part_weight = op.weight
        for i, (k0, k1) in enumerate(corner):
            part_weight = p.slice(part_weight, 2 + i, k0, k1)
        bias = [op.bias] if op.bias is not None and total is None else []
        part = ane.ConvOp(window, part_weight, *bias, strides=strides, dilations=dilations, groups=op.groups.value.data)
        value = p(part)
        total = value if total is None else p(ane.AddOp(total, value))
    assert total is not None
    return p.replace(p.activation(total, op))


def _product(blocks: list[Bounds]) -> list[tuple[tuple[int, int], ...]]:
    out: list[tuple[tuple[int, int], ...]] = [()]
    for b in blocks:
        out = [(*o, r) for o in out for r in b]
    return out


def _explicit_pad(op: ane.ConvBase | ane.PoolOp, p: Pieces, fill: float) -> SSAValue:
    """The op's input with its spatial padding applied as an ane.pad (the op then pads nothing)."""
    pads = as_tuple(op.pads)
    if not any(pads):
        return op.input
    rank, k = len(shape_of(op.input)), len(pads) // 2
    full = [0] * (rank - k) + list(pads[:k]) + [0] * (rank - k) + list(pads[k:])
    return p(ane.PadOp(op.input, full, "constant", fill))


@dataclass(frozen=True)
class PhaseAxis:
    """A spatial axis whose stride s is past the limit, read in phases: tap t of a conv's k taps
    (dilation d) reads row o·s + t·d of the padded input, so the taps t0, t0 + step, t0 + 2·step, …
    (step = s / gcd(s, d)) all read every s-th row from row t0·d, as a stride-1 conv with dilation
    d / gcd(s, d) does. Each phase start t0 < step is one strided window; a 512-tap stride-4 conv has
    4 phases of 128 taps, not 512 windows of one tap."""

    index: int
    """The spatial axis (0 for H of NCHW)."""
    stride: int
    dilation: int
    kernel: int

    @property
    def step(self) -> int:
        return self.stride // math.gcd(self.stride, self.dilation)

    @property
    def phase_dilation(self) -> int:
        return self.dilation // math.gcd(self.stride, self.dilation)

    @property
    def starts(self) -> range:
        return range(min(self.kernel, self.step))

    def taps(self, start: int) -> int:
        return -(-(self.kernel - start) // self.step)

    def window(self, p: Pieces, x: SSAValue, start: int, taps: int, out: int) -> SSAValue:
        """The rows of `x` that phase `start`, with a kernel of `taps` taps, reads for `out` outputs."""
        lo = start * self.dilation
        return p.slice(x, 2 + self.index, lo, lo + (out + (taps - 1) * self.phase_dilation - 1) * self.stride + 1, self.stride)


def strided_conv(op: Operation, target: Target) -> list[Operation] | None:
    """A conv with stride s > 2 along some axes reads each in phases (`PhaseAxis`): a conv at stride 1
    per phase, of ⌈k/s⌉ taps. With constant weights and groups 1 the phases are concatenated along
    channels for one conv (a 1-D space-to-depth): channel a·C + c holds taps a, a + s, … of channel c
    (zero past k); equal strides on both axes without dilation take one `ane.space_to_depth` (patch
    embeddings, k = s = 16, stay one conv). A concatenation of many channels of short rows is mostly
    row padding, so past PHASE_CHANNELS (and for grouped or run-time weights) the phase convs are
    summed instead. Only outputs that are kept are computed. Pools subsample."""
    if not isinstance(op, ane.ConvOp):
        return subsample(op, target)
    strides, dilations, kernel = as_tuple(op.strides), as_tuple(op.dilations), op.kernel()
    folds = [PhaseAxis(i, s, dilations[i], kernel[i]) for i, s in enumerate(strides) if s > target.limits.max_stride.value]
    folded = {f.index: f for f in folds}
    props = {"strides": [1 if i in folded else s for i, s in enumerate(strides)], "pads": [0] * 2 * len(strides),
             "dilations": [folded[i].phase_dilation if i in folded else d for i, d in enumerate(dilations)]}
    out = shape_of(op.result)[2:]
    channels = shape_of(op.input)[1]
    weight = constant_of(op.weight)
    space_to_depth = len(strides) == 2 == len(folds) and strides[0] == strides[1] and all(f.dilation == 1 for f in folds)
    phases = math.prod(f.stride if space_to_depth else len(f.starts) for f in folds)
    p = Pieces(op)
    x = _explicit_pad(op, p, 0.0)
    if weight is None or op.groups.value.data != 1 or not (space_to_depth or phases * channels <= PHASE_CHANNELS):
        total: SSAValue | None = None
        for starts in itertools.product(*(f.starts for f in folds)):
            window = _phase_window(p, x, folds, starts, [f.taps(t0) for f, t0 in zip(folds, starts)], out)
            part_weight = op.weight
            for f, t0 in zip(folds, starts):
                part_weight = p.slice(part_weight, 2 + f.index, t0, f.kernel, f.step)
            value = p(ane.ConvOp(window, part_weight, op.bias if total is None else None, groups=op.groups.value.data, **props))
            total = value if total is None else p(ane.AddOp(total, value))
        assert total is not None
        return p.replace(p.activation(total, op))
    taps = [f.taps(0) for f in folds]
    need = [f.starts[-1] * f.dilation + (out[f.index] + (t - 1) * f.phase_dilation - 1) * f.stride + 1 for f, t in zip(folds, taps)]
    if space_to_depth:
        need = [(out[f.index] + t - 1) * f.stride for f, t in zip(folds, taps)]  # whole blocks
    extra = [0] * len(strides)
    for f, n in zip(folds, need):
        extra[f.index] = max(0, n - shape_of(x)[2 + f.index])
    if any(extra):
        x = p(ane.PadOp(x, [0, 0] + [0] * len(strides) + [0, 0] + extra, "constant", 0.0))
    if space_to_depth:
        x = p(ane.SpaceToDepthOp(p.slice(p.slice(x, 2, 0, need[0]), 3, 0, need[1]), strides[0]))
    else:
        windows = [_phase_window(p, x, folds, starts, taps, out) for starts in itertools.product(*(f.starts for f in folds))]
        x = windows[0] if len(windows) == 1 else p(ane.ConcatOp(windows, 1))
    weight = _phase_weight(weight, folds, taps, space_to_depth)
    return p.replace(p(_copy_on(op, [x, p.const(weight, op.weight), *op.operands[2:]], shape_of(op.result), **props)))


def _phase_window(p: Pieces, x: SSAValue, folds: list[PhaseAxis], starts: Sequence[int], taps: Sequence[int], out: Sequence[int]) -> SSAValue:
    """The window of `x` one phase reads: along each folded axis, phase `starts[i]` with `taps[i]` taps."""
    for f, start, count in zip(folds, starts, taps):
        x = f.window(p, x, start, count, out[f.index])
    return x


def _phase_weight(weight: np.ndarray, folds: list[PhaseAxis], taps: list[int], space_to_depth: bool) -> np.ndarray:
    """The weight of the conv over concatenated phases: [Cout, phases·C, ⌈k/step⌉ taps per folded axis],
    channel (phase index)·C + c, phases in the order `itertools.product` gives them."""
    folded = {f.index: (f, t) for f, t in zip(folds, taps)}
    spatial = weight.shape[2:]
    pad = [(0, 0), (0, 0)] + [(0, folded[i][1] * folded[i][0].step - k if i in folded else 0) for i, k in enumerate(spatial)]
    padded = np.pad(weight, pad)
    shape, phase_axes, kernel_axes = list(weight.shape[:2]), [], []
    for i, k in enumerate(spatial):
        if i in folded:
            f, t = folded[i]
            kernel_axes.append(len(shape))
            phase_axes.append(len(shape) + 1)
            shape += [t, f.step]
        else:
            kernel_axes.append(len(shape))
            shape.append(k)
    split = padded.reshape(shape).transpose([0, *phase_axes, 1, *kernel_axes])
    kept = split[(slice(None), *(slice(None if space_to_depth else len(f.starts)) for f in folds))]
    return np.ascontiguousarray(kept.reshape(weight.shape[0], -1, *kept.shape[2 + len(folds):]))


def subsample(op: Operation, target: Target) -> list[Operation] | None:
    """Stride s > 2: run at stride 2 (s even) or 1, then keep every (s/stride)-th output."""
    if not isinstance(op, ane.ConvOp | ane.PoolOp):
        return None
    p = Pieces(op)
    strides = as_tuple(op.strides)
    inner = [2 if s > 2 and s % 2 == 0 else (1 if s > 2 else s) for s in strides]
    k = len(strides)
    rank = len(shape_of(op.input))
    full = [window_output_size(shape_of(op.input)[2 + i], *_window_args(op, i, inner[i])) for i in range(k)]
    dense = _copy_on(op, list(op.operands), (*shape_of(op.results[0])[:2], *full), strides=inner)
    y = p(dense)
    full_shape = shape_of(y)
    steps = [1] * (rank - k) + [s // i for s, i in zip(strides, inner)]
    return p.replace(p(ane.SliceOp(y, [0] * rank, list(full_shape), steps)))


def _window_args(op: ane.ConvOp | ane.PoolOp, i: int, stride: int) -> tuple[int, int, int, int, int]:
    kernel, _, dilation, pad_begin, pad_end = _window(op, i)
    return kernel, stride, pad_begin, pad_end, dilation


def explicit_pads(op: Operation, target: Target) -> list[Operation] | None:
    """Conv padding beyond the limit moves into an explicit (chainable) pad."""
    if not isinstance(op, ane.ConvOp):
        return None
    p = Pieces(op)
    x = _explicit_pad(op, p, 0.0)
    operands = [x, *op.operands[1:]]
    return p.replace(p(_copy_on(op, operands, shape_of(op.result), pads=[0] * len(as_tuple(op.pads)))))


def chain_pads(op: Operation, target: Target) -> list[Operation] | None:
    """A pad beyond the limit as several pads within it (constant and edge modes compose)."""
    if not isinstance(op, ane.PadOp) or op.mode.data == "reflect":
        return None
    limit = target.limits.max_pad.value
    p = Pieces(op)
    remaining, x = list(as_tuple(op.pads)), op.input
    while any(remaining):
        step = [min(r, limit) for r in remaining]
        x = p(ane.PadOp(x, step, op.mode.data, op.value.value.data))
        remaining = [r - s for r, s in zip(remaining, step)]
    return p.replace(x)


def cascade_pool(op: Operation, target: Target) -> list[Operation] | None:
    """Max pool: a k-window is a k1-window (stride 1) then a (k - k1 + 1)-window. Average pool
    (no excluded padding): a weighted sum of pools over blocks of the window at their offsets."""
    if not isinstance(op, ane.PoolOp):
        return None
    limit = target.limits.max_pool_window.value
    kernel, strides = as_tuple(op.kernel), as_tuple(op.strides)
    k = len(kernel)
    p = Pieces(op)
    if isinstance(op, ane.MaxPoolOp):
        x = _explicit_pad(op, p, float("-inf"))
        first = [min(kk, limit) for kk in kernel]
        y = p(ane.MaxPoolOp(x, first, [1] * k))
        return p.replace(p(ane.MaxPoolOp(y, [kk - f + 1 for kk, f in zip(kernel, first)], strides)))
    if isinstance(op, ane.AvgPoolOp) and (op.count_include_pad.value.data or not any(as_tuple(op.pads))):
        x = _explicit_pad(op, p, 0.0)
        out = shape_of(op.result)[2:]
        rank = len(shape_of(op.input))
        area = math.prod(kernel)
        total: SSAValue | None = None
        for corner in _product([even_bounds(kk, -(-kk // limit)) for kk in kernel]):
            window = x
            for i, (k0, k1) in enumerate(corner):
                window = p.slice(window, rank - k + i, k0, k0 + (out[i] - 1) * strides[i] + (k1 - k0))
            part = p(ane.AvgPoolOp(window, [k1 - k0 for k0, k1 in corner], strides))
            share = math.prod(k1 - k0 for k0, k1 in corner) / area
            part = p(ane.MulOp(part, p.const(np.full((1,) * rank, share, np.float32), part)))
            total = part if total is None else p(ane.AddOp(total, part))
        assert total is not None
        return p.replace(total)
    return None


def split_groups(op: Operation, target: Target) -> list[Operation] | None:
    """Grouped convs with too many taps per group run group by group."""
    if not isinstance(op, ane.ConvOp):
        return None
    groups, cout = op.groups.value.data, shape_of(op.result)[1]
    return split_along(op, 1, sized_bounds(cout, cout // groups))


def split_batch(op: Operation, target: Target) -> list[Operation] | None:
    return split_along(op, 0, [(n, n + 1) for n in range(shape_of(op.results[0])[0])])


TILERS: dict[rules.Rule, Callable[[Operation, Target], list[Operation] | None]] = {
    rules.WORKING_SET: tile_sizes,
    rules.DIMS: tile_sizes,
    rules.KERNEL_MEMORY: tile_sizes,
    rules.slice_w_span: tile_sizes,
    rules.conv_kernel_width: split_kernel,
    rules.conv_kernel_height: split_kernel,
    rules.conv_stride: strided_conv,
    rules.pool_stride: subsample,
    rules.conv_pad: explicit_pads,
    rules.pad_size: chain_pads,
    rules.pool_window: cascade_pool,
    rules.group_conv_taps: split_groups,
    rules.dynamic_weight_batch: split_batch,
}
"""The rewrite that removes each tileable limit, keyed by the `anec.legality` rule it removes."""


# ------------------------------------------------------------------------------------------------
# Driver and verifier
# ------------------------------------------------------------------------------------------------


def placed_ops(module: ModuleOp, target: Target) -> list[tuple[Block, list[Operation]]]:
    """The ops that run on the ANE: every op in a segment; before partitioning, every ANE op that
    the (non-strict) legality predicate accepts."""
    found = list(segments(module))
    if found:
        return [(s.body.block, [op for op in s.body.block.ops if not isinstance(op, ane.ConstOp | ane.YieldOp)]) for s in found]
    return [(fn.body.block, [op for op in fn.body.block.ops if ane.is_ane(op) and not isinstance(op, ane.ConstOp)
                             and legality(op, target)]) for fn in functions(module)]


def held(op: Operation) -> int:
    """The elements of the tensors that pass through the engine for `op` (a slice holds its window, a
    concatenation its pieces): what a cut for the size limits shrinks."""
    return sum(math.prod(shape_of(v)) for v in engine_tensors(op) if isinstance(v.type, TensorType))


def tile_ops(ops: list[Operation], target: Target) -> None:
    """Rewrite each op past a limit, then its pieces. The rewrites for kernel, stride, pad, window and
    group limits change the op's form and each removes its limit from what it creates. The size limits
    come last, solved together, and a plan's pieces fit; a piece that still breaks one (an edge piece,
    or the concatenation of the pieces) is cut again only if it holds strictly less than the op it
    came from. That measure is a positive integer falling along every chain of cuts, so the worklist
    ends by construction; what is left unfit goes to the verifier."""
    planner = TilePlanner(target)
    ceiling: dict[Operation, int] = {}  # a piece of a size cut: what the op it came from held
    work = list(reversed(ops))
    while work:
        op = work.pop()
        if op.parent is None or not any(r.uses for r in op.results):
            continue  # replaced, or a slice whose consumer was cut again (dce removes it)
        verdict = legality(op, target, strict=True)
        if verdict.ok or not verdict.tileable:
            continue
        failing = [rule for rule in rules.rules_for(op) if rule.tileable and rule.check(op, target) is not None]
        reshaping = [rule for rule in failing if rule not in SIZE_RULES]
        if reshaping:
            created = TILERS[reshaping[0]](op, target)
        elif held(op) < ceiling.get(op, math.inf):
            created = planner.tile(op)
            ceiling.update(dict.fromkeys(created or [], held(op)))
        else:
            continue
        if created:
            work.extend(created)  # consumers first: a piece cut again leaves the slices that fed it unused


def verify_tiled(module: ModuleOp, target: Target) -> None:
    """Every op placed on the ANE satisfies every limit of `target`."""
    for _, ops in placed_ops(module, target):
        for op in ops:
            verdict = legality(op, target, strict=True)
            if not verdict.ok:
                raise AnecError(f"{name_of(op)} ({op.name}) cannot be tiled for the {target.name}", why=verdict.reason,
                                hint=verdict.hint or "the op stays outside what the ANE can run")


@dataclass(frozen=True)
class TilePass(ModulePass):
    """Every ANE op within every limit of the target; verified."""

    name = "ane-tile"

    target: str = "m1"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        for _, ops in placed_ops(op, target):
            tile_ops(ops, target)
        dce(op)
        verify_tiled(op, target)
        prune_weights(op)
