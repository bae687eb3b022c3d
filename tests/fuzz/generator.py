"""Random ONNX graphs for differential testing of anec's hardware path (issue 17).

`random_graph(seed)` builds a valid ONNX model (checked with `onnx.checker` full check) from a table
of op generators over random static shapes, some of which stress the ANE's limits (wide rows, many
channels, odd sizes, big kernels, strides past 2). Every tensor is capped at `MAX_ELEMENTS`, so a
campaign never allocates absurd memory itself, and every intermediate value of a graph is checked
with onnxruntime to stay well inside fp16's range, above and below (a graph that overflows, or that
computes mostly with subnormal numbers, is regenerated), so a difference between anec's paths is a
bug, not an overflow or underflow the graph asked for. `random_graph(seed, hazards=True)` instead adds
fp16's classic hazards and keeps only float32-finite graphs: the calibrated campaign (issue 18)
checks that anec names where the error enters whenever fp16 misses float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20
MAX_ELEMENTS = 1 << 22
"""Cap on every tensor's element count (4M fp32 values = 16 MB): large enough to need tiling."""
MAX_MACS = 1 << 28
"""Cap on a conv's or matmul's multiply-accumulates, so one graph runs in seconds."""
MAX_WEIGHTS = 1 << 21
"""Cap on a conv's or matmul's weights (4 MB in fp16, 64 kernel-memory tiles): a larger one compiles
to thousands of tasks, minutes per graph, without exercising anything a smaller one does not."""
MAX_ABS = 2000.0
"""Largest magnitude an intermediate value may reach: far from fp16's 65504 and the MAC's 2^15."""
MAX_NODES = 8
FP16_TINY = 2.0**-14
MAX_SUBNORMAL = 0.005
"""Largest share of an intermediate's values below fp16's smallest normal number: the MAC flushes
such operands to zero (a hardware quirk the simulator models and the interpreter does not), so a graph
made of them (softmax over thousands of entries, then a product) differs for no fault of the compiler."""


@dataclass
class Graph:
    """A graph under construction: nodes, weights, and the shape of every tensor made so far."""

    rng: np.random.Generator
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    counter: int = 0

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}{self.counter}"

    def const(self, value: np.ndarray, base: str = "w") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, values: list[int]) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "i")

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        return self.const((self.rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32))

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str | None:
        """Add `op` with one result of `shape`; None (and nothing added) when the result is too big."""
        if int(np.prod(shape)) > MAX_ELEMENTS or min(shape, default=1) < 1:
            return None
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.counter}", **attrs))
        self.shapes[out] = tuple(int(d) for d in shape)
        return out


Gen = Callable[[Graph, str], "str | None"]


def _pick(rng: np.random.Generator, values, p=None):
    return values[int(rng.choice(len(values), p=p))]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _window(size: int, k: int, s: int, d: int, pads: tuple[int, int]) -> int:
    return (size + pads[0] + pads[1] - d * (k - 1) - 1) // s + 1


# --- op generators: each takes the graph and an existing tensor, returns the new tensor or None ---

def gen_conv(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) != 4:
        return None
    n, c, h, w = shape
    rng = g.rng
    groups = c if rng.random() < 0.2 else _pick(rng, _divisors(c)) if rng.random() < 0.3 else 1
    per = int(_pick(rng, [1, 2, 4, 8, 16, 32, 64, 128, 512]))
    out_c = groups * max(1, per // groups) if groups > 1 and groups == c else groups * per if groups > 1 else per
    big = rng.random() < 0.15
    kh = int(rng.integers(1, 16 if big else 6))
    kw = int(rng.integers(1, 16 if big else 6))
    sh, sw = (int(rng.integers(1, 6)), int(rng.integers(1, 6))) if rng.random() < 0.4 else \
        (int(rng.integers(1, 24)), int(rng.integers(1, 24))) if rng.random() < 0.1 else (1, 1)
    dh, dw = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if rng.random() < 0.2 else (1, 1)
    pads = [int(rng.integers(0, max(kh, 1))), int(rng.integers(0, max(kw, 1))),
            int(rng.integers(0, max(kh, 1))), int(rng.integers(0, max(kw, 1)))]
    oh, ow = _window(h, kh, sh, dh, (pads[0], pads[2])), _window(w, kw, sw, dw, (pads[1], pads[3]))
    if oh < 1 or ow < 1 or n * out_c * oh * ow * (c // groups) * kh * kw > MAX_MACS or out_c * (c // groups) * kh * kw > MAX_WEIGHTS:
        return None
    ins = [x, g.weight((out_c, c // groups, kh, kw), c // groups * kh * kw)]
    if rng.random() < 0.5:
        ins.append(g.const((rng.standard_normal(out_c) * 0.1).astype(np.float32)))
    return g.node("Conv", ins, (n, out_c, oh, ow), kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw],
                  pads=pads, group=groups)


def gen_conv_transpose(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) != 4:
        return None
    n, c, h, w = shape
    rng = g.rng
    groups = _pick(rng, _divisors(c)) if rng.random() < 0.2 else 1
    out_c = groups * int(_pick(rng, [1, 2, 4, 8, 16, 32]))
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    sh, sw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    pads = [int(rng.integers(0, kh)), int(rng.integers(0, kw)), int(rng.integers(0, kh)), int(rng.integers(0, kw))]
    oph, opw = int(rng.integers(0, sh)), int(rng.integers(0, sw))
    oh = sh * (h - 1) + oph + kh - pads[0] - pads[2]
    ow = sw * (w - 1) + opw + kw - pads[1] - pads[3]
    if oh < 1 or ow < 1 or n * c * h * w * (out_c // groups) * kh * kw > MAX_MACS or c * (out_c // groups) * kh * kw > MAX_WEIGHTS:
        return None
    wt = g.weight((c, out_c // groups, kh, kw), c // groups * kh * kw // max(sh * sw, 1))
    return g.node("ConvTranspose", [x, wt], (n, out_c, oh, ow), kernel_shape=[kh, kw], strides=[sh, sw], pads=pads,
                  output_padding=[oph, opw], group=groups)


def gen_matmul(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    if len(shape) < 2:
        return None
    k = shape[-1]
    if rng.random() < 0.3:  # a product of two run-time tensors: (x s) @ (x s)^T over the last two axes
        if int(np.prod(shape)) * shape[-2] > MAX_MACS:
            return None
        # s = k^-1/4 on both sides, not 1/sqrt(k) on one: operands stay normal fp16 numbers (the MAC
        # flushes subnormal operands, a hardware quirk the interpreter does not model)
        scaled = g.node("Mul", [x, g.const(np.float32(k ** -0.25))], shape)
        perm = [*list(range(len(shape) - 2)), len(shape) - 1, len(shape) - 2]
        t = g.node("Transpose", [scaled], tuple(shape[p] for p in perm), perm=perm) if scaled else None
        return g.node("MatMul", [scaled, t], (*shape[:-1], shape[-2])) if t else None
    n = int(_pick(rng, [1, 3, 8, 16, 64, 100, 256, 1000, 3000]))
    if int(np.prod(shape)) * n > MAX_MACS or k * n > MAX_WEIGHTS:
        return None
    if len(shape) == 2 and rng.random() < 0.5:
        ta = int(rng.random() < 0.3)
        a = x
        if ta:
            a = g.node("Transpose", [x], (shape[1], shape[0]), perm=[1, 0])
            if a is None:
                return None
        ins = [a, g.weight((k, n), k)]
        if rng.random() < 0.6:
            ins.append(g.const((rng.standard_normal(n if rng.random() < 0.7 else 1) * 0.1).astype(np.float32)))
        return g.node("Gemm", ins, (shape[0], n), transA=ta, alpha=float(_pick(rng, [1.0, 0.5])))
    return g.node("MatMul", [x, g.weight((k, n), k)], (*shape[:-1], n))


BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


def gen_binary(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    op = _pick(rng, BINARY)
    same = [t for t, s in g.shapes.items() if s == shape and t != x]
    if same and op not in ("Div",) and rng.random() < 0.5:
        other = _pick(rng, same)
        if op == "Mul":  # keep products bounded
            other = g.node("Tanh", [other], shape)
            if other is None:
                return None
    else:
        bshape = tuple(d if rng.random() < 0.4 else 1 for d in shape)
        if rng.random() < 0.3:  # fewer leading axes: numpy-style rank broadcasting
            bshape = bshape[int(rng.integers(0, len(bshape) + 1)):]
        value = np.asarray(rng.standard_normal(bshape), dtype=np.float32)
        if op in ("Mul", "Div"):  # magnitudes in [0.5, 2): no overflow, no division by ~0
            value = np.where(value < 0, -1.0, 1.0).astype(np.float32) * (0.5 + np.abs(value) % 1.5)
        other = g.const(value)
    ins = [x, other] if rng.random() < 0.7 or op == "Div" else [other, x]
    return g.node(op, ins, shape)


def gen_unary(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    op = _pick(rng, ["Relu", "Sigmoid", "Tanh", "HardSigmoid", "LeakyRelu", "Gelu", "Softmax", "Abs", "Neg", "Elu",
                     "Clip", "HardSwish"])
    if op == "HardSigmoid":
        return g.node(op, [x], shape, alpha=float(rng.uniform(0.1, 0.5)), beta=float(rng.uniform(0.2, 0.7)))
    if op == "LeakyRelu":
        return g.node(op, [x], shape, alpha=float(rng.uniform(0.01, 0.3)))
    if op == "Gelu":
        return g.node(op, [x], shape, approximate=str(_pick(rng, ["none", "tanh"])))
    if op == "Softmax":
        return g.node(op, [x], shape, axis=int(rng.integers(-len(shape), len(shape))))
    if op == "Clip":
        lo = float(rng.uniform(-2, 0))
        return g.node(op, [x, g.const(np.float32(lo)), g.const(np.float32(lo + rng.uniform(0.5, 3)))], shape)
    return g.node(op, [x], shape)


def gen_reduce(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    op = _pick(rng, ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
    axes = sorted({int(a) for a in rng.choice(len(shape), size=int(rng.integers(1, len(shape) + 1)), replace=False)})
    keep = int(rng.random() < 0.6)
    out = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in axes)
    if not out:
        return None
    count = int(np.prod([shape[a] for a in axes]))
    y = g.node(op, [x, g.ints(axes)], out, keepdims=keep)
    if y is not None and op == "ReduceSum" and count > 16:  # keep the sum's magnitude in range
        y = g.node("Mul", [y, g.const(np.float32(1 / np.sqrt(count)))], out)
    return y


def gen_pool(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) != 4:
        return None
    rng = g.rng
    n, c, h, w = shape
    if rng.random() < 0.2:
        return g.node(_pick(rng, ["GlobalAveragePool", "GlobalMaxPool"]), [x], (n, c, 1, 1))
    op = _pick(rng, ["MaxPool", "AveragePool"])
    kh, kw = (int(rng.integers(1, 8)), int(rng.integers(1, 8))) if rng.random() < 0.85 else \
        (int(rng.integers(8, 40)), int(rng.integers(1, 40)))
    sh, sw = (int(rng.integers(1, 5)), int(rng.integers(1, 5))) if rng.random() < 0.8 else \
        (int(rng.integers(1, 20)), int(rng.integers(1, 20)))
    pads = [int(rng.integers(0, kh)), int(rng.integers(0, kw)), int(rng.integers(0, kh)), int(rng.integers(0, kw))]
    oh, ow = _window(h, kh, sh, 1, (pads[0], pads[2])), _window(w, kw, sw, 1, (pads[1], pads[3]))
    if oh < 1 or ow < 1:
        return None
    attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": pads}
    if op == "AveragePool":
        attrs["count_include_pad"] = int(rng.random() < 0.5)
    return g.node(op, [x], (n, c, oh, ow), **attrs)


def gen_reshape(g: Graph, x: str) -> str | None:
    shape = list(g.shapes[x])
    rng = g.rng
    if len(shape) >= 2 and rng.random() < 0.5:  # merge two neighbouring axes
        i = int(rng.integers(0, len(shape) - 1))
        new = [*shape[:i], shape[i] * shape[i + 1], *shape[i + 2:]]
    else:  # split an axis in two, or add a unit axis
        i = int(rng.integers(0, len(shape)))
        divs = [d for d in _divisors(shape[i]) if 1 < d < shape[i]]
        if divs and len(shape) < 5:
            d = int(_pick(rng, divs))
            new = [*shape[:i], d, shape[i] // d, *shape[i + 1:]]
        elif len(shape) < 4:
            new = [*shape[:i], 1, *shape[i:]]
        else:
            return None
    return g.node("Reshape", [x, g.ints(new)], tuple(new))


def gen_transpose(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    perm = [int(p) for p in g.rng.permutation(len(shape))]
    return g.node("Transpose", [x], tuple(shape[p] for p in perm), perm=perm)


def gen_slice(g: Graph, x: str) -> str | None:
    shape = list(g.shapes[x])
    rng = g.rng
    axis = int(rng.integers(0, len(shape)))
    size = shape[axis]
    if size < 2:
        return None
    start = int(rng.integers(0, size))
    end = int(rng.integers(start + 1, size + 1))
    step = int(_pick(rng, [1, 1, 2, 3, 5, 16, 21, 40]))
    shape[axis] = len(range(start, end, step))
    return g.node("Slice", [x, g.ints([start]), g.ints([end]), g.ints([axis]), g.ints([step])], tuple(shape))


def gen_concat(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    axis = int(rng.integers(0, len(shape)))
    fits = [t for t, s in g.shapes.items()
            if len(s) == len(shape) and all(a == b for i, (a, b) in enumerate(zip(s, shape)) if i != axis)]
    parts = [x] + [str(_pick(rng, fits)) for _ in range(int(rng.integers(1, 3)))]
    out = list(shape)
    out[axis] = sum(g.shapes[p][axis] for p in parts)
    return g.node("Concat", parts, tuple(out), axis=axis)


def gen_split(g: Graph, x: str) -> str | None:
    shape = list(g.shapes[x])
    rng = g.rng
    axis = int(rng.integers(0, len(shape)))
    if shape[axis] < 2:
        return None
    cut = int(rng.integers(1, shape[axis]))
    sizes = [cut, shape[axis] - cut]
    outs = [g.name("split"), g.name("split")]
    g.nodes.append(helper.make_node("Split", [x, g.ints(sizes)], outs, name=f"Split_{g.counter}", axis=axis))
    for o, s in zip(outs, sizes):
        g.shapes[o] = tuple(s if i == axis else d for i, d in enumerate(shape))
    return outs[int(rng.integers(0, 2))]


def gen_pad(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    r = len(shape)
    pads = [0] * (2 * r)
    for axis in range(max(0, r - 2), r):
        pads[axis], pads[r + axis] = int(rng.integers(0, 4)), int(rng.integers(0, 4))
    out = tuple(d + pads[i] + pads[r + i] for i, d in enumerate(shape))
    mode = str(_pick(rng, ["constant", "constant", "reflect", "edge"]))
    if mode == "reflect" and any(pads[i] >= shape[i] or pads[r + i] >= shape[i] for i in range(r)):
        mode = "constant"
    ins = [x, g.ints(pads)]
    if mode == "constant":
        ins.append(g.const(np.float32(rng.uniform(-1, 1))))
    return g.node("Pad", ins, out, mode=mode)


def gen_resize(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) != 4:
        return None
    rng = g.rng
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    mode = str(_pick(rng, ["nearest", "linear"]))
    out = (shape[0], shape[1], shape[2] * sh, shape[3] * sw)
    scales = g.const(np.asarray([1, 1, sh, sw], dtype=np.float32))
    attrs = {"mode": mode}
    if mode == "linear":
        attrs["coordinate_transformation_mode"] = str(_pick(rng, ["half_pixel", "align_corners", "asymmetric"]))
    return g.node("Resize", [x, "", scales], out, **attrs)


def gen_layer_norm(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    axis = int(rng.integers(max(0, len(shape) - 2), len(shape)))
    norm = shape[axis:]
    scale = g.const((1 + 0.2 * rng.standard_normal(norm)).astype(np.float32))
    bias = g.const((0.1 * rng.standard_normal(norm)).astype(np.float32))
    return g.node("LayerNormalization", [x, scale, bias], shape, axis=axis, epsilon=1e-5)


def gen_batch_norm(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) < 2:
        return None
    rng = g.rng
    c = shape[1]
    params = [(1 + 0.2 * rng.standard_normal(c)), 0.1 * rng.standard_normal(c), 0.2 * rng.standard_normal(c),
              rng.uniform(0.5, 2.0, c)]
    return g.node("BatchNormalization", [x] + [g.const(p.astype(np.float32)) for p in params], shape, epsilon=1e-5)


def gen_block(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) != 4:
        return None
    n, c, h, w = shape
    rng = g.rng
    b = int(_pick(rng, [2, 3, 4]))
    if rng.random() < 0.5 and h % b == 0 and w % b == 0:
        return g.node("SpaceToDepth", [x], (n, c * b * b, h // b, w // b), blocksize=b)
    if c % (b * b) == 0:
        return g.node("DepthToSpace", [x], (n, c // (b * b), h * b, w * b), blocksize=b,
                      mode=str(_pick(rng, ["DCR", "CRD"])))
    return None


def gen_instance_norm(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    if len(shape) < 3 or int(np.prod(shape[2:])) < 2:
        return None
    c = shape[1]
    rng = g.rng
    scale = g.const((1 + 0.2 * rng.standard_normal(c)).astype(np.float32))
    bias = g.const((0.1 * rng.standard_normal(c)).astype(np.float32))
    return g.node("InstanceNormalization", [x, scale, bias], shape, epsilon=1e-5)


def gen_expand(g: Graph, x: str) -> str | None:
    shape = g.shapes[x]
    rng = g.rng
    units = [i for i, d in enumerate(shape) if d == 1]
    if not units:
        return None
    out = list(shape)
    for i in units:
        if rng.random() < 0.6:
            out[i] = int(_pick(rng, [2, 3, 4, 16, 64]))
    if rng.random() < 0.5:
        return g.node("Expand", [x, g.ints(out)], tuple(out))
    repeats = [o // d for o, d in zip(out, shape)]
    return g.node("Tile", [x, g.ints(repeats)], tuple(out))


def gen_exp_like(g: Graph, x: str) -> str | None:
    """Exp, Log, Sqrt, Reciprocal on inputs made safe first (tanh, abs + 0.5)."""
    shape = g.shapes[x]
    rng = g.rng
    op = str(_pick(rng, ["Exp", "Log", "Sqrt", "Reciprocal", "Softplus", "Erf", "Sin", "Cos"]))
    if op in ("Exp", "Softplus", "Erf", "Sin", "Cos"):
        safe = g.node("Tanh", [x], shape)
    else:
        safe = g.node("Add", [g.node("Abs", [x], shape) or x, g.const(np.float32(0.5))], shape)
    return g.node(op, [safe], shape) if safe else None


def _scaled(g: Graph, x: str, lo: float, hi: float) -> str | None:
    return g.node("Mul", [x, g.const(np.float32(g.rng.uniform(lo, hi)))], g.shapes[x])


def _untyped(g: Graph, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str | None:
    """A node whose result is not float32 (bool, int): kept out of `g.shapes`, so no later generator
    reads it or makes it a graph output; the caller casts it back."""
    out = g.node(op, inputs, shape, **attrs)
    if out is not None:
        del g.shapes[out]
    return out


def gen_hazard(g: Graph, x: str) -> str | None:
    """One of fp16's classic hazards (`random_graph(seed, hazards=True)`): rounding before a
    discontinuity (Floor, Ceil, Round, a comparison, a cast to an integer, ArgMax), Tan near its pole,
    cancellation, a value past 65504, a sum that overflows, values that underflow to zero."""
    shape = g.shapes[x]
    rng = g.rng
    kind = str(_pick(rng, ["round", "compare", "cast", "argmax", "tan", "cancel", "overflow", "sum", "underflow"]))
    f32 = TensorProto.FLOAT
    if kind == "round":
        y = _scaled(g, x, 3.0, 50.0)
        return g.node(str(_pick(rng, ["Floor", "Ceil", "Round"])), [y], shape) if y else None
    if kind == "compare":
        c = g.const(np.float32(rng.uniform(-0.5, 0.5)))
        flag = _untyped(g, str(_pick(rng, ["Greater", "Less", "GreaterOrEqual", "LessOrEqual"])), [x, c], shape)
        return g.node("Cast", [flag], shape, to=f32) if flag else None
    if kind == "cast":
        y = _scaled(g, x, 3.0, 50.0)
        i = _untyped(g, "Cast", [y], shape, to=TensorProto.INT32) if y else None
        return g.node("Cast", [i], shape, to=f32) if i else None
    if kind == "argmax":
        axis = int(rng.integers(0, len(shape)))
        i = _untyped(g, "ArgMax", [x], tuple(1 if a == axis else d for a, d in enumerate(shape)), axis=axis, keepdims=1)
        return g.node("Cast", [i], tuple(1 if a == axis else d for a, d in enumerate(shape)), to=f32) if i else None
    if kind == "tan":
        y = _scaled(g, x, 1.0, 1.6)
        return g.node("Tan", [y], shape) if y else None
    if kind == "cancel":
        big = float(rng.uniform(300, 3000))
        y = g.node("Add", [x, g.const(np.float32(big))], shape)
        return g.node("Sub", [y, g.const(np.float32(big))], shape) if y else None
    if kind == "overflow":
        return _scaled(g, x, 3e4, 2e5)
    if kind == "sum":
        axis = int(np.argmax(shape))
        y = _scaled(g, x, 100.0, 3000.0)
        return g.node("ReduceSum", [y, g.ints([axis])], tuple(1 if a == axis else d for a, d in enumerate(shape)), keepdims=1) if y else None
    y = _scaled(g, x, 1e-8, 1e-6)  # underflow
    return g.node("Mul", [y, g.const(np.float32(1e6))], shape) if y else None


OPS: dict[str, tuple[float, Gen]] = {
    "conv": (4.0, gen_conv),
    "conv_transpose": (1.0, gen_conv_transpose),
    "matmul": (2.0, gen_matmul),
    "binary": (3.0, gen_binary),
    "unary": (3.0, gen_unary),
    "reduce": (1.0, gen_reduce),
    "pool": (1.5, gen_pool),
    "reshape": (1.0, gen_reshape),
    "transpose": (1.0, gen_transpose),
    "slice": (1.0, gen_slice),
    "concat": (1.0, gen_concat),
    "split": (0.7, gen_split),
    "pad": (1.0, gen_pad),
    "resize": (0.7, gen_resize),
    "layer_norm": (1.0, gen_layer_norm),
    "batch_norm": (0.7, gen_batch_norm),
    "block": (0.5, gen_block),
    "instance_norm": (0.5, gen_instance_norm),
    "expand": (0.5, gen_expand),
    "exp_like": (1.0, gen_exp_like),
}
"""Op family -> (relative weight, generator)."""
HAZARDS: dict[str, tuple[float, Gen]] = {"hazard": (2.0, gen_hazard)}
"""The families `random_graph(seed, hazards=True)` adds."""


def _input_shape(rng: np.random.Generator) -> tuple[int, ...]:
    kind = rng.random()
    if kind < 0.12:  # a wide row: the ANE's width limit
        return (1, int(_pick(rng, [1, 2, 3, 4, 8])), 1, int(rng.integers(1000, 20001)))
    if kind < 0.22:  # many channels
        return (1, int(_pick(rng, [256, 512, 768, 1024, 2048, 4096])), int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    if kind < 0.35:  # a sequence (rank 3) or a matrix (rank 2)
        seq = (int(_pick(rng, [1, 2])), int(rng.integers(1, 300)), int(_pick(rng, [16, 64, 96, 197, 384, 768])))
        return seq[1:] if rng.random() < 0.4 else seq
    c = int(_pick(rng, [1, 2, 3, 4, 5, 8, 16, 17, 32, 64, 128]))
    h = int(_pick(rng, [1, 2, 3, 7, 8, 13, 16, 28, 31, 56, 64, 100, 224]))
    w = int(_pick(rng, [1, 2, 3, 7, 8, 13, 16, 28, 31, 56, 64, 100, 224, 513]))
    n = int(_pick(rng, [1, 1, 1, 2, 3]))
    shape = (n, c, h, w)
    while int(np.prod(shape)) > MAX_ELEMENTS // 4:
        shape = (shape[0], shape[1], max(1, shape[2] // 2), shape[3])
    return shape


def _build(rng: np.random.Generator, hazards: bool = False) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    g = Graph(rng)
    first = g.name("x")
    g.shapes[first] = _input_shape(rng)
    g.inputs.append(first)
    if rng.random() < 0.3:  # a second input of the same shape, for binary ops and concats
        second = g.name("x")
        g.shapes[second] = g.shapes[first]
        g.inputs.append(second)
    families = {**OPS, **HAZARDS} if hazards else OPS
    names = list(families)
    weights = np.asarray([families[n][0] for n in names])
    current = first
    for _ in range(int(rng.integers(1, MAX_NODES + 1))):
        for _attempt in range(8):
            family = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            y = families[family][1](g, current)
            if y is not None:
                current = y
                break
    produced = [t for t in g.shapes if t not in g.inputs]
    if not produced:
        current = g.node("Relu", [first], g.shapes[first]) or first
        produced = [current]
    outputs = [current]
    if len(produced) > 1 and rng.random() < 0.3:
        extra = str(_pick(rng, [t for t in produced if t != current]))
        outputs.append(extra)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, "fuzz",
        [helper.make_tensor_value_info(i, f32, list(g.shapes[i])) for i in g.inputs],
        [helper.make_tensor_value_info(o, f32, list(g.shapes[o])) for o in outputs],
        g.inits)
    used = {i for node in g.nodes for i in node.input}
    graph.ClearField("initializer")
    graph.initializer.extend(t for t in g.inits if t.name in used)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    inputs = {i: rng.standard_normal(g.shapes[i]).astype(np.float32) for i in g.inputs}
    return model, inputs


def _all_values(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every intermediate value onnxruntime computes (optimisations off), of every type."""
    import onnxruntime

    probe = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in probe.graph.value_info}
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for out in node.output:
            if out and out not in known:
                probe.graph.output.append(helper.make_tensor_value_info(out, types.get(out, TensorProto.FLOAT), None))
                known.add(out)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def _all_values_bounded(values: list[np.ndarray]) -> bool:
    """Whether every value is finite, within `MAX_ABS`, and at most `MAX_SUBNORMAL` of each tensor is
    subnormal in fp16."""
    return all(np.isfinite(v).all() and np.abs(v).max(initial=0) <= MAX_ABS and _subnormal_share(v) <= MAX_SUBNORMAL
               for v in values)


def _all_values_finite(values: list[np.ndarray]) -> bool:
    """Whether every float value is finite in float32 (a hazard graph's reference must be usable)."""
    return all(np.isfinite(v).all() for v in values if v.dtype.kind == "f")


def _subnormal_share(v: np.ndarray) -> float:
    magnitude = np.abs(v)
    return float(np.count_nonzero((magnitude > 0) & (magnitude < FP16_TINY))) / max(v.size, 1)


def random_graph(seed: int, hazards: bool = False) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A valid ONNX model and seeded inputs for `seed` (the same seed always gives the same graph).
    With `hazards`, the graph may also hold fp16 hazards (`gen_hazard`) and its values need only be
    finite in float32: the graphs of the calibrated campaign, where fp16 error is what is measured."""
    for attempt in range(20):
        rng = np.random.default_rng([seed, attempt])
        model, inputs = _build(rng, hazards)
        onnx.checker.check_model(model, full_check=True)
        if (_all_values_finite if hazards else _all_values_bounded)(_all_values(model, inputs)):
            return model, inputs
    raise RuntimeError(f"seed {seed}: no graph with bounded values in 20 attempts")


def describe(model: onnx.ModelProto) -> str:
    """One line: the graph's input shapes and its ops in order."""
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    ops = " ".join(n.op_type for n in model.graph.node)
    return f"{shapes} -> {ops}"
