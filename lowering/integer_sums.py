"""Integer sums scaled where fp16 holds them (a fix of ane-fp16).

Integer ops (`ConvInteger`, `MatMulInteger`, `QLinear*`) import as their exact integer sums, a float
conv or matmul of centered integers by a weight stored with scale one, followed by the scale
(`anec.importers.onnx_quantized`). In float32 that is onnx's arithmetic; in fp16 the sums of 8-bit
products overflow (a 3×3 conv of uint8 by int8 reaches 10^5). So the scale moves in front of the sums:
the MAC of dequantized values, which fp16 holds. It runs in ane-fp16, on the segments going to fp16:
the float32 results change by rounding only, though a model that requantizes layer after layer
(ddddocr's recogniser, 21 times) amplifies it, so the float32 graph keeps the import's order. The
sums and their scale must share a segment: ane-legalize keeps quantize_dynamic's runtime bias on the
ANE (`Floor`, and its int32 round trip dropped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce

import numpy as np
from xdsl.ir import Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern

from anec.builder import RewriteBuilder
from anec.compression import AffineWeight
from anec.dialects import ane
from anec.dialects.ane import as_tuple, shape_of
from anec.dialects.discardable import FP16_FIXES_ATTR, append_note, derived_name, name_of, set_name
from anec.lowering.compress import weight_and_axes
from anec.lowering.fuse import MacOp, bias_values, channel_axis, per_channel, rebuild
from anec.lowering.rewriting import constant_of
from anec.weights import compressed_of


def _scale_factors(value: SSAValue) -> list[SSAValue]:
    """The factors of a product of `ane.mul`s, through reshapes of one-element values (ONNX's runtime
    scales are 0-d tensors, reshaped to broadcast)."""
    op = value.owner
    if isinstance(op, ane.ReshapeOp) and math.prod(shape_of(value)) == 1:
        return _scale_factors(op.input)
    if isinstance(op, ane.MulOp):
        return _scale_factors(op.lhs) + _scale_factors(op.rhs)
    return [value]


def _rescaled(weight: AffineWeight, axis: int, channels: np.ndarray) -> AffineWeight:
    """`weight` with its stored scale times `channels` (one per index of `axis`, the output channels);
    a weight scaled per tensor stays so when every channel's factor is the same."""
    if weight.axis is None and np.all(channels == channels[0]):
        return AffineWeight(weight.quantized, weight.scale * channels[0], weight.zero_point)
    count = weight.shape[axis]
    return AffineWeight(weight.quantized, np.broadcast_to(weight.scale, (count,)) * channels,
                        np.broadcast_to(weight.zero_point, (count,)), axis)


def _defined_before(value: SSAValue, op: Operation) -> bool:
    owner = value.owner
    return not isinstance(owner, Operation) or (owner.parent is op.parent and owner.is_before_in_block(op))


def _channels_through(constant: np.ndarray, mac: MacOp, chain: Sequence[ane.ReshapeOp | ane.TransposeOp]) -> np.ndarray | None:
    """`constant`, which scales the MAC's result after `chain` (ane-layout's reshapes and transposes, in
    order), as one value per output channel: it may vary only along the axis the channels land on (torchao's
    int8 weight-only linear scales `mm(x, q)` per output channel after ane-layout turned it into a conv)."""
    axis = channel_axis(mac)
    for op in chain:
        if isinstance(op, ane.TransposeOp):
            axis = list(as_tuple(op.perm)).index(axis)
            continue
        old, new = shape_of(op.input), shape_of(op.result)
        axis = next((i for i, d in enumerate(new) if d == old[axis] and math.prod(new[:i]) == math.prod(old[:axis])), -1)
        if axis < 0:
            return None  # the reshape splits or merges the channels
    rank = len(shape_of(chain[-1].result))
    if constant.ndim > rank or any(d != 1 for i, d in enumerate((1,) * (rank - constant.ndim) + constant.shape) if i != axis):
        return None
    return np.broadcast_to(constant.reshape(-1), (shape_of(mac.result)[channel_axis(mac)],)).astype(np.float32)


class ScaleIntoMac(RewritePattern):
    """A conv or matmul by an affine-compressed weight, times a scale → the MAC of the dequantized
    operands: a run-time scale (DynamicQuantizeLinear's) goes into the input, a constant one (per tensor
    or per channel) into the weight's stored scale; the bias takes the constant part. Integer ops import
    as their exact integer sums followed by the scale (`anec.importers.onnx_quantized`); the sums of int8
    products overflow fp16, the conv of the dequantized values does not. The constant scale stays off the
    input: the input times both scales (BERT-base's 0.033 · 8e-4 per integer step) falls among fp16's
    denormals, which the M1's MAC flushes to zero (hardware notes, "fp16 semantics")."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.MulOp, rewriter: PatternRewriter) -> None:
        for product, scale in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            shift, add = None, product.owner  # (sums + shift) · scale, as quantize_dynamic writes a conv's bias: sums · scale + shift · scale
            if isinstance(add, ane.AddOp) and product.has_one_use():
                product, shift = next(((v, w) for v, w in ((add.lhs, add.rhs), (add.rhs, add.lhs)) if isinstance(v.owner, ane.ConvOp | ane.MatmulOp)),
                                      (product, None))
            moved, chain = product, list[ane.ReshapeOp | ane.TransposeOp]()  # through ane-layout's reshapes and transposes (a matmul become a 1×1 conv)
            while shift is None and isinstance(product.owner, ane.ReshapeOp | ane.TransposeOp) and product.has_one_use():
                chain.insert(0, product.owner)
                product = product.owner.input
            mac = product.owner
            if not isinstance(mac, ane.ConvOp | ane.MatmulOp) or mac.activation is not None or not product.has_one_use():
                continue
            weight_value, axis, _ = weight_and_axes(mac) or (None, 0, 0)
            weight = compressed_of(weight_value.owner) if weight_value is not None and isinstance(weight_value.owner, ane.ConstOp) else None
            factors = _scale_factors(scale)
            runtime = [f for f in factors if constant_of(f) is None]
            constants = [c.astype(np.float32) for f in factors if (c := constant_of(f)) is not None]
            bias = bias_values(mac)
            if (not isinstance(weight, AffineWeight) or bias is None or any(math.prod(shape_of(f)) != 1 for f in runtime)
                    or (runtime and mac.bias is not None)):
                continue
            out = shape_of(mac.result)
            constant = np.ones((), np.float32)
            for factor in constants:
                constant = constant * factor
            through = moved is not product
            if through and not all(_defined_before(f, mac) for f in runtime):
                continue
            channels = _channels_through(constant, mac, chain) if through else (
                per_channel(constant.reshape((1,) * (len(out) - constant.ndim) + constant.shape), mac) if constant.ndim <= len(out) else None)
            if channels is None:
                continue
            build = RewriteBuilder(mac if through else op, rewriter)  # where every operand is defined (the scale may come after the MAC)
            x = mac.lhs if isinstance(mac, ane.MatmulOp) else mac.input
            scalars = [build.reshape(f, (1,) * len(shape_of(x))) for f in runtime]
            if scalars:
                x = build.add(ane.MulOp(x, reduce(lambda a, c: build.add(ane.MulOp(a, c), "scale"), scalars)), "scale_input")
            assert weight_value is not None  # an affine weight was found
            new_weight = weight_value if np.all(channels == 1) else build.constant(_rescaled(weight, axis, channels), weight_value, "weight")
            new_bias = build.constant(bias * channels, mac.result, "bias") if mac.bias is not None else None
            new_mac = set_name(rebuild(mac, build, new_weight, new_bias, x), derived_name(name_of(mac), "dequantized"))  # not the sums: a new name, so `anec check` compares it with nothing
            append_note(new_mac, FP16_FIXES_ATTR, "the scale after these integer sums moved in front of them (the input, or the "
                                                  "weight's stored scale): sums of 8-bit products pass fp16's 65504")
            result: SSAValue = new_mac.result
            if through:
                mac.result.replace_all_uses_with(result)
                result = moved
            if shift is not None:
                result = build.add(ane.AddOp(result, build.add(ane.MulOp(shift, scale), "shift")), "sum")
            rewriter.replace(op, [], [result])
            if shift is not None:
                assert isinstance(add, ane.AddOp)
                rewriter.erase(add)
            rewriter.erase(mac)
            return
