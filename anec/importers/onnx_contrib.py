"""ONNX Runtime's `com.microsoft` contrib ops that have a standard decomposition, as `ane` ops.

Models saved after ONNX Runtime's graph optimizations (or its transformers optimizer) contain fused
ops from the `com.microsoft` domain: Gelu, SkipLayerNormalization, FusedMatMul, Attention, … They
have no ONNX definition, so nothing in onnx can run them on the CPU; the ones below are spelled
out in `ane` ops with the semantics onnxruntime implements (the tests compare against it). Every
other op of the domain, and a configuration a handler cannot map, is refused with the op's name and
the hint to use the model as exported (`onnx_load.CONTRIB_HINT`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from xdsl.ir import Operation, SSAValue

from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.importers.onnx_graph import GraphBuilder, Handler, Node, NotOnAne, Value
from anec.importers.onnx_handlers import _affine, _np, conv, handles, x_of
from anec.importers.onnx_recurrent import UNROLLED_OPS, unroll
from anec.types import xdsl_element_type

DOMAIN = "com.microsoft"


def contrib(*op_types: str, emits: Sequence[type[Operation]], note: str = "") -> Callable[[Handler], Handler]:
    """Register a handler for `com.microsoft` ops (table keys are `com.microsoft.<op>`)."""
    return handles(*(f"{DOMAIN}.{t}" for t in op_types), emits=emits, note=note)


def _with_bias(b: GraphBuilder, x: SSAValue, name: str) -> SSAValue:
    return b.add(ane.AddOp(*b.same_rank(x, b.value(name)))) if name else x


# ------------------------------------------------------------------------------------------------
# GELU family, bias adds
# ------------------------------------------------------------------------------------------------


@contrib("Gelu", emits=[ane.GeluOp])
def gelu(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.GeluOp(x_of(node, b)))]


@contrib("BiasGelu", emits=[ane.AddOp, ane.GeluOp], note="gelu(x + bias), erf form")
def bias_gelu(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.GeluOp(_with_bias(b, x_of(node, b), node.input(1))))]


@contrib("FastGelu", emits=[ane.AddOp, ane.GeluOp], note="gelu(x + bias), tanh form")
def fast_gelu(node: Node, b: GraphBuilder) -> list[Value]:
    return [b.add(ane.GeluOp(_with_bias(b, x_of(node, b), node.input(1)), "tanh"))]


@contrib("QuickGelu", emits=[ane.MulOp, ane.SigmoidOp], note="x * sigmoid(alpha * x)")
def quick_gelu(node: Node, b: GraphBuilder) -> list[Value]:
    x, alpha = x_of(node, b), node.attr("alpha", 1.702)
    return [b.add(ane.MulOp(x, b.add(ane.SigmoidOp(b.add(ane.MulOp(x, b.scalar(alpha, x)))))))]


@contrib("BiasAdd", emits=[ane.AddOp], note="x + bias + skip")
def bias_add(node: Node, b: GraphBuilder) -> list[Value]:
    y = _with_bias(b, x_of(node, b), node.input(1))
    return [b.add(ane.AddOp(*b.same_rank(y, b.value(node.input(2)))))]


# ------------------------------------------------------------------------------------------------
# MAC ops
# ------------------------------------------------------------------------------------------------

FUSED_ACTIVATIONS = {"Relu": (ane.ReluOp, 0), "Tanh": (ane.TanhOp, 0), "Sigmoid": (ane.SigmoidOp, 0), "LeakyRelu": (ane.LeakyReluOp, 1),
                     "HardSigmoid": (ane.HardsigmoidOp, 2), "Clip": (ane.ClampOp, 2)}


@contrib("FusedConv", emits=[ane.ConvOp, ane.AddOp, ane.ReluOp, ane.TanhOp, ane.SigmoidOp, ane.LeakyReluOp, ane.HardsigmoidOp, ane.ClampOp],
         note="Conv, + the optional sum input, then the activation")
def fused_conv(node: Node, b: GraphBuilder) -> list[Value]:
    act = node.attr("activation", "")
    if act and act not in FUSED_ACTIVATIONS:
        raise NotOnAne(f"the fused activation {act}")
    y = conv(node, b)[0]
    assert isinstance(y, SSAValue)
    if node.input(3):
        y = b.add(ane.AddOp(y, b.value(node.input(3))))
    if not act:
        return [y]
    cls, count = FUSED_ACTIVATIONS[act]
    params = list(node.attr("activation_params", []))
    if len(params) < count:
        raise NotOnAne(f"{act} without its {count} activation parameter(s)")
    kwargs = {"LeakyRelu": lambda p: {"alpha": p[0]}, "HardSigmoid": lambda p: {"alpha": p[0], "beta": p[1]},
              "Clip": lambda p: {"min": p[0], "max": p[1]}}.get(act, lambda p: {})(params)
    return [b.add(cls(y, **kwargs))]


def _batch_first_last(b: GraphBuilder, v: SSAValue) -> SSAValue:
    """transBatchA/B: axis 0 moves to just before the last axis ([d0, d1, …, dk, n] → [d1, …, dk, d0, n])."""
    rank = len(shape_of(v))
    perm = [*range(1, rank - 1), 0, rank - 1]
    return v if perm == list(range(rank)) else b.add(ane.TransposeOp(v, perm))


@contrib("FusedMatMul", emits=[ane.TransposeOp, ane.MatmulOp, ane.MulOp], note="alpha * op(A) @ op(B), with transA/B and transBatchA/B")
def fused_matmul(node: Node, b: GraphBuilder) -> list[Value]:
    a, c = x_of(node, b, 0), x_of(node, b, 1)
    if len(shape_of(a)) < 2 or len(shape_of(c)) < 2:
        raise NotOnAne("a vector operand")
    if node.attr("transBatchA", 0):
        a = _batch_first_last(b, a)
    if node.attr("transBatchB", 0):
        c = _batch_first_last(b, c)
    y = b.add(ane.MatmulOp(*b.same_rank(a, c), transpose_lhs=bool(node.attr("transA", 0)), transpose_rhs=bool(node.attr("transB", 0))))
    alpha = node.attr("alpha", 1.0)
    return [y if alpha == 1.0 else b.add(ane.MulOp(y, b.scalar(alpha, y)))]


# ------------------------------------------------------------------------------------------------
# Normalization
# ------------------------------------------------------------------------------------------------

SKIP_EPSILON = 1e-12
"""onnxruntime's default epsilon of the Skip*LayerNormalization ops."""


def _rms_norm(b: GraphBuilder, x: SSAValue, scale: SSAValue, axes: list[int], epsilon: float) -> SSAValue:
    """x / sqrt(mean(x², axes) + epsilon) * scale: RMS normalization (no mean subtraction, no bias)."""
    mean_square = b.add(ane.ReduceMeanOp(b.add(ane.MulOp(x, x)), axes, keepdims=True))
    inv = b.add(ane.RsqrtOp(b.add(ane.AddOp(mean_square, b.scalar(epsilon, mean_square)))))
    return b.add(ane.MulOp(b.add(ane.MulOp(x, inv)), b.with_rank(scale, len(shape_of(x)))))


@handles("SimplifiedLayerNormalization",
         emits=[ane.MulOp, ane.ReduceMeanOp, ane.AddOp, ane.RsqrtOp], note="RMS normalization (onnxruntime registers it in the ONNX domain)")
def simplified_layer_norm(node: Node, b: GraphBuilder) -> list[Value]:
    if any(node.outputs[1:]):
        raise NotOnAne("its inverse-deviation output")
    x = x_of(node, b)
    rank = len(shape_of(x))
    axis = node.attr("axis", -1) % rank
    scale = _affine(b, node.input(1), shape_of(x)[axis:], x, 1.0, f"{node.name}.scale")
    return [_rms_norm(b, x, scale, list(range(axis, rank)), node.attr("epsilon", 1e-5))]


@contrib("SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
         emits=[ane.AddOp, ane.LayerNormOp, ane.MulOp, ane.ReduceMeanOp, ane.RsqrtOp],
         note="norm(input + skip + bias) over the last axis; also the sum output")
def skip_layer_norm(node: Node, b: GraphBuilder) -> list[Value | None]:
    if any(node.outputs[1:3]):
        raise NotOnAne("its mean and inverse-deviation outputs")
    simplified = node.op_type == "SkipSimplifiedLayerNormalization"
    x, skip = b.same_rank(x_of(node, b), b.value(node.input(1)))
    if shape_of(skip) != shape_of(x):
        skip = b.add(ane.BroadcastOp(skip, shape_of(x)))
    total = b.add(ane.AddOp(x, skip))
    bias_index = 3 if simplified else 4
    if node.input(bias_index):
        total = b.add(ane.AddOp(*b.same_rank(total, b.value(node.input(bias_index)))))
    rank, eps = len(shape_of(total)), node.attr("epsilon", SKIP_EPSILON)
    affine = shape_of(total)[-1:]
    gamma = _affine(b, node.input(2), affine, total, 1.0, f"{node.name}.gamma")
    if simplified:
        y = _rms_norm(b, total, gamma, [rank - 1], eps)
    else:
        beta = _affine(b, node.input(3), affine, total, 0.0, f"{node.name}.beta")
        y = b.add(ane.LayerNormOp(total, gamma, beta, axes=[rank - 1], epsilon=eps))
    return [y, None, None, total]


def _lookup(node: Node, b: GraphBuilder, table: str, ids: str, what: str) -> SSAValue:
    """Rows `ids` of the constant `table`: folded when the ids are constant, else an onnx Gather on the CPU
    (a lookup has no ANE form; Gather is a standard op the CPU runner knows, unlike the contrib op)."""
    rows, index = b.require_const(table, f"{what} table"), b.const(ids)
    if index is not None:
        return b.constant(np.take(rows, index.astype(np.int64), axis=0), name=f"{node.name}.{what}")
    from onnx import helper

    gather = helper.make_node("Gather", [table, ids], [f"{node.name}/{what}"], name=f"{node.name}/{what}")
    (rows_of,) = b.host(Node.of(gather, {"": 13}), "a lookup with run-time indices (an embedding) has no ANE equivalent")
    assert rows_of is not None
    return rows_of


@contrib("EmbedLayerNormalization", emits=[ane.AddOp, ane.LayerNormOp, ane.ReduceSumOp],
         note="word, position and segment lookups (onnx Gathers on the CPU when the ids are run-time inputs), their sum, "
              "a layer norm; mask_index as the mask's row sums (zeros without a mask)")
def embed_layer_norm(node: Node, b: GraphBuilder) -> list[Value | None]:
    ids = node.input(0)
    if len(b.shape(ids)) != 2:
        raise NotOnAne("input ids that are not [batch, sequence]")
    batch, seq = b.shape(ids)
    for i, what in ((2, "word embedding"), (3, "position embedding"), (4, "segment embedding"), (5, "gamma"), (6, "beta")):
        if node.input(i):
            b.require_const(node.input(i), what)
    positions = node.input(8)
    mask = node.input(7)
    # every refusal above: the lookups below add CPU ops at once, so nothing may fail after them
    total = _lookup(node, b, node.input(2), ids, "word")
    if positions:
        pos = b.with_rank(_lookup(node, b, node.input(3), positions, "position"), 3)
    else:
        pos = b.constant(b.require_const(node.input(3), "position embedding")[None, :seq], name=f"{node.name}.position")
    total = b.add(ane.AddOp(total, pos))
    if node.input(1) and node.input(4):
        total = b.add(ane.AddOp(total, _lookup(node, b, node.input(4), node.input(1), "segment")))
    width = shape_of(total)[2]
    gamma = _affine(b, node.input(5), (width,), total, 1.0, f"{node.name}.gamma")
    beta = _affine(b, node.input(6), (width,), total, 0.0, f"{node.name}.beta")
    y = b.add(ane.LayerNormOp(total, gamma, beta, axes=[2], epsilon=node.attr("epsilon", SKIP_EPSILON)))
    mask_index: Value | None = None
    if len(node.outputs) > 1 and node.outputs[1]:
        if mask and node.attr("mask_index_type", 1):
            mask_index = b.add(ane.ReduceSumOp(b.value(mask), [1], keepdims=False))
        else:  # no mask: onnxruntime writes zeros
            mask_index = np.zeros((batch,), np.int32)
    return [y, mask_index, total]


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------


def _heads(b: GraphBuilder, v: SSAValue, heads: int) -> SSAValue:
    """[B, S, H·d] → [B, H, S, d]."""
    batch, seq, width = shape_of(v)
    return b.add(ane.TransposeOp(b.reshape(v, (batch, seq, heads, width // heads)), [0, 2, 1, 3]))


def _key_mask(node: Node, b: GraphBuilder, name: str, like: SSAValue, batch: int, seq: int, keys: int) -> SSAValue | None:
    """A key mask as an additive one over [B, 1, 1 or S, L]: 0 where a [B, L] or [B, S, L] mask is > 0
    or, for [B] key lengths, where the key is within the length; `mask_filter_value` elsewhere."""
    if not name:
        return None
    shape = b.shape(name)
    if shape not in ((batch,), (batch, keys), (batch, seq, keys)):
        raise NotOnAne(f"a key mask of shape {list(shape)} (start positions or a packed layout)")
    m = b.value(name)
    if b.dtype(name) != _np(like):
        m = b.add(ane.CastOp(m, xdsl_element_type(_np(like))))
    if len(shape) == 1:  # key lengths (EmbedLayerNormalization's mask_index): key j is kept while j < length
        position = b.constant(np.arange(keys, dtype=_np(like)).reshape(1, keys), name="key_position")
        keep = b.add(ane.LessOp(position, b.reshape(m, (batch, 1))))
    else:
        keep = b.add(ane.GreaterOp(m, b.scalar(0.0, m)))
    zero, fill = (b.constant(np.full((1,) * len(shape_of(keep)), v, _np(like)), name="mask_value")
                  for v in (0.0, node.attr("mask_filter_value", -10000.0)))
    additive = b.add(ane.SelectOp(keep, zero, fill))
    return b.reshape(additive, (batch, 1, seq, keys) if len(shape) == 3 else (batch, 1, 1, keys))


def _attend(node: Node, b: GraphBuilder, q: SSAValue, k: SSAValue, v: SSAValue, mask_name: str, bias_name: str) -> SSAValue:
    """softmax(q·kᵀ·scale + masks)·v for [B, S, D] projections: heads split, masks added, heads joined."""
    heads = node.attr("num_heads")
    (batch, seq, width), keys, out = shape_of(q), shape_of(k)[1], shape_of(v)[2]
    if width % heads or out % heads or shape_of(k)[2] != width:
        raise NotOnAne(f"widths {width}/{shape_of(k)[2]}/{out} for {heads} heads")
    mask = _key_mask(node, b, mask_name, q, batch, seq, keys)
    if node.attr("unidirectional", 0):
        fill = node.attr("mask_filter_value", -10000.0)
        c = b.constant(np.triu(np.full((seq, keys), fill, _np(q)), 1 + keys - seq).reshape(1, 1, seq, keys), name=f"{node.name}.causal")
        mask = c if mask is None else b.add(ane.AddOp(mask, c))
    if bias_name:  # attention_bias: added to the scores, [B or 1, H or 1, S, L]
        extra = b.with_rank(b.value(bias_name), 4)
        mask = extra if mask is None else b.add(ane.AddOp(mask, extra))
    scale = node.attr("scale", 0.0) or 1.0 / math.sqrt(width // heads)
    y = b.add(ane.SdpaOp(_heads(b, q, heads), _heads(b, k, heads), _heads(b, v, heads), mask, scale=scale))
    return b.reshape(b.add(ane.TransposeOp(y, [0, 2, 1, 3])), (batch, seq, out))


ATTENTION_OPS: list[type[Operation]] = [ane.MatmulOp, ane.SplitOp, ane.ReshapeOp, ane.TransposeOp, ane.SdpaOp, ane.AddOp, ane.CastOp, ane.GreaterOp, ane.LessOp,
                 ane.SelectOp]


@contrib("Attention", emits=ATTENTION_OPS,
         note="self-attention with packed QKV weights, a [B] (key lengths), [B, S] or [B, S, S] key mask, causal or not; no past state")
def attention(node: Node, b: GraphBuilder) -> list[Value]:
    if any(node.input(i) for i in (4, 6, 7)) or any(node.outputs[1:]):
        raise NotOnAne("past/present key-value state")
    if node.attr("do_rotary", 0) or node.attr("past_present_share_buffer", 0):
        raise NotOnAne("rotary embeddings or a shared past buffer")
    x, w = x_of(node, b), x_of(node, b, 1)
    if len(shape_of(x)) != 3:
        raise NotOnAne("an input that is not [batch, sequence, hidden]")
    sizes = list(node.attr("qkv_hidden_sizes", [])) or [shape_of(w)[-1] // 3] * 3
    bias = b.value(node.input(2)) if node.input(2) else None
    qkv = b.add(ane.MatmulOp(x, b.reshape(w, (1, *shape_of(w))), bias))
    q, k, v = list(b.insert(ane.SplitOp(qkv, 2, sizes)).results)
    return [_attend(node, b, q, k, v, node.input(3), node.input(5))]


@contrib("MultiHeadAttention", emits=[*ATTENTION_OPS, ane.SliceOp],
         note="separate [B, S, D] query, key and value (bias, a [B, L]/[B, S, L] key mask, attention bias); no past state")
def multi_head_attention(node: Node, b: GraphBuilder) -> list[Value]:
    if any(node.input(i) for i in (6, 7, 8, 9)) or any(node.outputs[1:]):
        raise NotOnAne("past/present key-value state")
    names = [node.input(i) for i in range(3)]
    if not all(names) or any(len(b.shape(x)) != 3 for x in names):
        raise NotOnAne("packed or 4-D query, key or value")
    q, k, v = (b.value(x) for x in names)
    if node.input(3):  # one bias [D + D + Dv] for the three projections
        d, dv = shape_of(q)[2], shape_of(v)[2]
        bounds = ((0, d), (d, 2 * d), (2 * d, 2 * d + dv))
        c = b.const(node.input(3))
        parts = ([b.constant(c[lo:hi], name=f"{node.name}.bias") for lo, hi in bounds] if c is not None else
                 [b.add(ane.SliceOp(b.value(node.input(3)), [lo], [hi])) for lo, hi in bounds])
        q, k, v = (b.add(ane.AddOp(t, b.with_rank(p, 3))) for t, p in zip((q, k, v), parts))
    return [_attend(node, b, q, k, v, node.input(4), node.input(5))]


# ------------------------------------------------------------------------------------------------
# Dynamically quantized recurrences
# ------------------------------------------------------------------------------------------------


@contrib("DynamicQuantizeLSTM", emits=UNROLLED_OPS,
         note="an LSTM with its 8-bit weights dequantized; activations stay float (onnxruntime rounds them to 8 bits per "
              "product, so results differ by about that rounding)")
def dynamic_quantize_lstm(node: Node, b: GraphBuilder) -> list[Value | None]:
    """onnxruntime's int8 LSTM: W [dirs, size, 4H] and R [dirs, H, 4H] (transposed from ONNX's
    LSTM) with per-direction or per-column scales and zero points at inputs 8 to 11."""
    def weights(i: int, scale: int, zero: int, what: str) -> np.ndarray:
        q = b.require_const(node.input(i), what).astype(np.float32)
        s = b.require_const(node.input(scale), f"{what} scale").astype(np.float32)
        z = b.require_const(node.input(zero), f"{what} zero point").astype(np.float32) if node.input(zero) else np.zeros_like(s)
        per_column = (q.shape[0], 1, q.shape[2]) if s.ndim == 2 else (-1, 1, 1)
        return np.swapaxes((q - z.reshape(per_column)) * s.reshape(per_column), 1, 2)
    return unroll(node, b, "LSTM", (weights(1, 8, 9, "input weights"), weights(2, 10, 11, "recurrence weights")))
