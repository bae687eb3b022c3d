"""Reference numpy kernels for the `ane` ops, shared by the IR interpreter and the simulator.

Kernels compute in float32 (float64 for float64 inputs) and leave rounding to storage precision to
the caller. They are vectorized over BLAS: convolution is a sum over kernel taps of batched matmuls,
so no im2col copy of the whole input is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The precision a kernel computes in for inputs stored as `dtype`."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32)
    return dtype


Gemm = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A matrix product with np.matmul's broadcasting (the simulator passes its threaded one)."""


def upcast(x: np.ndarray) -> np.ndarray:
    return x.astype(compute_dtype(x.dtype), copy=False)


# ------------------------------------------------------------------------------------------------
# Elementwise
# ------------------------------------------------------------------------------------------------


def erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.2e-7 relative error (Numerical Recipes' Chebyshev erfc), vectorized."""
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return (np.sign(x) * (1.0 - erfc)).astype(x.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x)))).astype(x.dtype)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _with_errstate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def run(x: np.ndarray, *params: float) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(x, *params)
    return run


_UNARY_MATH: dict[str, Callable[..., np.ndarray]] = {  # the neuron functions, by activation name
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "gelu": gelu,
    "silu": lambda x: x * sigmoid(x),
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "reciprocal": lambda x: 1.0 / x,
    "abs": np.abs,
    "neg": np.negative,
    "softplus": lambda x: np.logaddexp(0, x).astype(x.dtype),
    "hardswish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "erf": erf,
    "sin": np.sin,
    "cos": np.cos,
    "sign": np.sign,
    "round": np.rint,  # ties to even, as ONNX's Round and QuantizeLinear
    "floor": np.floor,
    "ceil": np.ceil,
    "leaky_relu": lambda x, alpha: np.where(x >= 0, x, alpha * x),
    "elu": lambda x, alpha: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1.0)),
    "clamp": lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
    "hardsigmoid": lambda x, alpha, beta: np.clip(alpha * x + beta, 0.0, 1.0),
}
UNARY: dict[str, Callable[..., np.ndarray]] = {name: _with_errstate(fn) for name, fn in _UNARY_MATH.items()}


def _int_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero (C and ONNX semantics, not numpy's floor)."""
    q = np.abs(a) // np.where(b == 0, 1, np.abs(b))
    return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))


def divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _int_divide(a, b)
    with np.errstate(all="ignore"):
        return a / b


def power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if a.dtype.kind in "iu":
            return np.power(a.astype(np.float64), b).astype(a.dtype)
        return np.power(a, b)


BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": power,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
}


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = upcast(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    x = upcast(x)
    if not axes:
        return x
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


REDUCE: dict[str, Callable[[np.ndarray, tuple[int, ...], bool], np.ndarray]] = {
    "reduce_sum": lambda x, a, k: np.sum(x, axis=a, keepdims=k, dtype=compute_dtype(x.dtype)),
    "reduce_mean": lambda x, a, k: np.mean(upcast(x), axis=a, keepdims=k) if a else upcast(x),
    "reduce_max": lambda x, a, k: np.max(x, axis=a, keepdims=k) if x.size else np.full(_reduced(x.shape, a, k), -np.inf, x.dtype),
    "reduce_min": lambda x, a, k: np.min(x, axis=a, keepdims=k) if x.size else np.full(_reduced(x.shape, a, k), np.inf, x.dtype),
    "reduce_l2": lambda x, a, k: np.sqrt(np.sum(np.square(upcast(x)), axis=a, keepdims=k)),
    "reduce_logsumexp": logsumexp,
}


def _reduced(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keepdims or i not in axes)


def arg_reduce(x: np.ndarray, axis: int, keepdims: bool, select_last: bool, largest: bool) -> np.ndarray:
    data = np.flip(x, axis=axis) if select_last else x
    idx = (np.argmax if largest else np.argmin)(data, axis=axis)
    if select_last:
        idx = x.shape[axis] - 1 - idx
    return np.expand_dims(idx, axis) if keepdims else idx


def topk(x: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest (smallest) values along `axis`, sorted, and their indices; equal values keep
    the lower index first (ONNX TopK's order, computed as its reference does: a sort by value, then
    by index, with no arithmetic on the values, so every dtype stays exact)."""
    position = np.arange(x.shape[axis]).reshape([-1 if i == axis else 1 for i in range(x.ndim)])
    order = np.lexsort((np.broadcast_to(-position if largest else position, x.shape), x), axis=axis)
    indices = np.take(np.flip(order, axis) if largest else order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices


# ------------------------------------------------------------------------------------------------
# Convolution and matmul
# ------------------------------------------------------------------------------------------------


def _as_2d(x: np.ndarray) -> np.ndarray:
    """View an NCW tensor as NC1W so 1-D and 2-D windows share one implementation."""
    return x[:, :, None, :] if x.ndim == 3 else x


def _expand_params(rank: int, strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int]):
    if rank == 3:
        return [1, strides[0]], [0, pads[0], 0, pads[1]], [1, dilations[0]]
    return list(strides), list(pads), list(dilations)


def conv(x: np.ndarray, w: np.ndarray, strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int], groups: int,
         gemm: Gemm = np.matmul) -> np.ndarray:
    """N-C-(H)-W convolution; weight [O, C/groups, (kH), kW]: one GEMM per group over the gathered
    taps (a 1x1 stride-1 convolution needs no gathering), or a multiply-add per tap when depthwise."""
    rank = x.ndim
    strides, pads, dilations = _expand_params(rank, strides, pads, dilations)
    x, w = _as_2d(upcast(x)), _as_2d(upcast(w))
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    og = o // groups
    if kh == kw == 1 and not any(pads) and strides == [1, 1]:
        ho, wo = x.shape[2:]
        out = gemm(w.reshape(groups, og, cg)[None], x.reshape(n, groups, cg, ho * wo))
        out = out.reshape(n, o, ho, wo)
        return out[:, :, 0, :] if rank == 3 else out
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1

    def tap(i: int, j: int) -> np.ndarray:
        r0, c0 = i * dilations[0], j * dilations[1]
        return xp[:, :, r0:r0 + strides[0] * (ho - 1) + 1:strides[0], c0:c0 + strides[1] * (wo - 1) + 1:strides[1]]

    if cg == 1 and og == 1:  # depthwise: no matmul needed
        wd = w.reshape(groups, kh, kw)
        out = np.zeros((n, o, ho, wo), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                out += tap(i, j) * wd[:, i, j][None, :, None, None]
    else:
        cols = np.empty((n, groups * cg, kh, kw, ho, wo), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = tap(i, j)
        out = conv_columns(cols, w, groups, gemm)
    return out[:, :, 0, :] if rank == 3 else out


def conv_columns(cols: np.ndarray, w: np.ndarray, groups: int, gemm: Gemm = np.matmul) -> np.ndarray:
    """A convolution from its columns cols[N, C, kH, kW, Ho, Wo] (the input under each tap of each
    output pixel): one GEMM per group; weight [O, C/groups, kH, kW]."""
    n, c, kh, kw, ho, wo = cols.shape
    o = w.shape[0]
    out = gemm(w.reshape(groups, o // groups, c // groups * kh * kw)[None], cols.reshape(n, groups, c // groups * kh * kw, ho * wo))
    return out.reshape(n, o, ho, wo)


def conv_transpose(x: np.ndarray, w: np.ndarray, strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int],
                   groups: int, output_padding: Sequence[int], gemm: Gemm = np.matmul) -> np.ndarray:
    """Transposed convolution; weight [C, O/groups, (kH), kW]; scatter of tap matmuls, then crop."""
    rank = x.ndim
    strides, pads, dilations = _expand_params(rank, strides, pads, dilations)
    output_padding = [0, output_padding[0]] if rank == 3 else list(output_padding)
    x, w = _as_2d(upcast(x)), _as_2d(upcast(w))
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    full_h = strides[0] * (h - 1) + dilations[0] * (kh - 1) + 1 + output_padding[0]
    full_w = strides[1] * (wd - 1) + dilations[1] * (kw - 1) + 1 + output_padding[1]
    out = np.zeros((n, groups, og, full_h, full_w), dtype=x.dtype)
    xg = x.reshape(n, groups, cg, h * wd)
    wg = w.reshape(groups, cg, og, kh, kw)
    for i in range(kh):
        for j in range(kw):
            contrib = gemm(np.swapaxes(wg[:, :, :, i, j], 1, 2)[None], xg).reshape(n, groups, og, h, wd)
            r0, c0 = i * dilations[0], j * dilations[1]
            out[:, :, :, r0:r0 + strides[0] * (h - 1) + 1:strides[0], c0:c0 + strides[1] * (wd - 1) + 1:strides[1]] += contrib
    out = out.reshape(n, groups * og, full_h, full_w)
    out = out[:, :, pads[0]:full_h - pads[2], pads[1]:full_w - pads[3]]
    return out[:, :, 0, :] if rank == 3 else out


def matmul(a: np.ndarray, b: np.ndarray, transpose_a: bool = False, transpose_b: bool = False, gemm: Gemm = np.matmul) -> np.ndarray:
    a, b = upcast(a), upcast(b)
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    return gemm(a, b)


def sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    scores = matmul(q, k, transpose_b=True) * scale
    if mask is not None:
        scores = scores + upcast(mask)
    return np.matmul(softmax(scores, -1), upcast(v))


# ------------------------------------------------------------------------------------------------
# Pooling, normalization
# ------------------------------------------------------------------------------------------------


def window_reduce(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int], fill: float | np.generic | np.ndarray,
                   combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Combine the taps of every window of the padded input, one strided slice per tap (no window copies)."""
    if x.ndim == 3:
        kernel, strides, pads = [1, kernel[0]], [1, strides[0]], [0, pads[0], 0, pads[1]]
    x = _as_2d(x)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
    ho = (xp.shape[2] - kernel[0]) // strides[0] + 1
    wo = (xp.shape[3] - kernel[1]) // strides[1] + 1
    out: np.ndarray | None = None
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            tap = xp[:, :, i:i + strides[0] * (ho - 1) + 1:strides[0], j:j + strides[1] * (wo - 1) + 1:strides[1]]
            out = tap.copy() if out is None else combine(out, tap)
    assert out is not None
    return out


def pool(kind: str, x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int], count_include_pad: bool = False) -> np.ndarray:
    rank = x.ndim
    x = upcast(x)
    add = lambda a, b: np.add(a, b, out=a)  # noqa: E731
    if kind == "max":
        out = window_reduce(x, kernel, strides, pads, -np.inf, lambda a, b: np.maximum(a, b, out=a))
    elif kind == "l2":
        out = np.sqrt(window_reduce(np.square(x), kernel, strides, pads, 0.0, add))
    else:
        total = window_reduce(x, kernel, strides, pads, 0.0, add)
        if count_include_pad:
            out = total / math.prod(kernel)
        else:
            ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
            out = total / window_reduce(ones, kernel, strides, pads, 0.0, add)
    return out[:, :, 0, :] if rank == 3 else out


def normalize(x: np.ndarray, axes: tuple[int, ...], epsilon: float) -> np.ndarray:
    x = upcast(x)
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon)


def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, axes: tuple[int, ...], epsilon: float) -> np.ndarray:
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    return normalize(x, axes, epsilon) * upcast(scale).reshape(shape) + upcast(bias).reshape(shape)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return upcast(v).reshape((1, -1) + (1,) * (ndim - 2))


def instance_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, epsilon: float) -> np.ndarray:
    y = normalize(x, tuple(range(2, x.ndim)), epsilon)
    return y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)


def group_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, groups: int, epsilon: float) -> np.ndarray:
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, c // groups, *x.shape[2:])
    y = normalize(grouped, tuple(range(2, grouped.ndim)), epsilon).reshape(x.shape)
    return y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)


def l2_norm(x: np.ndarray, axes: tuple[int, ...], epsilon: float) -> np.ndarray:
    x = upcast(x)
    return x / np.sqrt(np.maximum(np.sum(np.square(x), axis=axes, keepdims=True), epsilon))


# ------------------------------------------------------------------------------------------------
# Resampling and block moves
# ------------------------------------------------------------------------------------------------


def _source_coords(out_len: int, in_len: int, scale: float, mode: str) -> np.ndarray:
    """Where each output index samples the input (ONNX coordinate_transformation_mode)."""
    i = np.arange(out_len, dtype=np.float64)
    if mode == "align_corners":
        return i * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros(out_len)
    if mode == "asymmetric":
        return i / scale
    if mode == "pytorch_half_pixel" and out_len == 1:
        return np.zeros(out_len)
    return (i + 0.5) / scale - 0.5


_NEAREST: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "round_prefer_floor": lambda c: np.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: np.floor(c + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def resize(x: np.ndarray, out_shape: Sequence[int], mode: str, scales: Sequence[float], coordinate_mode: str, nearest_mode: str) -> np.ndarray:
    """Separable nearest / linear resize of the last len(scales) axes."""
    y = upcast(x) if mode == "bilinear" else x
    k = len(scales)
    for offset, scale in enumerate(scales):
        axis = x.ndim - k + offset
        in_len, out_len = y.shape[axis], out_shape[axis]
        coords = _source_coords(out_len, in_len, scale, coordinate_mode)
        if mode == "nearest":
            idx = np.clip(_NEAREST[nearest_mode](coords), 0, in_len - 1).astype(np.int64)
            y = np.take(y, idx, axis=axis)
        else:
            coords = np.clip(coords, 0, in_len - 1)
            lo = np.floor(coords).astype(np.int64)
            hi = np.minimum(lo + 1, in_len - 1)
            frac = (coords - lo).astype(y.dtype)
            shape = [1] * y.ndim
            shape[axis] = out_len
            frac = frac.reshape(shape)
            y = np.take(y, lo, axis=axis) * (1 - frac) + np.take(y, hi, axis=axis) * frac
    return y


def depth_to_space(x: np.ndarray, block: int, mode: str) -> np.ndarray:
    n, c, h, w = x.shape
    b = block
    if mode == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


def space_to_depth(x: np.ndarray, block: int) -> np.ndarray:
    n, c, h, w = x.shape
    b = block
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)
