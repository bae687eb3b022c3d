"""The ONNX importer: an ONNX model (a path or a ModelProto) becomes a module of `ane` and `host` ops.

    module = import_onnx("bert.onnx", input_shapes={"input_ids": [1, 128]})

Three modules do the work: `onnx_load` reads and validates the file (one-line errors for bad
input), `onnx_graph` walks the graph (constant folding of exporters' shape arithmetic, function
inlining, the CPU fallback), and `onnx_handlers` maps each op to `ane` ops. Op sets 11 to the
newest onnx defines are supported; older ones import where their semantics are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onnx import ModelProto
from xdsl.dialects.builtin import ModuleOp

from anec.errors import AnecError, ImportFailure
from anec.importers import onnx_contrib, onnx_quantized, onnx_recurrent  # noqa: F401 (their handlers register into the table)
from anec.importers.onnx_graph import GraphBuilder
from anec.importers.onnx_handlers import HANDLERS, TABLE
from anec.importers.onnx_load import read_model
from anec.weights import WeightStore, attach

__all__ = ["TABLE", "import_onnx"]
"""`TABLE`: every ONNX op with a handler, the core ones and the families in their own modules."""


def import_onnx(model: str | Path | ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None,
                input_values: Mapping[str, Any] | None = None) -> ModuleOp:
    """A module whose `@main` computes the model; its weights are in the attached store.

    `input_values` fixes inputs to values (a sample rate, a flag): they become constants, so the shape
    arithmetic and `If`s that depend on them fold, and they are no longer arguments of `@main`.

    Each op is verified as it is made (a handler whose ops do not verify falls back to the CPU), so
    the module is not verified again here.
    """
    proto = read_model(model)
    store = WeightStore()
    try:
        function = GraphBuilder(proto, store, HANDLERS).build(input_shapes, input_values)
    except AnecError:
        raise
    except Exception as e:  # outside any one node (the function's signature, its outputs): still one line
        raise ImportFailure.of("anec failed to import the model", "", e) from e
    module = ModuleOp([function])
    attach(module, store)
    return module
