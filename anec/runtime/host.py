"""Run `host.op`s on the CPU with the source framework's own implementation.

One runner per source framework, chosen by the prefix of the op name: `onnx.*` ops run in onnx's
`ReferenceEvaluator`, one cached single-node model per op; other frameworks register their own.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
)
from xdsl.ir import Attribute

from anec.dialects.host import HostOp
from anec.errors import AnecError

HostRunner = Callable[[HostOp, list[np.ndarray]], list[np.ndarray]]
RUNNERS: dict[str, HostRunner] = {}


def runner(source: str) -> Callable[[HostRunner], HostRunner]:
    def register(fn: HostRunner) -> HostRunner:
        RUNNERS[source] = fn
        return fn
    return register


def run_host_op(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    if op.source not in RUNNERS:
        raise AnecError(f"no CPU runner for {op.op_name.data}", hint=f"known sources: {', '.join(sorted(RUNNERS))}")
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
            from anec.weights import dense_to_numpy

            return dense_to_numpy(attr)
    raise AnecError(f"host-op attribute {attr} has no Python equivalent")


_ONNX_CACHE: weakref.WeakKeyDictionary[HostOp, object] = weakref.WeakKeyDictionary()


@runner("onnx")
def run_onnx(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One node in onnx's ReferenceEvaluator (the most complete ONNX implementation available)."""
    evaluator = _ONNX_CACHE.get(op)
    if evaluator is None:
        evaluator = _ONNX_CACHE[op] = _onnx_evaluator(op)
    names = [f"in{i}" for i in range(len(inputs))]
    return list(evaluator.run(None, dict(zip(names, inputs))))  # type: ignore[attr-defined]


def _onnx_evaluator(op: HostOp) -> object:
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    domain, _, op_type = op.source_op.rpartition(".")
    attrs = {k: python_value(v) for k, v in op.attrs.data.items()}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            attrs[k] = onnx.numpy_helper.from_array(v)
    inputs = [f"in{i}" for i in range(len(op.args))]
    outputs = [f"out{i}" for i in range(len(op.outputs))]
    node = helper.make_node(op_type, inputs, outputs, domain=domain, **attrs)
    version = op.version.value.data if op.version is not None else onnx.defs.onnx_opset_version()
    graph = helper.make_graph([node], "host_op", [helper.make_tensor_value_info(n, 0, None) for n in inputs],
                              [helper.make_tensor_value_info(n, 0, None) for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version)])
    return ReferenceEvaluator(model)


@runner("aten")
def run_aten(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One ATen op, eagerly in torch (imported only when a model has ATen host ops)."""
    import torch

    from anec.importers.aten import decode_arguments, to_numpy

    tensors = [torch.from_numpy(np.array(x)) for x in inputs]
    target, kwargs = decode_arguments(op, tensors)
    with torch.no_grad():
        result = target(**kwargs)
    results = result if isinstance(result, list | tuple) else [result]
    return [to_numpy(t) for t in results if isinstance(t, torch.Tensor)]
