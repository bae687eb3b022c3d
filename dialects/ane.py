"""The `ane` dialect: graph-level Apple Neural Engine operations on ranked, static tensors.

Ops state *what* is computed; whether a chip can run an op is decided elsewhere, by
`anec.legality`. Every op verifies its shapes and attributes, and every op whose result shape
follows from its operands can build its own result type (the `infer` static methods), so
importers and passes never compute shapes twice.

Conventions: axes are non-negative; pads are `[begin_0, …, begin_k, end_0, …, end_k]` over the
spatial axes (the last one or two); binary ops broadcast numpy-style between operands of equal
rank; weights live out of line (`ane.const "handle"`), small constants inline (`ane.const dense<…>`).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, cast, overload

from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    BoolAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    f32,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, BlockArgument, Dialect, Operation, OpResult, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    Operand,
    OptOperand,
    ParsePropInAttrDict,
    VarConstraint,
    base,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern
from xdsl.printer import Printer
from xdsl.rewriter import InsertPoint
from xdsl.traits import (
    ConstantLike,
    HasCanonicalizationPatternsTrait,
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    Pure,
)
from xdsl.utils.exceptions import VerifyException

from anec.dialects.discardable import NAME_ATTR
from anec.dialects.shapes import Shape, compose, is_identity, moves_data

# --------------------------------------------------------------------------------------------
# Shape and attribute helpers (shared by every op, the importers and the passes)
# --------------------------------------------------------------------------------------------


def is_ane(op: Operation) -> bool:
    """An op of the `ane` dialect."""
    return op.dialect_name() == "ane"


def kind(op: Operation) -> str:
    """An op's name without its dialect prefix (`conv`, `reduce_sum`): what tasks, kernels and
    reports call it."""
    return op.name.split(".", 1)[1]


_VALUES = (OpResult, BlockArgument)
_SHAPE_MEMO = "_anec_shape"
"""Where `shape_of` keeps a tensor type's shape in the (immutable) type's own __dict__: passes ask
for shapes hundreds of thousands of times on a large model, and `get_shape` rebuilds the tuple each time."""


def shape_of(value: SSAValue | Attribute) -> Shape:
    """The static shape of a tensor value or tensor type."""
    if type(value) in _VALUES:  # the fast path: isinstance on xDSL's ABC-based values is slow
        typ = cast(SSAValue, value).type
    else:
        typ = value.type if isinstance(value, SSAValue) else value
    shape = typ.__dict__.get(_SHAPE_MEMO)
    if shape is None:
        if not isinstance(typ, TensorType):
            raise VerifyException(f"expected a ranked tensor, got {typ}")
        shape = typ.__dict__[_SHAPE_MEMO] = tuple(typ.get_shape())
    return shape


def element_type_of(value: SSAValue | Attribute) -> Attribute:
    typ = value.type if isinstance(value, SSAValue) else value
    assert isinstance(typ, TensorType)
    return typ.element_type


_TENSOR_TYPES: dict[tuple[Shape, Attribute], TensorType] = {}
"""Tensor types by (shape, element type): a type is immutable, so one instance serves every op that
needs it, and passes that create thousands of ops build and verify each type once."""


def tensor(shape: Sequence[int], element_type: Attribute = f32) -> TensorType:
    key = (tuple(map(int, shape)), element_type)
    typ = _TENSOR_TYPES.get(key)
    if typ is None:
        if len(_TENSOR_TYPES) >= 1 << 16:  # a long-running process compiling many models
            _TENSOR_TYPES.clear()
        typ = _TENSOR_TYPES[key] = TensorType(element_type, list(key[0]))
    return typ


def ints(values: Sequence[int]) -> DenseArrayBase[I64]:
    return _ints(tuple(map(int, values)))


@functools.lru_cache(maxsize=1 << 16)
def _ints(values: tuple[int, ...]) -> DenseArrayBase[I64]:
    """Built and verified once per value: attributes are immutable, and passes rebuild the same
    permutations, bounds and shapes on thousands of ops."""
    return DenseArrayBase.from_list(i64, list(values))


def floats(values: Sequence[float]) -> DenseArrayBase[Float32Type]:
    return DenseArrayBase.from_list(f32, [float(v) for v in values])


def int_attr(value: int) -> IntegerAttr:
    return IntegerAttr(int(value), i64)


def float_attr(value: float) -> FloatAttr:
    return FloatAttr(float(value), f32)


def bool_attr(value: bool) -> BoolAttr:
    return IntegerAttr.from_bool(bool(value))


@overload
def as_tuple(attr: None) -> tuple[()]: ...
@overload
def as_tuple(attr: DenseArrayBase[IntegerType]) -> tuple[int, ...]: ...
@overload
def as_tuple(attr: DenseArrayBase[AnyFloat]) -> tuple[float, ...]: ...
def as_tuple(attr: DenseArrayBase[IntegerType] | DenseArrayBase[AnyFloat] | None) -> tuple[int, ...] | tuple[float, ...]:
    """The elements of a dense array property; () for an absent optional one."""
    return () if attr is None else attr.get_values()


def _float_prop(op: Operation, name: str) -> float:
    """A float property by name; the op declares it `prop_def(FloatAttr)`, so IRDL has verified it."""
    attr = op.properties[name]
    assert isinstance(attr, FloatAttr), f"{op.name}: property {name} is declared a FloatAttr"
    return attr.value.data


def is_float(typ: Attribute) -> bool:
    return isinstance(typ, AnyFloat)


def is_bool(typ: Attribute) -> bool:
    return isinstance(typ, IntegerType) and typ.width.data == 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise VerifyException(message)


def _require_numeric(op: Operation, *vals: SSAValue) -> None:
    for v in vals:
        et = element_type_of(v)
        if not (is_float(et) or (isinstance(et, IntegerType) and not is_bool(et))):  # messages built only on failure:
            raise VerifyException(f"{op.name} needs numeric tensors, got {v.type}")   # printing a type costs more than the check


def _require_float(op: Operation, *vals: SSAValue) -> None:
    for v in vals:
        if not is_float(element_type_of(v)):
            raise VerifyException(f"{op.name} needs float tensors, got {v.type}")


def _require_same_element_type(op: Operation, *vals: SSAValue) -> None:
    types = {element_type_of(v) for v in vals}
    if len(types) != 1:
        raise VerifyException(f"{op.name} operands and result must share an element type, got {sorted(map(str, types))}")


def _check_axes(op: Operation, axes: Sequence[int], rank: int) -> None:
    _require(len(set(axes)) == len(axes), f"{op.name}: repeated axis in {list(axes)}")
    for a in axes:
        _require(0 <= a < rank, f"{op.name}: axis {a} out of range for rank {rank}")


def _check_result(op: Operation, expected: Shape, actual: Shape) -> None:
    _require(
        tuple(expected) == tuple(actual),
        f"{op.name}: result shape {list(actual)} does not match the expected {list(expected)}",
    )


def broadcast_shapes(*shapes: Shape, op_name: str = "") -> Shape:
    """Numpy broadcasting between shapes of equal rank; raises VerifyException (naming `op_name`)
    if they are incompatible."""
    prefix = f"{op_name}: " if op_name else ""
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise VerifyException(f"{prefix}broadcast needs operands of equal rank, got shapes {[list(s) for s in shapes]}")
    out = []
    for dims in zip(*shapes):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise VerifyException(f"{prefix}shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def window_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1) -> int:
    """Output extent of a sliding window (convolution, pooling) along one axis."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class ConstOp(IRDLOperation):
    """A constant tensor: a handle into the weight store, or a small inline dense value.

    `ane.const "conv1.weight" : tensor<64x3x7x7xf32>` or `ane.const dense<1.0> : tensor<1xf32>`. A weight
    the store keeps compressed names its stored form (`anec.compression`): `ane.const "fc.weight"
    stored "int8/channel" : tensor<64x64xf32>`; the result is its value, exact in fp16.
    """

    name = "ane.const"
    handle = opt_prop_def(StringAttr)
    value = opt_prop_def(DenseIntOrFPElementsAttr)
    stored = opt_prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure(), ConstantLike())

    def __init__(self, result_type: TensorType, *, handle: str | None = None, value: DenseIntOrFPElementsAttr | None = None,
                 stored: str | None = None):
        props: dict[str, Attribute] = {}
        if handle is not None:
            props["handle"] = StringAttr(handle)
        if stored is not None:
            props["stored"] = StringAttr(stored)
        if value is not None:
            props["value"] = value
        super().__init__(properties=props, result_types=[result_type])

    def verify_(self) -> None:
        _require((self.handle is None) != (self.value is None), "ane.const needs exactly one of a weight handle or an inline value")
        _require(self.stored is None or self.handle is not None, "ane.const: only a stored weight can be compressed")
        if self.value is not None and self.value.type != self.result.type:
            raise VerifyException(f"ane.const value type {self.value.type} differs from result type {self.result.type}")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        if self.handle is not None:
            printer.print_string_literal(self.handle.data)
            if self.stored is not None:
                printer.print_string(" stored ")
                printer.print_string_literal(self.stored.data)
            printer.print_string(" : ")
            printer.print_attribute(self.result.type)
        else:
            assert self.value is not None
            printer.print_attribute(self.value)
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> ConstOp:
        if (handle := parser.parse_optional_str_literal()) is not None:
            stored = parser.parse_str_literal() if parser.parse_optional_keyword("stored") is not None else None
            parser.parse_punctuation(":")
            typ = parser.parse_type()
            if not isinstance(typ, TensorType):
                parser.raise_error("ane.const needs a tensor type")
            op = cls(typ, handle=handle, stored=stored)
        else:
            value = parser.parse_attribute()
            if not isinstance(value, DenseIntOrFPElementsAttr) or not isinstance(value.type, TensorType):
                parser.raise_error("ane.const expects a string handle or a dense<...> : tensor<...> value")
            op = cls(value.type, value=value)
        op.attributes.update(parser.parse_optional_attr_dict())
        return op


# --------------------------------------------------------------------------------------------
# Elementwise: unary neuron ops (the LUT activations), binary arithmetic, comparisons, select
# --------------------------------------------------------------------------------------------


class UnaryOp(IRDLOperation, ABC):
    """A neuron op: one tensor in, the same tensor type out. `PARAMS` names its float parameters."""

    PARAMS: ClassVar[tuple[str, ...]] = ()
    NUMERIC: ClassVar[bool] = False  # True: also defined on integers (abs, neg)
    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($result)"

    def __init__(self, input: SSAValue, **params: float):
        super().__init__(
            operands=[input],
            result_types=[input.type],
            properties={k: float_attr(v) for k, v in params.items()},
        )

    def param_values(self) -> tuple[float, ...]:
        return tuple(_float_prop(self, p) for p in self.PARAMS)

    def verify_(self) -> None:
        (_require_numeric if self.NUMERIC else _require_float)(self, self.input)


@irdl_op_definition
class ReluOp(UnaryOp):
    name = "ane.relu"


@irdl_op_definition
class SigmoidOp(UnaryOp):
    name = "ane.sigmoid"


@irdl_op_definition
class TanhOp(UnaryOp):
    name = "ane.tanh"


@irdl_op_definition
class SiluOp(UnaryOp):
    name = "ane.silu"


@irdl_op_definition
class ExpOp(UnaryOp):
    name = "ane.exp"


@irdl_op_definition
class LogOp(UnaryOp):
    name = "ane.log"


@irdl_op_definition
class SqrtOp(UnaryOp):
    name = "ane.sqrt"


@irdl_op_definition
class RsqrtOp(UnaryOp):
    name = "ane.rsqrt"


@irdl_op_definition
class ReciprocalOp(UnaryOp):
    name = "ane.reciprocal"


@irdl_op_definition
class AbsOp(UnaryOp):
    name = "ane.abs"
    NUMERIC: ClassVar[bool] = True


@irdl_op_definition
class NegOp(UnaryOp):
    name = "ane.neg"
    NUMERIC: ClassVar[bool] = True


@irdl_op_definition
class SoftplusOp(UnaryOp):
    name = "ane.softplus"


@irdl_op_definition
class HardswishOp(UnaryOp):
    name = "ane.hardswish"


@irdl_op_definition
class ErfOp(UnaryOp):
    name = "ane.erf"


@irdl_op_definition
class SinOp(UnaryOp):
    name = "ane.sin"


@irdl_op_definition
class SignOp(UnaryOp):
    """-1, 0 or 1: a native neuron mode (SIGN) since the first ANE with one (H13), so no table."""

    name = "ane.sign"


@irdl_op_definition
class CosOp(UnaryOp):
    name = "ane.cos"


@irdl_op_definition
class RoundOp(UnaryOp):
    """The nearest integer, ties to even (ONNX `Round`, and `QuantizeLinear`'s rounding). The ANE has no
    rounding neuron: ane-fp16 spells it in fp16 adds, whose round-half-to-even does the rounding
    (`anec.lowering.fp16.expand_round`), so it is exact in float32 here and on the engine alike."""

    name = "ane.round"


@irdl_op_definition
class FloorOp(UnaryOp):
    """The largest integer not above x (ONNX `Floor`: quantize_dynamic's bias, `floor(b / s)`). No neuron
    either: ane-fp16 spells it `round(x) - (round(x) > x)` (`anec.lowering.fp16.expand_floor`), exact in
    fp16 as its rounding is."""

    name = "ane.floor"


@irdl_op_definition
class CeilOp(UnaryOp):
    """The smallest integer not below x (ONNX `Ceil`); ane-fp16 spells it `round(x) + (round(x) < x)`."""

    name = "ane.ceil"


@irdl_op_definition
class LeakyReluOp(UnaryOp):
    name = "ane.leaky_relu"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha",)
    alpha = prop_def(FloatAttr)


@irdl_op_definition
class EluOp(UnaryOp):
    name = "ane.elu"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha",)
    alpha = prop_def(FloatAttr)


@irdl_op_definition
class ClampOp(UnaryOp):
    name = "ane.clamp"
    PARAMS: ClassVar[tuple[str, ...]] = ("min", "max")
    min = prop_def(FloatAttr)
    max = prop_def(FloatAttr)


@irdl_op_definition
class HardsigmoidOp(UnaryOp):
    name = "ane.hardsigmoid"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)


@irdl_op_definition
class GeluOp(UnaryOp):
    """GELU; `approximate` is "none" (erf) or "tanh"."""

    name = "ane.gelu"
    approximate = opt_prop_def(StringAttr, default_value=StringAttr("none"))

    def __init__(self, input: SSAValue, approximate: str = "none"):
        super().__init__(input)
        self.properties["approximate"] = StringAttr(approximate)

    def verify_(self) -> None:
        super().verify_()
        _require(self.approximate.data in ("none", "tanh"), f"ane.gelu: approximate must be none or tanh, got {self.approximate.data!r}")


class Reduces(ABC):
    """An op that computes a statistic over some of its input's axes: the one answer to "which axes
    does it reduce" that legality (their extents cannot be tiled), the tile pass (never split them)
    and layout (keep a layer norm's in order) all ask."""

    @abstractmethod
    def reduced_axes(self) -> tuple[int, ...]:
        """The reduced axes of the input, ascending."""


def reduced_axes(op: Operation) -> tuple[int, ...]:
    """The axes `op` reduces over; () for an op that reduces none."""
    return op.reduced_axes() if isinstance(op, Reduces) else ()


@irdl_op_definition
class SoftmaxOp(UnaryOp, Reduces):
    """Softmax along `axis` (the hardware subtracts the running max)."""

    name = "ane.softmax"
    axis = prop_def(IntegerAttr[I64])

    def __init__(self, input: SSAValue, axis: int):
        super().__init__(input)
        self.properties["axis"] = int_attr(axis)

    def reduced_axes(self) -> tuple[int, ...]:
        return (self.axis.value.data,)

    def verify_(self) -> None:
        super().verify_()
        _check_axes(self, [self.axis.value.data], len(shape_of(self.input)))


UNARY_OPS: dict[str, type[UnaryOp]] = {
    cls.name.removeprefix("ane."): cls
    for cls in (ReluOp, SigmoidOp, TanhOp, GeluOp, SiluOp, ExpOp, LogOp, SqrtOp, RsqrtOp,
                ReciprocalOp, AbsOp, NegOp, LeakyReluOp, ClampOp, EluOp, SoftplusOp, HardswishOp,
                HardsigmoidOp, ErfOp, SinOp, CosOp, SignOp)
}
"""The neuron ops that may also appear as a fused `activation` epilogue of conv and matmul."""


class BroadcastingOp(IRDLOperation, ABC):
    """Operands of equal rank broadcast numpy-style into the result."""

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "operands attr-dict `:` functional-type(operands, results)"

    def broadcast_operands(self) -> tuple[SSAValue, ...]:
        return tuple(self.operands)

    def verify_(self) -> None:
        _check_result(self, broadcast_shapes(*(shape_of(v) for v in self.broadcast_operands()), op_name=self.name), shape_of(self.results[0]))


class BinaryOp(BroadcastingOp, ABC):
    """Binary arithmetic: both operands and the result share an element type."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        out = tensor(broadcast_shapes(shape_of(lhs), shape_of(rhs), op_name=self.name), element_type_of(lhs))
        super().__init__(operands=[lhs, rhs], result_types=[out])

    def verify_(self) -> None:
        _require_numeric(self, self.lhs, self.rhs)
        _require_same_element_type(self, self.lhs, self.rhs, self.result)
        super().verify_()


@irdl_op_definition
class AddOp(BinaryOp):
    name = "ane.add"


@irdl_op_definition
class SubOp(BinaryOp):
    name = "ane.sub"


@irdl_op_definition
class MulOp(BinaryOp):
    name = "ane.mul"


@irdl_op_definition
class DivOp(BinaryOp):
    name = "ane.div"


@irdl_op_definition
class MaxOp(BinaryOp):
    name = "ane.max"


@irdl_op_definition
class MinOp(BinaryOp):
    name = "ane.min"


@irdl_op_definition
class PowOp(BinaryOp):
    name = "ane.pow"


class CompareOp(BroadcastingOp, ABC):
    """An elementwise comparison; the result is an i1 mask."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        out = tensor(broadcast_shapes(shape_of(lhs), shape_of(rhs), op_name=self.name), i1)
        super().__init__(operands=[lhs, rhs], result_types=[out])

    def verify_(self) -> None:
        _require_same_element_type(self, self.lhs, self.rhs)
        _require(is_bool(element_type_of(self.result)), f"{self.name} produces an i1 tensor")
        super().verify_()


@irdl_op_definition
class EqualOp(CompareOp):
    name = "ane.equal"


@irdl_op_definition
class NotEqualOp(CompareOp):
    name = "ane.not_equal"


@irdl_op_definition
class GreaterOp(CompareOp):
    name = "ane.greater"


@irdl_op_definition
class GreaterEqualOp(CompareOp):
    name = "ane.greater_equal"


@irdl_op_definition
class LessOp(CompareOp):
    name = "ane.less"


@irdl_op_definition
class LessEqualOp(CompareOp):
    name = "ane.less_equal"


@irdl_op_definition
class SelectOp(BroadcastingOp):
    """`cond ? on_true : on_false`, elementwise with broadcasting."""

    name = "ane.select"
    cond = operand_def(TensorType)
    on_true = operand_def(TensorType)
    on_false = operand_def(TensorType)
    result = result_def(TensorType)

    def __init__(self, cond: SSAValue, on_true: SSAValue, on_false: SSAValue):
        out = tensor(broadcast_shapes(shape_of(cond), shape_of(on_true), shape_of(on_false), op_name=self.name), element_type_of(on_true))
        super().__init__(operands=[cond, on_true, on_false], result_types=[out])

    def verify_(self) -> None:
        _require(is_bool(element_type_of(self.cond)), "ane.select: the condition must be an i1 tensor")
        _require_same_element_type(self, self.on_true, self.on_false, self.result)
        super().verify_()


# --------------------------------------------------------------------------------------------
# MAC ops: convolution, transposed convolution, matmul, attention
# --------------------------------------------------------------------------------------------


class EpilogueOp(IRDLOperation, ABC):
    """A MAC op with the neural engine's epilogue: optional per-channel bias and activation."""

    activation = opt_prop_def(StringAttr)
    activation_params = opt_prop_def(DenseArrayBase)
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())
    if TYPE_CHECKING:  # each op defines its bias where its operand order puts it
        bias: OptOperand

    def set_activation(self, name: str | None, params: Sequence[float] = ()) -> None:
        for key in ("activation", "activation_params"):
            self.properties.pop(key, None)
        if name is not None:
            self.properties["activation"] = StringAttr(name)
            if params:
                self.properties["activation_params"] = floats(params)

    def verify_epilogue(self, channels: int) -> None:
        if self.activation is not None:
            act = self.activation.data
            _require(act in UNARY_OPS, f"{self.name}: unknown activation {act!r}")
            n = len(as_tuple(self.activation_params))
            _require(n == len(UNARY_OPS[act].PARAMS), f"{self.name}: activation {act} takes {len(UNARY_OPS[act].PARAMS)} parameters, got {n}")
        bias = self.bias
        if bias is not None:
            _require(shape_of(bias) == (channels,), f"{self.name}: bias must have shape [{channels}], got {list(shape_of(bias))}")


class ConvBase(EpilogueOp, ABC):
    """Shared by conv and conv_transpose: NC(H)W input, 1 or 2 spatial axes."""

    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    strides = prop_def(DenseArrayBase[I64])
    pads = prop_def(DenseArrayBase[I64])
    dilations = prop_def(DenseArrayBase[I64])
    groups = prop_def(IntegerAttr[I64])
    assembly_format = "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)"

    def spatial_rank(self) -> int:
        return len(shape_of(self.input)) - 2

    def kernel(self) -> Shape:
        return shape_of(self.weight)[2:]

    def verify_common(self) -> None:
        _require_float(self, self.input, self.weight)
        _require_same_element_type(self, self.input, self.weight, self.result)
        rank = len(shape_of(self.input))
        _require(rank in (3, 4), f"{self.name} supports 1-D and 2-D inputs (rank 3 or 4), got rank {rank}")
        _require(len(shape_of(self.weight)) == rank, f"{self.name}: weight rank {len(shape_of(self.weight))} differs from input rank {rank}")
        k = rank - 2
        for name, n in (("strides", k), ("dilations", k), ("pads", 2 * k)):
            vals = as_tuple(getattr(self, name))
            _require(len(vals) == n, f"{self.name}: {name} needs {n} values, got {len(vals)}")
        _require(all(v >= 1 for v in as_tuple(self.strides) + as_tuple(self.dilations)), f"{self.name}: strides and dilations must be >= 1")
        _require(all(v >= 0 for v in as_tuple(self.pads)), f"{self.name}: pads must be >= 0")
        _require(self.groups.value.data >= 1, f"{self.name}: groups must be >= 1")


def _conv_props(strides, pads, dilations, groups) -> dict[str, Attribute]:
    return {"strides": ints(strides), "pads": ints(pads), "dilations": ints(dilations), "groups": int_attr(groups)}


@irdl_op_definition
class ConvOp(ConvBase):
    """Convolution; weight is [Cout, Cin/groups, kH, kW]."""

    name = "ane.conv"

    def __init__(self, input: SSAValue, weight: SSAValue, bias: SSAValue | None = None, *, strides: Sequence[int] | None = None,
                 pads: Sequence[int] | None = None, dilations: Sequence[int] | None = None, groups: int = 1):
        k = len(shape_of(input)) - 2
        strides, dilations, pads = strides or [1] * k, dilations or [1] * k, pads or [0] * 2 * k
        out = tensor(self.infer(shape_of(input), shape_of(weight), strides, pads, dilations), element_type_of(input))
        super().__init__(operands=[input, weight, [] if bias is None else [bias]], result_types=[out],
                         properties=_conv_props(strides, pads, dilations, groups))

    @staticmethod
    def infer(x: Shape, w: Shape, strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int]) -> Shape:
        k = len(x) - 2
        spatial = tuple(window_output_size(x[2 + i], w[2 + i], strides[i], pads[i], pads[k + i], dilations[i]) for i in range(k))
        return (x[0], w[0], *spatial)

    def verify_(self) -> None:
        self.verify_common()
        x, w, groups = shape_of(self.input), shape_of(self.weight), self.groups.value.data
        _require(x[1] == w[1] * groups, f"ane.conv: input has {x[1]} channels, the weight takes {w[1]} per group x {groups} groups")
        _require(w[0] % groups == 0, f"ane.conv: {w[0]} output channels are not divisible by {groups} groups")
        out = self.infer(x, w, as_tuple(self.strides), as_tuple(self.pads), as_tuple(self.dilations))
        _require(all(d >= 1 for d in out), f"ane.conv: the kernel does not fit the padded input (output {list(out)})")
        _check_result(self, out, shape_of(self.result))
        self.verify_epilogue(w[0])


@irdl_op_definition
class ConvTransposeOp(ConvBase):
    """Transposed convolution; weight is [Cin, Cout/groups, kH, kW]."""

    name = "ane.conv_transpose"
    output_padding = prop_def(DenseArrayBase[I64])

    def __init__(self, input: SSAValue, weight: SSAValue, bias: SSAValue | None = None, *, strides: Sequence[int] | None = None,
                 pads: Sequence[int] | None = None, dilations: Sequence[int] | None = None, groups: int = 1,
                 output_padding: Sequence[int] | None = None):
        k = len(shape_of(input)) - 2
        strides, dilations, pads = strides or [1] * k, dilations or [1] * k, pads or [0] * 2 * k
        output_padding = output_padding or [0] * k
        out = tensor(self.infer(shape_of(input), shape_of(weight), strides, pads, dilations, output_padding, groups), element_type_of(input))
        props = _conv_props(strides, pads, dilations, groups) | {"output_padding": ints(output_padding)}
        super().__init__(operands=[input, weight, [] if bias is None else [bias]], result_types=[out], properties=props)

    @staticmethod
    def infer(x: Shape, w: Shape, strides, pads, dilations, output_padding, groups: int) -> Shape:
        k = len(x) - 2
        spatial = tuple(
            strides[i] * (x[2 + i] - 1) + output_padding[i] + (w[2 + i] - 1) * dilations[i] + 1 - pads[i] - pads[k + i]
            for i in range(k)
        )
        return (x[0], w[1] * groups, *spatial)

    def verify_(self) -> None:
        self.verify_common()
        x, w, groups = shape_of(self.input), shape_of(self.weight), self.groups.value.data
        _require(x[1] == w[0], f"ane.conv_transpose: input has {x[1]} channels, weight expects {w[0]}")
        _require(x[1] % groups == 0, f"ane.conv_transpose: {x[1]} input channels are not divisible by {groups} groups")
        op = as_tuple(self.output_padding)
        _require(len(op) == self.spatial_rank(), f"ane.conv_transpose: output_padding needs {self.spatial_rank()} values")
        out = self.infer(x, w, as_tuple(self.strides), as_tuple(self.pads), as_tuple(self.dilations), op, groups)
        _require(all(d >= 1 for d in out), f"ane.conv_transpose: empty output {list(out)}")
        _check_result(self, out, shape_of(self.result))
        self.verify_epilogue(out[1])


@irdl_op_definition
class MatmulOp(EpilogueOp):
    """Batched matrix product [..., M, K] x [..., K, N] with optional transposes and bias [N]."""

    name = "ane.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    transpose_lhs = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(False))
    transpose_rhs = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(False))
    assembly_format = "$lhs `,` $rhs (`,` $bias^)? attr-dict `:` functional-type(operands, results)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, bias: SSAValue | None = None, *, transpose_lhs: bool = False, transpose_rhs: bool = False):
        out = tensor(self.infer(shape_of(lhs), shape_of(rhs), transpose_lhs, transpose_rhs), element_type_of(lhs))
        props = {"transpose_lhs": bool_attr(transpose_lhs), "transpose_rhs": bool_attr(transpose_rhs)}
        super().__init__(operands=[lhs, rhs, [] if bias is None else [bias]], result_types=[out], properties=props)

    @staticmethod
    def infer(a: Shape, b: Shape, transpose_lhs: bool = False, transpose_rhs: bool = False) -> Shape:
        _require(len(a) >= 2 and len(a) == len(b), f"ane.matmul needs operands of equal rank >= 2, got {list(a)} and {list(b)}")
        m, ka = (a[-1], a[-2]) if transpose_lhs else (a[-2], a[-1])
        kb, n = (b[-1], b[-2]) if transpose_rhs else (b[-2], b[-1])
        _require(ka == kb, f"ane.matmul: contraction sizes differ ({ka} vs {kb})")
        return (*broadcast_shapes(a[:-2], b[:-2], op_name="ane.matmul batch axes"), m, n)

    def flags(self) -> tuple[bool, bool]:
        return bool(self.transpose_lhs.value.data), bool(self.transpose_rhs.value.data)

    def verify_(self) -> None:
        _require_float(self, self.lhs, self.rhs)
        _require_same_element_type(self, self.lhs, self.rhs, self.result)
        out = self.infer(shape_of(self.lhs), shape_of(self.rhs), *self.flags())
        _check_result(self, out, shape_of(self.result))
        self.verify_epilogue(out[-1])


@irdl_op_definition
class SdpaOp(IRDLOperation):
    """Scaled dot-product attention: softmax(q·kᵀ·scale + mask)·v over [B, H, S, D] tensors."""

    name = "ane.sdpa"
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    result = result_def(TensorType)
    scale = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$query `,` $key `,` $value (`,` $mask^)? attr-dict `:` functional-type(operands, results)"

    def __init__(self, query: SSAValue, key: SSAValue, value: SSAValue, mask: SSAValue | None = None, *, scale: float | None = None):
        q, v = shape_of(query), shape_of(value)
        scale = 1.0 / math.sqrt(q[-1]) if scale is None else scale
        out = tensor((*q[:-1], v[-1]), element_type_of(query))
        super().__init__(operands=[query, key, value, [] if mask is None else [mask]], result_types=[out],
                         properties={"scale": float_attr(scale)})

    def verify_(self) -> None:
        _require_float(self, self.query, self.key, self.value)
        _require_same_element_type(self, self.query, self.key, self.value, self.result)
        q, k, v = shape_of(self.query), shape_of(self.key), shape_of(self.value)
        _require(len(q) == len(k) == len(v) and len(q) >= 3, "ane.sdpa: query, key and value need equal rank >= 3")
        _require(q[-1] == k[-1], f"ane.sdpa: query depth {q[-1]} differs from key depth {k[-1]}")
        _require(k[-2] == v[-2], f"ane.sdpa: key length {k[-2]} differs from value length {v[-2]}")
        _require(q[:-2] == k[:-2] == v[:-2], "ane.sdpa: batch and head axes must match")
        if self.mask is not None:
            m = shape_of(self.mask)
            scores = (*q[:-1], k[-2])
            _require(len(m) == len(q), "ane.sdpa: the mask needs the rank of the query")
            _require(element_type_of(self.mask) == element_type_of(self.query),
                     f"ane.sdpa: the mask is added to the scores, so it needs their element type {element_type_of(self.query)}, got {self.mask.type}")
            _require(all(a in (1, b) for a, b in zip(m, scores)), f"ane.sdpa: mask {list(m)} does not broadcast to the scores {list(scores)}")
        _check_result(self, (*q[:-1], v[-1]), shape_of(self.result))


# --------------------------------------------------------------------------------------------
# Reductions, arg-reductions, pooling, normalization
# --------------------------------------------------------------------------------------------


def reduced_shape(shape: Shape, axes: Sequence[int], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


class ReduceOp(IRDLOperation, Reduces, ABC):
    """Reduce over `axes`, keeping them as size 1 when `keepdims`."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    axes = prop_def(DenseArrayBase[I64])
    keepdims = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(True))
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, axes: Sequence[int], keepdims: bool = True):
        out = tensor(reduced_shape(shape_of(input), axes, keepdims), element_type_of(input))
        super().__init__(operands=[input], result_types=[out], properties={"axes": ints(sorted(axes)), "keepdims": bool_attr(keepdims)})

    def reduced_axes(self) -> tuple[int, ...]:
        return tuple(sorted(as_tuple(self.axes)))

    def verify_(self) -> None:
        _require_numeric(self, self.input)
        _require_same_element_type(self, self.input, self.result)
        axes = as_tuple(self.axes)
        _check_axes(self, axes, len(shape_of(self.input)))
        _check_result(self, reduced_shape(shape_of(self.input), axes, bool(self.keepdims.value.data)), shape_of(self.result))


@irdl_op_definition
class ReduceSumOp(ReduceOp):
    name = "ane.reduce_sum"


@irdl_op_definition
class ReduceMeanOp(ReduceOp):
    name = "ane.reduce_mean"


@irdl_op_definition
class ReduceMaxOp(ReduceOp):
    name = "ane.reduce_max"


@irdl_op_definition
class ReduceMinOp(ReduceOp):
    name = "ane.reduce_min"


@irdl_op_definition
class ReduceL2Op(ReduceOp):
    name = "ane.reduce_l2"


@irdl_op_definition
class ReduceLogSumExpOp(ReduceOp):
    name = "ane.reduce_logsumexp"


class ArgReduceOp(IRDLOperation, Reduces, ABC):
    """Index of the extreme value along `axis`; ties go to the first (or last) index."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    keepdims = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(True))
    select_last_index = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(False))
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, axis: int, keepdims: bool = True, select_last_index: bool = False, index_type: Attribute = i32):
        out = tensor(reduced_shape(shape_of(input), [axis], keepdims), index_type)
        props = {"axis": int_attr(axis), "keepdims": bool_attr(keepdims), "select_last_index": bool_attr(select_last_index)}
        super().__init__(operands=[input], result_types=[out], properties=props)

    def reduced_axes(self) -> tuple[int, ...]:
        return (self.axis.value.data,)

    def verify_(self) -> None:
        _require_numeric(self, self.input)
        et = element_type_of(self.result)
        _require(isinstance(et, IntegerType) and et.width.data in (32, 64), f"{self.name} produces i32 or i64 indices, got {et}")
        axis = self.axis.value.data
        _check_axes(self, [axis], len(shape_of(self.input)))
        _check_result(self, reduced_shape(shape_of(self.input), [axis], bool(self.keepdims.value.data)), shape_of(self.result))


@irdl_op_definition
class ArgmaxOp(ArgReduceOp):
    name = "ane.argmax"


@irdl_op_definition
class ArgminOp(ArgReduceOp):
    name = "ane.argmin"


@irdl_op_definition
class TopkOp(IRDLOperation, Reduces):
    """The `k` largest (or smallest) values along `axis` and their indices, in order (ties: the lower
    index first, as ONNX TopK); a sort when `k` is the axis's extent. `sorted = false` allows any
    order, so the sorted answer is always a correct one."""

    name = "ane.topk"
    input = operand_def(TensorType)
    values = result_def(TensorType)
    indices = result_def(TensorType)
    k = prop_def(IntegerAttr[I64])
    axis = prop_def(IntegerAttr[I64])
    largest = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(True))
    sorted = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(True))
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, k: int, axis: int, largest: bool = True, sorted: bool = True, index_type: Attribute = i32):
        shape = [k if i == axis else d for i, d in enumerate(shape_of(input))]
        props = {"k": int_attr(k), "axis": int_attr(axis), "largest": bool_attr(largest), "sorted": bool_attr(sorted)}
        super().__init__(operands=[input], result_types=[tensor(shape, element_type_of(input)), tensor(shape, index_type)],
                         properties=props)

    def reduced_axes(self) -> tuple[int, ...]:
        return (self.axis.value.data,)

    def verify_(self) -> None:
        _require_numeric(self, self.input)
        _require_same_element_type(self, self.input, self.values)
        et = element_type_of(self.indices)
        _require(isinstance(et, IntegerType) and et.width.data in (32, 64), f"{self.name} produces i32 or i64 indices, got {et}")
        x, axis, k = shape_of(self.input), self.axis.value.data, self.k.value.data
        _check_axes(self, [axis], len(x))
        _require(1 <= k <= x[axis], f"{self.name}: k = {k} is not within 1..{x[axis]}, the extent of axis {axis}")
        expected = tuple(k if i == axis else d for i, d in enumerate(x))
        _check_result(self, expected, shape_of(self.values))
        _check_result(self, expected, shape_of(self.indices))


class PoolOp(IRDLOperation, ABC):
    """A sliding-window pool over the spatial axes (1 or 2) of an NC(H)W tensor."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    kernel = prop_def(DenseArrayBase[I64])
    strides = prop_def(DenseArrayBase[I64])
    pads = prop_def(DenseArrayBase[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, kernel: Sequence[int], strides: Sequence[int] | None = None, pads: Sequence[int] | None = None, **extra: Attribute):
        k = len(kernel)
        strides, pads = strides or [1] * k, pads or [0] * 2 * k
        out = tensor(self.infer(shape_of(input), kernel, strides, pads), element_type_of(input))
        props = {"kernel": ints(kernel), "strides": ints(strides), "pads": ints(pads), **extra}
        super().__init__(operands=[input], result_types=[out], properties=props)

    @staticmethod
    def infer(x: Shape, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int]) -> Shape:
        k = len(kernel)
        return (*x[:2], *(window_output_size(x[2 + i], kernel[i], strides[i], pads[i], pads[k + i]) for i in range(k)))

    def verify_(self) -> None:
        _require_float(self, self.input)
        _require_same_element_type(self, self.input, self.result)
        x = shape_of(self.input)
        kernel, strides, pads = as_tuple(self.kernel), as_tuple(self.strides), as_tuple(self.pads)
        _require(len(x) in (3, 4) and len(kernel) == len(x) - 2, f"{self.name}: needs an NC(H)W input and one kernel size per spatial axis")
        _require(len(strides) == len(kernel) and len(pads) == 2 * len(kernel), f"{self.name}: strides/pads do not match the kernel rank")
        _require(all(v >= 1 for v in kernel + strides) and all(p >= 0 for p in pads), f"{self.name}: kernel and strides must be >= 1, pads >= 0")
        _require(all(p < k for p, k in zip(pads, kernel + kernel)), f"{self.name}: pads must be smaller than the kernel")
        out = self.infer(x, kernel, strides, pads)
        _require(all(d >= 1 for d in out), f"{self.name}: the window does not fit the input")
        _check_result(self, out, shape_of(self.result))


@irdl_op_definition
class MaxPoolOp(PoolOp):
    name = "ane.max_pool"


@irdl_op_definition
class AvgPoolOp(PoolOp):
    """Average pool; padded positions count toward the divisor only with `count_include_pad`."""

    name = "ane.avg_pool"
    count_include_pad = opt_prop_def(BoolAttr, default_value=IntegerAttr.from_bool(False))

    def __init__(self, input: SSAValue, kernel: Sequence[int], strides: Sequence[int] | None = None,
                 pads: Sequence[int] | None = None, count_include_pad: bool = False):
        super().__init__(input, kernel, strides, pads, count_include_pad=bool_attr(count_include_pad))


@irdl_op_definition
class L2PoolOp(PoolOp):
    name = "ane.l2_pool"


class GlobalPoolOp(IRDLOperation, ABC):
    """Pool over all spatial axes of an NC(H)W tensor to N×C×1(×1)."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue):
        x = shape_of(input)
        super().__init__(operands=[input], result_types=[tensor((*x[:2], *[1] * (len(x) - 2)), element_type_of(input))])

    def verify_(self) -> None:
        _require_float(self, self.input)
        _require_same_element_type(self, self.input, self.result)
        x = shape_of(self.input)
        _require(len(x) >= 3, f"{self.name}: needs an NC(H)W input")
        _check_result(self, (*x[:2], *[1] * (len(x) - 2)), shape_of(self.result))


@irdl_op_definition
class GlobalAvgPoolOp(GlobalPoolOp):
    name = "ane.global_avg_pool"


@irdl_op_definition
class GlobalMaxPoolOp(GlobalPoolOp):
    name = "ane.global_max_pool"


class NormOp(IRDLOperation, Reduces, ABC):
    """A normalization: statistics over some axes, then (x - mean) / sqrt(var + epsilon)."""

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "operands attr-dict `:` functional-type(operands, results)"
    if TYPE_CHECKING:  # each norm defines these where its operand order puts them
        input: Operand
        result: OpResult[TensorType]
        epsilon: FloatAttr

    def verify_(self) -> None:
        x, out = self.input, self.result
        _require_float(self, x)
        _require_same_element_type(self, x, out)
        _check_result(self, shape_of(x), shape_of(out))
        _require(self.epsilon.value.data >= 0, f"{self.name}: epsilon must be >= 0")


class AffineNormOp(NormOp, ABC):
    """A normalization followed by `* scale + bias` (frontends without an affine pass ones and zeros)."""

    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    result = result_def(TensorType)
    epsilon = prop_def(FloatAttr)

    def __init__(self, input: SSAValue, scale: SSAValue, bias: SSAValue, *, epsilon: float = 1e-5, **props: Attribute):
        super().__init__(operands=[input, scale, bias], result_types=[input.type], properties={"epsilon": float_attr(epsilon), **props})

    def affine_shape(self) -> Shape:
        """The shape `scale` and `bias` must have: one value per channel unless a norm says otherwise."""
        return (shape_of(self.input)[1],)

    def verify_(self) -> None:
        super().verify_()
        _require_same_element_type(self, self.input, self.scale, self.bias)
        for name in ("scale", "bias"):
            shape = shape_of(getattr(self, name))
            _require(shape == self.affine_shape(), f"{self.name}: {name} must have shape {list(self.affine_shape())}, got {list(shape)}")


@irdl_op_definition
class LayerNormOp(AffineNormOp):
    """Normalize over `axes` (the last axis, or C in (B,C,1,S)); scale/bias span those axes."""

    name = "ane.layer_norm"
    axes = prop_def(DenseArrayBase[I64])

    def __init__(self, input: SSAValue, scale: SSAValue, bias: SSAValue, *, axes: Sequence[int], epsilon: float = 1e-5):
        super().__init__(input, scale, bias, epsilon=epsilon, axes=ints(axes))

    def affine_shape(self) -> Shape:
        x = shape_of(self.input)
        return tuple(x[a] for a in as_tuple(self.axes))

    def reduced_axes(self) -> tuple[int, ...]:
        return tuple(sorted(as_tuple(self.axes)))

    def verify_(self) -> None:
        _check_axes(self, as_tuple(self.axes), len(shape_of(self.input)))
        super().verify_()


@irdl_op_definition
class InstanceNormOp(AffineNormOp):
    """Normalize each (n, c) plane over the spatial axes."""

    name = "ane.instance_norm"

    def reduced_axes(self) -> tuple[int, ...]:
        """The spatial axes: each (n, c) plane has its own statistics."""
        return tuple(range(2, len(shape_of(self.input))))

    def verify_(self) -> None:
        _require(len(shape_of(self.input)) >= 3, "ane.instance_norm needs an NC(H)W input")
        super().verify_()


@irdl_op_definition
class GroupNormOp(AffineNormOp):
    """Normalize over groups of channels together with the spatial axes."""

    name = "ane.group_norm"
    num_groups = prop_def(IntegerAttr[I64])

    def __init__(self, input: SSAValue, scale: SSAValue, bias: SSAValue, *, num_groups: int, epsilon: float = 1e-5):
        super().__init__(input, scale, bias, epsilon=epsilon, num_groups=int_attr(num_groups))

    def reduced_axes(self) -> tuple[int, ...]:
        """The channels (a group's statistics span several) and the spatial axes."""
        return tuple(range(1, len(shape_of(self.input))))

    def verify_(self) -> None:
        x = shape_of(self.input)
        g = self.num_groups.value.data
        _require(len(x) >= 3, "ane.group_norm needs an NC(H)W input")
        _require(g >= 1 and x[1] % g == 0, f"ane.group_norm: {x[1]} channels are not divisible by {g} groups")
        super().verify_()


@irdl_op_definition
class L2NormOp(NormOp):
    """x / sqrt(max(sum(x²), epsilon)) over `axes`."""

    name = "ane.l2_norm"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    epsilon = prop_def(FloatAttr)
    axes = prop_def(DenseArrayBase[I64])

    def __init__(self, input: SSAValue, *, axes: Sequence[int], epsilon: float = 1e-12):
        super().__init__(operands=[input], result_types=[input.type], properties={"epsilon": float_attr(epsilon), "axes": ints(axes)})

    def reduced_axes(self) -> tuple[int, ...]:
        return tuple(sorted(as_tuple(self.axes)))

    def verify_(self) -> None:
        _check_axes(self, as_tuple(self.axes), len(shape_of(self.input)))
        super().verify_()


# --------------------------------------------------------------------------------------------
# Data movement
# --------------------------------------------------------------------------------------------


class ReshapeFolds(HasCanonicalizationPatternsTrait):
    """A reshape of a reshape is one reshape; a reshape to the input's shape is the input."""

    @classmethod
    def get_canonicalization_patterns(cls) -> tuple[RewritePattern, ...]:
        return (FoldReshape(),)


class TransposeFolds(HasCanonicalizationPatternsTrait):
    """The identity transpose is its input, one that keeps the non-unit axes in order is a reshape,
    and a transpose of a transpose is one transpose."""

    @classmethod
    def get_canonicalization_patterns(cls) -> tuple[RewritePattern, ...]:
        return (FoldTranspose(),)


class MovementOp(IRDLOperation, ABC):
    """Moves or copies elements; any element type, shared by input and result."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def expected_shape(self) -> Shape:
        return shape_of(self.result)

    def verify_(self) -> None:
        _require_same_element_type(self, self.input, self.result)
        _check_result(self, self.expected_shape(), shape_of(self.result))


@irdl_op_definition
class ReshapeOp(MovementOp):
    """Reinterpret the row-major element order with the result's shape."""

    name = "ane.reshape"
    traits = traits_def(Pure(), ReshapeFolds())

    def __init__(self, input: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[input], result_types=[tensor(shape, element_type_of(input))])

    def verify_(self) -> None:
        super().verify_()
        _require(math.prod(shape_of(self.input)) == math.prod(shape_of(self.result)),
                 f"ane.reshape: {list(shape_of(self.input))} and {list(shape_of(self.result))} hold different element counts")


@irdl_op_definition
class TransposeOp(MovementOp):
    """Permute axes: result axis i is input axis perm[i]."""

    name = "ane.transpose"
    perm = prop_def(DenseArrayBase[I64])
    traits = traits_def(Pure(), TransposeFolds())

    def __init__(self, input: SSAValue, perm: Sequence[int]):
        x = shape_of(input)
        super().__init__(operands=[input], result_types=[tensor([x[p] for p in perm], element_type_of(input))], properties={"perm": ints(perm)})

    def expected_shape(self) -> Shape:
        x, perm = shape_of(self.input), as_tuple(self.perm)
        _require(sorted(perm) == list(range(len(x))), f"ane.transpose: {list(perm)} is not a permutation of {len(x)} axes")
        return tuple(x[p] for p in perm)


def _replace_named(op: Operation, new: Operation, rewriter: PatternRewriter) -> None:
    """Replace `op` by `new`, which takes over its `ane.name`."""
    if NAME_ATTR in op.attributes:
        new.attributes[NAME_ATTR] = op.attributes[NAME_ATTR]
    rewriter.insert(new, InsertPoint.before(op))
    rewriter.replace(op, [], [new.results[0]])


class FoldReshape(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ReshapeOp, rewriter: PatternRewriter) -> None:
        if shape_of(op.input) == shape_of(op.result):
            rewriter.replace(op, [], [op.input])
        elif isinstance(inner := op.input.owner, ReshapeOp):
            _replace_named(op, ReshapeOp(inner.input, shape_of(op.result)), rewriter)


class FoldTranspose(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: TransposeOp, rewriter: PatternRewriter) -> None:
        perm = as_tuple(op.perm)
        if is_identity(perm):
            rewriter.replace(op, [], [op.input])
        elif not moves_data(perm, shape_of(op.input)):
            _replace_named(op, ReshapeOp(op.input, shape_of(op.result)), rewriter)
        elif isinstance(inner := op.input.owner, TransposeOp):
            _replace_named(op, TransposeOp(inner.input, compose(as_tuple(inner.perm), perm)), rewriter)


@irdl_op_definition
class SliceOp(MovementOp):
    """Take `starts[i]:ends[i]:steps[i]` along every axis (steps > 0; ends exclusive, clamped)."""

    name = "ane.slice"
    starts = prop_def(DenseArrayBase[I64])
    ends = prop_def(DenseArrayBase[I64])
    steps = prop_def(DenseArrayBase[I64])

    def __init__(self, input: SSAValue, starts: Sequence[int], ends: Sequence[int], steps: Sequence[int] | None = None):
        steps = steps or [1] * len(starts)
        out = tensor(self.infer(shape_of(input), starts, ends, steps), element_type_of(input))
        super().__init__(operands=[input], result_types=[out], properties={"starts": ints(starts), "ends": ints(ends), "steps": ints(steps)})

    @staticmethod
    def infer(x: Shape, starts, ends, steps) -> Shape:
        return tuple(len(range(s, min(e, d), st)) for d, s, e, st in zip(x, starts, ends, steps))

    def expected_shape(self) -> Shape:
        x = shape_of(self.input)
        starts, ends, steps = as_tuple(self.starts), as_tuple(self.ends), as_tuple(self.steps)
        _require(len(starts) == len(ends) == len(steps) == len(x), f"ane.slice: starts/ends/steps need {len(x)} values each")
        _require(all(st >= 1 for st in steps), "ane.slice: steps must be >= 1")
        _require(all(0 <= s <= d for s, d in zip(starts, x)) and all(e >= s for s, e in zip(starts, ends)),
                 f"ane.slice: starts {list(starts)} and ends {list(ends)} are out of range for shape {list(x)}")
        return self.infer(x, starts, ends, steps)


@irdl_op_definition
class PadOp(MovementOp):
    """Pad every axis: `pads` is [begin_0…begin_n, end_0…end_n]; mode constant, reflect or edge."""

    name = "ane.pad"
    pads = prop_def(DenseArrayBase[I64])
    mode = opt_prop_def(StringAttr, default_value=StringAttr("constant"))
    value = opt_prop_def(FloatAttr, default_value=FloatAttr(0.0, f32))
    MODES: ClassVar = ("constant", "reflect", "edge")

    def __init__(self, input: SSAValue, pads: Sequence[int], mode: str = "constant", value: float = 0.0):
        x, n = shape_of(input), len(pads) // 2
        out = tensor([d + pads[i] + pads[n + i] for i, d in enumerate(x)], element_type_of(input))
        super().__init__(operands=[input], result_types=[out], properties={"pads": ints(pads), "mode": StringAttr(mode), "value": float_attr(value)})

    def expected_shape(self) -> Shape:
        x, pads = shape_of(self.input), as_tuple(self.pads)
        _require(len(pads) == 2 * len(x), f"ane.pad: pads needs {2 * len(x)} values")
        _require(all(p >= 0 for p in pads), "ane.pad: pads must be >= 0 (use ane.slice to crop)")
        _require(self.mode.data in self.MODES, f"ane.pad: mode must be one of {self.MODES}")
        n = len(x)
        if self.mode.data == "reflect":
            _require(all(pads[i] < d and pads[n + i] < d for i, d in enumerate(x)), "ane.pad: reflect pads must be smaller than the axis")
        return tuple(d + pads[i] + pads[n + i] for i, d in enumerate(x))


@irdl_op_definition
class TileOp(MovementOp):
    """Repeat the tensor `repeats[i]` times along axis i."""

    name = "ane.tile"
    repeats = prop_def(DenseArrayBase[I64])

    def __init__(self, input: SSAValue, repeats: Sequence[int]):
        x = shape_of(input)
        out = tensor([d * r for d, r in zip(x, repeats)], element_type_of(input))
        super().__init__(operands=[input], result_types=[out], properties={"repeats": ints(repeats)})

    def expected_shape(self) -> Shape:
        x, reps = shape_of(self.input), as_tuple(self.repeats)
        _require(len(reps) == len(x) and all(r >= 1 for r in reps), f"ane.tile: repeats needs {len(x)} values >= 1")
        return tuple(d * r for d, r in zip(x, reps))


@irdl_op_definition
class BroadcastOp(MovementOp):
    """Broadcast size-1 axes to the result's shape (equal rank)."""

    name = "ane.broadcast"

    def __init__(self, input: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[input], result_types=[tensor(shape, element_type_of(input))])

    def expected_shape(self) -> Shape:
        x, out = shape_of(self.input), shape_of(self.result)
        _require(len(x) == len(out) and all(a in (1, b) for a, b in zip(x, out)), f"ane.broadcast: {list(x)} does not broadcast to {list(out)}")
        return out


@irdl_op_definition
class ResizeOp(MovementOp):
    """Resize the spatial axes (the last one or two) by `scales`, nearest or bilinear.

    `coordinate_mode` follows ONNX: half_pixel, pytorch_half_pixel, align_corners, asymmetric.
    `nearest_mode`: round_prefer_floor, round_prefer_ceil, floor, ceil.
    """

    name = "ane.resize"
    mode = prop_def(StringAttr)
    scales = prop_def(DenseArrayBase)
    coordinate_mode = opt_prop_def(StringAttr, default_value=StringAttr("half_pixel"))
    nearest_mode = opt_prop_def(StringAttr, default_value=StringAttr("round_prefer_floor"))
    MODES: ClassVar = ("nearest", "bilinear")
    COORDINATE_MODES: ClassVar = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
    NEAREST_MODES: ClassVar = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

    def __init__(self, input: SSAValue, shape: Sequence[int], mode: str, scales: Sequence[float],
                 coordinate_mode: str = "half_pixel", nearest_mode: str = "round_prefer_floor"):
        props = {"mode": StringAttr(mode), "scales": floats(scales), "coordinate_mode": StringAttr(coordinate_mode),
                 "nearest_mode": StringAttr(nearest_mode)}
        super().__init__(operands=[input], result_types=[tensor(shape, element_type_of(input))], properties=props)

    def expected_shape(self) -> Shape:
        x, out, scales = shape_of(self.input), shape_of(self.result), as_tuple(self.scales)
        _require(self.mode.data in self.MODES, f"ane.resize: mode must be one of {self.MODES}")
        _require(self.coordinate_mode.data in self.COORDINATE_MODES, f"ane.resize: coordinate_mode must be one of {self.COORDINATE_MODES}")
        _require(self.nearest_mode.data in self.NEAREST_MODES, f"ane.resize: nearest_mode must be one of {self.NEAREST_MODES}")
        k = len(scales)
        _require(k in (1, 2) and len(x) >= k + 1 and len(out) == len(x), "ane.resize: one or two spatial scales over an input of higher rank")
        _require(x[:-k] == out[:-k], "ane.resize changes only the spatial axes")
        _require(all(s > 0 for s in scales), "ane.resize: scales must be > 0")
        return out


class BlockOp(MovementOp, ABC):
    """Moves blocks between channels and space in an NCHW tensor."""

    block_size = prop_def(IntegerAttr[I64])


@irdl_op_definition
class DepthToSpaceOp(BlockOp):
    """[N, C·b², H, W] → [N, C, H·b, W·b]; `mode` DCR (depth-column-row) or CRD."""

    name = "ane.depth_to_space"
    mode = opt_prop_def(StringAttr, default_value=StringAttr("DCR"))

    def __init__(self, input: SSAValue, block_size: int, mode: str = "DCR"):
        n, c, h, w = shape_of(input)
        b = block_size
        out = tensor((n, c // (b * b), h * b, w * b), element_type_of(input))
        super().__init__(operands=[input], result_types=[out], properties={"block_size": int_attr(b), "mode": StringAttr(mode)})

    def expected_shape(self) -> Shape:
        x, b = shape_of(self.input), self.block_size.value.data
        _require(len(x) == 4 and b >= 1 and x[1] % (b * b) == 0, f"ane.depth_to_space: needs NCHW with C divisible by {b * b}")
        _require(self.mode.data in ("DCR", "CRD"), "ane.depth_to_space: mode must be DCR or CRD")
        return (x[0], x[1] // (b * b), x[2] * b, x[3] * b)


@irdl_op_definition
class SpaceToDepthOp(BlockOp):
    """[N, C, H·b, W·b] → [N, C·b², H, W]."""

    name = "ane.space_to_depth"

    def __init__(self, input: SSAValue, block_size: int):
        n, c, h, w = shape_of(input)
        b = block_size
        super().__init__(operands=[input], result_types=[tensor((n, c * b * b, h // b, w // b), element_type_of(input))],
                         properties={"block_size": int_attr(b)})

    def expected_shape(self) -> Shape:
        x, b = shape_of(self.input), self.block_size.value.data
        _require(len(x) == 4 and b >= 1 and x[2] % b == 0 and x[3] % b == 0, f"ane.space_to_depth: needs NCHW with H and W divisible by {b}")
        return (x[0], x[1] * b * b, x[2] // b, x[3] // b)


@irdl_op_definition
class CastOp(IRDLOperation):
    """Convert the element type (f32 ↔ f16 at segment edges, bool/int ↔ float)."""

    name = "ane.cast"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, element_type: Attribute):
        super().__init__(operands=[input], result_types=[tensor(shape_of(input), element_type)])

    def verify_(self) -> None:
        _check_result(self, shape_of(self.input), shape_of(self.result))


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Join tensors along `axis`."""

    name = "ane.concat"
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$inputs attr-dict `:` functional-type(operands, results)"

    def __init__(self, inputs: Sequence[SSAValue], axis: int):
        shapes = [shape_of(v) for v in inputs]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        super().__init__(operands=[list(inputs)], result_types=[tensor(out, element_type_of(inputs[0]))], properties={"axis": int_attr(axis)})

    def verify_(self) -> None:
        _require(len(self.inputs) >= 1, "ane.concat needs at least one input")
        _require_same_element_type(self, *self.inputs, self.result)
        shapes = [shape_of(v) for v in self.inputs]
        axis = self.axis.value.data
        _check_axes(self, [axis], len(shapes[0]))
        for s in shapes:
            _require(len(s) == len(shapes[0]) and all(a == b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis),
                     f"ane.concat: {list(s)} and {list(shapes[0])} differ off axis {axis}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        _check_result(self, tuple(out), shape_of(self.result))


@irdl_op_definition
class SplitOp(IRDLOperation):
    """Cut a tensor along `axis` into consecutive pieces sized by the result types."""

    name = "ane.split"
    input = operand_def(TensorType)
    outputs = var_result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, axis: int, sizes: Sequence[int]):
        x = shape_of(input)
        outs = [tensor([s if i == axis else d for i, d in enumerate(x)], element_type_of(input)) for s in sizes]
        super().__init__(operands=[input], result_types=[outs], properties={"axis": int_attr(axis)})

    def sizes(self) -> Shape:
        return tuple(shape_of(r)[self.axis.value.data] for r in self.outputs)

    def verify_(self) -> None:
        _require(len(self.outputs) >= 1, "ane.split needs at least one result")
        _require_same_element_type(self, self.input, *self.outputs)
        x, axis = shape_of(self.input), self.axis.value.data
        _check_axes(self, [axis], len(x))
        for r in self.outputs:
            s = shape_of(r)
            _require(len(s) == len(x) and all(a == b for i, (a, b) in enumerate(zip(s, x)) if i != axis), f"ane.split: piece {list(s)} differs from {list(x)} off axis {axis}")
        _require(sum(self.sizes()) == x[axis], f"ane.split: pieces {list(self.sizes())} do not add up to {x[axis]}")


# --------------------------------------------------------------------------------------------
# Placement: a segment is one ANE program (the partition pass outlines them)
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Returns a segment's results."""

    name = "ane.yield"
    values = var_operand_def(TensorType)
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(SegmentOp), Pure()))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, *vals: SSAValue):
        super().__init__(operands=[list(vals)])


@irdl_op_definition
class SegmentOp(IRDLOperation):
    """A run of ops placed on the ANE together: one program, entered and left through casts.

    The body's block arguments receive the operands; `ane.yield` gives the results. Ops outside any
    segment run on the CPU.
    """

    name = "ane.segment"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    body = region_def("single_block")
    traits = traits_def(IsolatedFromAbove())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "`(` $inputs `)` attr-dict `:` functional-type($inputs, $outputs) $body"

    def __init__(self, inputs: Sequence[SSAValue], result_types: Sequence[Attribute], body: Region):
        super().__init__(operands=[list(inputs)], result_types=[list(result_types)], regions=[body])

    def verify_(self) -> None:
        block = self.body.block
        args, operands = [str(a.type) for a in block.args], [str(v.type) for v in self.inputs]
        _require(args == operands, f"ane.segment: block argument types {args} differ from the operand types {operands}")
        term = block.last_op
        _require(isinstance(term, YieldOp), "ane.segment must end with ane.yield")
        assert isinstance(term, YieldOp)
        yielded, results = [str(v.type) for v in term.values], [str(r.type) for r in self.outputs]
        _require(yielded == results, f"ane.segment: yielded types {yielded} differ from the result types {results}")


ANE = Dialect(
    "ane",
    [
        ConstOp,
        *UNARY_OPS.values(),
        RoundOp, FloorOp, CeilOp, SoftmaxOp,
        AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp, PowOp,
        EqualOp, NotEqualOp, GreaterOp, GreaterEqualOp, LessOp, LessEqualOp, SelectOp,
        ConvOp, ConvTransposeOp, MatmulOp, SdpaOp,
        ReduceSumOp, ReduceMeanOp, ReduceMaxOp, ReduceMinOp, ReduceL2Op, ReduceLogSumExpOp,
        ArgmaxOp, ArgminOp, TopkOp,
        MaxPoolOp, AvgPoolOp, L2PoolOp, GlobalAvgPoolOp, GlobalMaxPoolOp,
        LayerNormOp, InstanceNormOp, GroupNormOp, L2NormOp,
        ReshapeOp, TransposeOp, SliceOp, PadOp, TileOp, BroadcastOp, ResizeOp,
        DepthToSpaceOp, SpaceToDepthOp, CastOp, ConcatOp, SplitOp,
        SegmentOp, YieldOp,
    ],
    [],
)

