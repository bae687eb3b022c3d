"""Run `host.op`s on the CPU with the source framework's own implementation.

One runner per source framework, chosen by the prefix of the op name: `onnx.*` ops run in onnx's
`ReferenceEvaluator`, one cached single-node model per op; other frameworks register their own.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
)
from xdsl.ir import Attribute

from anec.dialects.discardable import ARG_SLOTS_ATTR, CAPTURED_ATTR, RESULT_SLOTS_ATTR
from anec.dialects.host import HostOp
from anec.errors import AnecError, first_line
from anec.registry import Registry
from anec.weights import dense_to_numpy

if TYPE_CHECKING:  # onnx is imported where a host op runs, not when the package loads
    from onnx import AttributeProto, GraphProto, NodeProto
    from onnx.defs import OpSchema
    from onnx.reference import ReferenceEvaluator

HostRunner = Callable[[HostOp, list[np.ndarray]], list[np.ndarray]]
RUNNERS: Registry[HostRunner] = Registry("CPU runner")
"""Source framework (`onnx`, `aten`) -> the runner of its host ops."""
runner = RUNNERS.register


def run_host_op(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    if op.source not in RUNNERS:
        raise AnecError(f"no CPU runner for {op.op_name.data}", hint=f"known sources: {', '.join(sorted(map(str, RUNNERS)))}")
    return RUNNERS[op.source](op, inputs)


def python_value(attr: Attribute) -> object:
    """An xDSL attribute as the plain Python/numpy value a framework expects."""
    match attr:
        case IntegerAttr():
            return int(attr.value.data)
        case FloatAttr():
            return float(attr.value.data)
        case StringAttr():
            return attr.data
        case ArrayAttr():
            return [python_value(a) for a in attr.data]
        case DenseIntOrFPElementsAttr():
            return dense_to_numpy(attr)
    raise AnecError(f"host-op attribute {attr} has no Python equivalent")


_ONNX_CACHE: weakref.WeakKeyDictionary[HostOp, ReferenceEvaluator] = weakref.WeakKeyDictionary()


def _slots(op: HostOp, key: str, count: int) -> list[int]:
    attr = op.attributes.get(key)
    return [int(v) for v in attr.get_values()] if isinstance(attr, DenseArrayBase) else list(range(count))


@runner("onnx")
def run_onnx(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One node in onnx's ReferenceEvaluator (the most complete ONNX implementation available)."""
    try:
        evaluator = _ONNX_CACHE.get(op)
        if evaluator is None:
            evaluator = _ONNX_CACHE[op] = _onnx_evaluator(op)
        captured = _captured(op)
        explicit = len(inputs) - len(captured)
        feeds = {f"in{i}": x for i, x in zip(_slots(op, ARG_SLOTS_ATTR, explicit), inputs)}
        feeds.update(zip(captured, inputs[explicit:]))
        return list(evaluator.run(None, feeds))
    except AnecError:
        raise
    except Exception as e:  # onnx raises many types for an op it cannot build or run
        raise AnecError(f"onnx cannot run {op.op_name.data}", where="host op",
                        why=first_line(e, typed=False)) from None


def _captured(op: HostOp) -> list[str]:
    attr = op.attributes.get(CAPTURED_ATTR)
    return [a.data for a in attr.data if isinstance(a, StringAttr)] if isinstance(attr, ArrayAttr) else []


def _onnx_evaluator(op: HostOp) -> ReferenceEvaluator:
    import onnx
    from onnx import helper

    domain, _, op_type = op.source_op.rpartition(".")
    version = op.version.value.data if op.version is not None else onnx.defs.onnx_opset_version()
    captured = _captured(op)
    arg_slots = _slots(op, ARG_SLOTS_ATTR, len(op.args) - len(captured))
    result_slots = _slots(op, RESULT_SLOTS_ATTR, len(op.outputs))
    inputs = [f"in{i}" if i in arg_slots else "" for i in range(max(arg_slots, default=-1) + 1)]
    outputs = [f"out{i}" if i in result_slots else "" for i in range(max(result_slots, default=-1) + 1)]
    node = helper.make_node(op_type, inputs, outputs, domain=domain)
    schema = _schema(op_type, version, domain)
    for key, attr in op.attrs.data.items():
        node.attribute.append(_onnx_attribute(key, python_value(attr), schema))
    return onnx_node_evaluator(node, {domain: version}, captured)


def _schema(op_type: str, version: int, domain: str) -> OpSchema | None:
    import onnx

    try:
        return onnx.defs.get_schema(op_type, version, domain)
    except onnx.defs.SchemaError:
        return None


def _onnx_attribute(key: str, value: object, schema: OpSchema | None) -> AttributeProto:
    """An ONNX AttributeProto; an empty list takes its type from the op's schema."""
    import onnx
    from onnx import helper

    kind = schema.attributes[key].type if schema is not None and key in schema.attributes else None
    if kind == onnx.defs.OpSchema.AttrType.GRAPH:
        return helper.make_attribute(key, _graph(value))
    if kind == onnx.defs.OpSchema.AttrType.GRAPHS:
        assert isinstance(value, list), f"{key}: a GRAPHS attribute holds a list (python_value of an ArrayAttr)"
        return helper.make_attribute(key, [_graph(v) for v in value])
    if isinstance(value, np.ndarray):
        value = onnx.numpy_helper.from_array(value)
    attr_type = None
    if isinstance(value, list) and not value and schema is not None and key in schema.attributes:
        attr_type = schema.attributes[key].type
        return helper.make_attribute(key, value, attr_type=onnx.AttributeProto.AttributeType(int(attr_type)))  # type: ignore[call-overload]  # onnx's stub of OpSchema.AttrType omits the pybind11 enum's __int__
    return helper.make_attribute(key, value)


def _graph(value: object) -> GraphProto:
    """A subgraph back from the serialized bytes a host op keeps (a ui8 tensor)."""
    import onnx

    graph = onnx.GraphProto()
    graph.ParseFromString(np.asarray(value, dtype=np.uint8).tobytes())
    return graph


SAME_AS_NEWER: dict[tuple[str, int], int] = {
    ("DequantizeLinear", 18): 19,
    ("QuantizeLinear", 18): 19,
}
"""(op type, op-set version) the ReferenceEvaluator lacks -> the newer version it implements with the
same semantics on the older version's types (op set 19 only added float8 types to these)."""


def onnx_node_evaluator(node: NodeProto, opsets: Mapping[str, int], captured: Sequence[str] = ()) -> ReferenceEvaluator:
    """A ReferenceEvaluator for one ONNX node; its inputs and outputs keep the node's names, and the
    values its subgraphs read from outside (`captured`) are inputs too."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    domain, op_type = node.domain, node.op_type
    if (op_type, opsets.get(domain)) in SAME_AS_NEWER:
        opsets = {**opsets, domain: SAME_AS_NEWER[(op_type, opsets[domain])]}
    inputs = dict.fromkeys([*(n for n in node.input if n), *captured])
    graph = helper.make_graph([node], "node", [helper.make_tensor_value_info(n, 0, None) for n in inputs],
                              [helper.make_tensor_value_info(n, 0, None) for n in node.output if n])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    return ReferenceEvaluator(model, new_ops=_reference_fixes())


@functools.cache
def _reference_fixes() -> list[type]:
    """Replacements for ReferenceEvaluator kernels that are wrong on shapes real models use."""
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        """onnx's version uses np.choose, which fails beyond 64 entries along the axis (BERT's position ids)."""

        op_domain = ""

        def _run(self, data, indices, axis=None):
            axis = (axis or 0) % max(data.ndim, 1)
            indices = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data, indices.astype(np.int64), axis),)

    return [GatherElements]


def evaluate_onnx_node(node: NodeProto, opsets: Mapping[str, int], inputs: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    """Run one ONNX node once (constant folding): `inputs` align with the node's inputs, and the
    result with its outputs (None: absent)."""
    evaluator = onnx_node_evaluator(node, opsets)
    feeds = {name: x for name, x in zip(node.input, inputs) if name and x is not None}
    outs = evaluator.run(None, feeds)
    produced = iter(outs)
    return [next(produced) if name else None for name in node.output]


@runner("aten", "quantized_decomposed")
def run_aten(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One ATen op, or one of torch's `quantized_decomposed` ops (PT2E's activation quantize/dequantize
    pairs), eagerly in torch (imported only when a model has such host ops)."""
    from anec.host_kernels import aten

    return aten.run(op, inputs)
