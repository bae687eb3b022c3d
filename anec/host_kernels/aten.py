"""The CPU runner of ATen host ops: the call a `host.op "aten.…"` encodes, run eagerly in torch.

The importer (`anec.importers.aten.host_op`) keeps an ATen call whole as a host op, its tensor
arguments as operands and the rest as attributes; `decode_arguments` is its inverse. This module
imports torch, so only models with ATen host ops load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from xdsl.dialects.builtin import ArrayAttr, FloatAttr, IntegerAttr, StringAttr, UnitAttr
from xdsl.ir import Attribute

from anec.dialects.host import HostOp
from anec.errors import AnecError


def run(op: HostOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    tensors = [torch.from_numpy(np.array(x)) for x in inputs]
    target, kwargs = decode_arguments(op, tensors)
    with torch.no_grad():
        result = target(**kwargs)
    results = result if isinstance(result, list | tuple) else [result]
    return [to_numpy(t) for t in results if isinstance(t, torch.Tensor)]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()


def decode_arguments(op: HostOp, tensors: Sequence[torch.Tensor]) -> tuple[Any, dict[str, Any]]:
    """The OpOverload and the keyword arguments a host op encodes (the inverse of `host_op`)."""
    namespace, name, overload = op.op_name.data.split(".")
    if namespace == "quantized_decomposed":
        importlib.import_module("torch.ao.quantization.fx._decomposed")  # registers the namespace's ops (shipped with torch)
    target = getattr(getattr(getattr(torch.ops, namespace), name), overload)
    attrs = op.attrs.data
    kwargs = {arg.name: _decode(attrs[arg.name], "Tensor" in str(arg.type), tensors)
              for arg in target._schema.arguments if arg.name in attrs}
    return target, kwargs


def _decode(attr: Attribute, is_tensor: bool, tensors: Sequence[torch.Tensor]) -> Any:
    match attr:
        case UnitAttr():
            return None
        case ArrayAttr():
            return [_decode(a, is_tensor, tensors) for a in attr.data]
        case IntegerAttr() if is_tensor:
            return tensors[attr.value.data]
        case IntegerAttr() if attr.type.width.data == 1:
            return bool(attr.value.data)
        case IntegerAttr():
            return int(attr.value.data)
        case FloatAttr():
            return float(attr.value.data)
        case StringAttr() if attr.data.startswith("torch."):
            return getattr(torch, attr.data.removeprefix("torch."))
        case StringAttr():
            return attr.data
    raise AnecError(f"host-op attribute {attr} has no ATen equivalent")
