"""PyTorch → `ane`/`host` IR: `torch.export` programs, `.pt2` files, nn.Modules and ATen FX graphs.

Every route ends in one walk over an ATen-level FX graph (`GraphImporter`):

- parameters, buffers and lifted constants become weights in the module's store;
- a node none of whose inputs is a run-time tensor is evaluated with torch on the spot (constant
  folding: transposed weights, position ids, masks built from `arange`, shape arithmetic);
- every other node goes through the handler table of `anec.importers.aten`; nodes without a
  handler become `host.op "aten.<op>.<overload>"`, run eagerly by torch at run time.

Exported programs are first decomposed with torch's own table minus the ops the ANE runs whole
(`KEEP_WHOLE`: linear, layer_norm, scaled_dot_product_attention, gelu, …) and with anec's own
decompositions (`ane_decompositions`: `index_put` along one axis as a one-hot select). Symbolic sizes are
specialized from the given input shapes or example inputs, or refused with an `AnecError` naming
the input and axis. torch is imported only by this module and `aten` (never by `import anec`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import operator
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch
from torch import fx
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Block, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from anec.dialects.discardable import NAME_ATTR
from anec.dialects.host import HostOp
from anec.errors import AnecError, ImportFailure, first_line
from anec.host_kernels.aten import to_numpy
from anec.importers.aten import (
    EMITS,
    HANDLERS,
    HELPER_OPS,
    NO_OP,
    Declined,
    NodeBuilder,
    element_type,
    host_op,
    op_key,
)
from anec.weights import WeightStore, attach, make_const

InputShapes = Mapping[str, Sequence[int]]

WEIGHT_NAMES = "anec_weight_names"
"""`GraphModule.meta` key: attribute name -> the name its weight gets in the store (`layers.0.weight`)."""

KEEP_WHOLE = (
    "linear", "matmul", "layer_norm", "native_layer_norm", "group_norm", "native_group_norm",
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu", "gelu", "silu", "hardswish",
    "hardsigmoid", "hardtanh", "elu", "softplus", "leaky_relu", "pixel_shuffle", "upsample_nearest2d",
    "upsample_bilinear2d", "logsumexp", "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "reflection_pad1d", "reflection_pad2d",
    "replication_pad1d", "replication_pad2d",
)
"""ATen ops the ANE has natively: decompositions leave them whole (all overloads)."""


def ane_decompositions(table: Any) -> Any:
    """`table` (a decomposition table, changed in place) without the ops in `KEEP_WHOLE`, and with
    anec's own forms of ops the ANE has no equivalent of (`index_put` as a one-hot select)."""
    for name in KEEP_WHOLE:
        packet = getattr(torch.ops.aten, name)
        for overload in packet.overloads():
            table.pop(getattr(packet, overload), None)
    table.update(ANE_DECOMPOSITIONS)
    return table


def one_hot_index_put(self: torch.Tensor, indices: Sequence[torch.Tensor | None], values: torch.Tensor,
                      accumulate: bool = False) -> Any:
    """`self[..., index, ...] = values` along one axis as ops the ANE runs: a one-hot matrix of the
    index (`one_hot[j, i] = index[i] == j`, a few integer compares on the CPU), a matmul that moves
    each row of `values` to its position, and a select of the written positions.

    This is a static KV cache's update (`index_copy_` at the cache positions), which as `index_put`
    would run on the CPU and split the ANE graph at every layer. Duplicate indices sum their rows
    (torch leaves that case undefined); other forms (several index tensors, masks, accumulation)
    stay `index_put`."""
    axes = [a for a, index in enumerate(indices) if index is not None]
    if accumulate or len(axes) != 1 or not self.dtype.is_floating_point:
        return NotImplemented
    (a,) = axes
    index = indices[a]
    assert index is not None
    if index.dim() != 1 or index.dtype not in (torch.int32, torch.int64):
        return NotImplemented
    n, rank = self.shape[a], self.dim()
    rows = values.to(self.dtype).expand(*self.shape[:a], index.shape[0], *self.shape[a + 1:])
    positions = torch.where(index < 0, index + n, index)  # negative indices count from the end
    one_hot = (positions.unsqueeze(0) == torch.arange(n, dtype=index.dtype, device=index.device).unsqueeze(1)).to(self.dtype)
    if a == rank - 1:
        scattered = torch.matmul(rows, one_hot.t())
    else:
        scattered = torch.matmul(one_hot, rows.movedim(a, -2)).movedim(-2, a)
    written = one_hot.sum(1).gt(0).reshape(n, *[1] * (rank - 1 - a))
    return torch.where(written, scattered, self)


ANE_DECOMPOSITIONS: dict[Any, Any] = {torch.ops.aten.index_put.default: one_hot_index_put}
"""anec's own decompositions (ATen op -> function), for forms of ops the ANE has no equivalent of;
a function returns `NotImplemented` for the forms it leaves whole."""


# ------------------------------------------------------------------------------------------------
# Symbolic sizes
# ------------------------------------------------------------------------------------------------


class ShapeEnv:
    """Concrete values for the symbols of a program's sizes, bound from its inputs' shapes."""

    def __init__(self, ranges: Mapping[sympy.Symbol, Any] | None = None) -> None:
        self.bindings: dict[sympy.Symbol, sympy.Integer] = {}
        self.ranges = ranges or {}
        """The program's allowed values per symbol (torch's ValueRanges, with `lower` and `upper`)."""

    def bind(self, name: str, meta: torch.Tensor, shape: Sequence[int] | None) -> None:
        for axis, size in enumerate(meta.shape):
            if not isinstance(size, torch.SymInt):
                continue
            if shape is None:
                raise AnecError(f"input {name!r} has a dynamic axis {axis} ({size})", why="anec compiles static shapes",
                                hint=f"give the shape: --input-shape {name}=D0,D1,… or example_inputs")
            symbol = size.node.expr
            if isinstance(symbol, sympy.Symbol):
                allowed = self.ranges.get(symbol)
                if allowed is not None and not allowed.lower <= int(shape[axis]) <= allowed.upper:
                    raise AnecError(f"input {name!r} axis {axis} = {shape[axis]} is outside the range [{allowed.lower}, {allowed.upper}] "
                                    "the program was exported for")
                self.bindings.setdefault(symbol, sympy.Integer(int(shape[axis])))

    def size(self, size: int | torch.SymInt, what: str) -> int:
        if not isinstance(size, torch.SymInt):
            return int(size)
        value = sympy.sympify(size.node.expr.xreplace(self.bindings))
        if not value.is_Integer:
            raise AnecError(f"{what} has a size {size} that the input shapes do not determine",
                            why="it depends on data or on an input whose shape was not given",
                            hint="give every dynamic input's shape (--input-shape) or export with static shapes")
        return int(value)

    def shape(self, meta: torch.Tensor, what: str) -> tuple[int, ...]:
        return tuple(self.size(d, what) for d in meta.shape)


# ------------------------------------------------------------------------------------------------
# The graph walk
# ------------------------------------------------------------------------------------------------


def _flat(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for v in value:
            yield from _flat(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flat(v)
    else:
        yield value


def bind_schema(target: torch._ops.OpOverload, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Each schema argument's value by name, defaults filled in."""
    bound: dict[str, Any] = {}
    for i, arg in enumerate(target._schema.arguments):
        if not arg.kwarg_only and i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
        else:
            bound[arg.name] = None
    return bound


class GraphImporter:
    """Imports one ATen FX graph into a `@main` function.

    `values[node]` keeps each node's value (SSA value, constant tensor or Python value): the
    torch.compile backend folds the nodes that became constants.
    """

    def __init__(self, constants: Mapping[fx.Node, torch.Tensor], weight_names: Mapping[int, str] | None = None,
                 ranges: Mapping[sympy.Symbol, Any] | None = None):
        self.constants = constants
        self.weight_names = dict(weight_names or {})
        self.shapes = ShapeEnv(ranges)
        self.store = WeightStore()
        self.block = Block()
        self.values: dict[fx.Node, Any] = {}
        self._const_cache: dict[int, tuple[torch.Tensor, SSAValue]] = {}

    # -- values ----------------------------------------------------------------------------------

    def constant(self, t: torch.Tensor, name: str, builder: NodeBuilder | None = None) -> SSAValue:
        """An `ane.const` for `t`, one per tensor object (large ones go to the weight store).

        The weight is named after `t` or the parameter it is a view of, else `name`.
        Constants a node builder asks for join the module only with the builder's ops, so a handler that
        declines leaves nothing behind.
        """
        for cache in (self._const_cache, builder.constants if builder else {}):
            if (hit := cache.get(id(t))) is not None and hit[0] is t:
                return hit[1]
        name = self.weight_names.get(id(t)) or self.weight_names.get(id(t._base)) or name
        op = make_const(to_numpy(t), name, self.store)
        op.attributes[NAME_ATTR] = StringAttr(name)
        if builder is None:
            self.block.add_op(op)
            self._const_cache[id(t)] = (t, op.result)
        else:
            builder.ops.append(op)
            builder.constants[id(t)] = (t, op.result)
        return op.result

    def out_specs(self, node: fx.Node) -> list[tuple[tuple[int, ...], torch.dtype] | None]:
        meta = node.meta.get("val")
        metas = meta if isinstance(meta, list | tuple) else [meta]
        return [(self.shapes.shape(m, node.name), m.dtype) if isinstance(m, torch.Tensor) else None for m in metas]

    # -- the walk --------------------------------------------------------------------------------

    def run(self, graph: fx.Graph, inputs: Sequence[tuple[str, fx.Node]], outputs: Sequence[tuple[str, Any]],
            shapes: Mapping[str, Sequence[int]] | None = None, owner: torch.nn.Module | None = None) -> ModuleOp:
        """The module for `graph`: `inputs` (name, placeholder) become arguments, `outputs` results."""
        shapes = shapes or {}
        for name, node in inputs:
            self.shapes.bind(name, node.meta["val"], shapes.get(name))
        arg_types = []
        for name, node in inputs:
            shape = self.shapes.shape(node.meta["val"], f"input {name!r}")
            if name in shapes and tuple(shapes[name]) != shape:
                raise AnecError(f"input {name!r} is given shape {list(shapes[name])}, the program expects {list(shape)}")
            arg_types.append(TensorType(element_type(node.meta["val"].dtype), list(shape)))
        self.block = Block(arg_types=arg_types)
        if owner is not None:
            labels = getattr(owner, "meta", {}).get(WEIGHT_NAMES, {})
            for target, label in labels.items():
                tensor = _attribute(owner, target)
                self.weight_names[id(tensor)] = label
                if tensor._base is not None:  # other views of the same weight share its name
                    self.weight_names.setdefault(id(tensor._base), label)
        input_nodes = {node: arg for (_, node), arg in zip(inputs, self.block.args)}
        for node in graph.nodes:
            if node.op == "placeholder":
                self.values[node] = input_nodes.get(node, self.constants.get(node))
            elif node.op == "get_attr":
                self.values[node] = _attribute(owner, node.target)
                self.weight_names.setdefault(id(self.values[node]), node.target)
            elif node.op == "call_function":
                try:
                    self.values[node] = self.call(node)
                except AnecError:
                    raise
                except Exception as e:  # a handler bug: one line naming the node, not a traceback out of anec.compile
                    raise ImportFailure.of("anec failed to import the node", f"node {node.name!r} ({op_key(node.target)})", e) from e
        results = [self.result(name, value) for name, value in outputs]
        self.block.add_op(func.ReturnOp(*results))
        _erase_dead_ops(self.block)
        fn = func.FuncOp("main", (arg_types, [r.type for r in results]), Region(self.block),
                         arg_attrs=_names([n for n, _ in inputs]), res_attrs=_names([n for n, _ in outputs]))
        module = ModuleOp([fn])
        attach(module, self.store)
        try:
            module.verify()
        except VerifyException as e:
            raise _invalid_ir(fn, e) from e
        return module

    def result(self, name: str, arg: Any) -> SSAValue:
        value = fx.node.map_arg(arg, lambda n: self.values[n])
        if isinstance(value, torch.Tensor):
            return self.constant(value, name)
        if not isinstance(value, SSAValue):
            raise AnecError(f"output {name!r} is not a tensor ({type(value).__name__})", hint="return tensors only")
        return value

    def call(self, node: fx.Node) -> Any:
        args = fx.node.map_arg(node.args, lambda n: self.values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.values[n])
        if not any(isinstance(v, SSAValue) for v in _flat((args, kwargs))):
            assert callable(node.target), "a call_function node's target is the function"
            with torch.no_grad():
                return node.target(*args, **kwargs)  # constant folding
        if node.target is operator.getitem:
            outputs, index = args
            assert isinstance(outputs, list | tuple) and isinstance(index, int | slice), "getitem picks outputs of a multi-output node"
            return outputs[index]
        key = op_key(node.target)
        if key in NO_OP:
            return None
        bound = bind_schema(node.target, args, kwargs) if isinstance(node.target, torch._ops.OpOverload) else {}
        if "val" not in node.meta:
            raise AnecError(f"{key} has no shape information", where=node.name, hint="import programs made by torch.export or torch.compile")
        builder = NodeBuilder(node, bound, self.out_specs(node), self.store, lambda t: self.constant(t, node.name, builder))
        handler = HANDLERS.get(key)
        try:
            value = handler(builder) if handler else host_op(builder)
            unexpected = {type(op) for op in builder.ops} - {*HELPER_OPS, *EMITS.get(key, (HostOp,))}
            if unexpected:
                raise RuntimeError(f"anec bug: the handler of {key} made {sorted(c.name for c in unexpected)}, not in its `emits`")
        except Declined:
            builder.ops.clear()
            builder.constants.clear()
            value = host_op(builder)
        _check(node, key, value, builder.out)
        for op in builder.ops:
            self.block.add_op(op)
        self._const_cache.update(builder.constants)
        return value


def _invalid_ir(fn: func.FuncOp, error: VerifyException) -> ImportFailure:
    """The first op that does not verify, by its node name, in one line (xDSL's message prints the module)."""
    for op in fn.body.block.ops:
        try:
            op.verify()
        except VerifyException as e:
            name = op.attributes.get(NAME_ATTR)
            where = f"node {name.data!r}" if isinstance(name, StringAttr) else "the imported program"
            return ImportFailure.of(f"the torch importer built an invalid {op.name}", where, e)
    return ImportFailure.of("the torch importer built invalid IR", "the imported program", error)


def _erase_dead_ops(block: Block) -> None:
    """Drop ops whose results nobody uses (reshapes that later reshapes looked through, unused outputs)."""
    for op in reversed(list(block.ops)):
        if op.results and all(not r.uses for r in op.results):
            block.erase_op(op)


def _check(node: fx.Node, key: str, value: Any, out: Sequence[tuple[tuple[int, ...], torch.dtype] | None]) -> None:
    """A handler's results must have the shapes and dtypes torch computed for the node."""
    values = value if isinstance(value, list | tuple) else [value]
    for v, spec in zip(values, out):
        if isinstance(v, SSAValue) and spec is not None:
            expected = TensorType(element_type(spec[1]), list(spec[0]))
            if v.type != expected:
                raise RuntimeError(f"anec bug: the handler of {key} made {v.type} for {node.name}, torch expects {expected}")


def _names(names: Sequence[str]) -> ArrayAttr[DictionaryAttr]:
    return ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(n)}) for n in names])


def _attribute(owner: torch.nn.Module | None, target: str) -> Any:
    value: Any = owner
    for part in target.split("."):
        value = getattr(value, part)
    return value


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------


def import_torch(model: Any, *, example_inputs: Any = None, input_shapes: InputShapes | None = None) -> ModuleOp:
    """A module for an `ExportedProgram`, an ATen `GraphModule`, or an nn.Module traced on `example_inputs`."""
    if isinstance(model, torch.export.ExportedProgram):
        return import_exported(model, input_shapes=input_shapes or shapes_of(example_inputs, _user_inputs(model)))
    if isinstance(model, fx.GraphModule) and is_aten_graph(model):
        return import_graph_module(model)
    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise AnecError(f"a {type(model).__name__} needs example_inputs to be traced",
                            hint="anec.compile(module, example_inputs=(x,)), or pass a torch.export.ExportedProgram")
        args, kwargs, names = example_call(model, example_inputs)
        try:
            program = torch.export.export(model, args, kwargs)
        except Exception as e:
            raise AnecError(f"torch.export cannot trace {type(model).__name__}", where="torch.export", why=first_line(e),
                            hint="make the model exportable (torch.export docs), or use torch.compile(model, backend='anec')") from e
        return import_exported(program, input_names=names)
    raise AnecError(f"cannot compile a {type(model).__module__}.{type(model).__qualname__}",
                    hint="pass an nn.Module with example_inputs, a torch.export.ExportedProgram or a .pt2 file")


def import_pt2(path: str | Path, *, input_shapes: InputShapes | None = None) -> ModuleOp:
    """A module for a `torch.export.save` file."""
    try:
        with _quiet():
            program = torch.export.load(str(path))
    except Exception as e:
        raise AnecError(f"{path}: not a torch.export program", why=first_line(e),
                        hint="write it with torch.export.save(torch.export.export(model, args), path)") from e
    return import_exported(program, input_shapes=input_shapes)


def import_exported(program: torch.export.ExportedProgram, *, input_shapes: InputShapes | None = None,
                    input_names: Sequence[str] | None = None) -> ModuleOp:
    """Decompose `program` (keeping `KEEP_WHOLE` ops) and import it; weights go to the store."""
    try:
        with _quiet():
            program = program.run_decompositions(ane_decompositions(torch.export.default_decompositions()))
    except Exception as e:
        raise AnecError("torch's decompositions failed on the exported program", where="run_decompositions",
                        why=first_line(e), hint=_decomposition_hint(program)) from e
    nodes = {n.name: n for n in program.graph.nodes}
    constants: dict[fx.Node, torch.Tensor] = {}
    weight_names: dict[int, str] = {}
    kinds = torch.export.graph_signature.InputKind
    for spec in program.graph_signature.input_specs:
        if spec.kind in (kinds.PARAMETER, kinds.BUFFER, kinds.CONSTANT_TENSOR):
            tensor = program.state_dict[spec.target] if spec.target in program.state_dict else program.constants[spec.target]
            constants[nodes[spec.arg.name]] = tensor.detach()
            weight_names[id(constants[nodes[spec.arg.name]])] = spec.target
        elif spec.kind != kinds.USER_INPUT:
            raise AnecError(f"input {spec.arg.name} of kind {spec.kind.name} is not supported", hint="export a model without custom objects or tokens")
    users = _user_inputs(program)
    names = list(input_names) if input_names is not None and len(input_names) == len(users) else [n.name for n in users]
    shapes = {name: input_shapes[key] for name, node in zip(names, users) for key in (name, node.name) if input_shapes and key in input_shapes}
    outputs = []
    for spec in program.graph_signature.output_specs:
        if spec.kind == torch.export.graph_signature.OutputKind.USER_OUTPUT:
            if not isinstance(spec.arg, torch.export.graph_signature.TensorArgument):
                raise AnecError(f"output {spec.arg} is not a tensor", hint="return tensors only")
            outputs.append((spec.arg.name, nodes[spec.arg.name]))
    return GraphImporter(constants, weight_names, program.range_constraints).run(program.graph, list(zip(names, users)), outputs, shapes)


def _decomposition_hint(program: torch.export.ExportedProgram) -> str:
    """What to try when `run_decompositions` fails: tensors of the program that share storage (a
    non-strict export lifts a module's cache tensors as constants aliasing its buffers, which torch's
    re-tracing rejects) are the known cause."""
    owners: dict[int, list[str]] = {}
    for name, tensor in [*program.state_dict.items(), *program.constants.items()]:
        if isinstance(tensor, torch.Tensor):
            owners.setdefault(tensor.untyped_storage().data_ptr(), []).append(name)
    shared = next((names for names in owners.values() if len(names) > 1 and not all("weight" in n for n in names)), None)
    if shared:
        return (f"{shared[0]} and {shared[1]} share storage; export with strict=True (transformers: "
                "convert_and_export_with_cache), or give the module its buffers without aliases")
    return "export with strict=True, or compile the nn.Module with torch.compile(model, backend='anec')"


def import_graph_module(gm: fx.GraphModule) -> ModuleOp:
    """A module for an ATen-level GraphModule (a torch.compile partition): its attributes are weights."""
    inputs = [(n.name, n) for n in gm.graph.nodes if n.op == "placeholder"]
    output = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    results = output if isinstance(output, list | tuple) else [output]
    outputs = [(r.name if isinstance(r, fx.Node) else f"output{i}", r) for i, r in enumerate(results)]
    return GraphImporter({}).run(gm.graph, inputs, outputs, owner=gm)


def is_aten_graph(gm: fx.GraphModule) -> bool:
    """Does `gm` hold ATen ops with shape metadata (what torch.compile's ATen lowering makes)?"""
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    return all("val" in n.meta for n in gm.graph.nodes if n.op == "placeholder") and \
        all(isinstance(n.target, torch._ops.OpOverload) or n.target is operator.getitem for n in calls)


def _user_inputs(program: torch.export.ExportedProgram) -> list[fx.Node]:
    nodes = {n.name: n for n in program.graph.nodes}
    kind = torch.export.graph_signature.InputKind.USER_INPUT
    users = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == kind:
            if not isinstance(spec.arg, torch.export.graph_signature.TensorArgument):
                raise AnecError(f"input {spec.arg.name} is not a tensor", hint="export with tensor inputs only")
            users.append(nodes[spec.arg.name])
    return users


def example_call(model: torch.nn.Module, example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any], list[str] | None]:
    """(args, kwargs, input names) for tracing `model` on `example_inputs`.

    A dict is passed by keyword when every key names a parameter of `forward`, else positionally
    in its order; its keys name the inputs either way.
    """
    if isinstance(example_inputs, Mapping):
        values = {k: _tensor(v) for k, v in example_inputs.items()}
        params = inspect.signature(model.forward).parameters
        named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if set(values) <= named:
            return (), values, None
        return tuple(values.values()), {}, list(values)
    if isinstance(example_inputs, list | tuple):
        return tuple(_tensor(v) for v in example_inputs), {}, None
    return (_tensor(example_inputs),), {}, None


def shapes_of(example_inputs: Any, users: Sequence[fx.Node]) -> dict[str, list[int]] | None:
    """Input shapes (by placeholder name) from example inputs given with an ExportedProgram."""
    if example_inputs is None:
        return None
    if isinstance(example_inputs, Mapping):
        return {k: list(np.shape(v)) for k, v in example_inputs.items()}
    values = example_inputs if isinstance(example_inputs, list | tuple) else [example_inputs]
    return {n.name: list(np.shape(v)) for n, v in zip(users, values)}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.export's own deprecation warnings and error logs (anec reports errors itself)."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value
