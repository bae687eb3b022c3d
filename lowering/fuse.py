"""ane-fuse: fold per-channel affine work and activations into the MAC op that produces them.

The neural engine finishes every conv and matmul with an epilogue: a per-channel bias and a
neuron (activation) op, for free. So a bias add, a batch norm (per-channel scale and shift), a
per-channel scale and an activation that directly follow a conv or matmul become part of it: the
scale goes into the constant weights, the shift into the bias operand, the activation into the
`activation` property. Then each run of single-use elementwise consumers is scheduled right after
its producer, the order the hardware needs to chain them through L2 without a trip to DRAM.

Nothing crosses a segment edge: a segment's body is a separate block, and every rule looks only at
a producer and its consumer in the same block. A folded op's fp16 findings (warnings, and where the
calibrated attribution found fp16 error entering) move to the op it is folded into, so the report
still names them and `--precision auto` keeps the folded op itself in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from anec.agreement import FP16_MIN_NORMAL
from anec.builder import RewriteBuilder
from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.dialects.discardable import FP16_FIXES_ATTR, append_note, fold_fp16_findings, name_of
from anec.lowering.rewriting import ane_blocks, constant_of, prune_weights, single_user
from anec.targets import get_target

MacOp = ane.ConvOp | ane.ConvTransposeOp | ane.MatmulOp


def channel_axis(op: MacOp) -> int:
    """Where the epilogue's per-channel bias runs: C for convs, the last axis for matmul."""
    return 1 if isinstance(op, ane.ConvBase) else len(shape_of(op.result)) - 1


def _fusable_producer(value: SSAValue) -> MacOp | None:
    """The MAC op computing `value` if its epilogue is still free and nothing else reads `value`."""
    op = value.owner
    if isinstance(op, MacOp) and op.activation is None and value.has_one_use():
        return op
    return None


def per_channel(array: np.ndarray, mac: MacOp) -> np.ndarray | None:
    """`array` as one value per output channel, if it broadcasts only along the channel axis."""
    out = shape_of(mac.result)
    axis = channel_axis(mac)
    if array.ndim != len(out) or any(d != 1 for i, d in enumerate(array.shape) if i != axis):
        return None
    return np.broadcast_to(array.reshape(-1), (out[axis],)).astype(np.float32)


def _constant_side(op: ane.BinaryOp) -> tuple[MacOp, np.ndarray, bool] | None:
    """(the fusable MAC operand, the constant operand as per-channel values, MAC is the lhs)."""
    for mac_value, other, mac_first in ((op.lhs, op.rhs, True), (op.rhs, op.lhs, False)):
        mac = _fusable_producer(mac_value)
        array = constant_of(other)
        if mac is not None and array is not None and (channels := per_channel(array, mac)) is not None:
            return mac, channels, mac_first
    return None


def rebuild(mac: MacOp, build: RewriteBuilder, weight: SSAValue, bias: SSAValue | None, input: SSAValue | None = None) -> MacOp:
    """The same MAC op with a new weight (rhs for matmul) and bias (and input: lhs for matmul)."""
    if isinstance(mac, ane.MatmulOp):
        ta, tb = mac.flags()
        new: MacOp = ane.MatmulOp(input or mac.lhs, weight, bias, transpose_lhs=ta, transpose_rhs=tb)
    else:
        new = type(mac).create(operands=[input or mac.input, weight, *([bias] if bias is not None else [])], result_types=[mac.result.type],
                               properties=dict(mac.properties))
    new.attributes.update(mac.attributes)
    return build.insert(new)


def _weight_of(mac: MacOp) -> SSAValue:
    return mac.rhs if isinstance(mac, ane.MatmulOp) else mac.weight


def bias_values(mac: MacOp) -> np.ndarray | None:
    """The MAC's bias as float32 (zeros without one); None when it is computed at run time."""
    channels = shape_of(mac.result)[channel_axis(mac)]
    if mac.bias is None:
        return np.zeros(channels, np.float32)
    bias = constant_of(mac.bias)
    return None if bias is None else bias.astype(np.float32)


class FoldBias(RewritePattern):
    """conv/matmul + c (or - c) with c per channel → the bias operand."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.AddOp | ane.SubOp, rewriter: PatternRewriter) -> None:
        found = _constant_side(op)
        if found is None:
            return
        mac, shift, mac_first = found
        if isinstance(op, ane.SubOp) and not mac_first:
            return
        bias = bias_values(mac)
        if bias is None:
            return
        bias = bias + (shift if isinstance(op, ane.AddOp) else -shift)
        build = RewriteBuilder(mac, rewriter)
        new = rebuild(mac, build, _weight_of(mac), build.constant(bias, mac.result, "bias"))
        fold_fp16_findings(op, new)
        rewriter.replace(op, [], [new.result])
        rewriter.erase(mac)


def _scaled_weight(mac: MacOp, scale: np.ndarray) -> np.ndarray | None:
    """The weights times `scale` per output channel; None for a compressed weight, which stays as stored."""
    owner = _weight_of(mac).owner
    weight = constant_of(_weight_of(mac))
    if weight is None or (isinstance(owner, ane.ConstOp) and owner.stored is not None):
        return None
    w = weight.astype(np.float32)
    if isinstance(mac, ane.ConvOp):
        return w * scale.reshape(-1, *[1] * (w.ndim - 1))
    if isinstance(mac, ane.ConvTransposeOp):
        if mac.groups.value.data != 1:
            return None
        return w * scale.reshape(1, -1, *[1] * (w.ndim - 2))
    _, tb = mac.flags()
    return w * (scale.reshape(*[1] * (w.ndim - 2), -1, 1) if tb else scale)


def _subnormal_share(array: np.ndarray) -> float:
    magnitude = np.abs(array[array != 0]).astype(np.float32)
    return float(np.mean(magnitude < FP16_MIN_NORMAL)) if magnitude.size else 0.0


def _flushed_by_folding(mac: MacOp, folded: np.ndarray) -> float | None:
    """The share of fp16 weights a fold would push below fp16's normal range (None: a fold is safe).
    A batch norm whose multiplier is ~1e-4 turns normal weights into subnormals, and a MAC that
    flushes subnormal operands (M1 … M4) would silently zero most of the layer."""
    weight = constant_of(_weight_of(mac))
    if weight is None or weight.dtype != np.float16:
        return None
    after = _subnormal_share(folded)
    return after if after > 0.01 and after > 2 * _subnormal_share(weight) else None


@dataclass(frozen=True)
class FoldScale(RewritePattern):
    """conv/matmul · c (or / c) with c per channel and constant weights → scaled weights and bias
    (with FoldBias, this folds a batch norm), unless the folded weights would underflow on a chip
    whose MAC flushes subnormal operands."""

    flushes_subnormals: bool = True

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MulOp | ane.DivOp, rewriter: PatternRewriter) -> None:
        found = _constant_side(op)
        if found is None:
            return
        mac, scale, mac_first = found
        if isinstance(op, ane.DivOp) and (not mac_first or not np.all(scale != 0)):
            return
        scale = scale if isinstance(op, ane.MulOp) else 1.0 / scale
        weight, bias = _scaled_weight(mac, scale), bias_values(mac)
        if weight is None or bias is None:
            return
        if self.flushes_subnormals and (lost := _flushed_by_folding(mac, weight)) is not None:
            append_note(op, FP16_FIXES_ATTR, f"kept this scale out of {name_of(mac)}'s weights: folded, {lost:.0%} of them "
                                             "would be fp16 subnormals, which the MAC flushes to zero")
            return
        weight_type = _weight_of(mac)
        build = RewriteBuilder(mac, rewriter)
        new_bias = build.constant(bias * scale, mac.result, "bias") if mac.bias is not None else None
        new = rebuild(mac, build, build.constant(weight, weight_type, "weight"), new_bias)
        fold_fp16_findings(op, new)
        rewriter.replace(op, [], [new.result])
        rewriter.erase(mac)


class FoldActivation(RewritePattern):
    """A neuron op right after a conv/matmul → its `activation` epilogue."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.UnaryOp, rewriter: PatternRewriter) -> None:
        key = ane.kind(op)
        if key not in ane.UNARY_OPS or (isinstance(op, ane.GeluOp) and op.approximate.data != "none"):
            return
        mac = _fusable_producer(op.input)
        if mac is None:
            return
        mac.set_activation(key, op.param_values())
        fold_fp16_findings(op, mac)
        rewriter.notify_op_modified(mac)
        rewriter.replace(op, [], [mac.result])




def _is_elementwise(op: Operation) -> bool:
    return isinstance(op, ane.UnaryOp | ane.BinaryOp | ane.CompareOp | ane.SelectOp) and not isinstance(op, ane.SoftmaxOp)


def schedule_chains(block: Block) -> None:
    """Reorder `block` so each single-use elementwise consumer directly follows its producer
    whenever its other operands are ready (a topological order: results are unchanged)."""
    done: set[int] = set()
    order: list[Operation] = []

    def ready(op: Operation) -> bool:
        return all(not isinstance(v.owner, Operation) or v.owner.parent is not block or id(v.owner) in done for v in op.operands)

    def place(op: Operation) -> None:
        while True:
            order.append(op)
            done.add(id(op))
            nxt = single_user(op.results[0]) if len(op.results) == 1 else None
            if nxt is None or not _is_elementwise(nxt) or id(nxt) in done or nxt.parent is not block or not ready(nxt):
                return
            op = nxt

    for op in list(block.ops):
        if id(op) not in done:
            place(op)
    for op in order:
        op.detach()
        block.add_op(op)


@dataclass(frozen=True)
class FusePass(ModulePass):
    """Bias, batch norm, per-channel scale and activation into conv/matmul epilogues; chains kept."""

    name = "ane-fuse"

    target: str = "m1"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        flushes = get_target(self.target).numerics.mac_flushes_denormals.value
        patterns = [FoldBias(), FoldScale(flushes), FoldActivation()]
        PatternRewriteWalker(GreedyRewritePatternApplier(patterns)).rewrite_module(op)
        for block in ane_blocks(op):
            schedule_chains(block)
        prune_weights(op)

