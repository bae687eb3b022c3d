"""Lower a compiled module to a pymil program with coremltools' MIL builder.

anec has already legalized, laid out, cast and fused the graph, so lowering is a walk over the
entry function with one small lowering per op: `ane` ops (inside segments at f16, outside at f32)
and `host.op`s become the MIL ops that express them, one to one wherever MIL has the op. Segments
are inlined: in a Core ML program, the fp16 region is simply the ops between the edge casts, and
Core ML's own compiler decides what runs on the Neural Engine. An op MIL cannot express is an
`AnecError` naming it.

MIL has no 64-bit integers on device: every integer tensor becomes int32 and float64 becomes
fp32, as coremltools' own frontends do.

This module imports coremltools; `anec.emit.coreml` and `anec.emit.miltext` load it lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import Function, Program, Var, types
from xdsl.dialects import func
from xdsl.dialects.builtin import Float16Type, IntegerType, ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from anec.analysis import read_as_fp16_only
from anec.compression import (
    AffineWeight,
    BlockAffineWeight,
    CompressedWeight,
    SparseWeight,
    pack_bits,
)
from anec.dialects import ane, host
from anec.dialects.ane import as_tuple, shape_of
from anec.dialects.discardable import NAME_ATTR
from anec.errors import AnecError, first_line
from anec.host_kernels import python_value, run_host_op
from anec.interpreter import entry_function, input_names, output_names
from anec.mlpackage import DeploymentTarget, mil_name
from anec.registry import Registry
from anec.weights import WeightStore, compressed_of, const_value, store_of

OpLowering = Callable[[Operation, "Lowering"], Var | Sequence[Var]]

LOWERINGS: Registry[OpLowering] = Registry("MIL lowering")
"""`ane` op class (found through the class hierarchy), or `host.op` name (`onnx.Gather`), -> the
function that lowers it."""
lowers = LOWERINGS.register


# ------------------------------------------------------------------------------------------------
# Types
# ------------------------------------------------------------------------------------------------

_NUMPY_OF_MIL = {types.fp16: np.float16, types.fp32: np.float32, types.int32: np.int32, types.bool: np.bool_}


def mil_dtype(typ: TensorType | SSAValue) -> type:
    """The MIL element type for an IR tensor type: fp16, fp32, int32 or bool."""
    et = ane.element_type_of(typ)
    if isinstance(et, Float16Type):
        return types.fp16
    if isinstance(et, IntegerType):
        return types.bool if et.width.data == 1 else types.int32
    return types.fp32


def numpy_dtype(dtype: type) -> np.dtype:
    return np.dtype(_NUMPY_OF_MIL[dtype])


def as_mil_array(array: np.ndarray, dtype: type) -> np.ndarray:
    """`array` converted to the numpy type MIL stores for `dtype` (int64 saturates to int32)."""
    if dtype == types.int32 and array.dtype.kind in "iu":
        info = np.iinfo(np.int32)
        array = np.clip(array, info.min, info.max)
    return np.asarray(array, dtype=numpy_dtype(dtype), order="C")


def compressed_const(weight: CompressedWeight, dtype: type, name: str) -> Var:
    """A compressed weight as the deployment target's `constexpr_*` op (coremltools picks the form by
    the function's opset: `constexpr_affine_dequantize` or, from iOS 18, `constexpr_blockwise_shift_scale`;
    `constexpr_lut_to_dense` and `constexpr_sparse_to_dense` in their iOS 16 or iOS 18 signatures), so the
    package stores it compressed. Blockwise scales exist from iOS 18 only."""
    from coremltools import target
    from coremltools.converters.mil.frontend._utils import (
        _construct_constexpr_dequant_op,
        _construct_constexpr_lut_op,
    )
    from coremltools.converters.mil.mil.block import is_current_opset_version_compatible_with
    from coremltools.converters.mil.mil.types.type_int import np_uint1_dtype

    float_type = numpy_dtype(dtype)
    ios18 = is_current_opset_version_compatible_with(target.iOS18)
    if isinstance(weight, AffineWeight):
        return _construct_constexpr_dequant_op(weight.quantized, weight.zero_point.reshape(weight.scale.shape),
                                               weight.scale.astype(float_type), weight.axis, name=name)
    if isinstance(weight, BlockAffineWeight):
        if not ios18:
            raise AnecError(f"weight {name!r} is stored {weight.form}, which Core ML holds only from iOS 18 "
                            "(constexpr_blockwise_shift_scale)", hint="emit with --deployment-target ios18 (or macos15), or compress with int8")
        return _construct_constexpr_dequant_op(weight.quantized, weight.zero_point, weight.scale.astype(float_type), name=name)
    if isinstance(weight, SparseWeight):
        values = weight.values.astype(float_type)
        if ios18:
            return mb.constexpr_sparse_to_dense(nonzero_data=values, mask=weight.mask.astype(np_uint1_dtype), name=name)
        return mb.constexpr_sparse_to_dense(nonzero_data=values, mask=pack_bits(weight.mask, 1),
                                            shape=np.asarray(weight.shape, np.uint32), name=name)
    lut = weight.lut.astype(float_type).reshape((1,) * len(weight.shape) + (weight.lut.size, 1))
    return _construct_constexpr_lut_op(weight.indices, lut, name=name)


# ------------------------------------------------------------------------------------------------
# The walk
# ------------------------------------------------------------------------------------------------


@dataclass
class Lowering:
    """State of one lowering: MIL values of IR values, and the names already taken."""

    target: DeploymentTarget
    store: WeightStore
    env: dict[SSAValue, Var] = field(default_factory=dict)
    consts: dict[SSAValue, ane.ConstOp] = field(default_factory=dict)
    weights: dict[tuple[str, type], Var] = field(default_factory=dict)
    """One MIL constant per stored weight and element type, however many `ane.const`s name it."""
    taken: set[str] = field(default_factory=set)
    counter: int = 0

    # -- names ------------------------------------------------------------------------------

    def unique(self, base: str, outputs: int = 1) -> str:
        """A fresh MIL name from `base`; with several outputs their `_i` names are reserved too."""
        base = mil_name(base)
        name, n = base, 0
        while name in self.taken or (outputs > 1 and any(f"{name}_{i}" in self.taken for i in range(outputs))):
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        if outputs > 1:
            self.taken.update(f"{name}_{i}" for i in range(outputs))
        return name

    def name(self, op: Operation, suffix: str = "") -> str:
        """The MIL name for (part of) `op`: its source name (`ane.name`), else its op kind."""
        attr = op.attributes.get(NAME_ATTR)
        if isinstance(attr, StringAttr) and attr.data:
            base = attr.data
        else:
            self.counter += 1
            kind = op.op_name.data if isinstance(op, host.HostOp) else op.name
            base = f"{kind.rsplit('.', 1)[-1]}_{self.counter}"
        return self.unique(base + (f"_{suffix}" if suffix else ""), len(op.results))

    # -- values -----------------------------------------------------------------------------

    def var(self, value: SSAValue) -> Var:
        """The MIL value of `value`; constants are materialized on first use as a tensor."""
        if value not in self.env:
            const = self.consts.get(value)
            if const is None:
                raise AnecError(f"{value} is used before it is defined")
            dtype = mil_dtype(value)
            if const.handle is not None:
                weight = compressed_of(const, self.store)
                if dtype == types.fp32 and read_as_fp16_only(const.result):
                    dtype = types.fp16  # an embedding table the ANE reads in fp16: stored once, at half the bytes
                key = (const.handle.data, dtype)
                if key in self.weights:
                    pass
                elif weight is not None and dtype in (types.fp16, types.fp32):
                    self.weights[key] = compressed_const(weight, dtype, self.unique(const.handle.data))
                else:
                    self.weights[key] = self.const(const_value(const, self.store), dtype, const.handle.data)
                self.env[value] = self.weights[key]
            else:
                name = const.attributes.get(NAME_ATTR)
                self.env[value] = self.const(const_value(const, self.store), dtype, name.data if isinstance(name, StringAttr) else "constant")
        return self.env[value]

    def const(self, array: np.ndarray | float | int, dtype: type, base: str) -> Var:
        return mb.const(val=as_mil_array(np.asarray(array), dtype), name=self.unique(base))

    def data(self, value: SSAValue, *, ints: bool = True) -> Var:
        """`value` for an op whose data input takes no bool (with `ints=False`, no integers either):
        widened to int32 or fp32, exactly; `conform` casts the op's result back."""
        var = self.var(value)
        if var.dtype == types.bool or (not ints and var.dtype == types.int32):
            return mb.cast(x=var, dtype="int32" if ints and var.dtype == types.bool else "fp32", name=self.unique(f"{var.name}_data"))
        return var

    def constant(self, value: SSAValue) -> np.ndarray | None:
        """The value of `value` if an `ane.const` defines it (used as a parameter, not a tensor)."""
        op = self.consts.get(value)
        return None if op is None else const_value(op, self.store)

    def required_constant(self, op: Operation, value: SSAValue, what: str) -> np.ndarray:
        array = self.constant(value)
        if array is None:
            raise unsupported(op, f"its {what} must be a constant")
        return array

    def scalar(self, value: float, like: Var) -> np.generic:
        """A scalar parameter of `like`'s element type (MIL requires parameters to match)."""
        return numpy_dtype(like.dtype).type(value)

    # -- lowering ---------------------------------------------------------------------------

    def run_block(self, ops: Sequence[Operation]) -> list[SSAValue]:
        for op in ops:
            if isinstance(op, func.ReturnOp | ane.YieldOp):
                return list(op.operands)
            self.lower(op)
        raise AnecError("a block ends without func.return or ane.yield")

    def lower(self, op: Operation) -> None:
        if isinstance(op, ane.ConstOp):
            self.consts[op.result] = op
            return
        if isinstance(op, ane.SegmentOp):
            for arg, operand in zip(op.body.block.args, op.inputs):
                self.alias(arg, operand)
            for result, value in zip(op.outputs, self.run_block(list(op.body.block.ops))):
                self.alias(result, value)
            return
        lowering = LOWERINGS.lookup(op.op_name.data if isinstance(op, host.HostOp) else op)
        if lowering is None:
            raise unsupported(op, "MIL has no equivalent")
        try:
            produced = lowering(op, self)
        except AnecError:
            raise
        except (ValueError, TypeError, NotImplementedError, AssertionError, IndexError, KeyError) as e:
            raise unsupported(op, f"coremltools rejects it ({first_line(e, typed=False)})") from e
        produced = [produced] if isinstance(produced, Var) else list(produced)
        for op_result, var in zip(op.results, produced, strict=True):
            self.env[op_result] = self.conform(op, op_result, var)

    def alias(self, value: SSAValue, source: SSAValue) -> None:
        if source in self.consts:
            self.consts[value] = self.consts[source]
        else:
            self.env[value] = self.var(source)

    def conform(self, op: Operation, result: SSAValue, var: Var) -> Var:
        """Check a lowering produced the IR's shape; cast when MIL's element type differs."""
        if tuple(var.shape) != shape_of(result):
            raise AnecError(f"lowering {op.name} to MIL gave shape {list(var.shape)}, the IR says {list(shape_of(result))}",
                            where=op_where(op), why="an anec bug in the Core ML emitter")
        if var.dtype != mil_dtype(result):
            return mb.cast(x=var, dtype=types.builtin_to_string(mil_dtype(result)), name=self.unique(f"{var.name}_cast"))
        return var


def op_where(op: Operation) -> str:
    attr = op.attributes.get(NAME_ATTR)
    kind = op.op_name.data if isinstance(op, host.HostOp) else op.name
    return f"{attr.data} ({kind})" if isinstance(attr, StringAttr) else kind


def unsupported(op: Operation, why: str) -> AnecError:
    kind = op.op_name.data if isinstance(op, host.HostOp) else op.name
    return AnecError(f"{kind} cannot be expressed in Core ML's MIL", where=op_where(op), why=why,
                     hint="remove or replace the op in the source model, or emit descriptors / IR instead")


def build_program(module: ModuleOp, target: DeploymentTarget) -> Program:
    """The pymil program computing `module`'s entry function (named `main`)."""
    from coremltools.converters.mil.converter import _reset_conversion_state

    _reset_conversion_state()  # the builder numbers the constants it makes in a process-wide table
    fn = entry_function(module)
    lowering = Lowering(target=target, store=store_of(module))
    in_names = [mil_name(n) for n in input_names(fn)]
    out_names = [mil_name(n) for n in output_names(fn)]
    for name in (*in_names, *out_names):
        if name in lowering.taken:
            raise AnecError(f"two model inputs or outputs are both named {name!r} in Core ML", hint="rename one in the source model")
        lowering.taken.add(name)
    placeholders = {name: mb.placeholder(shape=shape_of(arg), dtype=mil_dtype(arg)) for name, arg in zip(in_names, fn.args)}
    with Function(placeholders, opset_version=target.opset) as function:
        lowering.env.update(zip(fn.args, (function.inputs[n] for n in in_names)))
        results = [lowering.var(v) for v in lowering.run_block(list(fn.body.block.ops))]
        outputs: list[Var] = []
        for name, var in zip(out_names, results):
            var = _unwidened(var, results)
            if var.name != name:
                var = _rename_output(var, name, function, outputs)
            outputs.append(var)
        function.set_outputs(outputs)
    program = Program()
    program.add_function("main", function)
    return program


def _unwidened(var: Var, results: list[Var]) -> Var:
    """An output that only widens fp16 to fp32 is returned in fp16, as coremltools returns fp16
    programs' outputs from iOS 16 on: the app receives what the ANE wrote, one op fewer."""
    op = var.op
    if op is None or op.op_type != "cast" or var.dtype != types.fp32 or op.x.dtype != types.fp16:
        return var
    if var.child_ops or results.count(var) != 1:
        return var
    dtype = op.dtype.op
    op.enclosing_block.remove_ops([op])
    if not dtype.outputs[0].child_ops:
        dtype.enclosing_block.remove_ops([dtype])
    return op.x


def _rename_output(var: Var, name: str, function: Function, taken: list[Var]) -> Var:
    """Give an output its model name: rename the op that makes it, or add an identity."""
    op = var.op
    own = op is not None and op.op_type != "const" and len(op.outputs) == 1 and var not in taken \
        and var not in function.inputs.values()
    if own:
        op.name = name
        var.name = name
        return var
    return mb.identity(x=var, name=name)


# ------------------------------------------------------------------------------------------------
# Elementwise
# ------------------------------------------------------------------------------------------------


def _neg(x: Var, name: str, low: Lowering) -> Var:
    return mb.mul(x=x, y=low.scalar(-1, x), name=name)


def _clamp(x: Var, lo: float, hi: float, name: str, low: Lowering) -> Var:
    if math.isinf(lo) and math.isinf(hi):
        return mb.identity(x=x, name=name)
    if math.isinf(lo):
        return mb.minimum(x=x, y=low.scalar(hi, x), name=name)
    if math.isinf(hi):
        return mb.maximum(x=x, y=low.scalar(lo, x), name=name)
    return mb.clip(x=x, alpha=low.scalar(lo, x), beta=low.scalar(hi, x), name=name)


def _hardswish(x: Var, name: str, low: Lowering) -> Var:
    gate = mb.sigmoid_hard(x=x, alpha=low.scalar(1 / 6, x), beta=low.scalar(0.5, x), name=low.unique(f"{name}_gate"))
    return mb.mul(x=x, y=gate, name=name)


UnaryBuilder = Callable[..., Var]
"""(x, *float params, name, lowering) -> the MIL value of a neuron op."""

UNARY: dict[str, UnaryBuilder] = {
    "relu": lambda x, name, low: mb.relu(x=x, name=name),
    "sigmoid": lambda x, name, low: mb.sigmoid(x=x, name=name),
    "tanh": lambda x, name, low: mb.tanh(x=x, name=name),
    "gelu": lambda x, name, low: mb.gelu(x=x, mode="EXACT", name=name),
    "silu": lambda x, name, low: mb.silu(x=x, name=name),
    "exp": lambda x, name, low: mb.exp(x=x, name=name),
    "log": lambda x, name, low: mb.log(x=x, epsilon=low.scalar(0, x), name=name),
    "sqrt": lambda x, name, low: mb.sqrt(x=x, name=name),
    "rsqrt": lambda x, name, low: mb.rsqrt(x=x, epsilon=low.scalar(0, x), name=name),
    "reciprocal": lambda x, name, low: mb.inverse(x=x, epsilon=low.scalar(0, x), name=name),
    "abs": lambda x, name, low: mb.abs(x=x, name=name),
    "neg": _neg,
    "softplus": lambda x, name, low: mb.softplus(x=x, name=name),
    "hardswish": _hardswish,
    "erf": lambda x, name, low: mb.erf(x=x, name=name),
    "sin": lambda x, name, low: mb.sin(x=x, name=name),
    "cos": lambda x, name, low: mb.cos(x=x, name=name),
    "sign": lambda x, name, low: mb.sign(x=x, name=name),
    "round": lambda x, name, low: mb.round(x=x, name=name),  # ties to even, as ane.round
    "floor": lambda x, name, low: mb.floor(x=x, name=name),
    "ceil": lambda x, name, low: mb.ceil(x=x, name=name),
    "leaky_relu": lambda x, alpha, name, low: mb.leaky_relu(x=x, alpha=low.scalar(alpha, x), name=name),
    "elu": lambda x, alpha, name, low: mb.elu(x=x, alpha=low.scalar(alpha, x), name=name),
    "clamp": lambda x, lo, hi, name, low: _clamp(x, lo, hi, name, low),
    "hardsigmoid": lambda x, a, b, name, low: mb.sigmoid_hard(x=x, alpha=low.scalar(a, x), beta=low.scalar(b, x), name=name),
}


@lowers(ane.RoundOp, ane.FloorOp, ane.CeilOp, *(cls for cls in ane.UNARY_OPS.values() if cls is not ane.GeluOp))
def _unary(op: ane.UnaryOp, low: Lowering) -> Var:
    return UNARY[ane.kind(op)](low.var(op.input), *op.param_values(), low.name(op), low)


@lowers(ane.GeluOp)
def _gelu(op: ane.GeluOp, low: Lowering) -> Var:
    mode = "TANH_APPROXIMATION" if op.approximate.data == "tanh" else "EXACT"
    return mb.gelu(x=low.var(op.input), mode=mode, name=low.name(op))


@lowers(ane.SoftmaxOp)
def _softmax(op: ane.SoftmaxOp, low: Lowering) -> Var:
    return mb.softmax(x=low.var(op.input), axis=op.axis.value.data, name=low.name(op))


BINARY: dict[type[Operation], Callable[..., Var]] = {
    ane.AddOp: mb.add, ane.SubOp: mb.sub, ane.MulOp: mb.mul, ane.MaxOp: mb.maximum, ane.MinOp: mb.minimum,
    ane.PowOp: mb.pow, ane.EqualOp: mb.equal, ane.NotEqualOp: mb.not_equal, ane.GreaterOp: mb.greater,
    ane.GreaterEqualOp: mb.greater_equal, ane.LessOp: mb.less, ane.LessEqualOp: mb.less_equal,
}


@lowers(*BINARY)
def _binary(op: Operation, low: Lowering) -> Var:
    return BINARY[type(op)](x=low.var(op.operands[0]), y=low.var(op.operands[1]), name=low.name(op))


@lowers(ane.DivOp)
def _div(op: ane.DivOp, low: Lowering) -> Var:
    x, y, name = low.var(op.lhs), low.var(op.rhs), low.name(op)
    if types.is_float(x.dtype):
        return mb.real_div(x=x, y=y, name=name)
    # integer division truncates toward zero: divide in fp32, let the cast truncate
    xf = mb.cast(x=x, dtype="fp32", name=low.unique(f"{name}_x"))
    yf = mb.cast(x=y, dtype="fp32", name=low.unique(f"{name}_y"))
    quotient = mb.real_div(x=xf, y=yf, name=low.unique(f"{name}_fp32"))
    return mb.cast(x=quotient, dtype="int32", name=name)


@lowers(ane.SelectOp)
def _select(op: ane.SelectOp, low: Lowering) -> Var:
    return select(op, op.cond, op.on_true, op.on_false, low)


def select(op: Operation, cond: SSAValue, on_true: SSAValue, on_false: SSAValue, low: Lowering) -> Var:
    """MIL's select takes its shape from the two branches alone (coremltools ignores the condition's
    shape), so when the condition is what broadcasts, one branch is widened first: a constant is
    stored at full size, anything else tiled."""
    out = shape_of(op.results[0])
    a, b = on_true, on_false
    if broadcast_shape(shape_of(a), shape_of(b)) == out:
        return mb.select(cond=low.var(cond), a=low.var(a), b=low.var(b), name=low.name(op))
    name = low.name(op)
    widened = {}
    for branch in (a, b):
        array = low.constant(branch)
        if array is not None:
            widened[branch] = low.const(np.broadcast_to(array, out), mil_dtype(branch), f"{name}_branch")
            break
    else:
        widened[a] = broadcast_to(low.var(a), out, low.unique(f"{name}_branch"))
    return mb.select(cond=low.var(cond), a=widened[a] if a in widened else low.var(a), b=widened[b] if b in widened else low.var(b),
                     name=name)


def broadcast_shape(x: Sequence[int], y: Sequence[int]) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(tuple(x), tuple(y)))


# ------------------------------------------------------------------------------------------------
# MAC ops
# ------------------------------------------------------------------------------------------------


def epilogue(op: ane.EpilogueOp, y: Var, bias: Var | None, name: str, low: Lowering, channel_axis: int) -> Var:
    """Bias (when not taken by the MAC op itself) and the fused activation, named `name` last."""
    act = op.activation.data if op.activation is not None else None
    if bias is not None:
        shape = [1] * len(y.shape)
        shape[channel_axis] = -1
        b = mb.reshape(x=bias, shape=shape, name=low.unique(f"{name}_bias_shape"))
        y = mb.add(x=y, y=b, name=name if act is None else low.unique(f"{name}_bias"))
    if act is None:
        return y
    return UNARY[act](y, *as_tuple(op.activation_params), name, low)


def _mac_names(op: ane.EpilogueOp, low: Lowering, separate_bias: bool) -> tuple[str, str]:
    final = low.name(op)
    if op.activation is None and not separate_bias:
        return final, final
    return low.unique(f"{final}_mac"), final


def _spatial_pads(pads: Sequence[int]) -> list[int]:
    """anec's [begin..., end...] as MIL's [begin_0, end_0, begin_1, end_1, ...]."""
    k = len(pads) // 2
    return [p for i in range(k) for p in (pads[i], pads[k + i])]


@lowers(ane.ConvOp, ane.ConvTransposeOp)
def _conv(op: ane.ConvBase, low: Lowering) -> Var:
    bias_const = None if op.bias is None else low.constant(op.bias)
    separate_bias = op.bias if bias_const is None else None  # a bias computed at run time is added after the MAC
    mac_name, final = _mac_names(op, low, separate_bias is not None)
    params: dict[str, Any] = {
        "x": low.var(op.input), "weight": low.var(op.weight), "strides": list(as_tuple(op.strides)), "pad_type": "custom",
        "pad": _spatial_pads(as_tuple(op.pads)), "dilations": list(as_tuple(op.dilations)), "groups": op.groups.value.data,
    }
    if op.bias is not None and separate_bias is None:
        params["bias"] = low.var(op.bias)
    if isinstance(op, ane.ConvTransposeOp):
        if low.constant(op.weight) is None:
            raise unsupported(op, "MIL's conv_transpose needs a constant weight")
        if any(as_tuple(op.output_padding)):
            params["output_shape"] = list(shape_of(op.result))
        y = mb.conv_transpose(**params, name=mac_name)
    else:
        y = mb.conv(**params, name=mac_name)
    return epilogue(op, y, low.var(separate_bias) if separate_bias is not None else None, final, low, 1)


@lowers(ane.MatmulOp)
def _matmul(op: ane.MatmulOp, low: Lowering) -> Var:
    transpose_lhs, transpose_rhs = op.flags()
    rhs = low.constant(op.rhs)
    bias = None if op.bias is None else low.constant(op.bias)
    if rhs is not None and not transpose_lhs and math.prod(rhs.shape[:-2]) == 1 and (op.bias is None or bias is not None):
        return _linear(op, rhs, transpose_rhs, low)
    mac_name, final = _mac_names(op, low, op.bias is not None)
    y = mb.matmul(x=low.var(op.lhs), y=low.var(op.rhs), transpose_x=transpose_lhs, transpose_y=transpose_rhs, name=mac_name)
    return epilogue(op, y, None if op.bias is None else low.var(op.bias), final, low, -1)


def _linear(op: ane.MatmulOp, rhs: np.ndarray, transpose_rhs: bool, low: Lowering) -> Var:
    """x·W (+ b) with a constant W (and b, if any): MIL's `linear`, which takes W as [N, K] and the bias."""
    dtype = mil_dtype(op.result)
    def as_rows(w: Any) -> Any:  # [N, K], from an array or a compressed weight
        matrix = w.reshape(rhs.shape[-2:])
        return matrix if transpose_rhs else matrix.transpose((1, 0))
    const = low.consts.get(op.rhs)
    stored = compressed_of(const, low.store) if const is not None else None
    name = _handle(op.rhs, low) or "weight"
    weight = compressed_const(as_rows(stored), dtype, low.unique(name)) if stored is not None else low.const(as_rows(rhs), dtype, name)
    mac_name, final = _mac_names(op, low, separate_bias=False)
    params: dict[str, Any] = {"x": low.var(op.lhs), "weight": weight}
    if op.bias is not None:
        params["bias"] = low.var(op.bias)
    return epilogue(op, mb.linear(**params, name=mac_name), None, final, low, -1)


def _handle(value: SSAValue, low: Lowering) -> str | None:
    const = low.consts.get(value)
    return const.handle.data if const is not None and const.handle is not None else None


@lowers(ane.SdpaOp)
def _sdpa(op: ane.SdpaOp, low: Lowering) -> Var:
    q, k, v, name = low.var(op.query), low.var(op.key), low.var(op.value), low.name(op)
    mask = None if op.mask is None else low.var(op.mask)
    scale = op.scale.value.data
    if low.target.fused_attention:
        default = 1.0 / math.sqrt(shape_of(op.query)[-1])
        if not math.isclose(scale, default, rel_tol=1e-6):
            q = mb.mul(x=q, y=low.scalar(scale / default, q), name=low.unique(f"{name}_scale"))
        params = {"query": q, "key": k, "value": v} | ({} if mask is None else {"attn_mask": mask})
        return mb.scaled_dot_product_attention(**params, name=name)
    scores = mb.matmul(x=q, y=k, transpose_x=False, transpose_y=True, name=low.unique(f"{name}_scores"))
    scores = mb.mul(x=scores, y=low.scalar(scale, scores), name=low.unique(f"{name}_scaled"))
    if mask is not None:
        scores = mb.add(x=scores, y=mask, name=low.unique(f"{name}_masked"))
    weights = mb.softmax(x=scores, axis=-1, name=low.unique(f"{name}_weights"))
    return mb.matmul(x=weights, y=v, transpose_x=False, transpose_y=False, name=name)


# ------------------------------------------------------------------------------------------------
# Reductions, pooling, normalization
# ------------------------------------------------------------------------------------------------

REDUCE: dict[type[Operation], Callable[..., Var]] = {
    ane.ReduceSumOp: mb.reduce_sum, ane.ReduceMeanOp: mb.reduce_mean, ane.ReduceMaxOp: mb.reduce_max,
    ane.ReduceMinOp: mb.reduce_min, ane.ReduceL2Op: mb.reduce_l2_norm, ane.ReduceLogSumExpOp: mb.reduce_log_sum_exp,
}


@lowers(*REDUCE)
def _reduce(op: ane.ReduceOp, low: Lowering) -> Var:
    return REDUCE[type(op)](x=low.var(op.input), axes=list(as_tuple(op.axes)), keep_dims=bool(op.keepdims.value.data), name=low.name(op))


@lowers(ane.ArgmaxOp, ane.ArgminOp)
def _arg_reduce(op: ane.ArgReduceOp, low: Lowering) -> Var:
    x, axis, keep, name = low.var(op.input), op.axis.value.data, bool(op.keepdims.value.data), low.name(op)
    reduce = mb.reduce_argmax if isinstance(op, ane.ArgmaxOp) else mb.reduce_argmin
    if not op.select_last_index.value.data:
        return reduce(x=x, axis=axis, keep_dims=keep, name=name)
    # ties to the last index: search the reversed axis, then map the index back
    flipped = mb.reverse(x=x, axes=[axis], name=low.unique(f"{name}_reversed"))
    index = reduce(x=flipped, axis=axis, keep_dims=keep, name=low.unique(f"{name}_reversed_index"))
    return mb.sub(x=np.int32(shape_of(op.input)[axis] - 1), y=index, name=name)


@lowers(ane.TopkOp)
def _topk(op: ane.TopkOp, low: Lowering) -> Sequence[Var]:
    return mb.topk(x=low.var(op.input), k=op.k.value.data, axis=op.axis.value.data, ascending=not op.largest.value.data,
                   sort=bool(op.sorted.value.data), name=low.name(op))


@lowers(ane.MaxPoolOp, ane.AvgPoolOp, ane.L2PoolOp)
def _pool(op: ane.PoolOp, low: Lowering) -> Var:
    params: dict[str, Any] = {"x": low.var(op.input), "kernel_sizes": list(as_tuple(op.kernel)), "strides": list(as_tuple(op.strides)),
                              "pad_type": "custom", "pad": _spatial_pads(as_tuple(op.pads)), "name": low.name(op)}
    if isinstance(op, ane.AvgPoolOp):
        return mb.avg_pool(**params, exclude_padding_from_average=not op.count_include_pad.value.data)
    return (mb.max_pool if isinstance(op, ane.MaxPoolOp) else mb.l2_pool)(**params)


@lowers(ane.GlobalAvgPoolOp, ane.GlobalMaxPoolOp)
def _global_pool(op: ane.GlobalPoolOp, low: Lowering) -> Var:
    reduce = mb.reduce_mean if isinstance(op, ane.GlobalAvgPoolOp) else mb.reduce_max
    axes = list(range(2, len(shape_of(op.input))))
    return reduce(x=low.var(op.input), axes=axes, keep_dims=True, name=low.name(op))


def _affine(op: ane.AffineNormOp, low: Lowering, y: Var, name: str, channel_axis: int | None) -> Var:
    """`y * scale + bias` for norms whose MIL op cannot take the affine (non-constant operands)."""
    shape = [1] * len(y.shape)
    if channel_axis is not None:
        shape[channel_axis] = -1
    scale = mb.reshape(x=low.var(op.scale), shape=shape, name=low.unique(f"{name}_scale_shape"))
    bias = mb.reshape(x=low.var(op.bias), shape=shape, name=low.unique(f"{name}_bias_shape"))
    y = mb.mul(x=y, y=scale, name=low.unique(f"{name}_scaled"))
    return mb.add(x=y, y=bias, name=name)


@lowers(ane.LayerNormOp)
def _layer_norm(op: ane.LayerNormOp, low: Lowering) -> Var:
    x, name, axes = low.var(op.input), low.name(op), list(as_tuple(op.axes))
    eps = low.scalar(op.epsilon.value.data, x)
    if low.constant(op.scale) is not None and low.constant(op.bias) is not None:
        return mb.layer_norm(x=x, axes=axes, gamma=low.var(op.scale), beta=low.var(op.bias), epsilon=eps, name=name)
    y = mb.layer_norm(x=x, axes=axes, epsilon=eps, name=low.unique(f"{name}_norm"))
    rank = len(shape_of(op.input))
    shape = [shape_of(op.input)[a] if a in axes else 1 for a in range(rank)]
    scale = mb.reshape(x=low.var(op.scale), shape=shape, name=low.unique(f"{name}_scale_shape"))
    bias = mb.reshape(x=low.var(op.bias), shape=shape, name=low.unique(f"{name}_bias_shape"))
    return mb.add(x=mb.mul(x=y, y=scale, name=low.unique(f"{name}_scaled")), y=bias, name=name)


@lowers(ane.InstanceNormOp)
def _instance_norm(op: ane.InstanceNormOp, low: Lowering) -> Var:
    x, name = low.var(op.input), low.name(op)
    eps = low.scalar(op.epsilon.value.data, x)
    if low.constant(op.scale) is not None and low.constant(op.bias) is not None:
        return mb.instance_norm(x=x, gamma=low.var(op.scale), beta=low.var(op.bias), epsilon=eps, name=name)
    return _affine(op, low, mb.instance_norm(x=x, epsilon=eps, name=low.unique(f"{name}_norm")), name, 1)


@lowers(ane.GroupNormOp)
def _group_norm(op: ane.GroupNormOp, low: Lowering) -> Var:
    """MIL has no group norm: an instance norm over [N, groups, 1, C/groups·spatial], then the affine."""
    x, name = low.var(op.input), low.name(op)
    shape = shape_of(op.input)
    groups = op.num_groups.value.data
    grouped = mb.reshape(x=x, shape=[shape[0], groups, 1, math.prod(shape[1:]) // groups], name=low.unique(f"{name}_groups"))
    normed = mb.instance_norm(x=grouped, epsilon=low.scalar(op.epsilon.value.data, x), name=low.unique(f"{name}_norm"))
    y = mb.reshape(x=normed, shape=list(shape), name=low.unique(f"{name}_ungroup"))
    return _affine(op, low, y, name, 1)


@lowers(ane.L2NormOp)
def _l2_norm(op: ane.L2NormOp, low: Lowering) -> Var:
    """x / sqrt(max(Σx², ε)): MIL's l2_norm adds ε instead and fixes the axes, so it is spelled out."""
    x, name = low.var(op.input), low.name(op)
    squares = mb.reduce_sum_square(x=x, axes=list(as_tuple(op.axes)), keep_dims=True, name=low.unique(f"{name}_sumsq"))
    floor = mb.maximum(x=squares, y=low.scalar(op.epsilon.value.data, x), name=low.unique(f"{name}_floor"))
    inv = mb.rsqrt(x=floor, epsilon=low.scalar(0, x), name=low.unique(f"{name}_rsqrt"))
    return mb.mul(x=x, y=inv, name=name)


# ------------------------------------------------------------------------------------------------
# Data movement
# ------------------------------------------------------------------------------------------------


@lowers(ane.ReshapeOp)
def _reshape(op: ane.ReshapeOp, low: Lowering) -> Var:
    # an int32 array: coremltools types an empty list (a reshape to a scalar) as float, and rejects it
    return mb.reshape(x=low.var(op.input), shape=np.array(shape_of(op.result), np.int32), name=low.name(op))


@lowers(ane.TransposeOp)
def _transpose(op: ane.TransposeOp, low: Lowering) -> Var:
    return mb.transpose(x=low.var(op.input), perm=list(as_tuple(op.perm)), name=low.name(op))


@lowers(ane.SliceOp)
def _slice(op: ane.SliceOp, low: Lowering) -> Var:
    dims = shape_of(op.input)
    ends = [min(e, d) for e, d in zip(as_tuple(op.ends), dims)]
    return mb.slice_by_index(x=low.var(op.input), begin=list(as_tuple(op.starts)), end=ends, stride=list(as_tuple(op.steps)), name=low.name(op))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


@lowers(ane.PadOp)
def _pad(op: ane.PadOp, low: Lowering) -> Var:
    pads, rank = as_tuple(op.pads), len(shape_of(op.input))
    first = next((i for i in range(rank) if pads[i] or pads[rank + i]), rank - 1)
    mil_pads = [p for i in range(first, rank) for p in (pads[i], pads[rank + i])]
    x = low.data(op.input, ints=False)
    # constant_val also for the other modes: its default is fp32, which an fp16 program rejects on load
    return mb.pad(x=x, pad=mil_pads, mode=_PAD_MODES[op.mode.data], constant_val=low.scalar(op.value.value.data, x), name=low.name(op))


@lowers(ane.TileOp)
def _tile(op: ane.TileOp, low: Lowering) -> Var:
    return mb.tile(x=low.var(op.input), reps=list(as_tuple(op.repeats)), name=low.name(op))


@lowers(ane.BroadcastOp)
def _broadcast(op: ane.BroadcastOp, low: Lowering) -> Var:
    return broadcast_to(low.var(op.input), shape_of(op.result), low.name(op))


def broadcast_to(x: Var, shape: Sequence[int], name: str) -> Var:
    reps = [d if s == 1 else 1 for s, d in zip(x.shape, shape)]
    return mb.tile(x=x, reps=reps, name=name)


_NEAREST_AS_FLOOR = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil"),
                     ("pytorch_half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_ceil")}
"""(coordinate mode, rounding) pairs that pick source index floor(i / scale) at integer scales."""


@lowers(ane.ResizeOp)
def _resize(op: ane.ResizeOp, low: Lowering) -> Var:
    x, name = low.var(op.input), low.name(op)
    scales = [float(s) for s in as_tuple(op.scales)]
    scale_h, scale_w = (1.0, scales[0]) if len(scales) == 1 else scales
    mode = op.coordinate_mode.data
    if op.mode.data == "nearest":
        pair = (mode, op.nearest_mode.data)
        integral = all(s == int(s) for s in scales)
        if pair not in _NEAREST_AS_FLOOR or (pair[0] != "asymmetric" and not integral):
            raise unsupported(op, f"MIL's nearest resize picks floor(i / scale); {mode} with {op.nearest_mode.data} "
                                  f"at scales {scales} does not")
        return mb.upsample_nearest_neighbor(x=low.data(op.input, ints=False), scale_factor_height=scale_h, scale_factor_width=scale_w, name=name)
    if mode == "pytorch_half_pixel" and any(d == 1 for d in shape_of(op.result)[-len(scales):]):
        raise unsupported(op, "pytorch_half_pixel resizing to a size of 1 has no MIL sampling mode")
    return mb.upsample_bilinear(x=x, scale_factor_height=scale_h, scale_factor_width=scale_w, align_corners=mode == "align_corners",
                                half_pixel_centers=mode in ("half_pixel", "pytorch_half_pixel"), name=name)


@lowers(ane.DepthToSpaceOp)
def _depth_to_space(op: ane.DepthToSpaceOp, low: Lowering) -> Var:
    x, block = low.data(op.input, ints=False), op.block_size.value.data
    if op.mode.data == "CRD":
        return mb.pixel_shuffle(x=x, upscale_factor=block, name=low.name(op))
    return mb.depth_to_space(x=x, block_size=block, name=low.name(op))


@lowers(ane.SpaceToDepthOp)
def _space_to_depth(op: ane.SpaceToDepthOp, low: Lowering) -> Var:
    return mb.space_to_depth(x=low.data(op.input, ints=False), block_size=op.block_size.value.data, name=low.name(op))


@lowers(ane.CastOp)
def _cast(op: ane.CastOp, low: Lowering) -> Var:
    x, dtype = low.var(op.input), mil_dtype(op.result)
    if x.dtype == dtype:
        return mb.identity(x=x, name=low.name(op))
    return mb.cast(x=x, dtype=types.builtin_to_string(dtype), name=low.name(op))


@lowers(ane.ConcatOp)
def _concat(op: ane.ConcatOp, low: Lowering) -> Var:
    return mb.concat(values=[low.var(v) for v in op.inputs], axis=op.axis.value.data, interleave=False, name=low.name(op))


@lowers(ane.SplitOp)
def _split(op: ane.SplitOp, low: Lowering) -> Sequence[Var]:
    if len(op.outputs) == 1:
        return [mb.identity(x=low.var(op.input), name=low.name(op))]
    return mb.split(x=low.var(op.input), split_sizes=list(op.sizes()), axis=op.axis.value.data, name=low.name(op))


# ------------------------------------------------------------------------------------------------
# Host ops: the source framework's op, as the MIL op Core ML runs on the CPU
# ------------------------------------------------------------------------------------------------


def attr(op: host.HostOp, key: str, default: Any = None) -> Any:
    value = op.attrs.data.get(key)
    return default if value is None else python_value(value)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _indices(op: host.HostOp, low: Lowering, value: SSAValue, axis_size: int) -> Var | np.ndarray:
    """Gather indices: constants with negative entries wrapped at compile time."""
    const = low.constant(value)
    if const is None:
        return low.var(value)
    return as_mil_array(np.where(const < 0, const + axis_size, const), types.int32)


@lowers("onnx.Gather")
def _onnx_gather(op: host.HostOp, low: Lowering) -> Var:
    data = op.args[0]
    axis = _axis(attr(op, "axis", 0), len(shape_of(data)))
    indices = _indices(op, low, op.args[1], shape_of(data)[axis])
    return mb.gather(x=low.data(data), indices=indices, axis=axis, name=low.name(op))


@lowers("aten.embedding.default")
def _aten_embedding(op: host.HostOp, low: Lowering) -> Var:
    weight, indices = op.args[0], op.args[1]
    return mb.gather(x=low.data(weight), indices=_indices(op, low, indices, shape_of(weight)[0]), axis=0, name=low.name(op))


@lowers("onnx.GatherElements")
def _onnx_gather_elements(op: host.HostOp, low: Lowering) -> Var:
    data = op.args[0]
    axis = _axis(attr(op, "axis", 0), len(shape_of(data)))
    indices = _indices(op, low, op.args[1], shape_of(data)[axis])
    return mb.gather_along_axis(x=low.data(data), indices=indices, axis=axis, name=low.name(op))


@lowers("onnx.GatherND")
def _onnx_gather_nd(op: host.HostOp, low: Lowering) -> Var:
    return mb.gather_nd(x=low.data(op.args[0]), indices=low.var(op.args[1]), batch_dims=attr(op, "batch_dims", 0), name=low.name(op))


@lowers("onnx.Where")
def _onnx_where(op: host.HostOp, low: Lowering) -> Var:
    cond, on_true, on_false = op.args
    return select(op, cond, on_true, on_false, low)


@lowers("onnx.Expand")
def _onnx_expand(op: host.HostOp, low: Lowering) -> Var:
    x, out = low.var(op.args[0]), shape_of(op.outputs[0])
    if len(x.shape) < len(out):
        x = mb.reshape(x=x, shape=[1] * (len(out) - len(x.shape)) + list(x.shape), name=low.name(op, "rank"))
    return broadcast_to(x, out, low.name(op))


@lowers("onnx.Cast", "onnx.Identity")
def _onnx_cast(op: host.HostOp, low: Lowering) -> Var:
    x, dtype = low.var(op.args[0]), mil_dtype(op.outputs[0])
    if x.dtype == dtype:
        return mb.identity(x=x, name=low.name(op))
    return mb.cast(x=x, dtype=types.builtin_to_string(dtype), name=low.name(op))


@lowers("onnx.TopK")
def _onnx_topk(op: host.HostOp, low: Lowering) -> Sequence[Var]:
    x = op.args[0]
    k = int(low.required_constant(op, op.args[1], "k").reshape(-1)[0])
    axis = _axis(attr(op, "axis", -1), len(shape_of(x)))
    return mb.topk(x=low.data(x), k=k, axis=axis, ascending=not attr(op, "largest", 1), sort=bool(attr(op, "sorted", 1)),
                   name=low.name(op))


@lowers("onnx.CumSum")
def _onnx_cumsum(op: host.HostOp, low: Lowering) -> Var:
    x = op.args[0]
    axis = _axis(int(low.required_constant(op, op.args[1], "axis").reshape(-1)[0]), len(shape_of(x)))
    return mb.cumsum(x=low.data(x), axis=axis, exclusive=bool(attr(op, "exclusive", 0)), reverse=bool(attr(op, "reverse", 0)),
                     name=low.name(op))


@lowers("onnx.Shape", "onnx.Size", "onnx.ConstantOfShape", "onnx.Range")
def _onnx_static(op: host.HostOp, low: Lowering) -> Var:
    """Ops whose result follows from static shapes and constant operands: folded to a constant."""
    args = [c if (c := low.constant(v)) is not None else np.zeros(shape_of(v), np.float32) for v in op.args]
    if op.op_name.data in ("onnx.ConstantOfShape", "onnx.Range") and any(low.constant(v) is None for v in op.args):
        raise unsupported(op, "its operands must be constants (MIL programs have static shapes)")
    (value,) = run_host_op(op, args)
    return low.const(np.asarray(value).reshape(shape_of(op.outputs[0])), mil_dtype(op.outputs[0]), low.name(op))


@lowers("onnx.Einsum")
def _onnx_einsum(op: host.HostOp, low: Lowering) -> Var:
    return mb.einsum(values=tuple(low.var(v) for v in op.args), equation=attr(op, "equation"), name=low.name(op))


@lowers("onnx.Trilu")
def _onnx_trilu(op: host.HostOp, low: Lowering) -> Var:
    k = 0 if len(op.args) < 2 else int(low.required_constant(op, op.args[1], "k").reshape(-1)[0])
    upper = bool(attr(op, "upper", 1))
    # band_part keeps `lower` diagonals below and `upper` above the main one (-1: all)
    if upper and k <= 0:
        return mb.band_part(x=low.var(op.args[0]), lower=-k, upper=-1, name=low.name(op))
    if not upper and k >= 0:
        return mb.band_part(x=low.var(op.args[0]), lower=-1, upper=k, name=low.name(op))
    raise unsupported(op, f"Trilu with upper={int(upper)} and k={k} leaves out the main diagonal, which band_part cannot")


@lowers("onnx.ScatterND")
def _onnx_scatter_nd(op: host.HostOp, low: Lowering) -> Var:
    if attr(op, "reduction", "none") != "none":
        raise unsupported(op, "only ScatterND without reduction maps to MIL's scatter_nd")
    data, indices, updates = low.data(op.args[0]), low.var(op.args[1]), low.data(op.args[2])
    return mb.scatter_nd(data=data, indices=indices, updates=updates, mode="update", name=low.name(op))


@lowers("onnx.ScatterElements")
def _onnx_scatter_elements(op: host.HostOp, low: Lowering) -> Var:
    if attr(op, "reduction", "none") != "none":
        raise unsupported(op, "only ScatterElements without reduction maps to MIL's scatter_along_axis")
    data, indices, updates = low.data(op.args[0]), low.var(op.args[1]), low.data(op.args[2])
    axis = _axis(attr(op, "axis", 0), len(shape_of(op.args[0])))
    return mb.scatter_along_axis(data=data, indices=indices, updates=updates, axis=axis, mode="update", name=low.name(op))


@lowers("onnx.OneHot")
def _onnx_one_hot(op: host.HostOp, low: Lowering) -> Var:
    depth = int(low.required_constant(op, op.args[1], "depth").reshape(-1)[0])
    off, on = low.required_constant(op, op.args[2], "values").reshape(-1)
    indices = low.var(op.args[0])
    axis = attr(op, "axis", -1)
    dtype = numpy_dtype(mil_dtype(op.outputs[0]))
    return mb.one_hot(indices=indices, one_hot_vector_size=depth, axis=axis, on_value=dtype.type(on), off_value=dtype.type(off),
                      name=low.name(op))


_ONNX_UNARY: dict[str, Callable[..., Var]] = {
    "onnx.Floor": mb.floor, "onnx.Ceil": mb.ceil, "onnx.Round": mb.round, "onnx.Sign": mb.sign, "onnx.Not": mb.logical_not,
    "onnx.Tan": mb.tan, "onnx.Asin": mb.asin, "onnx.Acos": mb.acos, "onnx.Atan": mb.atan, "onnx.Sinh": mb.sinh,
    "onnx.Cosh": mb.cosh, "onnx.Atanh": mb.atanh, "onnx.Softsign": mb.softsign,
}


@lowers(*_ONNX_UNARY)
def _onnx_unary(op: host.HostOp, low: Lowering) -> Var:
    return _ONNX_UNARY[op.op_name.data](x=low.var(op.args[0]), name=low.name(op))


_ONNX_BINARY: dict[str, Callable[..., Var]] = {
    "onnx.And": mb.logical_and, "onnx.Or": mb.logical_or, "onnx.Xor": mb.logical_xor,
}


@lowers(*_ONNX_BINARY)
def _onnx_binary(op: host.HostOp, low: Lowering) -> Var:
    x, y = (low.var(v) for v in op.args)
    return _ONNX_BINARY[op.op_name.data](x=x, y=y, name=low.name(op))


@lowers("onnx.IsNaN")
def _onnx_is_nan(op: host.HostOp, low: Lowering) -> Var:
    x = low.var(op.args[0])
    return mb.not_equal(x=x, y=x, name=low.name(op))


@lowers("onnx.IsInf")
def _onnx_is_inf(op: host.HostOp, low: Lowering) -> Var:
    x, name = low.var(op.args[0]), low.name(op)
    positive, negative = attr(op, "detect_positive", 1), attr(op, "detect_negative", 1)
    if positive and negative:
        return mb.equal(x=mb.abs(x=x, name=low.unique(f"{name}_abs")), y=low.scalar(np.inf, x), name=name)
    return mb.equal(x=x, y=low.scalar(np.inf if positive else -np.inf, x), name=name)


@lowers("onnx.Mod")
def _onnx_mod(op: host.HostOp, low: Lowering) -> Var:
    if attr(op, "fmod", 0):
        raise unsupported(op, "fmod (the remainder takes the dividend's sign) differs from MIL's mod")
    x, y = (low.var(v) for v in op.args)
    return mb.mod(x=x, y=y, name=low.name(op))
