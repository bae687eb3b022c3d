"""A numpy interpreter for Core ML MIL programs (pymil), for tests on machines without Core ML.

coremltools cannot predict on Linux, so emitted packages are checked by loading their MIL back
(`load_package`) and running it here. Each op computes in float32 (fp16 inputs are widened) and
its result is stored at the element type the program declares, so fp16 programs round like fp16
storage does. Every result is checked against the shape the program declares.

The interpreter is written from MIL's op definitions, independently of anec's own kernels except
for convolution and pooling windows; `test_mil_interpreter.py` shows it agrees with eager PyTorch on
programs coremltools' own converter produces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anec import kernels

Op = Any  # coremltools.converters.mil.mil.Operation
Kernel = Callable[[Op, "Args"], np.ndarray | tuple[np.ndarray, ...] | list[np.ndarray]]
OPS: dict[str, Kernel] = {}


def op(*names: str) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        for name in names:
            OPS[name] = fn
        return fn
    return register


def load_package(path: str | Path) -> Any:
    """The MIL program stored in a saved `.mlpackage` (works without Core ML)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    return load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)


def numpy_dtype(mil_type: Any) -> np.dtype:
    from coremltools.converters.mil.mil import types

    return np.dtype(types.nptype_from_builtin(mil_type))


class Args:
    """An op's inputs by parameter name, as numpy values (tuples for tuple inputs)."""

    def __init__(self, op: Op, env: Mapping[Any, np.ndarray]):
        self.op = op
        self.env = env

    def _value(self, var: Any) -> np.ndarray:
        if var in self.env:
            return self.env[var]
        if var.val is None:
            raise KeyError(f"{self.op.op_type} {self.op.name}: input {var.name} has no value")
        return np.asarray(var.val)

    def __getitem__(self, name: str) -> Any:
        var = self.op.inputs[name]
        if isinstance(var, tuple | list):
            return tuple(self._value(v) for v in var)
        return self._value(var)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self.op.inputs and self.op.inputs[name] is not None else default

    def f(self, name: str) -> np.ndarray:
        """A float input widened to at least float32."""
        x = self[name]
        return x.astype(np.float32) if x.dtype == np.float16 else x

    def scalar(self, name: str, default: Any = None) -> Any:
        value = self.get(name)
        return default if value is None else np.asarray(value).item()

    def ints(self, name: str, default: Any = None) -> list[int] | None:
        value = self.get(name)
        return default if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def run_program(program: Any, inputs: Mapping[str, np.ndarray], function: str = "main") -> dict[str, np.ndarray]:
    """Run `program`'s function on `inputs` (by MIL input name); returns outputs by name."""
    fn = program.functions[function]
    env: dict[Any, np.ndarray] = {}
    for name, var in fn.inputs.items():
        if name not in inputs:
            raise KeyError(f"missing input {name!r}")
        value = np.asarray(inputs[name])
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"input {name!r} has shape {value.shape}, the program expects {var.shape}")
        env[var] = value.astype(numpy_dtype(var.dtype))
    for operation in fn.operations:
        execute(operation, env)
    return {var.name: env[var] if var in env else np.asarray(var.val) for var in fn.outputs}


def execute(operation: Op, env: dict[Any, np.ndarray]) -> None:
    if operation.op_type == "const":
        return
    kernel = OPS.get(operation.op_type)
    if kernel is None:
        raise NotImplementedError(f"the MIL interpreter has no kernel for {operation.op_type} ({operation.name})")
    results = kernel(operation, Args(operation, env))
    results = list(results) if isinstance(results, tuple | list) else [results]
    for var, value in zip(operation.outputs, results, strict=True):
        value = np.asarray(value)
        if tuple(value.shape) != tuple(var.shape):
            raise AssertionError(f"{operation.op_type} {operation.name}: computed shape {value.shape}, MIL declares {var.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            env[var] = value.astype(numpy_dtype(var.dtype))


# ------------------------------------------------------------------------------------------------
# Elementwise
# ------------------------------------------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _gelu(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


UNARY: dict[str, Callable[[np.ndarray, Args], np.ndarray]] = {
    "relu": lambda x, a: np.maximum(x, 0),
    "relu6": lambda x, a: np.clip(x, 0, 6),
    "sigmoid": lambda x, a: _sigmoid(x),
    "tanh": lambda x, a: np.tanh(x),
    "silu": lambda x, a: x * _sigmoid(x),
    "gelu": lambda x, a: _gelu(x, a.scalar("mode", "EXACT")),
    "exp": lambda x, a: np.exp(x),
    "exp2": lambda x, a: np.exp2(x),
    "log": lambda x, a: np.log(x + a.scalar("epsilon", 1e-45)),
    "sqrt": lambda x, a: np.sqrt(x),
    "rsqrt": lambda x, a: 1 / np.sqrt(x + a.scalar("epsilon", 1e-12)),
    "inverse": lambda x, a: 1 / (x + a.scalar("epsilon", 1e-4)),
    "square": lambda x, a: x * x,
    "abs": lambda x, a: np.abs(x),
    "sign": lambda x, a: np.sign(x),
    "floor": lambda x, a: np.floor(x),
    "ceil": lambda x, a: np.ceil(x),
    "round": lambda x, a: np.round(x),
    "erf": lambda x, a: _erf(x),
    "sin": lambda x, a: np.sin(x),
    "cos": lambda x, a: np.cos(x),
    "tan": lambda x, a: np.tan(x),
    "asin": lambda x, a: np.arcsin(x),
    "acos": lambda x, a: np.arccos(x),
    "atan": lambda x, a: np.arctan(x),
    "sinh": lambda x, a: np.sinh(x),
    "cosh": lambda x, a: np.cosh(x),
    "atanh": lambda x, a: np.arctanh(x),
    "softplus": lambda x, a: np.logaddexp(0, x),
    "softsign": lambda x, a: x / (1 + np.abs(x)),
    "logical_not": lambda x, a: np.logical_not(x),
    "identity": lambda x, a: x,
    "leaky_relu": lambda x, a: np.where(x >= 0, x, a.scalar("alpha", 0.01) * x),
    "elu": lambda x, a: np.where(x > 0, x, a.scalar("alpha", 1.0) * (np.exp(np.minimum(x, 0)) - 1)),
    "clip": lambda x, a: np.minimum(np.maximum(x, a.scalar("alpha")), a.scalar("beta")),
    "sigmoid_hard": lambda x, a: np.clip(a.scalar("alpha", 0.2) * x + a.scalar("beta", 0.5), 0, 1),
    "threshold": lambda x, a: np.maximum(x, a.scalar("alpha")),
    "thresholded_relu": lambda x, a: np.where(x > a.scalar("alpha", 1.0), x, 0),
}


@op(*UNARY)
def _unary(o: Op, a: Args) -> np.ndarray:
    with np.errstate(all="ignore"):
        return UNARY[o.op_type](a.f("x"), a)


def _floor_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.floor_divide(x, y)


BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.true_divide, "floor_div": _floor_div,
    "maximum": np.maximum, "minimum": np.minimum, "pow": np.power, "mod": lambda x, y: x - np.floor_divide(x, y) * y,
    "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater, "greater_equal": np.greater_equal,
    "less": np.less, "less_equal": np.less_equal, "logical_and": np.logical_and, "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}


@op(*BINARY)
def _binary(o: Op, a: Args) -> np.ndarray:
    with np.errstate(all="ignore"):
        return BINARY[o.op_type](a.f("x"), a.f("y"))


@op("select")
def _select(o: Op, a: Args) -> np.ndarray:
    return np.where(a["cond"].astype(bool), a.f("a"), a.f("b"))


@op("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense", "constexpr_sparse_to_dense")
def _constexpr(o: Op, a: Args) -> np.ndarray:
    """A compressed weight: coremltools' own decompression of the op's constant inputs."""
    return o.materialized_val_inference()


@op("cast")
def _cast(o: Op, a: Args) -> np.ndarray:
    x = a["x"]
    out = numpy_dtype(o.outputs[0].dtype)
    return x.astype(out) if out.kind in "iub" else x  # float -> int truncates toward zero


@op("softmax")
def _softmax(o: Op, a: Args) -> np.ndarray:
    x = a.f("x")
    axis = a.scalar("axis", -1)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------------------------------------
# MAC ops
# ------------------------------------------------------------------------------------------------


def _conv_pads(a: Args, x_spatial: tuple[int, ...], kernel: tuple[int, ...], strides: list[int], dilations: list[int]) -> list[int]:
    """MIL padding as [begin..., end...] over the spatial axes."""
    kind = a.scalar("pad_type", "valid")
    k = len(x_spatial)
    if kind == "custom":
        pad = a.ints("pad")
        return [pad[2 * i] for i in range(k)] + [pad[2 * i + 1] for i in range(k)]
    if kind == "valid":
        return [0] * 2 * k
    total = [max((math.ceil(n / s) - 1) * s + (kk - 1) * d + 1 - n, 0) for n, kk, s, d in zip(x_spatial, kernel, strides, dilations)]
    small = [t // 2 for t in total]
    large = [t - t // 2 for t in total]
    return (large + small) if kind == "same_lower" else (small + large)


@op("conv")
def _conv(o: Op, a: Args) -> np.ndarray:
    x, w = a.f("x"), a.f("weight")
    k = x.ndim - 2
    strides, dilations = a.ints("strides", [1] * k), a.ints("dilations", [1] * k)
    pads = _conv_pads(a, x.shape[2:], w.shape[2:], strides, dilations)
    y = kernels.conv(x, w, strides, pads, dilations, a.scalar("groups", 1))
    bias = a.get("bias")
    return y if bias is None else y + bias.astype(np.float32).reshape((1, -1) + (1,) * k)


@op("conv_transpose")
def _conv_transpose(o: Op, a: Args) -> np.ndarray:
    x, w = a.f("x"), a.f("weight")
    k = x.ndim - 2
    strides, dilations = a.ints("strides", [1] * k), a.ints("dilations", [1] * k)
    if a.scalar("pad_type", "valid") != "custom":
        raise NotImplementedError("conv_transpose with automatic padding")
    pad = a.ints("pad")
    pads = [pad[2 * i] for i in range(k)] + [pad[2 * i + 1] for i in range(k)]
    groups = a.scalar("groups", 1)
    out_spatial = tuple(o.outputs[0].shape[2:])
    natural = [strides[i] * (x.shape[2 + i] - 1) + (w.shape[2 + i] - 1) * dilations[i] + 1 - pads[i] - pads[k + i] for i in range(k)]
    output_padding = [o_ - n for o_, n in zip(out_spatial, natural)]
    y = kernels.conv_transpose(x, w, strides, pads, dilations, groups, output_padding)
    bias = a.get("bias")
    return y if bias is None else y + bias.astype(np.float32).reshape((1, -1) + (1,) * k)


@op("matmul")
def _matmul(o: Op, a: Args) -> np.ndarray:
    x, y = a.f("x"), a.f("y")
    if a.scalar("transpose_x", False):
        x = np.swapaxes(x, -1, -2)
    if a.scalar("transpose_y", False):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@op("linear")
def _linear(o: Op, a: Args) -> np.ndarray:
    y = np.matmul(a.f("x"), a.f("weight").T)
    bias = a.get("bias")
    return y if bias is None else y + bias.astype(np.float32)


@op("einsum")
def _einsum(o: Op, a: Args) -> np.ndarray:
    return np.einsum(a.scalar("equation"), *(v.astype(np.float32) for v in a["values"]))


@op("scaled_dot_product_attention")
def _sdpa(o: Op, a: Args) -> np.ndarray:
    q, k, v = a.f("query"), a.f("key"), a.f("value")
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / math.sqrt(q.shape[-1])
    mask = a.get("attn_mask")
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask.astype(np.float32)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return np.matmul(e / e.sum(axis=-1, keepdims=True), v)


# ------------------------------------------------------------------------------------------------
# Reductions, pooling, normalization
# ------------------------------------------------------------------------------------------------


def _logsumexp(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


REDUCE: dict[str, Callable[[np.ndarray, Any, bool], np.ndarray]] = {
    "reduce_sum": lambda x, ax, k: x.sum(axis=ax, keepdims=k),
    "reduce_mean": lambda x, ax, k: x.mean(axis=ax, keepdims=k),
    "reduce_max": lambda x, ax, k: x.max(axis=ax, keepdims=k),
    "reduce_min": lambda x, ax, k: x.min(axis=ax, keepdims=k),
    "reduce_prod": lambda x, ax, k: x.prod(axis=ax, keepdims=k),
    "reduce_sum_square": lambda x, ax, k: (x * x).sum(axis=ax, keepdims=k),
    "reduce_l1_norm": lambda x, ax, k: np.abs(x).sum(axis=ax, keepdims=k),
    "reduce_l2_norm": lambda x, ax, k: np.sqrt((x * x).sum(axis=ax, keepdims=k)),
    "reduce_log_sum": lambda x, ax, k: np.log(x.sum(axis=ax, keepdims=k)),
    "reduce_log_sum_exp": _logsumexp,
}


@op(*REDUCE)
def _reduce(o: Op, a: Args) -> np.ndarray:
    axes = a.ints("axes")
    return REDUCE[o.op_type](a.f("x"), None if axes is None else tuple(axes), bool(a.scalar("keep_dims", False)))


@op("reduce_argmax", "reduce_argmin")
def _arg_reduce(o: Op, a: Args) -> np.ndarray:
    x, axis = a.f("x"), a.scalar("axis", -1)
    index = (np.argmax if o.op_type == "reduce_argmax" else np.argmin)(x, axis=axis)
    return np.expand_dims(index, axis) if a.scalar("keep_dims", False) else index


def _pool_params(o: Op, a: Args) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    x = a.f("x")
    kernel, strides = a.ints("kernel_sizes"), a.ints("strides", [1] * (x.ndim - 2))
    pads = _conv_pads(a, x.shape[2:], tuple(kernel), strides, [1] * len(kernel))
    if a.scalar("ceil_mode", False):
        raise NotImplementedError("pooling with ceil_mode")
    return x, kernel, strides, pads


@op("max_pool", "avg_pool", "l2_pool")
def _pool(o: Op, a: Args) -> np.ndarray:
    x, kernel, strides, pads = _pool_params(o, a)
    kind = o.op_type.removesuffix("_pool")
    include_pad = kind == "avg" and not a.scalar("exclude_padding_from_average", False)
    return kernels.pool(kind, x, kernel, strides, pads, include_pad)


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _channel(v: np.ndarray | None, ndim: int, fill: float) -> np.ndarray:
    return np.float32(fill) if v is None else v.astype(np.float32).reshape((1, -1) + (1,) * (ndim - 2))


@op("layer_norm")
def _layer_norm(o: Op, a: Args) -> np.ndarray:
    x = a.f("x")
    axes = tuple(ax % x.ndim for ax in a.ints("axes"))
    y = _normalize(x, axes, a.scalar("epsilon", 1e-5))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    gamma, beta = a.get("gamma"), a.get("beta")
    if gamma is not None:
        y = y * gamma.astype(np.float32).reshape(shape)
    if beta is not None:
        y = y + beta.astype(np.float32).reshape(shape)
    return y


@op("instance_norm")
def _instance_norm(o: Op, a: Args) -> np.ndarray:
    x = a.f("x")
    y = _normalize(x, tuple(range(2, x.ndim)), a.scalar("epsilon", 1e-5))
    return y * _channel(a.get("gamma"), x.ndim, 1.0) + _channel(a.get("beta"), x.ndim, 0.0)


@op("batch_norm")
def _batch_norm(o: Op, a: Args) -> np.ndarray:
    x = a.f("x")
    mean, var = _channel(a["mean"], x.ndim, 0), _channel(a["variance"], x.ndim, 1)
    y = (x - mean) / np.sqrt(var + a.scalar("epsilon", 1e-5))
    return y * _channel(a.get("gamma"), x.ndim, 1.0) + _channel(a.get("beta"), x.ndim, 0.0)


# ------------------------------------------------------------------------------------------------
# Data movement
# ------------------------------------------------------------------------------------------------


@op("reshape")
def _reshape(o: Op, a: Args) -> np.ndarray:
    x = a["x"]
    shape = [d if d != 0 else x.shape[i] for i, d in enumerate(a.ints("shape"))]
    return x.reshape(shape)


@op("expand_dims")
def _expand_dims(o: Op, a: Args) -> np.ndarray:
    x = a["x"]
    rank = x.ndim + len(a.ints("axes"))
    return np.expand_dims(x, tuple(sorted(ax % rank for ax in a.ints("axes"))))


@op("squeeze")
def _squeeze(o: Op, a: Args) -> np.ndarray:
    axes = a.ints("axes")
    return np.squeeze(a["x"], axis=None if axes is None else tuple(axes))


@op("transpose")
def _transpose(o: Op, a: Args) -> np.ndarray:
    return np.transpose(a["x"], a.ints("perm"))


@op("slice_by_index")
def _slice_by_index(o: Op, a: Args) -> np.ndarray:
    x = a["x"]
    n = x.ndim
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride", [1] * n)
    begin_mask, end_mask = a.ints("begin_mask", [0] * n), a.ints("end_mask", [0] * n)
    squeeze = a.ints("squeeze_mask", [0] * n)
    index = []
    for i in range(n):
        b = None if begin_mask[i] else begin[i]
        e = None if end_mask[i] else end[i]
        index.append(b if squeeze[i] else slice(b, e, stride[i]))
    return x[tuple(index)]


@op("slice_by_size")
def _slice_by_size(o: Op, a: Args) -> np.ndarray:
    x = a["x"]
    begin, size = a.ints("begin"), a.ints("size")
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


@op("pad")
def _pad(o: Op, a: Args) -> np.ndarray:
    x, pad = a["x"], a.ints("pad")
    lead = x.ndim - len(pad) // 2
    widths = [(0, 0)] * lead + [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    mode = a.scalar("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, constant_values=a.scalar("constant_val", 0.0))
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


@op("crop")
def _crop(o: Op, a: Args) -> np.ndarray:
    x, (top, bottom), (left, right) = a["x"], a.ints("crop_height"), a.ints("crop_width")
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


@op("tile")
def _tile(o: Op, a: Args) -> np.ndarray:
    return np.tile(a["x"], a.ints("reps"))


@op("concat")
def _concat(o: Op, a: Args) -> np.ndarray:
    values, axis = a["values"], a.scalar("axis")
    if a.scalar("interleave", False):
        return np.stack(values, axis=axis + 1 if axis >= 0 else axis).reshape(o.outputs[0].shape)
    return np.concatenate(values, axis=axis)


@op("stack")
def _stack(o: Op, a: Args) -> np.ndarray:
    return np.stack(a["values"], axis=a.scalar("axis"))


@op("split")
def _split(o: Op, a: Args) -> list[np.ndarray]:
    x, axis = a["x"], a.scalar("axis")
    sizes = a.ints("split_sizes") or [x.shape[axis] // a.scalar("num_splits")] * a.scalar("num_splits")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


@op("reverse")
def _reverse(o: Op, a: Args) -> np.ndarray:
    axes = a.ints("axes")
    return np.flip(a["x"], axis=None if axes is None else tuple(axes))


def _source_coords(out_len: int, in_len: int, scale: float, align_corners: bool, half_pixel: bool) -> np.ndarray:
    i = np.arange(out_len, dtype=np.float64)
    if align_corners:
        return i * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros(out_len)
    if half_pixel:
        return np.clip((i + 0.5) / scale - 0.5, 0, in_len - 1)
    return np.clip(i / scale, 0, in_len - 1)


@op("upsample_bilinear")
def _upsample_bilinear(o: Op, a: Args) -> np.ndarray:
    y = a.f("x")
    out_shape = o.outputs[0].shape
    align = bool(a.scalar("align_corners", True))
    half = bool(a.scalar("half_pixel_centers", not align))
    for axis, scale in ((-2, a.scalar("scale_factor_height", 1.0)), (-1, a.scalar("scale_factor_width", 1.0))):
        coords = _source_coords(out_shape[axis], y.shape[axis], scale, align, half)
        lo = np.floor(coords).astype(np.int64)
        hi = np.minimum(lo + 1, y.shape[axis] - 1)
        frac = (coords - lo).astype(np.float32).reshape((-1,) + (1,) * (-axis - 1))
        y = np.take(y, lo, axis=axis) * (1 - frac) + np.take(y, hi, axis=axis) * frac
    return y


@op("upsample_nearest_neighbor")
def _upsample_nearest(o: Op, a: Args) -> np.ndarray:
    y = a["x"]
    out_shape = o.outputs[0].shape
    for axis, scale in ((-2, a.scalar("scale_factor_height", 1)), (-1, a.scalar("scale_factor_width", 1))):
        index = np.minimum(np.floor(np.arange(out_shape[axis]) / scale).astype(np.int64), y.shape[axis] - 1)
        y = np.take(y, index, axis=axis)
    return y


@op("depth_to_space")
def _depth_to_space(o: Op, a: Args) -> np.ndarray:
    x, b = a["x"], a.scalar("block_size")
    n, c, h, w = x.shape
    return x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@op("pixel_shuffle")
def _pixel_shuffle(o: Op, a: Args) -> np.ndarray:
    x, b = a["x"], a.scalar("upscale_factor")
    n, c, h, w = x.shape
    return x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (b * b), h * b, w * b)


@op("pixel_unshuffle")
def _pixel_unshuffle(o: Op, a: Args) -> np.ndarray:
    x, b = a["x"], a.scalar("downscale_factor")
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * b * b, h // b, w // b)


@op("space_to_depth")
def _space_to_depth(o: Op, a: Args) -> np.ndarray:
    x, b = a["x"], a.scalar("block_size")
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)


# ------------------------------------------------------------------------------------------------
# Indexing and the rest
# ------------------------------------------------------------------------------------------------


def _wrap(indices: np.ndarray, size: int) -> np.ndarray:
    indices = indices.astype(np.int64)
    return np.where(indices < 0, indices + size, indices)


@op("gather")
def _gather(o: Op, a: Args) -> np.ndarray:
    x, axis = a["x"], a.scalar("axis", 0)
    if a.scalar("batch_dims", 0):
        raise NotImplementedError("gather with batch_dims")
    return np.take(x, _wrap(a["indices"], x.shape[axis]), axis=axis)


@op("gather_along_axis")
def _gather_along_axis(o: Op, a: Args) -> np.ndarray:
    x, axis = a["x"], a.scalar("axis", 0)
    return np.take_along_axis(x, _wrap(a["indices"], x.shape[axis]), axis=axis)


@op("gather_nd")
def _gather_nd(o: Op, a: Args) -> np.ndarray:
    x, indices = a["x"], a["indices"].astype(np.int64)
    if a.scalar("batch_dims", 0):
        raise NotImplementedError("gather_nd with batch_dims")
    k = indices.shape[-1]
    return x[tuple(np.moveaxis(indices, -1, 0))] if k else np.broadcast_to(x, indices.shape[:-1] + x.shape)


@op("scatter_nd")
def _scatter_nd(o: Op, a: Args) -> np.ndarray:
    data, indices, updates = a["data"].copy(), a["indices"].astype(np.int64), a["updates"]
    if a.scalar("mode", "add") != "update":
        raise NotImplementedError("scatter_nd modes other than update")
    data[tuple(np.moveaxis(indices, -1, 0))] = updates
    return data


@op("scatter_along_axis")
def _scatter_along_axis(o: Op, a: Args) -> np.ndarray:
    data, axis = a["data"].copy(), a.scalar("axis", 0)
    if a.scalar("mode", "add") != "update":
        raise NotImplementedError("scatter_along_axis modes other than update")
    np.put_along_axis(data, _wrap(a["indices"], data.shape[axis]), a["updates"], axis=axis)
    return data


@op("one_hot")
def _one_hot(o: Op, a: Args) -> np.ndarray:
    indices, depth, axis = a["indices"].astype(np.int64), a.scalar("one_hot_vector_size"), a.scalar("axis", -1)
    hot = np.eye(depth, dtype=bool)[np.where(indices < 0, indices + depth, indices)]
    hot = np.moveaxis(hot, -1, axis)
    return np.where(hot, a.scalar("on_value", 1), a.scalar("off_value", 0))


@op("topk")
def _topk(o: Op, a: Args) -> tuple[np.ndarray, np.ndarray]:
    x, k, axis = a.f("x"), a.scalar("k", 1), a.scalar("axis", -1)
    ascending = bool(a.scalar("ascending", False))
    order = np.argsort(x if ascending else -x, axis=axis, kind="stable")
    index = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, index, axis=axis), index


@op("cumsum")
def _cumsum(o: Op, a: Args) -> np.ndarray:
    x, axis = a.f("x"), a.scalar("axis", 0)
    if a.scalar("reverse", False):
        x = np.flip(x, axis)
    y = np.cumsum(x, axis=axis)
    if a.scalar("exclusive", False):
        y = y - x
    return np.flip(y, axis) if a.scalar("reverse", False) else y


@op("band_part")
def _band_part(o: Op, a: Args) -> np.ndarray:
    x, lower, upper = a["x"], a.scalar("lower", -1), a.scalar("upper", -1)
    rows, cols = np.indices(x.shape[-2:])
    keep = ((lower < 0) | (rows - cols <= lower)) & ((upper < 0) | (cols - rows <= upper))
    return np.where(keep, x, np.zeros_like(x))


@op("range_1d")
def _range(o: Op, a: Args) -> np.ndarray:
    return np.arange(a.scalar("start"), a.scalar("end"), a.scalar("step"))


@op("fill")
def _fill(o: Op, a: Args) -> np.ndarray:
    return np.full(a.ints("shape"), a.scalar("value", 0.0))


@op("fill_like")
def _fill_like(o: Op, a: Args) -> np.ndarray:
    return np.full(a["ref_tensor"].shape, a.scalar("value", 0.0))


@op("shape")
def _shape(o: Op, a: Args) -> np.ndarray:
    return np.asarray(a["x"].shape, dtype=np.int32)
