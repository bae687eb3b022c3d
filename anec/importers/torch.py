"""PyTorch → `ane`/`host` IR: `torch.export` programs, `.pt2` files, nn.Modules and ATen FX graphs.

Every route ends in one walk over an ATen-level FX graph (`GraphImporter`):

- parameters, buffers and lifted constants become weights in the module's store;
- a node none of whose inputs is a run-time tensor is evaluated with torch on the spot (constant
  folding: transposed weights, position ids, masks built from `arange`, shape arithmetic); a folded
  dequantization of integers that a MAC reads as its weight stays compressed (`aten_quantized`);
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
import math
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from anec.importers.aten_quantized import Tracker, carried_as_floats
from anec.weights import WeightStore, attach, make_const

InputShapes = Mapping[str, Sequence[int]]

WEIGHT_NAMES = "anec_weight_names"
"""`GraphModule.meta` key: attribute name -> the name its weight gets in the store (`layers.0.weight`)."""

DEQUANTIZED = "anec_dequantized"
"""`GraphModule.meta` key: the `Tracker` of attributes folded before the import (the torch.compile
backend's `fold_constants`), so those that are dequantized integers stay compressed as the importer's own folds do."""

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


def one_hot_rows(index: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """`one_hot[j, i] = index[i] == j` for j < n, as `dtype` ([n, len(index)]): a gather or scatter by
    an integer index as a matmul the ANE runs; the compares are a few integer ops on the CPU."""
    return (index.unsqueeze(0) == torch.arange(n, dtype=index.dtype, device=index.device).unsqueeze(1)).to(dtype)


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
    one_hot = one_hot_rows(positions, n, self.dtype)
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
# Functions of a bounded integer as tables
# ------------------------------------------------------------------------------------------------

aten = torch.ops.aten
TABULATED: dict[Any, Callable[[torch.Tensor], torch.Tensor]] = {aten.cos.default: torch.cos, aten.sin.default: torch.sin}
"""Ops the ANE lacks before the M3 (ane-hardware: sin/cos from the A15 family) that `tabulate_bounded`
turns into a lookup when their argument is a function of a bounded integer input."""

MAX_TABLE_ELEMENTS = 1 << 20
"""The largest table `tabulate_bounded` builds (2 MiB in fp16); beyond it the op stays as it is."""

_SAME_INDEX = {aten._to_copy.default, aten.clone.default, aten.alias.default}
_MOVEMENT = {aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.view.default,
             aten._unsafe_view.default, aten.reshape.default, aten.expand.default, aten.permute.default, aten.transpose.int,
             aten.t.default, aten.slice.Tensor, aten.select.int}
_ELEMENTWISE = {aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor, aten.div.Tensor, aten.mul.Scalar, aten.add.Scalar,
                aten.sub.Scalar, aten.div.Scalar, aten.neg.default}
"""The ops between the integer input and the tabulated op: each output element is computed from one
element of the input (and constants), so the result is a table row per input value."""


def tabulate_bounded(graph: fx.Graph, owner: torch.nn.Module, bounds: Mapping[fx.Node, tuple[int, int]],
                     constant: Callable[[fx.Node], torch.Tensor | None]) -> int:
    """Rewrite each `TABULATED` op (cos/sin) whose argument is computed element by element from one
    integer input known to lie in [lo, hi] (`bounds`: declared input ranges) and constants — rotary
    position angles, `position × inv_freq` — as a gather from a constant table of its exact values,
    [hi - lo + 1, …], by the one-hot matmul of `one_hot_rows` (compares on the CPU, the matmul on the
    ANE, whose sin/cos the M1/M2 lack). `constant(node)` is a placeholder's or attribute's tensor, or
    None for a run-time input. An op whose argument has another form, or whose table would exceed
    `MAX_TABLE_ELEMENTS`, is left as it is. Returns how many ops were rewritten."""
    rewritten = 0
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in TABULATED and isinstance(node.args[0], fx.Node):
            lookup = _lookup(node, bounds, constant)
            if lookup is not None:
                _replace_by_lookup(graph, owner, node, lookup)
                rewritten += 1
    return rewritten


@dataclass(frozen=True)
class _Lookup:
    source: fx.Node
    low: int
    rows: torch.Tensor
    """The flat element of the source each row of the gathered [rows, columns] result reads."""
    table: torch.Tensor
    """[values, columns]: the op's exact result for each value of the source."""
    shape: tuple[int, ...]
    """The gathered result's shape before `order` moves its axes to the op's."""
    order: tuple[int, ...]


def _lookup(node: fx.Node, bounds: Mapping[fx.Node, tuple[int, int]], constant: Callable[[fx.Node], torch.Tensor | None]) -> _Lookup | None:
    arg = node.args[0]
    assert isinstance(arg, fx.Node)
    ancestors, todo = set(), [arg]
    while todo:
        n = todo.pop()
        if n not in ancestors:
            ancestors.add(n)
            todo.extend(n.all_input_nodes)
    order = [n for n in arg.graph.nodes if n in ancestors]
    sources = [n for n in order if n in bounds]
    if len(sources) != 1 or any(n.op != "call_function" and n not in bounds and constant(n) is None for n in order):
        return None
    (source,) = sources
    low, high = bounds[source]
    shape = tuple(arg.meta["val"].shape)
    values = high - low + 1
    dependent = {source}
    for n in order:
        if any(i in dependent for i in n.all_input_nodes):
            if n.target not in _SAME_INDEX | _MOVEMENT | _ELEMENTWISE | {aten.cat.default}:
                return None
            dependent.add(n)
    meta = source.meta["val"]
    index = _evaluate(order, constant, source, torch.arange(meta.numel()).reshape(meta.shape), dependent, indices=True)
    if index is None or (index < 0).any():
        return None
    varying = [d for d in range(index.dim()) if (index != index.narrow(d, 0, 1)).any()]
    axes = (*varying, *(d for d in range(index.dim()) if d not in varying))
    gathered = tuple(shape[d] for d in axes)
    rows_count = math.prod(gathered[:len(varying)])
    columns = math.prod(gathered[len(varying):])
    by_row = index.permute(axes).reshape(rows_count, columns)
    if values * columns > MAX_TABLE_ELEMENTS or not torch.equal(by_row, by_row[:, :1].expand_as(by_row)):
        return None
    rows = torch.tensor(by_row[:, 0].tolist())  # a fresh tensor: a size-1 view keeps its stride
    if not torch.equal(rows.sort().values, torch.arange(meta.numel())):
        return None
    fn = TABULATED[node.target]
    table = []
    for value in range(low, high + 1):
        x = _evaluate(order, constant, source, torch.full(tuple(meta.shape), value, dtype=meta.dtype), dependent, indices=False)
        assert x is not None
        y = fn(x).permute(axes).reshape(rows_count, columns)
        if not torch.equal(y, y[:1].expand_as(y)):
            return None
        table.append(y[0])
    return _Lookup(source, low, rows, torch.stack(table), gathered, tuple(axes.index(d) for d in range(len(axes))))


def _evaluate(order: Sequence[fx.Node], constant: Callable[[fx.Node], torch.Tensor | None], source: fx.Node, value: torch.Tensor,
              dependent: set[fx.Node], *, indices: bool) -> torch.Tensor | None:
    """The last node of `order` with `value` for `source`: computed by torch, or (`indices`) as the
    flat index of the source element each element comes from (None if an element comes from two)."""
    env: dict[fx.Node, Any] = {source: value}
    for n in order:
        if n in env:
            continue
        if n.op != "call_function":
            env[n] = constant(n)
            continue
        args = fx.node.map_arg(n.args, lambda a: env[a])
        kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
        assert callable(n.target), "a call_function node's target is the function"
        if not indices or n not in dependent:
            with torch.no_grad():
                env[n] = n.target(*args, **kwargs)
        elif n.target in _SAME_INDEX:
            env[n] = args[0]
        elif n.target in _MOVEMENT:
            env[n] = n.target(*args, **kwargs)
        elif n.target is aten.cat.default:
            listed = n.args[0] if isinstance(n.args[0], list | tuple) else ()
            tensors = [a for a in listed if isinstance(a, fx.Node)]
            if not tensors or len(tensors) != len(listed):
                return None
            env[n] = aten.cat.default([env[a] if a in dependent else torch.full(tuple(a.meta["val"].shape), -1) for a in tensors], *args[1:])
        else:
            out = tuple(n.meta["val"].shape)
            sources = [env[a].expand(out) for a in n.all_input_nodes if a in dependent]
            if any(not torch.equal(s, sources[0]) for s in sources[1:]):
                return None
            env[n] = sources[0]
    return env[order[-1]]


def _replace_by_lookup(graph: fx.Graph, owner: torch.nn.Module, node: fx.Node, lookup: _Lookup) -> None:
    """`node` replaced by the one-hot gather of `lookup` (traced by make_fx), its argument's
    computation erased."""
    from torch.fx.experimental.proxy_tensor import make_fx

    values = lookup.table.shape[0]
    identity = torch.equal(lookup.rows, torch.arange(lookup.rows.numel()))

    def gather(source: torch.Tensor, rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        index = source.reshape(-1) if identity else source.reshape(-1).index_select(0, rows)
        one_hot = one_hot_rows(index - lookup.low if lookup.low else index, values, table.dtype)
        return torch.matmul(one_hot.t(), table).reshape(lookup.shape).permute(lookup.order)

    meta = lookup.source.meta["val"]
    traced = make_fx(gather, tracing_mode="real")(torch.zeros(tuple(meta.shape), dtype=meta.dtype), lookup.rows, lookup.table)
    attributes = []
    for suffix, tensor in (("rows", lookup.rows), ("table", lookup.table)):
        name = f"_anec_{node.name}_{suffix}"
        owner.register_buffer(name, tensor, persistent=False)
        with graph.inserting_before(node):
            attributes.append(graph.get_attr(name))
        attributes[-1].meta["val"] = tensor
    inputs = [n for n in traced.graph.nodes if n.op == "placeholder"]
    with graph.inserting_before(node):
        result = graph.graph_copy(traced.graph, dict(zip(inputs, [lookup.source, *attributes], strict=True)))
    assert isinstance(result, fx.Node)
    computation = {node.args[0], *attributes}
    for n in reversed(list(graph.nodes)):
        if n in computation:
            computation.update(n.all_input_nodes)
    node.replace_all_uses_with(result)
    graph.erase_node(node)
    for n in reversed(list(graph.nodes)):  # the argument's ops, when the table replaced their last use
        if n in computation and n.op in ("call_function", "get_attr") and not n.users:
            graph.erase_node(n)


def merge_repeated_index_work(graph: fx.Graph) -> int:
    """Merge nodes that apply the same pure ATen op to the same operands, when those operands are
    integer or boolean (index arithmetic, one-hot compares and their casts): a cache update's
    one-hot of the positions, which each `index_put` decomposition builds for itself (keys and
    values of every layer), is built once. Returns how many nodes were merged away."""
    first: dict[Any, fx.Node] = {}
    merged = 0
    for node in list(graph.nodes):
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload) or target._schema.is_mutable:
            continue
        if torch.Tag.nondeterministic_seeded in target.tags or any(
                not isinstance(i.meta.get("val"), torch.Tensor) or i.meta["val"].dtype.is_floating_point for i in node.all_input_nodes):
            continue
        try:
            key = (target, _hashable(node.args), _hashable(node.kwargs))
            earlier = first.setdefault(key, node)
        except TypeError:  # an operand with no identity to compare by
            continue
        if earlier is not node:
            node.replace_all_uses_with(earlier)
            graph.erase_node(node)
            merged += 1
    return merged


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


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
                 ranges: Mapping[sympy.Symbol, Any] | None = None, input_ranges: Mapping[str, tuple[float, float]] | None = None):
        self.constants = constants
        self.input_ranges = dict(input_ranges or {})
        """The values inputs take, by name (`anec.compile(input_ranges=…)`): integer ones bound `tabulate_bounded`."""
        self.weight_names = dict(weight_names or {})
        self.shapes = ShapeEnv(ranges)
        self.store = WeightStore()
        self.block = Block()
        self.values: dict[fx.Node, Any] = {}
        self._const_cache: dict[int, tuple[torch.Tensor, SSAValue]] = {}
        self.dequantized = Tracker()
        """Folded tensors that are dequantized integers: they stay compressed as MAC weights."""

    # -- values ----------------------------------------------------------------------------------

    def constant(self, t: torch.Tensor, name: str, builder: NodeBuilder | None = None) -> SSAValue:
        """An `ane.const` for `t`, one per tensor object (large ones go to the weight store).

        The weight is named after `t` or the parameter it is a view of, else `name`.
        Constants a node builder asks for join the module only with the builder's ops, so a handler that
        declines leaves nothing behind. A MAC weight folded from integers stays compressed (`aten_quantized`).
        """
        for cache in (self._const_cache, builder.constants if builder else {}):
            if (hit := cache.get(id(t))) is not None and hit[0] is t:
                return hit[1]
        name = self.weight_names.get(id(t)) or self.weight_names.get(id(t._base)) or name
        weight = self.dequantized.compressed(t, op_key(builder.node.target)) if builder is not None else None
        op = make_const(weight, name, self.store, element_type(t.dtype)) if weight is not None else make_const(to_numpy(t), name, self.store)
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

    def rewrite_graph(self, graph: fx.Graph, inputs: Sequence[tuple[str, fx.Node]], owner: torch.nn.Module | None) -> None:
        """The graph-level rewrites before the walk (idempotent): cos/sin of a bounded integer input as
        table lookups, repeated index work merged. Callers that partition the FX graph by the
        import's verdicts run it first, so the graph they cut is the one imported."""
        bounds = {node: (int(lo), int(hi)) for name, node in inputs if name in self.input_ranges
                  and not node.meta["val"].dtype.is_floating_point for lo, hi in [self.input_ranges[name]] if lo == int(lo) and hi == int(hi)}
        if bounds and owner is not None:
            tabulate_bounded(graph, owner, bounds, lambda n: self.constants.get(n) if n.op == "placeholder" else _attribute(owner, str(n.target)))
        merge_repeated_index_work(graph)

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
            if (folded := getattr(owner, "meta", {}).get(DEQUANTIZED)) is not None:
                self.dequantized.include(folded)
            labels = getattr(owner, "meta", {}).get(WEIGHT_NAMES, {})
            for target, label in labels.items():
                tensor = _attribute(owner, target)
                self.weight_names[id(tensor)] = label
                if tensor._base is not None:  # other views of the same weight share its name
                    self.weight_names.setdefault(id(tensor._base), label)
        input_nodes = {node: arg for (_, node), arg in zip(inputs, self.block.args)}
        self.rewrite_graph(graph, inputs, owner)
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
                value = node.target(*args, **kwargs)  # constant folding
            self.dequantized.fold(op_key(node.target), args, kwargs, value)
            return value
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
    """A handler's results must have the shapes and dtypes torch computed for the node (integers a
    quantize carries as floats aside)."""
    values = value if isinstance(value, list | tuple) else [value]
    for v, spec in zip(values, out):
        if isinstance(v, SSAValue) and spec is not None:
            expected = TensorType(element_type(spec[1]), list(spec[0]))
            if v.type != expected and not carried_as_floats(key, v, spec[0]):
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


def import_torch(model: Any, *, example_inputs: Any = None, input_shapes: InputShapes | None = None,
                 input_ranges: Mapping[str, tuple[float, float]] | None = None) -> ModuleOp:
    """A module for an `ExportedProgram`, an ATen `GraphModule`, or an nn.Module traced on `example_inputs`;
    `input_ranges` bound integer inputs for `tabulate_bounded`."""
    if isinstance(model, torch.export.ExportedProgram):
        return import_exported(model, input_shapes=input_shapes or shapes_of(example_inputs, _user_inputs(model)), input_ranges=input_ranges)
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
        return import_exported(program, input_names=names, input_ranges=input_ranges)
    raise AnecError(f"cannot compile a {type(model).__module__}.{type(model).__qualname__}",
                    hint="pass an nn.Module with example_inputs, a torch.export.ExportedProgram or a .pt2 file")


def import_pt2(path: str | Path, *, input_shapes: InputShapes | None = None,
               input_ranges: Mapping[str, tuple[float, float]] | None = None) -> ModuleOp:
    """A module for a `torch.export.save` file."""
    try:
        with _quiet():
            program = torch.export.load(str(path))
    except Exception as e:
        raise AnecError(f"{path}: not a torch.export program", why=first_line(e),
                        hint="write it with torch.export.save(torch.export.export(model, args), path)") from e
    return import_exported(program, input_shapes=input_shapes, input_ranges=input_ranges)


def import_exported(program: torch.export.ExportedProgram, *, input_shapes: InputShapes | None = None,
                    input_names: Sequence[str] | None = None, input_ranges: Mapping[str, tuple[float, float]] | None = None) -> ModuleOp:
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
    return GraphImporter(constants, weight_names, program.range_constraints, input_ranges).run(
        program.graph, list(zip(names, users)), outputs, shapes, owner=program.graph_module)


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
