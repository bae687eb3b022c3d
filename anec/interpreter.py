"""Execute `ane` and `host` IR with numpy, so every pass can be checked for preserving meaning.

Two precisions:
  "f32"  every op computes at the types the IR declares (after the fp16 pass, ANE segments are f16
         in the IR itself, so this already gives fp16 storage there);
  "f16"  every float `ane` tensor is stored as fp16 whatever the IR says: a quick way to see what
         fp16 does to a graph before any pass has run.
Kernels compute in float32 either way; `host.op`s run on their source framework (anec.host_kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Attribute, Block, Operation, SSAValue

from anec import kernels
from anec.dialects import ane, host
from anec.dialects.ane import as_tuple, shape_of
from anec.dialects.discardable import NAME_ATTR
from anec.errors import AnecError
from anec.host_kernels import run_host_op
from anec.registry import Registry
from anec.types import numpy_dtype
from anec.weights import WeightStore, const_value, store_of

Precision = Literal["f32", "f16"]
Kernel = Callable[..., np.ndarray | tuple[np.ndarray, ...]]

KERNELS: Registry[Kernel] = Registry("interpreter kernel")
kernel = KERNELS.register
"""Register the numpy implementation of one or more op classes."""



def entry_function(module: ModuleOp | func.FuncOp, name: str | None = None) -> func.FuncOp:
    if isinstance(module, func.FuncOp):
        return module
    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    for f in funcs:
        if name is None or f.sym_name.data == name:
            return f
    raise AnecError(f"no function {name or ''} in the module".replace("  ", " "), hint="the IR needs a func.func to run")


def _io_name(attrs, index: int, value: SSAValue | None, prefix: str) -> str:
    if attrs is not None and index < len(attrs.data) and isinstance(n := attrs.data[index].data.get(NAME_ATTR), StringAttr):
        return n.data
    if value is not None and value.name_hint:
        return value.name_hint
    return f"{prefix}{index}"


def input_names(function: func.FuncOp) -> list[str]:
    return [_io_name(function.arg_attrs, i, a, "arg") for i, a in enumerate(function.args)]


def output_names(function: func.FuncOp) -> list[str]:
    return [_io_name(function.res_attrs, i, None, "out") for i in range(len(function.function_type.outputs.data))]


Observer = Callable[[Operation, list[np.ndarray]], None]
"""Called with every op and the values it computed (the fp16 pass calibrates its lint this way)."""


def interpret(module: ModuleOp | func.FuncOp, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
              precision: Precision = "f32", segments: Precision = "f16", store: WeightStore | None = None,
              function: str | None = None, observe: Observer | None = None,
              run: Run | None = None) -> list[np.ndarray]:
    """Run the module's entry function on `inputs` (a list in argument order, or a dict by name).

    `precision` applies outside `ane.segment`s, `segments` inside them (the ANE stores fp16). `run`
    replaces the executor (the runtime passes one that also runs `anehw.call`s on the simulator).
    """
    fn = entry_function(module, function)
    store = store if store is not None else store_of(fn)
    outs = (run or Run(store, precision, segments, observe)).run_block(fn.body.block, _bind_inputs(fn, inputs))
    return [_as_declared(x, v) for x, v in zip(outs, fn.function_type.outputs.data)]


def _bind_inputs(fn: func.FuncOp, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
    names = input_names(fn)
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise AnecError(f"missing input {missing[0]!r}", hint=f"the model's inputs are {names}")
        inputs = [inputs[n] for n in names]
    if len(inputs) != len(fn.args):
        raise AnecError(f"expected {len(fn.args)} inputs, got {len(inputs)}", hint=f"the model's inputs are {names}")
    out = []
    for name, arg, value in zip(names, fn.args, inputs):
        value = np.asarray(value)
        if tuple(value.shape) != shape_of(arg):
            raise AnecError(f"input {name!r} has shape {list(value.shape)}, the model expects {list(shape_of(arg))}")
        out.append(_as_declared(value, arg))
    return out


def _as_declared(value: np.ndarray, v: SSAValue | Attribute) -> np.ndarray:
    typ = v.type if isinstance(v, SSAValue) else v
    assert isinstance(typ, TensorType)
    return np.asarray(value).astype(numpy_dtype(typ.element_type), copy=False)


class Run:
    """Executes single ops; holds what stays fixed during one interpretation."""

    def __init__(self, store: WeightStore, precision: Precision, segments: Precision = "f16", observe: Observer | None = None):
        self.store = store
        self.precision = precision
        self.segments = segments
        self.observe = observe

    def storage_dtype(self, v: SSAValue) -> np.dtype:
        dtype = numpy_dtype(ane.element_type_of(v))
        if self.precision == "f16" and dtype.kind == "f":
            return np.dtype(np.float16)
        return dtype

    def run_block(self, block: Block, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run a block's ops in order; returns the values its terminator passes on."""
        env: dict[SSAValue, np.ndarray] = dict(zip(block.args, args))
        for op in block.ops:
            if isinstance(op, func.ReturnOp | ane.YieldOp):
                return [env[v] for v in op.operands]
            outs = self.execute(op, [env[v] for v in op.operands])
            if self.observe is not None:
                self.observe(op, outs)
            env.update(zip(op.results, outs))
        raise AnecError("a block ends without func.return or ane.yield")

    def execute(self, op: Operation, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if isinstance(op, ane.SegmentOp):
            return Run(self.store, self.segments, self.segments, self.observe).run_block(op.body.block, inputs)
        if isinstance(op, ane.ConstOp):
            return [const_value(op, self.store).astype(self.storage_dtype(op.result), copy=False)]
        if isinstance(op, host.HostOp):
            args = [_as_declared(x, v) for x, v in zip(inputs, op.operands)]
            return [_as_declared(y, r) for y, r in zip(run_host_op(op, args), op.results)]
        impl = KERNELS.lookup(op)
        if impl is None:
            raise AnecError(f"the interpreter has no kernel for {op.name}")
        args = [x.astype(self.storage_dtype(v), copy=False) for x, v in zip(inputs, op.operands)]
        outs = impl(op, *args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return [np.asarray(y).astype(self.storage_dtype(r), copy=False) for y, r in zip(outs, op.results)]


# ------------------------------------------------------------------------------------------------
# Kernels: one small adapter per op family from IR attributes to anec.kernels
# ------------------------------------------------------------------------------------------------


def _name(op: Operation) -> str:
    return ane.kind(op)


def apply_activation(y: np.ndarray, op: ane.EpilogueOp) -> np.ndarray:
    """The neural engine's epilogue: a neuron op after the MAC (and bias)."""
    if op.activation is None:
        return y
    return kernels.UNARY[op.activation.data](y, *as_tuple(op.activation_params))


def _add_bias(y: np.ndarray, bias: np.ndarray | None, channel_axis: int) -> np.ndarray:
    if bias is None:
        return y
    shape = [1] * y.ndim
    shape[channel_axis] = -1
    return y + bias.astype(y.dtype).reshape(shape)


@kernel(ane.UnaryOp)
def _unary(op: ane.UnaryOp, x: np.ndarray) -> np.ndarray:
    return kernels.UNARY[_name(op)](kernels.upcast(x), *op.param_values())


@kernel(ane.GeluOp)
def _gelu(op: ane.GeluOp, x: np.ndarray) -> np.ndarray:
    return kernels.gelu(kernels.upcast(x), op.approximate.data)


@kernel(ane.SoftmaxOp)
def _softmax(op: ane.SoftmaxOp, x: np.ndarray) -> np.ndarray:
    return kernels.softmax(x, op.axis.value.data)


@kernel(ane.BinaryOp, ane.CompareOp)
def _binary(op: Operation, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return kernels.BINARY[_name(op)](kernels.upcast(a), kernels.upcast(b))


@kernel(ane.SelectOp)
def _select(op: ane.SelectOp, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(c, a, b)


@kernel(ane.ConvOp)
def _conv(op: ane.ConvOp, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    y = kernels.conv(x, w, as_tuple(op.strides), as_tuple(op.pads), as_tuple(op.dilations), op.groups.value.data)
    return apply_activation(_add_bias(y, bias, 1), op)


@kernel(ane.ConvTransposeOp)
def _conv_transpose(op: ane.ConvTransposeOp, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    y = kernels.conv_transpose(x, w, as_tuple(op.strides), as_tuple(op.pads), as_tuple(op.dilations), op.groups.value.data,
                               as_tuple(op.output_padding))
    return apply_activation(_add_bias(y, bias, 1), op)


@kernel(ane.MatmulOp)
def _matmul(op: ane.MatmulOp, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    y = kernels.matmul(a, b, *op.flags())
    return apply_activation(_add_bias(y, bias, -1), op)


@kernel(ane.SdpaOp)
def _sdpa(op: ane.SdpaOp, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    return kernels.sdpa(q, k, v, mask, op.scale.value.data)


@kernel(ane.ReduceOp)
def _reduce(op: ane.ReduceOp, x: np.ndarray) -> np.ndarray:
    return kernels.REDUCE[_name(op)](x, tuple(as_tuple(op.axes)), bool(op.keepdims.value.data))


@kernel(ane.ArgReduceOp)
def _arg_reduce(op: ane.ArgReduceOp, x: np.ndarray) -> np.ndarray:
    return kernels.arg_reduce(x, op.axis.value.data, bool(op.keepdims.value.data), bool(op.select_last_index.value.data),
                              largest=isinstance(op, ane.ArgmaxOp))


@kernel(ane.TopkOp)
def _topk(op: ane.TopkOp, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return kernels.topk(x, op.k.value.data, op.axis.value.data, bool(op.largest.value.data))


_POOL_KIND = {ane.MaxPoolOp: "max", ane.AvgPoolOp: "avg", ane.L2PoolOp: "l2"}


@kernel(ane.PoolOp)
def _pool(op: ane.PoolOp, x: np.ndarray) -> np.ndarray:
    include_pad = isinstance(op, ane.AvgPoolOp) and bool(op.count_include_pad.value.data)
    return kernels.pool(_POOL_KIND[type(op)], x, as_tuple(op.kernel), as_tuple(op.strides), as_tuple(op.pads), include_pad)


@kernel(ane.GlobalAvgPoolOp)
def _global_avg(op: Operation, x: np.ndarray) -> np.ndarray:
    return np.mean(kernels.upcast(x), axis=tuple(range(2, x.ndim)), keepdims=True)


@kernel(ane.GlobalMaxPoolOp)
def _global_max(op: Operation, x: np.ndarray) -> np.ndarray:
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@kernel(ane.LayerNormOp)
def _layer_norm(op: ane.LayerNormOp, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return kernels.layer_norm(x, scale, bias, tuple(as_tuple(op.axes)), op.epsilon.value.data)


@kernel(ane.InstanceNormOp)
def _instance_norm(op: ane.InstanceNormOp, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return kernels.instance_norm(x, scale, bias, op.epsilon.value.data)


@kernel(ane.GroupNormOp)
def _group_norm(op: ane.GroupNormOp, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return kernels.group_norm(x, scale, bias, op.num_groups.value.data, op.epsilon.value.data)


@kernel(ane.L2NormOp)
def _l2_norm(op: ane.L2NormOp, x: np.ndarray) -> np.ndarray:
    return kernels.l2_norm(x, tuple(as_tuple(op.axes)), op.epsilon.value.data)


@kernel(ane.ReshapeOp, ane.BroadcastOp)
def _reshape(op: Operation, x: np.ndarray) -> np.ndarray:
    shape = shape_of(op.results[0])
    return np.reshape(x, shape) if isinstance(op, ane.ReshapeOp) else np.broadcast_to(x, shape)


@kernel(ane.TransposeOp)
def _transpose(op: ane.TransposeOp, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, as_tuple(op.perm))


@kernel(ane.SliceOp)
def _slice(op: ane.SliceOp, x: np.ndarray) -> np.ndarray:
    return x[tuple(slice(s, e, st) for s, e, st in zip(as_tuple(op.starts), as_tuple(op.ends), as_tuple(op.steps)))]


@kernel(ane.PadOp)
def _pad(op: ane.PadOp, x: np.ndarray) -> np.ndarray:
    pads, n = as_tuple(op.pads), x.ndim
    widths = [(pads[i], pads[n + i]) for i in range(n)]
    if op.mode.data == "constant":
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(op.value.value.data).astype(x.dtype))
    return np.pad(x, widths, mode=_NUMPY_PAD_MODES[op.mode.data])


_NUMPY_PAD_MODES: dict[str, Literal["reflect", "edge"]] = {"reflect": "reflect", "edge": "edge"}
"""numpy's name of each non-constant `ane.pad` mode."""


@kernel(ane.TileOp)
def _tile(op: ane.TileOp, x: np.ndarray) -> np.ndarray:
    return np.tile(x, as_tuple(op.repeats))


@kernel(ane.ResizeOp)
def _resize(op: ane.ResizeOp, x: np.ndarray) -> np.ndarray:
    return kernels.resize(x, shape_of(op.result), op.mode.data, as_tuple(op.scales), op.coordinate_mode.data, op.nearest_mode.data)


@kernel(ane.DepthToSpaceOp)
def _depth_to_space(op: ane.DepthToSpaceOp, x: np.ndarray) -> np.ndarray:
    return kernels.depth_to_space(x, op.block_size.value.data, op.mode.data)


@kernel(ane.SpaceToDepthOp)
def _space_to_depth(op: ane.SpaceToDepthOp, x: np.ndarray) -> np.ndarray:
    return kernels.space_to_depth(x, op.block_size.value.data)


@kernel(ane.CastOp)
def _cast(op: ane.CastOp, x: np.ndarray) -> np.ndarray:
    return x  # Run.execute converts to the result's storage type


@kernel(ane.ConcatOp)
def _concat(op: ane.ConcatOp, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=op.axis.value.data)


@kernel(ane.SplitOp)
def _split(op: ane.SplitOp, x: np.ndarray) -> tuple[np.ndarray, ...]:
    cuts = np.cumsum(op.sizes())[:-1]
    return tuple(np.split(x, cuts, axis=op.axis.value.data))
