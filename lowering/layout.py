"""ane-layout: put every ANE tensor in the shape the hardware streams best.

The ANE stores tensors as [N, C, H, W] with W contiguous and each W row padded to 64 bytes, and its
matmul engine is a 1×1 convolution over C. So, as Apple's transformer guidance does by hand:

1. a matmul with constant weights (a linear layer) becomes a 1×1 conv over (N, K, 1, M): features on
   C, the sequence on W; 1-D convs and pools become 2-D ones over (N, C, 1, W), and so do 2-D ones
   that slide only along H of an (N, C, H, 1) tensor;
2. every run of layout-agnostic ops (elementwise, norms, softmax, reductions, concat, …) — a *group*
   — picks one axis order for all its tensors: the one that leaves the fewest transposes at its
   edges (the residual stream of a transformer settles on (B, C, 1, S)), lifted to rank 4 and
   avoiding size-1 innermost axes;
3. local rules merge and cancel transposes and reshapes (the ops' own canonicalization patterns),
   fold them into constants, move transposes through reshapes when that lets them meet, and fold
   swaps of the last two axes into matmul flags;
4. attention is split per head where the batched scores would not fit the L2 (`heads` option).

Results are unchanged: only the arrangement of data moves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.canonicalize import CanonicalizationRewritePattern

from anec.analysis import ane_bytes, dense_bytes
from anec.builder import RewriteBuilder
from anec.dialects import ane
from anec.dialects.ane import as_tuple, element_type_of, int_attr, ints, shape_of, tensor
from anec.dialects.discardable import COMPRESSION_ATTR, name_of
from anec.dialects.shapes import (
    Perm,
    Shape,
    compose,
    inverse,
    is_identity,
    moves_data,
    permuted,
    reshape_after_transpose,
    swaps_last_two,
    transpose_after_reshape,
)
from anec.errors import AnecError
from anec.legality import legality
from anec.lowering.rewriting import (
    constant_of,
    functions,
    prune_weights,
    single_user,
    users,
)
from anec.targets import Target, get_target

# ------------------------------------------------------------------------------------------------
# 1. Linear layers become 1×1 convolutions; 1-D windows become 2-D
# ------------------------------------------------------------------------------------------------


def _copy_epilogue(src: ane.EpilogueOp, dst: ane.EpilogueOp) -> None:
    """The activation, and the compression note `ane-compress` left, go to the op that replaces `src`."""
    if src.activation is not None:
        dst.set_activation(src.activation.data, as_tuple(src.activation_params))
    if COMPRESSION_ATTR in src.attributes:
        dst.attributes[COMPRESSION_ATTR] = src.attributes[COMPRESSION_ATTR]


class LinearToConv(RewritePattern):
    """x·W with a constant W → a 1×1 conv with K on channels and the rows of x on W. The batch axis
    next to the rows becomes H, the rest N: (B, S, K) runs as (B, K, 1, S), and a channels-last
    image (N, H, W, K) — ConvNeXt's pointwise layers — as (N, K, H, W), its NCHW layout."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MatmulOp, rewriter: PatternRewriter) -> None:
        weight = constant_of(op.rhs)
        a, w = shape_of(op.lhs), shape_of(op.rhs)
        if weight is None or any(d != 1 for d in w[:-2]):
            return
        transpose_lhs, transpose_rhs = op.flags()
        batch = a[:-2]
        n, h = math.prod(batch[:-1]), (batch[-1] if batch else 1)
        m, k = (a[-1], a[-2]) if transpose_lhs else (a[-2], a[-1])
        def kernel_of(rhs: Any) -> Any:  # (K, N) or (N, K) → (N, K, 1, 1), on arrays and on compressed weights alike
            rows = rhs.reshape(w[-2:])
            rows = rows if transpose_rhs else rows.transpose((1, 0))
            return rows.reshape((*rows.shape, 1, 1))
        build = RewriteBuilder(op, rewriter)
        if transpose_lhs:
            x = build.transpose(build.reshape(op.lhs, (n, h, k, m)), (0, 2, 1, 3))
        else:
            x = build.transpose(build.reshape(op.lhs, (n, h, m, k)), (0, 3, 1, 2))
        conv = ane.ConvOp(x, build.derive(op.rhs, kernel_of, ("linear-kernel", tuple(w[-2:]), transpose_rhs), "weight"), op.bias)
        _copy_epilogue(op, conv)
        y = build.transpose(build.add(conv), (0, 2, 3, 1))
        build.replace(build.reshape(y, shape_of(op.result)))


class LiftWindowOps(RewritePattern):
    """Convolutions and pools over (N, C, W) run as 2-D ones over (N, C, 1, W)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.ConvBase | ane.PoolOp, rewriter: PatternRewriter) -> None:
        x = shape_of(op.input)
        if len(x) != 3:
            return
        build = RewriteBuilder(op, rewriter)
        lifted = build.reshape(op.input, (x[0], x[1], 1, x[2]))
        pads = as_tuple(op.pads)
        strides, wide_pads = [1, *as_tuple(op.strides)], [0, pads[0], 0, pads[1]]
        new: Operation
        if isinstance(op, ane.ConvBase):
            w = shape_of(op.weight)
            weight = build.reshape(op.weight, (w[0], w[1], 1, w[2]))
            dilations, groups = [1, *as_tuple(op.dilations)], op.groups.value.data
            conv: ane.ConvBase
            if isinstance(op, ane.ConvTransposeOp):
                conv = ane.ConvTransposeOp(lifted, weight, op.bias, strides=strides, pads=wide_pads, dilations=dilations,
                                           groups=groups, output_padding=[0, *as_tuple(op.output_padding)])
            else:
                conv = ane.ConvOp(lifted, weight, op.bias, strides=strides, pads=wide_pads, dilations=dilations, groups=groups)
            _copy_epilogue(op, conv)
            new = conv
        elif isinstance(op, ane.AvgPoolOp):
            new = ane.AvgPoolOp(lifted, [1, *as_tuple(op.kernel)], strides=strides, pads=wide_pads,
                                count_include_pad=bool(op.count_include_pad.value.data))
        else:
            new = type(op)(lifted, [1, *as_tuple(op.kernel)], strides=strides, pads=wide_pads)
        build.replace(build.reshape(build.add(new), shape_of(op.result)))


class WindowsAlongWidth(RewritePattern):
    """A window op that slides only along H of an (N, C, H, 1) tensor — a 1-D conv written with
    (K, 1) kernels — runs on (N, C, 1, H): the same op with its H and W parameters swapped. Each
    (N, C, H, 1) row holds one element padded to 64 bytes, 32 times the data; as (N, C, 1, H) the
    rows are full and the tiler sees the (1, K) form whatever orientation the model chose. The
    transposes at the ends swap a unit axis, so they are reshapes, and cancel between such ops."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.ConvBase | ane.PoolOp, rewriter: PatternRewriter) -> None:
        x, y = shape_of(op.input), shape_of(op.results[0])
        if len(x) != 4 or x[3] != 1 or y[3] != 1 or x[2] == 1:
            return
        kernel = op.kernel() if isinstance(op, ane.ConvBase) else as_tuple(op.kernel)
        pads = as_tuple(op.pads)
        dilations = as_tuple(op.dilations) if isinstance(op, ane.ConvBase) else (1, 1)
        if kernel[1] != 1 or as_tuple(op.strides)[1] != 1 or dilations[1] != 1 or pads[1] or pads[3]:
            return
        if kernel[0] == 1 and as_tuple(op.strides)[0] == 1:
            return  # a pointwise op does not slide (a linear layer's rows on H stay where LinearToConv put them)
        swap = (0, 1, 3, 2)
        build = RewriteBuilder(op, rewriter)
        operands = [build.transpose(op.input, swap)]
        if isinstance(op, ane.ConvBase):
            operands += [build.transpose(op.weight, swap), *op.operands[2:]]
        properties = dict(op.properties)
        for key in ("kernel", "strides", "dilations", "output_padding"):
            if isinstance(attr := properties.get(key), DenseArrayBase):
                properties[key] = ints(list(reversed(attr.get_values())))
        properties["pads"] = ints([pads[1], pads[0], pads[3], pads[2]])
        new = type(op).create(operands=operands, result_types=[tensor((y[0], y[1], 1, y[2]), element_type_of(op.results[0]))],
                              properties=properties)
        build.replace(build.transpose(build.add(new), swap))


# ------------------------------------------------------------------------------------------------
# 3. Local rules: fold, cancel and move transposes and reshapes
# ------------------------------------------------------------------------------------------------


class FoldConstantMovement(RewritePattern):
    """A transpose or reshape of a constant is a constant (the builder folds it; the weight store it
    goes to is a layer above the dialect, so this is the pass's pattern, not the op's)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.TransposeOp | ane.ReshapeOp, rewriter: PatternRewriter) -> None:
        if constant_of(op.input) is None:
            return
        build = RewriteBuilder(op, rewriter)
        if isinstance(op, ane.TransposeOp):
            build.replace(build.transpose(op.input, as_tuple(op.perm)))
        else:
            build.replace(build.reshape(op.input, shape_of(op.result)))


def _units_only(a: Shape, b: Shape) -> bool:
    """True when a reshape from `a` to `b` only inserts or removes size-1 axes."""
    return [d for d in a if d != 1] == [d for d in b if d != 1]


def _absorbs(user: Operation, perm: Perm) -> bool:
    """Would `user` swallow a transpose by `perm` (merge with it, or take it as a matmul flag)?"""
    return isinstance(user, ane.TransposeOp) or (isinstance(user, ane.MatmulOp) and swaps_last_two(perm))


class SinkTransposeBelowReshape(RewritePattern):
    """reshape(transpose(x)) → transpose(reshape(x)) when the moved transpose meets another one (and
    had none above to go away with: `_meets_above`)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.ReshapeOp, rewriter: PatternRewriter) -> None:
        t = op.input.owner
        if not isinstance(t, ane.TransposeOp):
            return
        found = reshape_after_transpose(shape_of(t.input), as_tuple(t.perm), shape_of(op.result))
        if found is None:
            return
        mid, perm = found
        if _meets_above(t.input.owner, as_tuple(t.perm)):
            return  # it goes where it stands (FoldTranspose, TransposeMatmulResult); sunk, HoistTransposeAboveReshape would lift it back
        unit_only = t.result.has_one_use() and _units_only(shape_of(op.input), shape_of(op.result))
        if not (is_identity(perm) or unit_only or all(_absorbs(u, perm) for u in users(op.result))):
            return
        build = RewriteBuilder(op, rewriter)
        build.replace(build.transpose(build.reshape(t.input, mid), perm))


class HoistTransposeAboveReshape(RewritePattern):
    """transpose(reshape(y)) → reshape(transpose(y)) when the moved transpose meets another one
    (or a matmul that can produce its result transposed)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.TransposeOp, rewriter: PatternRewriter) -> None:
        r = op.input.owner
        if not isinstance(r, ane.ReshapeOp) or not r.result.has_one_use():
            return
        found = transpose_after_reshape(shape_of(r.input), shape_of(r.result), as_tuple(op.perm))
        if found is None:
            return
        perm, _ = found
        if not (_meets_above(r.input.owner, perm) or is_identity(perm)):
            return
        build = RewriteBuilder(op, rewriter)
        build.replace(build.reshape(build.transpose(r.input, perm), shape_of(op.result)))


def _transposable_matmul(op: Operation | Block | None) -> bool:
    """A matmul that can produce its result transposed by swapping its operands."""
    return isinstance(op, ane.MatmulOp) and op.bias is None and op.result.has_one_use()


def _meets_above(producer: Operation | Block | None, perm: Perm) -> bool:
    """Would a transpose by `perm` of `producer`'s result go away where it stands: merged into a
    transpose (FoldTranspose) or produced by the matmul (TransposeMatmulResult)?

    The one test both reshape rules ask: HoistTransposeAboveReshape lifts a transpose only to meet
    such a producer, and SinkTransposeBelowReshape leaves a transpose that has one where it is. A
    reshape with transposes on both sides is otherwise moved across by each rule in turn, forever
    (the greedy driver visits the new reshape before the new transpose could merge)."""
    return isinstance(producer, ane.TransposeOp) or (_transposable_matmul(producer) and swaps_last_two(perm))


class AbsorbTransposeIntoMatmul(RewritePattern):
    """matmul(transpose_last_two(a), b) → matmul(a, b, transpose_lhs) (and likewise for b)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MatmulOp, rewriter: PatternRewriter) -> None:
        lhs, rhs, flags = op.lhs, op.rhs, list(op.flags())
        for i, v in enumerate((lhs, rhs)):
            t = v.owner
            if isinstance(t, ane.TransposeOp) and swaps_last_two(as_tuple(t.perm)):
                flags[i] = not flags[i]
                lhs, rhs = (t.input, rhs) if i == 0 else (lhs, t.input)
        if lhs is op.lhs and rhs is op.rhs:
            return
        new = ane.MatmulOp(lhs, rhs, op.bias, transpose_lhs=flags[0], transpose_rhs=flags[1])
        _copy_epilogue(op, new)
        RewriteBuilder(op, rewriter).replace(new)


class TransposeMatmulResult(RewritePattern):
    """transpose_last_two(a·b) → bᵀ·aᵀ: the matmul writes its result transposed."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.TransposeOp, rewriter: PatternRewriter) -> None:
        mm = op.input.owner
        if not swaps_last_two(as_tuple(op.perm)) or not _transposable_matmul(mm):
            return
        assert isinstance(mm, ane.MatmulOp)
        ta, tb = mm.flags()
        new = ane.MatmulOp(mm.rhs, mm.lhs, transpose_lhs=not tb, transpose_rhs=not ta)
        _copy_epilogue(mm, new)
        RewriteBuilder(op, rewriter, name=RewriteBuilder(mm).name).replace(new)


CLEANUP: tuple[RewritePattern, ...] = (
    CanonicalizationRewritePattern(), FoldConstantMovement(), SinkTransposeBelowReshape(),
    HoistTransposeAboveReshape(), AbsorbTransposeIntoMatmul(), TransposeMatmulResult(),
)


def cleanup(module: ModuleOp) -> None:
    walk(module, CLEANUP)
    if share_equal_chains(module):
        walk(module, CLEANUP)


def share_equal_chains(module: ModuleOp) -> bool:
    """Chains of reshapes and transposes that rearrange one value into the same tensor are one:
    each chain's element order is computed on an index array and compared."""
    chains: dict[SSAValue, tuple[SSAValue, np.ndarray]] = {}

    def chain(value: SSAValue) -> tuple[SSAValue, np.ndarray]:
        if value not in chains:
            op = value.owner
            if isinstance(op, ane.TransposeOp | ane.ReshapeOp):
                root, index = chain(op.input)
                index = np.transpose(index, as_tuple(op.perm)) if isinstance(op, ane.TransposeOp) else index.reshape(shape_of(value))
            else:
                root, index = value, np.arange(math.prod(shape_of(value)), dtype=np.int64).reshape(shape_of(value))
            chains[value] = (root, index)
        return chains[value]

    changed = False
    for block in _blocks(module):
        seen: dict[tuple, SSAValue] = {}
        for op in list(block.ops):
            if isinstance(op, ane.TransposeOp | ane.ReshapeOp):
                root, index = chain(op.result)
                key = (root, index.shape, hash(np.ascontiguousarray(index).tobytes()))
                if (twin := seen.setdefault(key, op.result)) is not op.result:
                    op.result.replace_all_uses_with(twin)
                    changed = True
    return changed


def _blocks(module: ModuleOp) -> list[Block]:
    return [s.body.block for s in module.walk() if isinstance(s, ane.SegmentOp)] + [fn.body.block for fn in functions(module)]


# ------------------------------------------------------------------------------------------------
# 2. Groups of layout-agnostic ops choose one axis order
# ------------------------------------------------------------------------------------------------


def _lift_positions(rank: int) -> tuple[int, ...]:
    """Where the axes of a rank-r tensor go in rank 4: (…, X, W) → (N, C, 1, W)."""
    return {1: (3,), 2: (1, 3), 3: (0, 1, 3)}.get(rank, tuple(range(rank)))


@dataclass(frozen=True)
class AxisOrder:
    """How a group stores its tensors: transposed by `perm`, then lifted to rank 4.

    physical = reshape(transpose(logical, perm), lifted shape)."""

    perm: Perm

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def positions(self) -> tuple[int, ...]:
        return _lift_positions(self.rank)

    def physical_shape(self, shape: Sequence[int]) -> Shape:
        out = [1] * max(4, self.rank)
        for pos, d in zip(self.positions, permuted(shape, self.perm)):
            out[pos] = d
        return tuple(out)

    def axis(self, logical_axis: int) -> int:
        return self.positions[inverse(self.perm)[logical_axis]]

    def physical_list(self, per_axis: Sequence[int], fill: int) -> list[int]:
        out = [fill] * max(4, self.rank)
        for a, v in enumerate(per_axis):
            out[self.axis(a)] = v
        return out

    def is_trivial(self) -> bool:
        return is_identity(self.perm) and self.rank >= 4

    def to_physical(self, build: RewriteBuilder, value: SSAValue) -> SSAValue:
        return build.reshape(build.transpose(value, self.perm, "layout"), self.physical_shape(shape_of(value)), "layout")

    def to_logical(self, build: RewriteBuilder, value: SSAValue, logical: Shape) -> SSAValue:
        return build.transpose(build.reshape(value, permuted(logical, self.perm), "layout"), inverse(self.perm), "layout")


_AGNOSTIC = (ane.UnaryOp, ane.BinaryOp, ane.CompareOp, ane.SelectOp, ane.CastOp, ane.LayerNormOp, ane.L2NormOp,
             ane.ConcatOp, ane.SplitOp, ane.SliceOp, ane.TileOp, ane.BroadcastOp)


def is_agnostic(op: Operation) -> bool:
    """Ops that compute the same thing whatever axis order their tensors are stored in."""
    if isinstance(op, ane.ReduceOp | ane.ArgReduceOp):
        return bool(op.keepdims.value.data)
    return isinstance(op, _AGNOSTIC)


def group_operands(op: Operation) -> list[SSAValue]:
    """The operands that share the op's axes (a norm's scale and bias run along its axes only)."""
    return [op.operands[0]] if isinstance(op, ane.AffineNormOp) else list(op.operands)


def accepts(op: Operation, order: AxisOrder) -> bool:
    """A layer norm's scale spans its axes in order, so an order must keep it."""
    if not isinstance(op, ane.LayerNormOp):
        return True
    mapped = [order.axis(a) for a in as_tuple(op.axes)]
    return mapped == sorted(mapped)


def _remapped_properties(op: Operation, order: AxisOrder) -> dict:
    props = dict(op.properties)
    if isinstance(op, ane.SoftmaxOp | ane.ArgReduceOp | ane.ConcatOp | ane.SplitOp):
        props["axis"] = int_attr(order.axis(op.axis.value.data))
    if isinstance(op, ane.ReduceOp | ane.LayerNormOp | ane.L2NormOp):
        props["axes"] = ints(sorted(order.axis(a) for a in as_tuple(op.axes)))
    if isinstance(op, ane.SliceOp):
        for key, bounds, fill in (("starts", op.starts, 0), ("ends", op.ends, 1), ("steps", op.steps, 1)):
            props[key] = ints(order.physical_list(as_tuple(bounds), fill))
    if isinstance(op, ane.TileOp):
        props["repeats"] = ints(order.physical_list(as_tuple(op.repeats), 1))
    return props


@dataclass
class LayoutGroup:
    """Built by `find_groups`, then read unchanged while an order is chosen: what the costs of every
    candidate order need (entries, exits, unit axes) is computed once per group."""

    ops: list[Operation] = field(default_factory=list)
    tensors: set[SSAValue] = field(default_factory=set)

    @property
    def rank(self) -> int:
        return len(shape_of(next(iter(self.tensors))))

    @cached_property
    def entries(self) -> list[SSAValue]:
        """Values the group reads but does not compute (in first-use order)."""
        inside = {r for op in self.ops for r in op.results}
        seen: dict[SSAValue, None] = {}
        for op in self.ops:
            for v in group_operands(op):
                if v not in inside and constant_of(v) is None:
                    seen.setdefault(v)
        return list(seen)

    @cached_property
    def exits(self) -> list[tuple[SSAValue, Operation]]:
        """(value, user) pairs where a value computed inside is used outside."""
        members = set(map(id, self.ops))
        return [(r, u) for op in self.ops for r in op.results for u in users(r) if id(u) not in members]

    @cached_property
    def shapes(self) -> Counter[Shape]:
        """How many of the group's tensors have each shape (an unrolled recurrence has few shapes)."""
        return Counter(shape_of(v) for v in self.tensors)

    @cached_property
    def unit_axes(self) -> list[int]:
        """The axes (of rank 4) that are 1 in every tensor of the group."""
        return [a for a in range(4) if all(s[a] == 1 for s in self.shapes)] if self.rank == 4 else []


def find_groups(block: Block, target: Target) -> list[LayoutGroup]:
    """Groups of layout-agnostic ops the ANE can run (CPU ops keep the layout they came with)."""
    parent: dict[SSAValue, SSAValue] = {}

    def find(v: SSAValue) -> SSAValue:
        while parent.setdefault(v, v) is not v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    agnostic = [op for op in block.ops if is_agnostic(op) and legality(op, target)]
    for op in agnostic:
        members = [v for v in (*group_operands(op), *op.results) if constant_of(v) is None]
        for v in members[1:]:
            parent[find(v)] = find(members[0])
    groups: dict[SSAValue, LayoutGroup] = {}
    for op in agnostic:
        group = groups.setdefault(find(op.results[0]), LayoutGroup())
        group.ops.append(op)
        group.tensors.update(v for v in (*group_operands(op), *op.results) if constant_of(v) is None)
    return list(groups.values())


def _transposes_left(remaining: Perm, shape: Shape, neighbour: Operation | Block | None, entry: bool) -> int:
    """1 if a transpose by `remaining` of `shape` stays on an edge: not when it moves no data (a
    reshape) nor when it swaps the last two axes next to a matmul (a flag)."""
    if not moves_data(remaining, shape):
        return 0
    if swaps_last_two(remaining) and isinstance(neighbour, ane.MatmulOp) and (not entry or _transposable_matmul(neighbour)):
        return 0
    return 1


def _entry_cost(value: SSAValue, perm: Perm) -> int:
    """Transposes left where `value` enters a group stored transposed by `perm`, looking through
    a transpose or a reshape (+ transpose) that produces it."""
    producer: Operation | Block | None = value.owner if isinstance(value.owner, Operation) else None
    if isinstance(producer, ane.ReshapeOp):
        found = transpose_after_reshape(shape_of(producer.input), shape_of(value), perm)
        if found is not None:
            value, perm, producer = producer.input, found[0], producer.input.owner
    if isinstance(producer, ane.TransposeOp):
        return _transposes_left(compose(as_tuple(producer.perm), perm), shape_of(producer.input), producer.input.owner, True)
    return _transposes_left(perm, shape_of(value), producer, True)


def _exit_cost(physical: Shape, user: Operation, perm: Perm) -> int:
    """Transposes left where a group value (of `physical` shape, stored transposed by `perm`)
    reaches `user`, looking through a reshape and the transposes after it."""
    back = inverse(perm)
    if isinstance(user, ane.ReshapeOp):
        found = reshape_after_transpose(physical, back, shape_of(user.result))
        if found is not None:
            mid, moved = found
            return sum(_exit_cost(mid, u, inverse(moved)) for u in users(user.result))
    if isinstance(user, ane.TransposeOp):
        return _transposes_left(compose(back, as_tuple(user.perm)), physical, single_user(user.result), False)
    return _transposes_left(back, physical, user, False)


def order_cost(group: LayoutGroup, order: AxisOrder) -> tuple[int, int]:
    """(transposes left at the group's edges, row-padding bytes of its tensors) under `order`."""
    cost = sum(_entry_cost(v, order.perm) for v in group.entries)
    cost += sum(_exit_cost(order.physical_shape(shape_of(v)), user, order.perm) for v, user in group.exits)
    padding = sum(n * (ane_bytes(p) - dense_bytes(p)) for s, n in group.shapes.items() for p in [order.physical_shape(s)])
    return cost, padding


def canonical(perm: Perm, group: LayoutGroup) -> Perm:
    """The same data order with axes that are 1 in every tensor of the group moved out of the way:
    two non-unit axes as (1, C, 1, W) (a sequence), three as (1, C, H, W) when the batch is 1 (an
    image) or else (N, C, 1, W), four as they are."""
    if len(perm) != 4:
        return perm
    unit = group.unit_axes
    moving = [a for a in perm if a not in unit]
    positions = (1, 2, 3) if len(moving) == 3 and 0 in unit else _lift_positions(len(moving))
    out: list[int | None] = [None] * 4
    for pos, a in zip(positions, moving):
        out[pos] = a
    spare = iter(unit)
    return tuple(a if a is not None else next(spare) for a in out)


def candidate_orders(group: LayoutGroup) -> list[AxisOrder]:
    """The identity first, then orders that cancel a neighbouring transpose or a matmul flag, as
    they are and with unit axes placed canonically (the two store the same bytes but meet
    different neighbours)."""
    rank = group.rank
    perms: list[Perm] = [tuple(range(rank))]
    for v in group.entries:
        if isinstance(v.owner, ane.TransposeOp):
            perms.append(inverse(as_tuple(v.owner.perm)))
    for _, user in group.exits:
        if isinstance(user, ane.TransposeOp):
            perms.append(tuple(as_tuple(user.perm)))
    if rank >= 2:
        perms.append((*range(rank - 2), rank - 1, rank - 2))
    unique = dict.fromkeys([perms[0], *(canonical(p, group) for p in perms), *perms])
    return [AxisOrder(p) for p in unique if all(accepts(op, AxisOrder(p)) for op in group.ops)]


def choose_order(group: LayoutGroup, padding_ties: bool) -> AxisOrder:
    """The candidate leaving the fewest transposes. A group keeps its current order unless another
    one leaves strictly fewer — or, with `padding_ties` (the first round only, so that neighbours
    cannot flip each other back and forth), as few but with less row padding."""
    orders = candidate_orders(group)
    costs = {order: order_cost(group, order) for order in orders}
    current, best = orders[0], min(orders, key=costs.__getitem__)
    if costs[best][0] < costs[current][0] or padding_ties:
        return best
    return current


def apply_order(group: LayoutGroup, order: AxisOrder) -> None:
    """Rebuild the group's ops on physical tensors; convert at its edges."""
    physical: dict[SSAValue, SSAValue] = {}
    members = set(map(id, group.ops))

    def operand(v: SSAValue, build: RewriteBuilder) -> SSAValue:
        if v in physical:
            return physical[v]
        if constant_of(v) is not None:
            return order.to_physical(build, v)
        if v in group.tensors:  # an entry: convert once, before its first use
            physical[v] = order.to_physical(RewriteBuilder(build.anchor, name=_name_of_value(v)), v)
            return physical[v]
        return v

    for op in group.ops:
        build = RewriteBuilder(op)
        shared = set(map(id, group_operands(op)))
        new_operands = [operand(v, build) if id(v) in shared else v for v in op.operands]
        result_types = [tensor(order.physical_shape(shape_of(r)), element_type_of(r)) for r in op.results]
        new = build.insert(type(op).create(operands=new_operands, result_types=result_types, properties=_remapped_properties(op, order),
                                      attributes=dict(op.attributes)))
        for old, res in zip(op.results, new.results):
            physical[old] = res
            outside = [u for u in users(old) if id(u) not in members]
            if outside:
                logical = order.to_logical(build, res, shape_of(old))
                old.replace_uses_with_if(logical, lambda use: id(use.operation) not in members)
    for op in reversed(group.ops):
        op.detach()
        op.erase()


def _name_of_value(v: SSAValue) -> str | None:
    """The name new ops at `v` derive theirs from: its op's, if it has one."""
    owner = v.owner
    return RewriteBuilder(owner).name if isinstance(owner, Operation) else "input"


def assign_layouts(module: ModuleOp, target: Target, *, lift_only: bool = False, padding_ties: bool = False) -> bool:
    """Lift every group to rank 4 (`lift_only`), or give every group its cheapest axis order.
    Returns True if any group changed."""
    changed = False
    for block in _blocks(module):
        for group in find_groups(block, target):
            if group.rank > 4 or (lift_only and group.rank == 4):
                continue
            order = AxisOrder(tuple(range(group.rank))) if lift_only else choose_order(group, padding_ties)
            if not order.is_trivial():
                apply_order(group, order)
                changed = True
    return changed


# ------------------------------------------------------------------------------------------------
# 4. Attention per head
# ------------------------------------------------------------------------------------------------


def _attention_chain(scores: ane.MatmulOp) -> tuple[list[Operation], ane.MatmulOp] | None:
    """The single-use elementwise/softmax ops from a scores matmul to the context matmul."""
    chain: list[Operation] = []
    value: SSAValue = scores.result
    while (user := single_user(value)) is not None:
        if isinstance(user, ane.MatmulOp):
            return chain, user
        if not isinstance(user, ane.UnaryOp | ane.BinaryOp) or (isinstance(user, ane.SoftmaxOp) and user.axis.value.data == 1):
            return None
        chain.append(user)
        value = user.results[0]
    return None


def _head(value: SSAValue, h: int, anchor: Operation) -> SSAValue:
    """Head `h` of a [B, H, …] tensor (the tensor itself when it broadcasts over heads)."""
    s = shape_of(value)
    if s[1] == 1:
        return value
    starts, ends = [0] * len(s), list(s)
    starts[1], ends[1] = h, h + 1
    return RewriteBuilder(anchor, name=f"{name_of(anchor)}#head{h}").add(ane.SliceOp(value, starts, ends), "slice")


def _split_attention(scores: ane.MatmulOp, chain: list[Operation], context: ane.MatmulOp) -> None:
    outputs = []
    for h in range(shape_of(scores.result)[1]):
        local: dict[SSAValue, SSAValue] = {}
        for op in (scores, *chain, context):
            operands = [local[v] if v in local else _head(v, h, context) for v in op.operands]
            new: Operation
            if isinstance(op, ane.MatmulOp):
                matmul = ane.MatmulOp(operands[0], operands[1], transpose_lhs=op.flags()[0], transpose_rhs=op.flags()[1])
                _copy_epilogue(op, matmul)
                new = matmul
            else:
                out = shape_of(op.results[0])
                new = type(op).create(operands=operands, result_types=[tensor((out[0], 1, *out[2:]), element_type_of(op.results[0]))],
                                      properties=dict(op.properties))
            local[op.results[0]] = RewriteBuilder(context, name=f"{name_of(op)}#head{h}").add(new)
        outputs.append(local[context.result])
    RewriteBuilder(context).replace(ane.ConcatOp(outputs, 1))
    for op in reversed([scores, *chain]):
        op.detach()
        op.erase()


def split_heads(module: ModuleOp, target: Target, mode: str) -> int:
    """Split attention chains along the head axis (1) of rank-4 scores; returns how many."""
    count = 0
    for scores in [op for op in module.walk() if isinstance(op, ane.MatmulOp)]:
        shape = shape_of(scores.result)
        if len(shape) != 4 or shape[1] == 1 or (found := _attention_chain(scores)) is None:
            continue
        if mode == "never" or (mode == "auto" and ane_bytes(shape) <= target.memory.l2_bytes.value):
            continue
        _split_attention(scores, *found)
        count += 1
    return count


# ------------------------------------------------------------------------------------------------
# The pass
# ------------------------------------------------------------------------------------------------

HEAD_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class LayoutPass(ModulePass):
    """Rank ≤ 4 NCHW tensors, linear layers as 1×1 convs, (B, C, 1, S) sequences, few transposes."""

    name = "ane-layout"

    target: str = "m1"
    heads: str = "auto"
    """Split attention per head: "auto" (when the batched scores exceed the L2), "always", "never"."""
    max_rounds: int = 6

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.heads not in HEAD_MODES:
            raise AnecError(f"ane-layout: heads={self.heads!r}", hint=f"use one of {', '.join(HEAD_MODES)}")
        walk(op, [LinearToConv(), LiftWindowOps(), WindowsAlongWidth()])
        target = get_target(self.target)
        assign_layouts(op, target, lift_only=True)
        for round_ in range(self.max_rounds):
            cleanup(op)
            if not assign_layouts(op, target, padding_ties=round_ == 0):
                break
        cleanup(op)
        if split_heads(op, target, self.heads):
            cleanup(op)
        prune_weights(op)


def walk(module: ModuleOp, patterns: Iterable[RewritePattern]) -> None:
    PatternRewriteWalker(GreedyRewritePatternApplier(list(patterns))).rewrite_module(module)

