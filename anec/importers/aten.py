"""ATen → `ane`/`host`: the op handler table of the PyTorch importer.

One small handler per ATen op (`HANDLERS["aten.convolution.default"]`). A handler receives a
`NodeBuilder` for one FX node: the node's arguments bound to its schema (`e["weight"]`), its result
shapes and dtypes (`e.out`), and the op builder's helpers (`anec.builder`), which name every op
after the node. It returns the
node's value(s) as SSA values, or a constant tensor when the result does not depend on run-time
data; returning `None` declines, and the node becomes `host.op "aten.<op>.<overload>"`, which the
runtime executes eagerly with torch. Ops without a handler become host ops the same way.

Argument values are SSA values (run-time tensors), `torch.Tensor`s (constants: weights, folded
subgraphs) or plain Python values. This module imports torch: only the torch routes load it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch
from xdsl.dialects.builtin import (
    ArrayAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
    f64,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue

from anec.builder import AppendingBuilder, OpT
from anec.compression import CompressedWeight
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of
from anec.dialects.discardable import NAME_ATTR
from anec.dialects.host import HostOp
from anec.errors import AnecError
from anec.registry import Registry
from anec.types import numpy_dtype, xdsl_element_type
from anec.weights import WeightStore

# ------------------------------------------------------------------------------------------------
# dtypes
# ------------------------------------------------------------------------------------------------


def numpy_of(dtype: torch.dtype) -> np.dtype:
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return torch.empty((), dtype=dtype).numpy().dtype


def element_type(dtype: torch.dtype) -> Attribute:
    return xdsl_element_type(numpy_of(dtype))


_TORCH_OF_NUMPY = {np.dtype(d): t for t, d in ((t, numpy_of(t)) for t in (
    torch.float16, torch.float32, torch.float64, torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8))}


def torch_dtype_of(v: SSAValue) -> torch.dtype:
    return _TORCH_OF_NUMPY[numpy_dtype(element_type_of(v))]


# ------------------------------------------------------------------------------------------------
# The per-node builder
# ------------------------------------------------------------------------------------------------

Value = Any
"""An SSA value, a constant `torch.Tensor`, a Python scalar/list, or a tuple of these."""


class Declined(Exception):
    """A handler cannot map these arguments onto `ane` ops; the node becomes a host op."""


def decline(why: str) -> NoReturn:
    raise Declined(why)


class NodeBuilder(AppendingBuilder):
    """Builds the `ane` ops of one FX node, every op named after the node; reads the node's arguments
    (`b["weight"]`) and result specs (`out`, `shape`, `dtype`)."""

    def __init__(self, node: torch.fx.Node, args: Mapping[str, Value], out: Sequence[tuple[tuple[int, ...], torch.dtype] | None],
                 store: WeightStore, constant: Callable[[torch.Tensor], SSAValue]):
        super().__init__(store)
        self.node = node
        self.args = args
        self.out = out
        self.constants: dict[int, tuple[torch.Tensor, SSAValue]] = {}
        """Constants made for this node (they join the module with `ops`)."""
        self._constant = constant

    def __getitem__(self, name: str) -> Value:
        return self.args[name]

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.out_type(0)[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.out_type(0)[1]

    def out_type(self, index: int) -> tuple[tuple[int, ...], torch.dtype]:
        """(shape, dtype) of the node's output `index`, which is a tensor."""
        out = self.out[index]
        assert out is not None, f"output {index} of {self.node.name} is not a tensor"
        return out

    @property
    def schema(self) -> torch.FunctionSchema:
        """The node's ATen schema (handlers are registered for OpOverloads only)."""
        target = self.node.target
        assert isinstance(target, torch._ops.OpOverload), f"{self.node.name} calls {target}, not an ATen op"
        return target._schema

    @property
    def op_name(self) -> str:
        """`add` for `aten.add.Tensor`."""
        return self.schema.name.split("::")[-1]

    def insert(self, op: OpT, suffix: str = "") -> OpT:
        op.attributes[NAME_ATTR] = StringAttr(self.name)
        return super().insert(op, suffix)

    def constant(self, array: np.ndarray | CompressedWeight, like: SSAValue | Attribute | None = None, name: str | None = None) -> SSAValue:
        """A constant of the node (named after the weight it comes from, else the node)."""
        assert not isinstance(array, CompressedWeight), "ATen graphs hold no compressed weights"
        return self._constant(torch.from_numpy(np.array(array, dtype=numpy_dtype(element_type_of(like)) if like is not None else None)))

    def value(self, x: Value, dtype: torch.dtype | None = None, rank: int | None = None) -> SSAValue:
        """`x` as an SSA value of `dtype` (default: its own) with at least `rank` axes (1s prepended)."""
        if isinstance(x, SSAValue):
            if dtype is not None:
                x = self.cast(x, element_type(dtype))
            return self.with_rank(x, rank) if rank else x
        t = x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=dtype or scalar_dtype(x))
        t = t.to(dtype or t.dtype)
        if rank and rank > t.dim():
            t = t.reshape((1,) * (rank - t.dim()) + tuple(t.shape))
        return self._constant(t)


def scalar_dtype(x: Any) -> torch.dtype:
    return torch.bool if isinstance(x, bool) else torch.int64 if isinstance(x, int) else torch.float32


def rank_of(x: Value) -> int:
    if isinstance(x, SSAValue):
        return len(shape_of(x))
    return x.dim() if isinstance(x, torch.Tensor) else 0


def probe(x: Value) -> Any:
    """A stand-in with `x`'s dtype and dimensionality for torch's type-promotion rules."""
    if isinstance(x, SSAValue):
        return torch.empty((1,) * min(len(shape_of(x)), 1), dtype=torch_dtype_of(x))
    return x


def common_dtype(*xs: Value) -> torch.dtype:
    """The dtype torch computes `xs` in (tensors outrank 0-d tensors, which outrank Python scalars)."""
    acc = probe(xs[0])
    for x in xs[1:]:
        p = probe(x)
        dtype = torch.result_type(acc, p)
        dims = max((t.dim() for t in (acc, p) if isinstance(t, torch.Tensor)), default=None)
        acc = torch.empty((1,) * dims, dtype=dtype) if dims is not None else torch.zeros((), dtype=dtype).item()
    return acc.dtype if isinstance(acc, torch.Tensor) else scalar_dtype(acc)


def axis(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def axes(dims: Sequence[int] | int | None, rank: int) -> list[int]:
    if dims is None or (isinstance(dims, Sequence) and len(dims) == 0):
        return list(range(rank))
    dims = [dims] if isinstance(dims, int) else dims
    return sorted(axis(d, rank) for d in dims)


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------

Handler = Callable[[NodeBuilder], Value]
HANDLERS: Registry[Handler] = Registry("ATen import handler")
EMITS: dict[str, tuple[type[Operation], ...]] = {}
"""The `ane` ops each ATen op may become besides `HELPER_OPS` (the importer checks; the docs list them)."""
HELPER_OPS: tuple[type[Operation], ...] = (ane.ConstOp, ane.ReshapeOp, ane.CastOp)
"""Ops any handler may add: constants, rank equalization, dtype promotion."""


def handles(*names: str, emits: tuple[type[Operation], ...] = ()) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            HANDLERS.add(n, fn)
            EMITS[n] = emits
        return fn
    return register


def op_key(target: Any) -> str:
    """`aten.add.Tensor` for an OpOverload; the qualified name for other callables."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._schema.name.split('::')[-1]}.{target._overloadname}"
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}"


# --- identities and casts -----------------------------------------------------------------------


@handles("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten.lift_fresh_copy.default",
         "aten.contiguous.default", "aten.dropout.default", "aten.alias_copy.default",
         "aten.detach_copy.default")
def _identity(e: NodeBuilder) -> Value:
    x = e.args.get("self", e.args.get("input"))
    if e.args.get("train"):
        decline("dropout in training mode")
    return x


@handles("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten._to_dtype.default",
         "aten.type_as.default", emits=(ane.CastOp,))
def _to_copy(e: NodeBuilder) -> Value:
    return e.value(e.value(e.args.get("self")), e.dtype)


# --- elementwise ---------------------------------------------------------------------------------

_UNARY: dict[str, tuple[type[ane.UnaryOp], Callable[[NodeBuilder], dict[str, float] | None]]] = {}


def _unary(name: str, op: type[ane.UnaryOp], params: Callable[[NodeBuilder], dict[str, float] | None] = lambda e: {}) -> None:
    _UNARY[name] = (op, params)
    handles(name, emits=(op,))(_emit_unary)


def _emit_unary(e: NodeBuilder) -> Value:
    op, params = _UNARY[op_key(e.node.target)]
    kwargs = params(e)
    if kwargs is None:
        decline("parameters without an ANE equivalent")
    x = e.value(e.value(e["self"]), e.dtype)
    return e.add(op(x, **kwargs))


for _name, _unary_cls in {
    "relu": ane.ReluOp, "sigmoid": ane.SigmoidOp, "tanh": ane.TanhOp, "exp": ane.ExpOp, "log": ane.LogOp,
    "sqrt": ane.SqrtOp, "rsqrt": ane.RsqrtOp, "reciprocal": ane.ReciprocalOp, "abs": ane.AbsOp, "neg": ane.NegOp,
    "erf": ane.ErfOp, "sin": ane.SinOp, "cos": ane.CosOp, "silu": ane.SiluOp, "hardswish": ane.HardswishOp,
    "sign": ane.SignOp,
}.items():
    _unary(f"aten.{_name}.default", _unary_cls)

_unary("aten.hardsigmoid.default", ane.HardsigmoidOp, lambda e: {"alpha": 1 / 6, "beta": 0.5})
_unary("aten.leaky_relu.default", ane.LeakyReluOp, lambda e: {"alpha": float(e["negative_slope"])})
_unary("aten.elu.default", ane.EluOp,
       lambda e: {"alpha": float(e["alpha"])} if e["scale"] == 1 and e["input_scale"] == 1 else None)
_unary("aten.softplus.default", ane.SoftplusOp, lambda e: {} if e["beta"] == 1 and e["threshold"] >= 20 else None)
_unary("aten.hardtanh.default", ane.ClampOp, lambda e: {"min": float(e["min_val"]), "max": float(e["max_val"])})


def _bound(x: Any, default: float) -> float:
    return default if x is None else float(x)


@handles("aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default", emits=(ane.ClampOp,))
def _clamp(e: NodeBuilder) -> Value:
    lo = _bound(e.args.get("min"), -math.inf)
    hi = _bound(e.args.get("max"), math.inf)
    if not e.dtype.is_floating_point:
        decline("integer clamp")
    return e.add(ane.ClampOp(e.value(e.value(e["self"]), e.dtype), min=lo, max=hi))


@handles("aten.gelu.default", emits=(ane.GeluOp,))
def _gelu(e: NodeBuilder) -> Value:
    return e.add(ane.GeluOp(e.value(e.value(e["self"]), e.dtype), e["approximate"]))


def binary(e: NodeBuilder, op: type[ane.BinaryOp | ane.CompareOp], a: Value, b: Value, dtype: torch.dtype) -> SSAValue:
    rank = max(rank_of(a), rank_of(b))
    return e.add(op(e.value(a, dtype, rank), e.value(b, dtype, rank)))


def _scaled(e: NodeBuilder, x: Value, alpha: Any, dtype: torch.dtype) -> Value:
    if alpha is None or alpha == 1:
        return x
    if not isinstance(x, SSAValue):
        return x * alpha
    return binary(e, ane.MulOp, x, alpha, dtype)


_ARITHMETIC = {"add": ane.AddOp, "sub": ane.SubOp, "mul": ane.MulOp, "div": ane.DivOp, "maximum": ane.MaxOp,
               "minimum": ane.MinOp, "pow": ane.PowOp}


def _arithmetic(e: NodeBuilder) -> Value:
    name = e.op_name
    a, b = e["self"], e["other"]
    if name == "rsub":
        name, a, b = "sub", b, a
        b = _scaled(e, b, e.args.get("alpha"), e.dtype)
    elif name in ("add", "sub"):
        b = _scaled(e, b, e.args.get("alpha"), e.dtype)
    dtype = e.dtype
    if dtype == torch.bool:
        decline("boolean arithmetic")
    if name == "div" and not dtype.is_floating_point:
        decline("integer division")
    return binary(e, _ARITHMETIC[name], a, b, dtype)


for _op, _emits in {"add": (ane.AddOp, ane.MulOp), "sub": (ane.SubOp, ane.MulOp), "mul": (ane.MulOp,), "div": (ane.DivOp,),
                    "rsub": (ane.SubOp, ane.MulOp)}.items():
    handles(f"aten.{_op}.Tensor", f"aten.{_op}.Scalar", emits=_emits)(_arithmetic)
handles("aten.maximum.default", emits=(ane.MaxOp,))(_arithmetic)
handles("aten.minimum.default", emits=(ane.MinOp,))(_arithmetic)


@handles("aten.div.Tensor_mode", "aten.div.Scalar_mode", emits=(ane.DivOp,))
def _div_mode(e: NodeBuilder) -> Value:
    # Only truncating division of integers has an `ane` equivalent (ane.div truncates integers).
    if e["rounding_mode"] != "trunc" or e.dtype.is_floating_point or e.dtype == torch.bool:
        decline(f"division with rounding mode {e['rounding_mode']}")
    return binary(e, ane.DivOp, e["self"], e["other"], e.dtype)


@handles("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar", emits=(ane.PowOp, ane.MulOp, ane.SqrtOp, ane.RsqrtOp, ane.ReciprocalOp))
def _pow(e: NodeBuilder) -> Value:
    base, exponent = e["self"], e["exponent"]
    if not e.dtype.is_floating_point:
        decline("integer power")
    if isinstance(exponent, int | float) and not isinstance(base, int | float):
        x = e.value(e.value(base), e.dtype)
        special = {1: lambda: x, 2: lambda: e.add(ane.MulOp(x, x)), 0.5: lambda: e.add(ane.SqrtOp(x)),
                   -1: lambda: e.add(ane.ReciprocalOp(x)), -0.5: lambda: e.add(ane.RsqrtOp(x))}
        if exponent in special:
            return special[exponent]()
    return binary(e, ane.PowOp, base, exponent, e.dtype)


_COMPARE = {"eq": ane.EqualOp, "ne": ane.NotEqualOp, "gt": ane.GreaterOp, "ge": ane.GreaterEqualOp, "lt": ane.LessOp,
            "le": ane.LessEqualOp}


def _compare(e: NodeBuilder) -> Value:
    name = e.op_name
    a, b = e["self"], e["other"]
    return binary(e, _COMPARE[name], a, b, common_dtype(a, b))


for _op, _cls in _COMPARE.items():
    handles(f"aten.{_op}.Tensor", f"aten.{_op}.Scalar", emits=(_cls,))(_compare)


@handles("aten.where.self", emits=(ane.SelectOp,))
def _where(e: NodeBuilder) -> Value:
    cond, a, b = e["condition"], e["self"], e["other"]
    rank = max(rank_of(cond), rank_of(a), rank_of(b))
    return e.add(ane.SelectOp(e.value(cond, torch.bool, rank), e.value(a, e.dtype, rank), e.value(b, e.dtype, rank)))


@handles("aten.masked_fill.Scalar", "aten.masked_fill.Tensor", emits=(ane.SelectOp,))
def _masked_fill(e: NodeBuilder) -> Value:
    x, mask, value = e["self"], e["mask"], e["value"]
    rank = max(rank_of(x), rank_of(mask))
    return e.add(ane.SelectOp(e.value(mask, torch.bool, rank), e.value(value, e.dtype, rank), e.value(x, e.dtype, rank)))


@handles("aten.logical_not.default", "aten.bitwise_not.default", emits=(ane.EqualOp,))
def _logical_not(e: NodeBuilder) -> Value:
    if e.dtype != torch.bool:
        decline("bitwise not of integers")
    return binary(e, ane.EqualOp, e["self"], False, torch.bool)


@handles("aten.logical_and.default", "aten.logical_or.default", "aten.logical_xor.default", "aten.bitwise_and.Tensor",
         "aten.bitwise_or.Tensor", "aten.bitwise_xor.Tensor", emits=(ane.SelectOp, ane.NotEqualOp))
def _logical(e: NodeBuilder) -> Value:
    """Boolean logic as selects on masks: a and b = a ? b : false; a or b = a ? true : b; xor = a != b."""
    a, b = e["self"], e["other"]
    if e.dtype != torch.bool or common_dtype(a, b) != torch.bool:
        decline("bitwise logic on integers")
    name = e.op_name
    if name.endswith("xor"):
        return binary(e, ane.NotEqualOp, a, b, torch.bool)
    rank = max(rank_of(a), rank_of(b))
    a, b = e.value(a, torch.bool, rank), e.value(b, torch.bool, rank)
    constant = e.value(name.endswith("or"), torch.bool, rank)
    return e.add(ane.SelectOp(a, constant, b) if name.endswith("or") else ane.SelectOp(a, b, e.value(False, torch.bool, rank)))


@handles("aten.isnan.default", "aten.isinf.default", emits=(ane.NotEqualOp, ane.AbsOp, ane.EqualOp))
def _isnan_isinf(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    if "isnan" in op_key(e.node.target):
        return e.add(ane.NotEqualOp(x, x))
    return binary(e, ane.EqualOp, e.add(ane.AbsOp(x)), math.inf, torch_dtype_of(x))


@handles("aten.log2.default", "aten.log10.default", "aten.log1p.default", "aten.expm1.default", emits=(ane.LogOp, ane.ExpOp, ane.MulOp, ane.AddOp, ane.SubOp))
def _log_exp_variants(e: NodeBuilder) -> Value:
    x = e.value(e.value(e["self"]), e.dtype)
    name = e.op_name
    if name == "log1p":
        return e.add(ane.LogOp(binary(e, ane.AddOp, x, 1.0, e.dtype)))
    if name == "expm1":
        return binary(e, ane.SubOp, e.add(ane.ExpOp(x)), 1.0, e.dtype)
    return binary(e, ane.MulOp, e.add(ane.LogOp(x)), 1 / math.log(2 if name == "log2" else 10), e.dtype)


@handles("aten.clamp.Tensor", emits=(ane.MaxOp, ane.MinOp))
def _clamp_tensor(e: NodeBuilder) -> Value:
    y = e["self"]
    if e["min"] is not None:
        y = binary(e, ane.MaxOp, y, e["min"], e.dtype)
    if e["max"] is not None:
        y = binary(e, ane.MinOp, y, e["max"], e.dtype)
    return e.reshape(e.value(y, e.dtype, len(e.shape)), e.shape)


@handles("aten.copy.default", emits=(ane.BroadcastOp,))
def _copy(e: NodeBuilder) -> Value:
    """`copy(self, src)` is `src` in `self`'s dtype, broadcast to `self`'s shape."""
    src = e.value(e["src"], e.dtype, len(e.shape))
    return src if shape_of(src) == e.shape else e.add(ane.BroadcastOp(src, e.shape))


# --- matrix products and convolution -------------------------------------------------------------


def bias_vector(e: NodeBuilder, bias: Value, n: int) -> SSAValue | None:
    """`bias` as the [N] epilogue operand of a MAC op, or None if it is not one value per column."""
    if isinstance(bias, SSAValue):
        shape = shape_of(bias)
        return e.reshape(e.value(bias, e.dtype), (n,)) if math.prod(shape) == n and shape[-1] == n else None
    if isinstance(bias, torch.Tensor) and bias.numel() == n and bias.shape[-1] == n:
        return e.value(bias.reshape(n), e.dtype)
    return None


def matmul(e: NodeBuilder, a: Value, b: Value, bias: Value = None, *, transpose_rhs: bool = False) -> SSAValue:
    """A batched matmul with numpy broadcasting of the batch axes; a 1-D operand is a vector."""
    ra, rb = rank_of(a), rank_of(b)
    if ra == 1 or rb == 1:
        decline("matrix-vector product")
    if ra == 2 and rb == 2:
        a, ra = unflattened(a), rank_of(unflattened(a))
    if isinstance(b, torch.Tensor) and b.dim() == 2 and not transpose_rhs and not b.is_contiguous() and b.t().is_contiguous():
        b, transpose_rhs = b.t(), True  # a transposed weight (`t(weight)`) is used as stored, like `linear`'s
    rank = max(ra, rb)
    x, w = e.value(a, e.dtype, rank), e.value(b, e.dtype, rank)
    n = shape_of(w)[-2 if transpose_rhs else -1]
    vector = None if bias is None else bias_vector(e, bias, n)
    y = e.add(ane.MatmulOp(x, w, vector, transpose_rhs=transpose_rhs))
    if bias is not None and vector is None:
        y = binary(e, ane.AddOp, y, bias, e.dtype)
    return e.reshape(y, e.shape)


def unflattened(x: Value) -> Value:
    """The [..., K] tensor a [M, K] operand was flattened from (torch.compile lowers linear to view + addmm):
    the product keeps its leading axes, as `linear` would."""
    if isinstance(x, SSAValue) and isinstance(x.owner, ane.ReshapeOp):
        source = x.owner.input
        if len(shape_of(source)) > 2 and shape_of(source)[-1] == shape_of(x)[-1]:
            return source
    return x


@handles("aten.mm.default", "aten.bmm.default", "aten.matmul.default", emits=(ane.MatmulOp,))
def _mm(e: NodeBuilder) -> Value:
    return matmul(e, e["self"], e[next(k for k in ("mat2", "other") if k in e.args)])


@handles("aten.addmm.default", "aten.baddbmm.default", emits=(ane.MatmulOp, ane.MulOp, ane.AddOp))
def _addmm(e: NodeBuilder) -> Value:
    a, b = (e["mat1"], e["mat2"]) if "mat1" in e.args else (e["batch1"], e["batch2"])
    bias, beta, alpha = e["self"], e["beta"], e["alpha"]
    if alpha != 1:
        a = binary(e, ane.MulOp, a, alpha, e.dtype)
    if beta != 1:
        bias = binary(e, ane.MulOp, bias, beta, e.dtype) if isinstance(bias, SSAValue) else bias * beta
    return matmul(e, a, b, bias)


@handles("aten.linear.default", emits=(ane.MatmulOp,))
def _linear(e: NodeBuilder) -> Value:
    return matmul(e, e["input"], e["weight"], e["bias"], transpose_rhs=True)


def _pairs(values: Sequence[int], k: int) -> list[int]:
    values = list(values)
    return values * k if len(values) == 1 else values


@handles("aten.convolution.default", "aten.conv2d.default", "aten.conv1d.default", emits=(ane.ConvOp, ane.ConvTransposeOp))
def _convolution(e: NodeBuilder) -> Value:
    x, w, bias = e["input"], e["weight"], e["bias"]
    k = rank_of(x) - 2
    if k not in (1, 2):
        decline(f"{k}-D convolution")
    padding = e["padding"]
    if isinstance(padding, str):
        decline("string padding")
    strides, dilations, pads = _pairs(e["stride"], k), _pairs(e["dilation"], k), _pairs(padding, k)
    groups = e["groups"]
    x, w = e.value(x, e.dtype), e.value(w, e.dtype)
    vector = None if bias is None else bias_vector(e, bias, e.shape[1])
    op: ane.ConvBase
    if e.args.get("transposed"):
        op = ane.ConvTransposeOp(x, w, vector, strides=strides, pads=pads + pads, dilations=dilations, groups=groups,
                                 output_padding=_pairs(e["output_padding"], k))
    else:
        op = ane.ConvOp(x, w, vector, strides=strides, pads=pads + pads, dilations=dilations, groups=groups)
    return e.add(op)


@handles("aten.scaled_dot_product_attention.default", "aten._scaled_dot_product_flash_attention_for_cpu.default",
         emits=(ane.SdpaOp, ane.SelectOp, ane.AddOp, ane.BroadcastOp))
def _sdpa(e: NodeBuilder) -> Value:
    q, k, v, mask = e["query"], e["key"], e["value"], e["attn_mask"]
    if e.args.get("dropout_p", 0.0):
        decline("attention with dropout")
    rank = rank_of(q)
    if rank < 3 or rank_of(k) != rank or rank_of(v) != rank:
        decline("attention operands of different ranks")
    q, k, v = (e.value(t, e.dtype) for t in (q, k, v))
    if shape_of(k)[-3] != shape_of(q)[-3]:  # `enable_gqa`; the CPU flash kernel groups without the flag
        k, v = (_grouped(e, t, shape_of(q)[-3]) for t in (k, v))
    if shape_of(q)[:-2] != shape_of(k)[:-2] or shape_of(k)[:-2] != shape_of(v)[:-2]:
        decline("attention with broadcast batch or head axes")
    length, source = shape_of(q)[-2], shape_of(k)[-2]
    additive: Value = None  # a constant mask (torch.Tensor) or an SSA value
    if mask is not None:
        if isinstance(mask, torch.Tensor):
            additive = _additive_mask(mask, e.dtype)
        elif torch_dtype_of(mask) == torch.bool:
            r = max(rank, rank_of(mask))
            additive = e.add(ane.SelectOp(e.value(mask, torch.bool, r), e.value(0.0, e.dtype, r), e.value(-math.inf, e.dtype, r)))
        else:
            additive = e.value(mask, e.dtype)
    if e.args.get("is_causal"):
        causal = _additive_mask(torch.ones(length, source, dtype=torch.bool).tril(), e.dtype)
        additive = causal if additive is None else binary(e, ane.AddOp, additive, causal, e.dtype)
    if additive is not None:
        additive = e.value(additive, e.dtype, rank)
        if len(shape_of(additive)) > rank:
            decline("attention mask of higher rank than the query")
    scale = e.args.get("scale")
    return _first_only(e, e.add(ane.SdpaOp(q, k, v, additive, scale=scale)), 2)


def _grouped(e: NodeBuilder, x: SSAValue, heads: int) -> SSAValue:
    """Grouped-query attention's keys or values ([..., kv heads, S, D]) repeated for the `heads`
    query heads, each kv head serving a contiguous group (torch's `enable_gqa`, Llama's `repeat_kv`)."""
    *batch, kv_heads, length, width = shape_of(x)
    if heads % kv_heads:
        decline(f"{heads} query heads do not group over {kv_heads} key/value heads")
    grouped = e.add(ane.BroadcastOp(e.reshape(x, (*batch, kv_heads, 1, length, width)), (*batch, kv_heads, heads // kv_heads, length, width)))
    return e.reshape(grouped, (*batch, heads, length, width))


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, -math.inf)
    return mask.to(dtype)


# --- normalization -------------------------------------------------------------------------------


def _affine(e: NodeBuilder, t: Value, shape: Sequence[int], fill: float) -> SSAValue:
    if t is None:
        return e.value(torch.full(tuple(shape), fill, dtype=e.dtype))
    return e.reshape(e.value(t, e.dtype), tuple(shape))


@handles("aten.native_layer_norm.default", "aten.layer_norm.default", emits=(ane.LayerNormOp,))
def _layer_norm(e: NodeBuilder) -> Value:
    x = e.value(e["input"], e.dtype)
    rank, normalized = len(shape_of(x)), tuple(e["normalized_shape"])
    ax = list(range(rank - len(normalized), rank))
    y = e.add(ane.LayerNormOp(x, _affine(e, e["weight"], normalized, 1.0), _affine(e, e["bias"], normalized, 0.0),
                              axes=ax, epsilon=float(e["eps"])))
    return _first_only(e, y, 3)


@handles("aten.native_group_norm.default", "aten.group_norm.default", emits=(ane.GroupNormOp,))
def _group_norm(e: NodeBuilder) -> Value:
    x = e.value(e["input"], e.dtype)
    shape = shape_of(x)
    if len(shape) == 2:
        x = e.reshape(x, (*shape, 1))
    c = shape[1]
    groups = e.args.get("group", e.args.get("num_groups"))
    y = e.add(ane.GroupNormOp(x, _affine(e, e["weight"], (c,), 1.0), _affine(e, e["bias"], (c,), 0.0),
                              num_groups=groups, epsilon=float(e["eps"])))
    return _first_only(e, e.reshape(y, shape), 3)


def _first_only(e: NodeBuilder, y: SSAValue, outputs: int) -> Value:
    """A multi-result node whose extra results (saved statistics) nobody reads."""
    if len(e.schema.returns) == 1:
        return y
    for user in e.node.users:
        if not (user.target is operator.getitem and user.args[1] == 0):
            decline("the saved statistics are used")
    return (y,) + (None,) * (outputs - 1)


@handles("aten._native_batch_norm_legit_no_training.default", "aten.native_batch_norm.default",
         "aten.batch_norm.default", "aten._native_batch_norm_legit.default", emits=(ane.MulOp, ane.AddOp))
def _batch_norm(e: NodeBuilder) -> Value:
    if e.args.get("training"):
        decline("batch norm in training mode")
    mean, var, weight, bias = e["running_mean"], e["running_var"], e["weight"], e["bias"]
    if not all(t is None or isinstance(t, torch.Tensor) for t in (mean, var, weight, bias)) or mean is None or var is None:
        decline("batch-norm statistics computed at run time")
    x = e.value(e["input"], e.dtype)
    c, rank = shape_of(x)[1], len(shape_of(x))
    scale = torch.rsqrt(var.double() + float(e["eps"]))
    if weight is not None:
        scale = scale * weight.double()
    shift = -mean.double() * scale + (0 if bias is None else bias.double())
    per_channel = (1, c) + (1,) * (rank - 2)
    y = binary(e, ane.MulOp, x, scale.to(e.dtype).reshape(per_channel), e.dtype)
    y = binary(e, ane.AddOp, y, shift.to(e.dtype).reshape(per_channel), e.dtype)
    return _first_only(e, y, 3)


# --- softmax and reductions ----------------------------------------------------------------------


def _softmax(e: NodeBuilder) -> Value:
    x = e.value(e["self"], e.dtype)
    y = e.add(ane.SoftmaxOp(x, axis(e["dim"], len(shape_of(x)))))
    return e.add(ane.LogOp(y)) if "log_softmax" in op_key(e.node.target) else y


handles("aten._softmax.default", "aten.softmax.int", emits=(ane.SoftmaxOp,))(_softmax)
handles("aten._log_softmax.default", "aten.log_softmax.int", emits=(ane.SoftmaxOp, ane.LogOp))(_softmax)


_REDUCE = {"mean": ane.ReduceMeanOp, "sum": ane.ReduceSumOp, "amax": ane.ReduceMaxOp, "amin": ane.ReduceMinOp,
           "logsumexp": ane.ReduceLogSumExpOp, "max": ane.ReduceMaxOp, "min": ane.ReduceMinOp}


def _reduce(e: NodeBuilder) -> Value:
    name = e.op_name
    if e.dtype == torch.bool:
        decline("boolean reduction")
    x = e.value(e["self"], e.dtype)
    rank = len(shape_of(x))
    if rank == 0:
        return x
    keep = bool(e.args.get("keepdim", False))
    return e.add(_REDUCE[name](x, axes(e.args.get("dim"), rank), keep))


for _op, _overloads in {"mean": ("dim", "default"), "sum": ("dim_IntList", "default"), "amax": ("default",), "amin": ("default",),
                        "logsumexp": ("default",), "max": ("default",), "min": ("default",)}.items():
    handles(*(f"aten.{_op}.{o}" for o in _overloads), emits=(_REDUCE[_op],))(_reduce)


@handles("aten.var.correction", "aten.var.dim", "aten.std.correction", "aten.std.dim", "aten.var_mean.correction", emits=(ane.ReduceMeanOp, ane.SubOp, ane.MulOp, ane.ReduceSumOp, ane.DivOp, ane.SqrtOp))
def _variance(e: NodeBuilder) -> Value:
    if not e.dtype.is_floating_point:
        decline("integer variance")
    x = e.value(e["self"], e.dtype)
    rank = len(shape_of(x))
    ax = axes(e.args.get("dim"), rank)
    correction = e.args.get("correction")
    correction = (1 if e.args.get("unbiased", True) else 0) if correction is None else correction
    count = math.prod(shape_of(x)[a] for a in ax)
    mean = e.add(ane.ReduceMeanOp(x, ax, True))
    centered = e.add(ane.SubOp(x, mean))
    squares = e.add(ane.ReduceSumOp(e.add(ane.MulOp(centered, centered)), ax, bool(e.args.get("keepdim", False))))
    var = binary(e, ane.DivOp, squares, float(max(count - correction, 0)), e.dtype)
    name = op_key(e.node.target)
    if name.startswith("aten.std"):
        return e.add(ane.SqrtOp(var))
    if name.startswith("aten.var_mean"):
        return var, e.reshape(mean, shape_of(var))
    return var


@handles("aten.linalg_vector_norm.default", emits=(ane.AbsOp, ane.MulOp, ane.ReduceSumOp, ane.ReduceMaxOp, ane.SqrtOp))
def _vector_norm(e: NodeBuilder) -> Value:
    """The 1-, 2- and max-norms (`torch.norm`, `F.normalize`): sums of |x| or x², or a max of |x|."""
    order = float(e["ord"])
    if not e.dtype.is_floating_point or order not in (1.0, 2.0, math.inf):
        decline(f"a {order}-norm")
    x = e.value(e["self"], e.dtype)
    ax, keep = axes(e.args.get("dim"), len(shape_of(x))), bool(e.args.get("keepdim", False))
    if order == 2.0:
        return e.add(ane.SqrtOp(e.add(ane.ReduceSumOp(e.add(ane.MulOp(x, x)), ax, keep))))
    reduce = ane.ReduceSumOp if order == 1.0 else ane.ReduceMaxOp
    return e.add(reduce(e.add(ane.AbsOp(x)), ax, keep))


def _argreduce(e: NodeBuilder) -> Value:
    if e["dim"] is None:
        decline("arg-reduction over a flattened tensor")
    x = e.value(e["self"])
    op = ane.ArgmaxOp if "argmax" in op_key(e.node.target) else ane.ArgminOp
    return e.add(op(x, axis(e["dim"], len(shape_of(x))), bool(e["keepdim"]), index_type=element_type(e.out_type(0)[1])))


handles("aten.argmax.default", emits=(ane.ArgmaxOp,))(_argreduce)
handles("aten.argmin.default", emits=(ane.ArgminOp,))(_argreduce)


def _max_dim(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    rank, largest = len(shape_of(x)), "max" in op_key(e.node.target)
    dim, keep = axis(e["dim"], rank), bool(e["keepdim"])
    values = e.add((ane.ReduceMaxOp if largest else ane.ReduceMinOp)(x, [dim], keep))
    indices = e.add((ane.ArgmaxOp if largest else ane.ArgminOp)(x, dim, keep, index_type=element_type(e.out_type(1)[1])))
    return values, indices


handles("aten.max.dim", emits=(ane.ReduceMaxOp, ane.ArgmaxOp))(_max_dim)
handles("aten.min.dim", emits=(ane.ReduceMinOp, ane.ArgminOp))(_max_dim)


def _selection(e: NodeBuilder, k: int | None, dim: int, largest: bool) -> tuple[Value, Value]:
    """`torch.topk` and `torch.sort` (k = the extent: every element) as `ane.topk`. Equal values keep
    the lower index first, one of the orders torch allows (its own is unspecified for ties)."""
    x = e.value(e["self"])
    d = axis(dim, len(shape_of(x)))
    top = e.insert(ane.TopkOp(x, shape_of(x)[d] if k is None else k, d, largest, index_type=element_type(e.out_type(1)[1])))
    return top.values, top.indices


@handles("aten.topk.default", emits=(ane.TopkOp,))
def _topk(e: NodeBuilder) -> tuple[Value, Value]:
    return _selection(e, int(e["k"]), e["dim"], bool(e["largest"]))


@handles("aten.sort.default", "aten.sort.stable", emits=(ane.TopkOp,))
def _sort(e: NodeBuilder) -> tuple[Value, Value]:
    """Lower index first among equal values: a stable sort either way."""
    return _selection(e, None, e["dim"], bool(e["descending"]))


# --- pooling -------------------------------------------------------------------------------------


def _pool(e: NodeBuilder) -> Value:
    kernel = _pairs(e["kernel_size"], 2)
    strides = _pairs(e["stride"] or kernel, 2)
    pads = _pairs(e["padding"], 2)
    if any(d != 1 for d in _pairs(e.args.get("dilation", [1]), 2)):
        decline("dilated pooling")
    if e.args.get("divisor_override") is not None:
        decline("pooling with a divisor override")
    x = e.value(e["self"], e.dtype)
    if len(shape_of(x)) != 4:
        decline("pooling of an unbatched image")
    if "avg" in op_key(e.node.target):
        op: ane.PoolOp = ane.AvgPoolOp(x, kernel, strides, pads + pads, count_include_pad=bool(e["count_include_pad"]))
    else:
        op = ane.MaxPoolOp(x, kernel, strides, pads + pads)
    if shape_of(op.result) != e.shape:  # ceil_mode added a partial window: pad the end
        extra = [max(0, (o - 1) * s + k - (i + 2 * p)) for o, s, k, i, p in zip(e.shape[2:], strides, kernel, shape_of(x)[2:], pads)]
        if "avg" in op_key(e.node.target) and any(extra):
            decline("ceil-mode average pooling")
        x = e.add(ane.PadOp(x, [0, 0, 0, 0, 0, 0, *extra], value=-math.inf))
        op = ane.MaxPoolOp(x, kernel, strides, pads + pads)
    y = e.add(op)
    if "with_indices" in op_key(e.node.target):
        return _first_only(e, y, 2)
    return y


handles("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default", emits=(ane.MaxPoolOp, ane.PadOp))(_pool)
handles("aten.avg_pool2d.default", emits=(ane.AvgPoolOp,))(_pool)


@handles("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default", emits=(ane.GlobalAvgPoolOp, ane.AvgPoolOp))
def _adaptive_avg_pool(e: NodeBuilder) -> Value:
    x = e.value(e["self"], e.dtype)
    shape = shape_of(x)
    out = e.shape[-2:]
    if len(shape) != 4:
        decline("pooling of an unbatched image")
    if out == (1, 1):
        return e.add(ane.GlobalAvgPoolOp(x))
    if any(i % o for i, o in zip(shape[2:], out)):
        decline("adaptive pooling with uneven windows")
    kernel = [i // o for i, o in zip(shape[2:], out)]
    return e.add(ane.AvgPoolOp(x, kernel, kernel))


# --- data movement -------------------------------------------------------------------------------


@handles("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.view_copy.default",
         "aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.unsqueeze.default",
         "aten.flatten.using_ints", "aten.unflatten.int", "aten.squeeze_copy.dims", "aten.unsqueeze_copy.default", emits=(ane.ReshapeOp,))
def _reshape(e: NodeBuilder) -> Value:
    return e.reshape(e.value(e["self"]), e.shape)


@handles("aten.permute.default", "aten.permute_copy.default", "aten.transpose.int", "aten.t.default",
         "aten.numpy_T.default", emits=(ane.TransposeOp,))
def _permute(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    rank = len(shape_of(x))
    name = op_key(e.node.target)
    if "permute" in name:
        perm = [axis(d, rank) for d in e["dims"]]
    else:
        perm = list(range(rank))
        a, b = (axis(e["dim0"], rank), axis(e["dim1"], rank)) if "transpose" in name else (0, rank - 1)
        perm[a], perm[b] = perm[b], perm[a]
    return e.transpose(x, perm)


@handles("aten.expand.default", "aten.expand_copy.default", "aten.broadcast_to.default", emits=(ane.BroadcastOp,))
def _expand(e: NodeBuilder) -> Value:
    x = e.value(e["self"], rank=len(e.shape))
    return x if shape_of(x) == e.shape else e.add(ane.BroadcastOp(x, e.shape))


@handles("aten.repeat.default", emits=(ane.TileOp,))
def _repeat(e: NodeBuilder) -> Value:
    repeats = list(e["repeats"])
    return e.add(ane.TileOp(e.value(e["self"], rank=len(repeats)), repeats))


@handles("aten.slice.Tensor", "aten.slice_copy.Tensor", "aten.narrow.default", emits=(ane.SliceOp,))
def _slice(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    shape = shape_of(x)
    dim = axis(e["dim"], len(shape))
    size = shape[dim]
    if "narrow" in op_key(e.node.target):
        start, end, step = e["start"], e["start"] + e["length"], 1
    else:
        start, end, step = e["start"], e["end"], e["step"]
    start, end, _ = slice(start, end).indices(size)
    if start == 0 and end >= size and step == 1:
        return x
    starts, ends, steps = [0] * len(shape), list(shape), [1] * len(shape)
    starts[dim], ends[dim], steps[dim] = start, max(end, start), step
    return e.add(ane.SliceOp(x, starts, ends, steps))


@handles("aten.select.int", "aten.select_copy.int", emits=(ane.SliceOp,))
def _select(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    shape = shape_of(x)
    dim = axis(e["dim"], len(shape))
    index = e["index"] + shape[dim] if e["index"] < 0 else e["index"]
    starts, ends = [0] * len(shape), list(shape)
    starts[dim], ends[dim] = index, index + 1
    return e.reshape(e.add(ane.SliceOp(x, starts, ends)), e.shape)


@handles("aten.index.Tensor", emits=(ane.SliceOp, ane.TransposeOp, ane.BroadcastOp))
def _index(e: NodeBuilder) -> Value:
    """Advanced indexing by constant index tensors that each step evenly along one result axis
    (`mask[batch_idx[:, None], kv_idx[None, :]]` in attention-mask code) is a strided slice,
    moved to the result's axes by transpose, reshape and broadcast. Other indexing is a gather."""
    x, indices = e["self"], list(e["indices"])
    if not isinstance(x, SSAValue) or any(not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64) for t in indices):
        decline("indexing by run-time, absent or boolean indices")
    shape = shape_of(x)
    rest = shape[len(indices):]
    grid = torch.broadcast_shapes(*(t.shape for t in indices))
    starts, ends, steps = [0] * len(shape), list(shape), [1] * len(shape)
    targets: dict[int, int] = {}  # index position -> the grid axis it varies along
    for i, t in enumerate(indices):
        t = torch.broadcast_to(torch.where(t < 0, t + shape[i], t), grid)
        varying = [a for a in range(len(grid)) if grid[a] > 1 and not bool((t == t.narrow(a, 0, 1)).all())]
        first = int(t.flatten()[0]) if t.numel() else 0
        if not varying:
            starts[i], ends[i] = first, first + 1
            continue
        (a,) = varying if len(varying) == 1 else decline("an index that varies along several axes")
        along = t.movedim(a, -1).reshape(-1, grid[a])[0]
        step = int(along[1] - along[0])
        if step < 1 or a in targets.values() or not torch.equal(along, first + step * torch.arange(grid[a])):
            decline("indices that are not an increasing arithmetic sequence")
        starts[i], ends[i], steps[i], targets[i] = first, first + step * (grid[a] - 1) + 1, step, a
    if starts != [0] * len(shape) or ends != list(shape) or steps != [1] * len(shape):
        x = e.add(ane.SliceOp(x, starts, ends, steps))
    kept = sorted(targets, key=targets.__getitem__)
    x = e.reshape(x, [grid[targets[i]] for i in targets] + list(rest))
    order = [list(targets).index(i) for i in kept] + list(range(len(targets), len(targets) + len(rest)))
    x = e.transpose(x, order)
    x = e.reshape(x, [grid[a] if a in targets.values() else 1 for a in range(len(grid))] + list(rest))
    return x if shape_of(x) == e.shape else e.add(ane.BroadcastOp(x, e.shape))


@handles("aten.cat.default", "aten.concat.default", emits=(ane.ConcatOp,))
def _cat(e: NodeBuilder) -> Value:
    parts = [t for t in e["tensors"] if not (rank_of(t) == 1 and _numel(t) == 0)]
    rank = len(e.shape)
    values = [e.value(t, e.dtype) for t in parts]
    if len(values) == 1:
        return values[0]
    return e.add(ane.ConcatOp(values, axis(e["dim"], rank)))


def _numel(x: Value) -> int:
    return math.prod(shape_of(x)) if isinstance(x, SSAValue) else x.numel()


@handles("aten.split_with_sizes.default", "aten.split.Tensor", "aten.chunk.default", "aten.unbind.int",
         "aten.split_with_sizes_copy.default", "aten.split_copy.Tensor", emits=(ane.SplitOp,))
def _split(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    dim = axis(e["dim"], len(shape_of(x)))
    shapes = [e.out_type(i)[0] for i in range(len(e.out))]
    sizes = [s[dim] for s in shapes] if "unbind" not in op_key(e.node.target) else [1] * len(shapes)
    if len(sizes) == 1:
        pieces: list[SSAValue] = [x]
    else:
        op = ane.SplitOp(x, dim, sizes)
        e.add(op)
        pieces = list(op.results)
    return [e.reshape(p, s) for p, s in zip(pieces, shapes)]


@handles("aten.constant_pad_nd.default", emits=(ane.PadOp,))
def _pad(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    rank, pad = len(shape_of(x)), list(e["pad"])
    if any(p < 0 for p in pad):
        decline("negative padding (cropping)")
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    return e.add(ane.PadOp(x, begins + ends, value=float(e["value"])))


_PAD_MODES = {"reflection": "reflect", "replication": "edge"}


@handles("aten.reflection_pad1d.default", "aten.reflection_pad2d.default", "aten.replication_pad1d.default",
         "aten.replication_pad2d.default", emits=(ane.PadOp,))
def _pad_mode(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    rank, pad = len(shape_of(x)), list(e["padding"])
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    return e.add(ane.PadOp(x, begins + ends, mode=_PAD_MODES[e.op_name.split("_")[0]]))


@handles("aten.pixel_shuffle.default", emits=(ane.DepthToSpaceOp,))
def _pixel_shuffle(e: NodeBuilder) -> Value:
    x = e.value(e["self"])
    if len(shape_of(x)) != 4:
        decline("pixel shuffle of a non-NCHW tensor")
    return e.add(ane.DepthToSpaceOp(x, e["upscale_factor"], "CRD"))


@handles("aten.upsample_nearest2d.default", "aten.upsample_nearest2d.vec", "aten.upsample_bilinear2d.default",
         "aten.upsample_bilinear2d.vec", emits=(ane.ResizeOp,))
def _upsample(e: NodeBuilder) -> Value:
    x = e.value(e.args.get("input", e.args.get("self")), e.dtype)
    shape = shape_of(x)
    given = e.args.get("scale_factors") or [e.args.get("scales_h"), e.args.get("scales_w")]
    scales = [float(s) if s is not None else o / i for s, o, i in zip(given, e.shape[2:], shape[2:])]
    if "nearest" in op_key(e.node.target):
        return e.add(ane.ResizeOp(x, e.shape, "nearest", scales, "asymmetric", "floor"))
    mode = "align_corners" if e["align_corners"] else "half_pixel"
    return e.add(ane.ResizeOp(x, e.shape, "bilinear", scales, mode))


# --- shapes and constants that depend only on shapes ---------------------------------------------


@handles("aten.sym_size.int")
def _sym_size(e: NodeBuilder) -> Value:
    shape = shape_of(e.value(e["self"]))
    return shape[axis(e["dim"], len(shape))]


@handles("aten.sym_numel.default")
def _sym_numel(e: NodeBuilder) -> Value:
    return math.prod(shape_of(e.value(e["self"])))


@handles("aten.zeros_like.default", "aten.ones_like.default", "aten.full_like.default", "aten.empty_like.default",
         "aten.new_zeros.default", "aten.new_ones.default", "aten.new_full.default", "aten.new_empty.default",
         "aten.fill.Scalar")
def _like(e: NodeBuilder) -> Value:
    name = op_key(e.node.target)
    fill = 0 if "zeros" in name or "empty" in name else 1 if "ones" in name else e.args.get("fill_value", e.args.get("value"))
    return torch.full(e.shape, fill, dtype=e.dtype)


# ------------------------------------------------------------------------------------------------
# Host ops: an ATen call kept whole, with its non-tensor arguments as attributes
# ------------------------------------------------------------------------------------------------

NO_OP = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_async.msg", "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default", "aten._assert_async.default", "aten.sym_constrain_range.default",
})
"""Run-time checks with no result; the importer drops them."""


def encode_argument(value: Any, operands: list[SSAValue], e: NodeBuilder) -> Attribute:
    """One ATen argument as an attribute; tensors become operands, referred to by their index."""
    match value:
        case SSAValue() | torch.Tensor():
            operands.append(e.value(value))
            return IntegerAttr(len(operands) - 1, i64)
        case None:
            return UnitAttr()
        case bool():
            return IntegerAttr.from_bool(value)
        case int():
            return IntegerAttr(value, i64)
        case float():
            return FloatAttr(value, f64)
        case str():
            return StringAttr(value)
        case torch.dtype() | torch.memory_format() | torch.layout():
            return StringAttr(str(value))
        case torch.device():
            return UnitAttr()  # host ops run on the CPU
        case list() | tuple():
            return ArrayAttr([encode_argument(v, operands, e) for v in value])
    raise AnecError(f"cannot keep argument {value!r} of {op_key(e.node.target)} in a host op", where=e.name)


def host_op(e: NodeBuilder) -> Value:
    """`host.op "aten.<op>.<overload>"` with the schema's non-default arguments as attributes."""
    target = e.node.target
    if not isinstance(target, torch._ops.OpOverload):
        raise AnecError(f"cannot import the call {op_key(target)} on run-time tensors", where=e.name,
                        hint="only ATen ops reach the importer; export the model with torch.export")
    operands: list[SSAValue] = []
    attrs: dict[str, Attribute] = {}
    for arg in target._schema.arguments:
        value = e.args[arg.name]
        if not isinstance(value, SSAValue | torch.Tensor) and arg.has_default_value() and _same(value, arg.default_value):
            continue
        if str(arg.type) == "Tensor" and isinstance(value, int | float | bool):
            value = torch.tensor(value)  # a number where the schema says Tensor: a 0-d tensor promotes alike
        attrs[arg.name] = encode_argument(value, operands, e)
    tensor_types = [TensorType(element_type(dtype), list(shape)) for shape, dtype in (o for o in e.out if o is not None)]
    op = HostOp(op_key(target), operands, tensor_types, attrs)
    e.add(op)
    results = iter(op.results)
    values = [None if o is None else next(results) for o in e.out]
    returns = target._schema.returns
    return values[0] if len(returns) == 1 and not str(returns[0].type).startswith("List") else values


def _same(a: Any, b: Any) -> bool:
    try:
        return (type(a) is type(b) and a == b) or (a is None and b is None)
    except Exception:
        return False
