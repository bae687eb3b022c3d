"""The ONNX graph walker: values, constant folding, function inlining and the CPU fallback.

`GraphBuilder` visits nodes in dependency order. For each node it tries, in turn:

1. **folding** — every input is a constant (initializers, `Constant`s, and everything computed
   from static shapes: exporters' Shape → Gather → Concat → Reshape chains), so the node runs once
   now, in onnx's ReferenceEvaluator, and its outputs become constants;
2. its **handler** (`handlers.HANDLERS`), which emits `ane` ops;
3. the op's **function body** (a model-local function, or the schema's own definition in onnx),
   inlined node by node through this same walk;
4. a **`host.op`** that the CPU runs, typed by onnx's shape inference on the node's now-static inputs.

Nothing is dropped, and every op carries `ane.name` (the node's name).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import FunctionProto, ModelProto, NodeProto, TypeProto, helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from anec.builder import AppendingBuilder
from anec.compression import CompressedWeight
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of, tensor
from anec.dialects.discardable import (
    ARG_SLOTS_ATTR,
    CAPTURED_ATTR,
    NAME_ATTR,
    REASON_ATTR,
    RESULT_SLOTS_ATTR,
)
from anec.dialects.host import HostOp
from anec.errors import AnecError, ImportFailure
from anec.host_kernels import evaluate_onnx_node
from anec.importers.onnx_load import (
    CONTRIB_DOMAINS,
    CONTRIB_HINT,
    node_label,
    order_nodes,
    outer_names,
    walk_nodes,
)
from anec.types import numpy_dtype, xdsl_element_type
from anec.weights import WeightStore, make_const, numpy_to_dense

Value = SSAValue | np.ndarray
"""What an ONNX name refers to during import: an SSA value, or a constant not yet materialized."""

NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                              "Multinomial"})
TYPE_ONLY_INPUTS = {"CastLike": {1}}
UNFOLDED: dict[str, Callable[[Node, GraphBuilder], bool]] = {}
"""Ops whose handler takes them even when every input is constant, when the predicate holds (a
`DequantizeLinear` of an int8 weight stays compressed, `anec.importers.onnx_quantized`)."""
"""Inputs an op reads only the element type of: they need not be constant for the op to fold."""
FOLD_LIMIT_BYTES = 1 << 28
"""Folded results larger than this (and larger than their inputs) are computed at run time instead."""


class NotOnAne(Exception):
    """Raised by a handler: this node, as configured, has no ANE mapping; it will run on the CPU."""


class DataDependentShape(AnecError):
    """An output's shape depends on input values, not just on input shapes."""


def _contrib_refusal(node: Node, reason: str | None = None) -> AnecError:
    """A com.microsoft op anec does not map (at all, or as configured): no CPU runner knows it either."""
    why = (f"anec maps this op, but not {reason}" if reason else
           "ONNX Runtime's contrib ops have no ONNX definition; anec maps only those with a standard decomposition")
    return AnecError(f"unsupported {node.domain} op {node.op_type}", where=node.label, why=why, hint=CONTRIB_HINT)


def ssa_name_hint(name: str) -> str | None:
    """A name xDSL accepts as an SSA name hint for the ONNX value `name` (None when nothing is left).

    ONNX names are any strings: older exporters number values (`390`), others use `:` or spaces. xDSL
    only takes `[A-Za-z_$.-][A-Za-z0-9_$.-]*`, so other characters become `_` and a leading digit
    gets a `v`. The hint is cosmetic; the original name is kept where it matters (`ane.name` on ops,
    the function's argument and result attributes).
    """
    hint = re.sub(r"[^A-Za-z0-9_$.-]", "_", name).strip("_")
    if not hint:
        return None
    return f"v{hint}" if hint[0].isdigit() else hint


def canonical_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def node_name(proto: NodeProto) -> str:
    """What anec calls a node (`ane.name` of its ops): its name, else its first output, else its type."""
    return proto.name or (proto.output[0] if proto.output else proto.op_type)


@dataclass
class Node:
    """One ONNX node with its attributes decoded and the op-set version of its scope."""

    proto: NodeProto
    opsets: Mapping[str, int]
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, proto: NodeProto, opsets: Mapping[str, int]) -> Node:
        attrs = {a.name: _python_attribute(a) for a in proto.attribute}
        return cls(proto, opsets, node_name(proto), attrs)

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @property
    def domain(self) -> str:
        return canonical_domain(self.proto.domain)

    @property
    def opset(self) -> int:
        return self.opsets.get(self.domain, 1)

    @property
    def inputs(self) -> list[str]:
        return list(self.proto.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.proto.output)

    def input(self, i: int) -> str:
        """Name of input i, or '' when it is absent (an omitted optional input)."""
        return self.proto.input[i] if i < len(self.proto.input) else ""

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    @property
    def label(self) -> str:
        return node_label(self.proto)


def _python_attribute(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


Handler = Callable[[Node, "GraphBuilder"], Sequence[Value | None]]


def tensor_type(shape: Sequence[int], dtype: np.dtype) -> TensorType:
    return tensor(shape, xdsl_element_type(dtype))


class GraphBuilder(AppendingBuilder):
    """Builds the `@main` function of a model; handlers call the helpers marked "handler API" and the
    op builder's (`anec.builder.OpBuilder`: `add`, `reshape`, `scalar`, `same_rank`, …)."""

    def __init__(self, model: ModelProto, store: WeightStore, handlers: Mapping[Hashable, Handler]):
        super().__init__(store)
        self.model = model
        self.handlers = handlers
        self.block = Block()
        self.values: dict[str, SSAValue] = {}
        self.consts: dict[str, np.ndarray | onnx.TensorProto] = {}
        self.functions = {(canonical_domain(f.domain), f.name): f for f in model.functions}
        self.opsets = {canonical_domain(o.domain): o.version for o in model.opset_import}
        self._expansions = itertools.count()

    # ------------------------------------------------------------------------------------------
    # The walk
    # ------------------------------------------------------------------------------------------

    def build(self, input_shapes: Mapping[str, Sequence[int]] | None = None,
              input_values: Mapping[str, Any] | None = None) -> func.FuncOp:
        """The `@main` function; inputs named in `input_values` are constants (`--freeze`), not arguments."""
        graph = self.model.graph
        for t in graph.initializer:
            self.consts[t.name] = t
        inputs = [v for v in graph.input if v.name not in self.consts]
        for flag, given in (("--input-shape", input_shapes), ("--freeze", input_values)):
            unknown = sorted(set(given or {}) - {v.name for v in inputs})
            if unknown:
                raise AnecError(f"{flag} names {unknown[0]!r}, which is not an input of the model",
                                hint=f"the inputs are {[v.name for v in inputs]}")
        for v in inputs:
            if input_values is not None and v.name in input_values:
                self.consts[v.name] = _frozen_value(v, input_values[v.name], (input_shapes or {}).get(v.name))
        inputs = [v for v in inputs if v.name not in self.consts]
        for v in inputs:
            arg = self.block.insert_arg(_input_type(v, (input_shapes or {}).get(v.name)), len(self.block.args))
            arg.name_hint = ssa_name_hint(v.name)
            self.values[v.name] = arg
        for proto in walk_nodes(graph.node):  # before any work: a contrib op anec cannot map is refused by name
            domain = canonical_domain(proto.domain)
            if (domain in CONTRIB_DOMAINS and f"{domain}.{proto.op_type}" not in self.handlers
                    and (domain, proto.op_type) not in self.functions):
                raise _contrib_refusal(Node.of(proto, self.opsets))
        for node in order_nodes(graph.node, set(self.values) | set(self.consts)):
            self.convert(Node.of(node, self.opsets))
        results = [self.value(o.name) for o in graph.output]
        self.block.add_op(func.ReturnOp(*results))
        self._drop_unused_constants()
        names = lambda vs: ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(v.name)}) for v in vs])  # noqa: E731
        return func.FuncOp("main", ([a.type for a in self.block.args], [r.type for r in results]), Region(self.block),
                           arg_attrs=names(inputs), res_attrs=names(graph.output))

    def convert(self, node: Node) -> None:
        """Import one node; whatever goes wrong leaves as an `AnecError` that names the node."""
        try:
            self._convert(node)
        except AnecError:
            raise
        except VerifyException as e:  # xDSL's message goes on to print the op (or the module): keep its first line
            raise ImportFailure.of("an op it imports to does not verify", node.label, e) from e
        except Exception as e:
            raise ImportFailure.of("anec failed to import the node", node.label, e) from e

    def _convert(self, node: Node) -> None:
        if self._fold(node):
            return
        reason = None
        handler = self.handlers.get(node.op_type if node.domain == "" else f"{node.domain}.{node.op_type}")
        if handler is not None:
            try:
                self._define(node, self._run_handler(handler, node))
                return
            except NotOnAne as e:
                reason = str(e)
        if node.domain in CONTRIB_DOMAINS and self.functions.get((node.domain, node.op_type)) is None:
            raise _contrib_refusal(node, reason)
        if node.op_type == "If" and node.domain == "":
            body = self._taken_branch(node)
            if body is None:
                reason = ("its condition is computed at run time (if it follows from an input such as a sample rate, "
                          "fix that input with --freeze NAME=VALUE)")
        else:
            body = self._function_body(node)
        if body is not None and self._convert_all(body):
            return
        self._define(node, self.host(node, reason))

    def _convert_all(self, body: list[Node]) -> bool:
        """Convert an inlined body; if some node of it cannot be imported, undo it all (False)."""
        ops_before = len(self.block.ops)
        values, consts = dict(self.values), dict(self.consts)
        try:
            for inner in body:
                self.convert(inner)
        except AnecError:
            for op in reversed(list(self.block.ops)[ops_before:]):
                self.block.erase_op(op, safe_erase=False)
            self.values, self.consts = values, consts
            return False
        return True

    def _run_handler(self, handler: Handler, node: Node) -> Sequence[Value | None]:
        pending: list[Operation] = []
        self.ops = pending
        try:
            outs = list(handler(node, self))
            for i, out in enumerate(node.outputs):
                if out and (i >= len(outs) or outs[i] is None):
                    raise NotOnAne(f"anec does not compute its output {i} ({out!r}) on the ANE")
            for op in pending:
                op.verify()
        except (NotOnAne, VerifyException) as e:
            for op in reversed(pending):
                op.drop_all_references()
            raise NotOnAne(str(e)) from None
        finally:
            self.ops = []
        for k, op in enumerate(pending):
            op.attributes[NAME_ATTR] = StringAttr(node.name if k == len(pending) - 1 else f"{node.name}#{k}")
        self.block.add_ops(pending)
        return outs

    def _define(self, node: Node, outs: Sequence[Value | None]) -> None:
        for name, out in zip(node.outputs, outs):
            if not name or out is None:
                continue
            if isinstance(out, np.ndarray):
                self.consts[name] = out
            else:
                self.values[name] = out
                if out.name_hint is None:
                    out.name_hint = ssa_name_hint(name)

    def _drop_unused_constants(self) -> None:
        for op in reversed(list(self.block.ops)):
            if isinstance(op, ane.ConstOp) and not op.result.uses:
                self.block.erase_op(op)

    # ------------------------------------------------------------------------------------------
    # Folding
    # ------------------------------------------------------------------------------------------

    def _fold(self, node: Node) -> bool:
        type_only = TYPE_ONLY_INPUTS.get(node.op_type, set()) if node.domain == "" else set()
        present = [x for i, x in enumerate(node.inputs) if x and i not in type_only]
        if not present or node.op_type in NONDETERMINISTIC or any(self.const(x) is None for x in present):
            return False
        if node.domain == "" and (keep := UNFOLDED.get(node.op_type)) is not None and keep(node, self):
            return False
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.proto.attribute):
            return False
        inputs = [(np.empty(0, self.dtype(x)) if i in type_only else self.const(x)) if x else None for i, x in enumerate(node.inputs)]
        try:
            outs = evaluate_onnx_node(node.proto, node.opsets, inputs)
        except Exception:  # the evaluator cannot run it: leave it to a handler or the CPU
            return False
        if not all(isinstance(o, np.ndarray) and o.dtype != object for o in outs if o is not None):
            return False
        size_in = sum(c.nbytes for c in inputs if c is not None)
        if any(o is not None and o.nbytes > max(FOLD_LIMIT_BYTES, size_in) for o in outs):
            return False
        self._define(node, outs)
        return True

    # ------------------------------------------------------------------------------------------
    # Handler API: reading values
    # ------------------------------------------------------------------------------------------

    def const(self, name: str) -> np.ndarray | None:
        """The constant `name` holds, or None when it is computed at run time."""
        c = self.consts.get(name)
        if isinstance(c, onnx.TensorProto):
            c = self.consts[name] = numpy_helper.to_array(c)
        return c

    def require_const(self, name: str, what: str) -> np.ndarray:
        c = self.const(name)
        if c is None:
            raise NotOnAne(f"its {what} is computed at run time")
        return c

    def value(self, name: str) -> SSAValue:
        """The SSA value of `name`, materializing a constant (once) if needed."""
        if name in self.values:
            return self.values[name]
        c = self.const(name)
        if c is None:
            raise AnecError(f"value {name!r} is used before it is defined")
        v = self.values[name] = self.constant(c, name=name)
        return v

    def shape(self, name: str) -> tuple[int, ...]:
        c = self.const(name)
        return tuple(c.shape) if c is not None else shape_of(self.values[name])

    def dtype(self, name: str) -> np.dtype:
        c = self.const(name)
        return c.dtype if c is not None else numpy_dtype(element_type_of(self.values[name]))

    def rank(self, name: str) -> int:
        return len(self.shape(name))

    # ------------------------------------------------------------------------------------------
    # Handler API: making ops
    # ------------------------------------------------------------------------------------------

    def constant(self, array: np.ndarray | CompressedWeight, like: SSAValue | Attribute | None = None, name: str | None = None) -> SSAValue:
        """A new constant (inline when tiny, else in the weight store as `name`; a compressed weight
        stays compressed), placed before the node's ops."""
        element_type = element_type_of(like) if like is not None else None
        op = make_const(array if isinstance(array, CompressedWeight) else np.asarray(array), name or "const", self.store, element_type)
        self.block.add_op(op)
        return op.result

    # ------------------------------------------------------------------------------------------
    # Function bodies
    # ------------------------------------------------------------------------------------------

    def _function_body(self, node: Node) -> list[Node] | None:
        """The nodes of `node`'s function definition, instantiated for it; None if it has none."""
        local = self.functions.get((node.domain, node.op_type))
        if local is not None:
            defaults = {a.name: a for a in local.attribute_proto}
            return self._instantiate(node, local, defaults)
        try:
            schema = onnx.defs.get_schema(node.op_type, node.opset, node.domain)
        except onnx.defs.SchemaError:
            return None
        proto = _schema_function(schema, node, self._type_protos(node))
        if proto is None:
            return None
        defaults = {k: a.default_value for k, a in schema.attributes.items() if a.default_value.type}
        return self._instantiate(node, proto, defaults)

    def _instantiate(self, node: Node, fn: FunctionProto, defaults: Mapping[str, onnx.AttributeProto]) -> list[Node] | None:
        nested = [n for inner in fn.node for a in inner.attribute for g in (*a.graphs, *([a.g] if a.HasField("g") else []))
                  for n in walk_nodes(g.node)]
        if any(a.ref_attr_name for n in nested for a in n.attribute):
            return None  # attribute references inside subgraphs: the op stays whole
        prefix = f"{node.name}/{next(self._expansions)}/"
        rename = {formal: node.input(i) for i, formal in enumerate(fn.input)}
        rename.update({formal: (node.outputs[i] if i < len(node.outputs) else "") for i, formal in enumerate(fn.output)})
        rename.update({x: prefix + x for inner in fn.node for x in inner.output if x and x not in rename})
        given = {a.name: a for a in node.proto.attribute}
        opsets = dict(self.opsets)
        opsets.update({canonical_domain(o.domain): o.version for o in fn.opset_import})
        body: list[Node] = []
        for k, inner in enumerate(fn.node):
            copy = _renamed(inner, rename, f"{prefix}{inner.name or f'{inner.op_type}{k}'}")
            copy.ClearField("attribute")
            for a in _renamed(inner, rename).attribute:
                if a.ref_attr_name:
                    source = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                    if source is None:
                        continue
                    resolved = onnx.AttributeProto()
                    resolved.CopyFrom(source)
                    resolved.name = a.name
                    copy.attribute.append(resolved)
                else:
                    copy.attribute.append(a)
            body.append(Node.of(copy, opsets))
        return body

    def _taken_branch(self, node: Node) -> list[Node] | None:
        """An If whose condition is a constant is the branch it takes, inlined (renamed apart)."""
        cond = self.const(node.input(0))
        if cond is None or cond.size != 1:
            return None
        branch: onnx.GraphProto = node.attrs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
        prefix = f"{node.name}/{next(self._expansions)}/"
        local = {t.name for t in branch.initializer} | {o for n in branch.node for o in n.output if o}
        rename = {x: prefix + x for x in local}
        for t in branch.initializer:
            self.consts[prefix + t.name] = t
        body = [Node.of(_renamed(inner, rename, prefix + (inner.name or inner.output[0])), node.opsets) for inner in branch.node]
        for out, result in zip(node.outputs, branch.output):
            identity = helper.make_node("Identity", [rename.get(result.name, result.name)], [out], name=f"{prefix}{out}")
            body.append(Node.of(identity, node.opsets))
        return body

    def _type_protos(self, node: Node) -> dict[str, TypeProto]:
        return self._type_protos_of([x for x in node.inputs if x])

    # ------------------------------------------------------------------------------------------
    # The CPU fallback
    # ------------------------------------------------------------------------------------------

    def host(self, node: Node, reason: str | None = None) -> list[SSAValue | None]:
        """`node` as a `host.op` the CPU runs with onnx's own implementation."""
        present = [(i, x) for i, x in enumerate(node.inputs) if x]
        captured = sorted(outer_names(node.proto))
        types = self._infer_output_types(node, captured)
        produced = [(i, t) for i, t in enumerate(types) if t is not None]
        op = HostOp(host_op_name(node.domain, node.op_type), [self.value(x) for x in [*(x for _, x in present), *captured]],
                    [t for _, t in produced], {a.name: xdsl_attribute(a, node) for a in node.proto.attribute}, version=node.opset)
        if [i for i, _ in present] != list(range(len(present))):
            op.attributes[ARG_SLOTS_ATTR] = DenseArrayBase.from_list(i64, [i for i, _ in present])
        if [i for i, _ in produced] != list(range(len(produced))):
            op.attributes[RESULT_SLOTS_ATTR] = DenseArrayBase.from_list(i64, [i for i, _ in produced])
        if captured:
            op.attributes[CAPTURED_ATTR] = ArrayAttr([StringAttr(x) for x in captured])
        op.attributes[NAME_ATTR] = StringAttr(node.name)
        if reason:
            op.attributes[REASON_ATTR] = StringAttr(f"{node.op_type}: {reason}")
        op.verify()
        self.block.add_op(op)
        results = iter(op.results)
        return [next(results) if t is not None else None for t in types]

    def _infer_output_types(self, node: Node, captured: Sequence[str]) -> list[TensorType | None]:
        """Output types from onnx's shape inference on this node alone, given our static inputs."""
        try:
            schema = onnx.defs.get_schema(node.op_type, node.opset, node.domain)
        except onnx.defs.SchemaError:
            raise AnecError(f"unknown op {node.op_type} in op set {node.opset} of domain {node.domain or 'ai.onnx'!r}",
                            where=node.label, hint="check the exporter's op set, or replace the op") from None
        names = [x for x in dict.fromkeys([*node.inputs, *captured]) if x]
        data = {x: numpy_helper.from_array(c, x) for x in names
                if (c := self.const(x)) is not None and c.size <= 1 << 16 and c.dtype != object}
        opsets = [helper.make_opsetid(d, v) for d, v in node.opsets.items()]
        try:
            if captured:  # subgraphs see outer values: infer over a one-node model that defines them
                inferred = self._infer_with_scope(node, names, data, opsets)
            else:
                inferred = onnx.shape_inference.infer_node_outputs(schema, node.proto, self._type_protos(node), data,
                                                                   opset_imports=opsets, ir_version=self.model.ir_version)
        except Exception as e:
            raise AnecError("onnx's shape inference rejects the node", where=node.label, why=str(e).strip().splitlines()[-1],
                            hint="check the node's input types and attributes") from None
        types: list[TensorType | None] = []
        for out in node.outputs:
            types.append(_static_type(inferred.get(out), node, out) if out else None)
        return types

    def _infer_with_scope(self, node: Node, names: Sequence[str], data: Mapping[str, onnx.TensorProto],
                          opsets: Sequence[onnx.OperatorSetIdProto]) -> dict[str, TypeProto]:
        types = self._type_protos_of(names)
        graph = helper.make_graph([node.proto], "scope", [helper.make_value_info(x, types[x]) for x in names if x not in data],
                                  [helper.make_value_info(o, TypeProto()) for o in node.outputs if o], list(data.values()))
        model = helper.make_model(graph, opset_imports=list(opsets), ir_version=self.model.ir_version)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        return {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.output]}

    def _type_protos_of(self, names: Sequence[str]) -> dict[str, TypeProto]:
        return {x: helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(self.dtype(x)), self.shape(x)) for x in names}


def _renamed(node: NodeProto, rename: Mapping[str, str], name: str | None = None) -> NodeProto:
    """A copy of `node` with values renamed, also where its subgraphs read them."""
    copy = NodeProto()
    copy.CopyFrom(node)
    if name is not None:
        copy.name = name
    for field_ in (copy.input, copy.output):
        for i, x in enumerate(field_):
            field_[i] = rename.get(x, x)
    for attr in copy.attribute:
        for g in (*attr.graphs, *([attr.g] if attr.HasField("g") else [])):
            inner = [_renamed(n, rename) for n in g.node]
            del g.node[:]
            g.node.extend(inner)
            for out in g.output:
                out.name = rename.get(out.name, out.name)
    return copy


def _schema_function(schema: onnx.defs.OpSchema, node: Node, types: Mapping[str, TypeProto]) -> FunctionProto | None:
    """The schema's function body for the node's op-set version (plain or context-dependent)."""
    plain = [v for v in schema.function_opset_versions if v <= node.opset]  # type: ignore[attr-defined]  # onnx's OpSchema stub omits the function-body accessors its C++ binding has
    ctx = [v for v in schema.context_dependent_function_opset_versions if v <= node.opset]  # type: ignore[attr-defined]  # onnx's OpSchema stub omits the function-body accessors its C++ binding has
    proto = FunctionProto()
    if plain and (not ctx or max(plain) >= max(ctx)):
        proto.ParseFromString(schema.get_function_with_opset_version(max(plain)))  # type: ignore[attr-defined]  # onnx's OpSchema stub omits the function-body accessors its C++ binding has
        return proto
    if ctx:
        filled = NodeProto()
        filled.CopyFrom(node.proto)
        given = {a.name for a in filled.attribute}
        filled.attribute.extend(a.default_value for k, a in schema.attributes.items() if k not in given and a.default_value.type)
        try:
            body = schema.get_context_dependent_function_with_opset_version(  # type: ignore[attr-defined]  # onnx's OpSchema stub omits the function-body accessors its C++ binding has
                max(ctx), filled.SerializeToString(), [types[x].SerializeToString() if x else TypeProto().SerializeToString()
                                                       for x in node.inputs])
        except Exception:
            return None
        proto.ParseFromString(body)
        return proto
    return None


def host_op_name(domain: str, op_type: str) -> str:
    """`onnx.TopK`, `onnx.ai.onnx.ml.LabelEncoder`: the CPU runner splits domain and op at the last dot."""
    return f"onnx.{domain + '.' if domain else ''}{op_type}"


def _input_type(v: onnx.ValueInfoProto, given: Sequence[int] | None) -> TensorType:
    kind = v.type.WhichOneof("value")
    if kind != "tensor_type":
        raise AnecError(f"input {v.name!r} is a {kind or 'value of unknown type'}", why="anec compiles tensor inputs only",
                        hint="feed the model tensors, or wrap the sequence/optional handling outside it")
    t = v.type.tensor_type
    if not t.HasField("shape"):
        if given is None:
            raise AnecError(f"input {v.name!r} has no declared shape", hint=f"give it: --input-shape {v.name}=D0,D1,…")
        dims: list[int | str] = [-1] * len(given)
    else:
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
    if given is not None:
        if len(given) != len(dims):
            raise AnecError(f"--input-shape gives {v.name!r} {len(given)} dimensions, the model has {len(dims)}",
                            hint=f"the model's shape is {dims}")
        for axis, (d, g) in enumerate(zip(dims, given)):
            if isinstance(d, int) and d >= 0 and d != g:
                raise AnecError(f"--input-shape sets dimension {axis} of {v.name!r} to {g}, but the model fixes it at {d}")
        dims = list(given)
    static: list[int] = []
    for axis, d in enumerate(dims):
        if not isinstance(d, int) or d < 0:
            raise AnecError(f"input {v.name!r} has a dynamic dimension {axis} ({d})", why="the ANE needs static shapes",
                            hint=f"fix it with --input-shape {v.name}={','.join(str(x) if isinstance(x, int) and x >= 0 else 'N' for x in dims)}"
                                 " (input_shapes= in the API)")
        static.append(d)
    return tensor_type(static, _element_dtype(t.elem_type, f"input {v.name!r}"))


def _frozen_value(v: onnx.ValueInfoProto, value: Any, shape: Sequence[int] | None) -> np.ndarray:
    """An input fixed by `--freeze NAME=VALUE`, in the input's declared element type and shape.

    A value given as a number or a flat list takes the declared shape when the element counts agree,
    so `--freeze sr=16000` fits an input declared as a scalar or as `[1]`.
    """
    t = v.type.tensor_type if v.type.WhichOneof("value") == "tensor_type" else None
    if t is None:
        raise AnecError(f"--freeze {v.name}: the input is not a tensor", hint="freeze tensor inputs only")
    dtype = _element_dtype(t.elem_type, f"input {v.name!r}")
    try:
        array = np.asarray(value).astype(dtype)
    except (TypeError, ValueError) as e:
        raise AnecError(f"--freeze {v.name}: cannot convert the value to {dtype}", why=str(e)) from None
    dims = list(shape) if shape is not None else (
        [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim] if t.HasField("shape") else None)
    if dims is None:
        return array
    if all(d >= 0 for d in dims) and array.size == int(np.prod(dims)):
        return array.reshape(dims)
    if array.ndim != len(dims) or any(d >= 0 and d != a for d, a in zip(dims, array.shape)):
        raise AnecError(f"--freeze {v.name}: a value of shape {list(array.shape)} does not fit the input's shape {dims}",
                        hint="give a value with the input's shape (a .npy file for arrays)")
    return array


def _element_dtype(elem_type: int, what: str) -> np.dtype:
    name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else str(elem_type)
    if elem_type == onnx.TensorProto.STRING:
        raise AnecError(f"{what} holds strings", why="string tensors have no ANE or host path in anec's IR",
                        hint="do string processing before the model")
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        xdsl_element_type(dtype)
    except (KeyError, ValueError, AnecError):
        raise AnecError(f"{what} has element type {name}, which anec does not support",
                        hint="use float, integer or bool tensors") from None
    return np.dtype(dtype)


def _static_type(t: TypeProto | None, node: Node, out: str) -> TensorType:
    if t is None or t.WhichOneof("value") != "tensor_type":
        kind = "no type" if t is None else f"a {t.WhichOneof('value')}"
        raise AnecError(f"output {out!r} has {kind}", where=node.label,
                        why="anec's IR holds tensors only (no sequences, maps or optionals)",
                        hint="keep sequence and optional handling outside the model")
    tt = t.tensor_type
    dtype = _element_dtype(tt.elem_type, f"output {out!r} of {node.label}")
    if not tt.HasField("shape") or any(not d.HasField("dim_value") for d in tt.shape.dim):
        raise DataDependentShape(f"the shape of output {out!r} depends on the input values", where=node.label,
                        why="the ANE needs static shapes, and onnx's shape inference cannot fix this one",
                        hint="move the data-dependent part out of the model, or make its inputs constant (an input such as a sample rate: --freeze NAME=VALUE)")
    return tensor_type([d.dim_value for d in tt.shape.dim], dtype)


def xdsl_attribute(attr: onnx.AttributeProto, node: Node) -> Attribute:
    """An ONNX attribute as an xDSL attribute of a host op (`anec.host_kernels` reads it back)."""
    A = onnx.AttributeProto
    match attr.type:
        case A.FLOAT:
            return FloatAttr(attr.f, f32)
        case A.INT:
            return IntegerAttr(attr.i, i64)
        case A.STRING:
            return StringAttr(attr.s.decode("utf-8", errors="replace"))
        case A.FLOATS:
            return ArrayAttr([FloatAttr(v, f32) for v in attr.floats])
        case A.INTS:
            return ArrayAttr([IntegerAttr(v, i64) for v in attr.ints])
        case A.STRINGS:
            return ArrayAttr([StringAttr(v.decode("utf-8", errors="replace")) for v in attr.strings])
        case A.TENSOR:
            array = numpy_helper.to_array(attr.t)
            dtype = _element_dtype(attr.t.data_type, f"attribute {attr.name!r} of {node.label}")
            return numpy_to_dense(array, tensor_type(array.shape, dtype))
        case A.GRAPH:
            return _serialized(attr.g)
        case A.GRAPHS:
            return ArrayAttr([_serialized(g) for g in attr.graphs])
    raise AnecError(f"attribute {attr.name!r} of type {A.AttributeType.Name(attr.type)} cannot be carried to the CPU runner",
                    where=node.label, why="anec's host ops hold plain attributes and subgraphs (no types or sparse tensors)",
                    hint="replace the attribute with a constant input, or run this part outside the model")


def _serialized(graph: onnx.GraphProto) -> Attribute:
    """A subgraph as its serialized bytes (a ui8 tensor); the runner parses it back by the schema's attribute type."""
    data = np.frombuffer(graph.SerializeToString(), dtype=np.uint8)
    return numpy_to_dense(data, tensor_type(data.shape, data.dtype))

