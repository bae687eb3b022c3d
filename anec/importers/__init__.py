"""Importers turn a model (ONNX, torch.export, nn.Module) into a module of `ane`/`host` ops.

`import_model` dispatches on what it is given without importing torch unless the model is a torch
object or a `.pt2` file. Each importer is a table of small op handlers in its own module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from anec.errors import AnecError
from anec.weights import copy_module

InputShapes = Mapping[str, Sequence[int]]


def import_model(model: Any, *, input_shapes: InputShapes | None = None, example_inputs: Any = None,
                 input_values: Mapping[str, Any] | None = None, input_ranges: Mapping[str, tuple[float, float]] | None = None) -> ModuleOp:
    """A module whose `@main` function computes `model`; weights are attached to it. An already
    imported module is copied, so one import can be compiled for several chips. `input_values`
    (`--freeze`) fixes ONNX inputs to constants."""
    if isinstance(model, ModuleOp):  # passes prune and add weights, so the copy gets its own store
        return copy_module(model)
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.exists():
            raise AnecError(f"{path}: no such file", hint="check the path")
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            from anec.importers.onnx import import_onnx

            return import_onnx(path, input_shapes=input_shapes, input_values=input_values)
        _onnx_only(input_values)
        if suffix == ".pt2":
            from anec.importers.torch import import_pt2

            return import_pt2(path, input_shapes=input_shapes, input_ranges=input_ranges)
        raise AnecError(f"{path}: unknown model format {suffix or '(no suffix)'!r}", hint="anec reads .onnx and .pt2 (torch.export.save) files")
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if kind.startswith("onnx"):
        from anec.importers.onnx import import_onnx

        return import_onnx(model, input_shapes=input_shapes, input_values=input_values)
    _onnx_only(input_values)
    if any(cls.__module__.startswith("torch") for cls in type(model).__mro__):
        from anec.importers.torch import import_torch

        return import_torch(model, example_inputs=example_inputs, input_shapes=input_shapes, input_ranges=input_ranges)
    raise AnecError(f"cannot compile a {kind}", hint="pass an .onnx/.pt2 path, an onnx.ModelProto, a torch.export.ExportedProgram, "
                    "or an nn.Module with example_inputs")


def _onnx_only(input_values: Mapping[str, Any] | None) -> None:
    if input_values:
        raise AnecError("--freeze (input_values=) applies to ONNX models",
                        hint="for PyTorch, bind the value in the module (functools.partial, a constant attribute) before export")


def source_op_types(model: Any) -> dict[str, str]:
    """Node name -> op type of the source model's graph (ONNX; empty for other models), so ops can
    be named by the source's op types (`--keep-fp32 Softmax`)."""
    if isinstance(model, str | Path) and Path(model).suffix.lower() == ".onnx":
        import onnx

        model = onnx.load(str(model), load_external_data=False)
    if not type(model).__module__.startswith("onnx") or not hasattr(model, "graph"):
        return {}
    from anec.importers.onnx_graph import node_name

    return {node_name(proto): proto.op_type for proto in model.graph.node}
