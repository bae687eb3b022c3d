"""What a task does: the op classes (`Kind`) and the codes of their modes, shared by the lowering,
the simulator, the timing model and `anec dump`.

All of this is anec's own encoding (see `fields.py`: the `Kind`, `Mode`, `Neuron` fields are anec
extensions). A task reads up to two tensors through tile DMAs (src1, src2) and up to four coefficient
streams through the kernel DMA, and writes one tensor (dst); tensors are 5-D views [N, D, C, H, W].
A task with two results (TOPK: values and indices) writes them side by side in each dst row.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal


class Kind(IntEnum):
    CONV = 1            # NE: convolution; kernel from coefficient stream 0 (or src2), bias stream 1
    DECONV = 2          # NE: transposed convolution
    MATMUL = 3          # NE: batched src1 @ src2 (+ bias stream 1), PostScale
    ELEMENTWISE = 4     # PE: src1 (op) src2, both broadcast to the output by zero strides
    NEURON = 5          # PE: an activation of src1
    SOFTMAX = 6         # PE: softmax over the one axis of AxisMask
    REDUCE = 7          # PE: reduction (or arg-reduction) over AxisMask
    POOL = 8            # NE: max / average / L2 pooling window
    NORM = 9            # PE: layer / instance / group / L2 normalization, scale stream 2, bias stream 1
    COPY = 10           # DMA: strided copy (slices, concatenation, broadcast)
    RESHAPE = 11        # DMA: the same elements in row-major order under another shape
    TRANSPOSE = 12      # DMA: permute axes by Perm
    PAD = 13            # DMA: pad H and W (Px/Py before, the rest after), PadMode, fill BiasScalar
    RESIZE = 14         # texture: nearest / bilinear resample of H and W
    DEPTH_TO_SPACE = 15
    SPACE_TO_DEPTH = 16
    TILE = 17           # DMA: repeat src1 to the output extents
    TOPK = 18           # PE: the k largest (smallest) along W of src1, sorted, ties to the lower index; each dst
                        # row is k values then k indices (fp16: exact integers up to 2048), so Wout = 2k


NE_KINDS = frozenset({Kind.CONV, Kind.DECONV, Kind.MATMUL, Kind.POOL})
"""Kinds that run on the MAC array (the rest run on the planar engine or the DMAs)."""
MAC_KINDS = frozenset({Kind.CONV, Kind.DECONV, Kind.MATMUL})
"""Kinds whose output leaves through the MAC port (saturation at 2^15, denormal flush)."""
DMA_KINDS = frozenset({Kind.COPY, Kind.RESHAPE, Kind.TRANSPOSE, Kind.PAD, Kind.TILE, Kind.DEPTH_TO_SPACE, Kind.SPACE_TO_DEPTH})

BINARY: tuple[str, ...] = ("add", "sub", "mul", "div", "max", "min", "pow",
                           "equal", "not_equal", "greater", "greater_equal", "less", "less_equal")
"""ELEMENTWISE `Mode` codes."""

NEURONS: tuple[str, ...] = ("none", "relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "exp", "log", "sqrt", "rsqrt",
                            "reciprocal", "abs", "neg", "softplus", "hardswish", "erf", "sin", "cos", "leaky_relu", "elu",
                            "clamp", "hardsigmoid", "affine", "sign")
"""`Neuron` codes (0: none). Parameters: first in ScaleScalar, second in BiasScalar (fp16)."""

NEURON_PARAMS: dict[str, int] = {"leaky_relu": 1, "elu": 1, "clamp": 2, "hardsigmoid": 2, "affine": 2}
"""How many fp16 parameters a neuron takes (clamp: lo, hi; hardsigmoid: alpha, beta; affine: scale, bias)."""

REDUCTIONS: tuple[str, ...] = ("sum", "mean", "max", "min", "l2", "logsumexp", "argmax", "argmin")
TOPK_MODES: tuple[str, ...] = ("largest", "smallest")
POOLS: tuple[str, ...] = ("max", "avg", "l2")
NORMS: tuple[str, ...] = ("layer", "instance", "group", "l2")
PadMode = Literal["constant", "reflect", "edge"]
PAD_MODES: tuple[PadMode, ...] = ("constant", "reflect", "edge")
RESIZE_MODES: tuple[str, ...] = ("nearest", "bilinear")
COORDINATE_MODES: tuple[str, ...] = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES: tuple[str, ...] = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
BLOCK_MODES: tuple[str, ...] = ("DCR", "CRD")

MODES: dict[Kind, tuple[str, ...]] = {
    Kind.ELEMENTWISE: BINARY, Kind.REDUCE: REDUCTIONS, Kind.POOL: POOLS, Kind.NORM: NORMS,
    Kind.RESIZE: RESIZE_MODES, Kind.DEPTH_TO_SPACE: BLOCK_MODES, Kind.TOPK: TOPK_MODES,
}
"""The meaning of `Mode` per kind (kinds not listed take Mode 0)."""


KIND_CAPABILITIES: dict[Kind, str] = {Kind.TOPK: "topk_sort"}
"""Kinds only some generations run: the `anec.targets` capability each needs."""


class Coeff(IntEnum):
    """Kernel-DMA coefficient streams (the guide: kernel, bias, post-scale, palette and activation LUTs)."""

    KERNEL = 0
    BIAS = 1
    SCALE = 2
    LUT = 3


AXES = ("N", "D", "C", "H", "W")
"""Hardware axis order of every view; AxisMask bit i is AXES[i]."""

LUT_KNOTS = 33
LUT_WORDS = 43
"""A PWL activation table: [lo, hi, slope below, slope above, 33 knots, 6 reserved] in fp16 (the guide's 43-entry unit)."""


def mode_name(kind: int, mode: int) -> str:
    names = MODES.get(Kind(kind), ())
    return names[mode] if mode < len(names) else str(mode)


def ocg_size(kh: int, kw: int) -> int:
    """Output channels per accumulator group: floor_pow2(8 / taps), at least 1 (guide §2, fp16)."""
    ocg = 8
    while ocg > 1 and ocg * kh * kw > 8:
        ocg //= 2
    return ocg


def active_cores(cout: int, ocg: int, cores: int) -> int:
    """Cores a task keeps busy: min(N, next_pow2(ceil(Cout / OCG))) (guide §2: channel c goes to core c mod N)."""
    groups = -(-cout // ocg)
    return min(cores, 1 << (groups - 1).bit_length())
