"""Emitters write a compiled model's artifact, one per `--emit` kind.

An emitter is a function of its inputs — (product, destination, `EmitOptions`) → files — and knows
nothing of the pipeline. Its product is the graph-level module (`ir`, `coreml`, `mil-text`) or the
model's descriptor program (`descriptors`), which the pipeline builds and hands it; emitters never
run passes. The destination is a path inside an empty staging folder: an emitter may write it (a
file or a folder) and siblings beside it, and `CompiledModel.save` moves everything into place only
when the emitter returns, so a failure never leaves a half-written output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from anec.emit.coreml import emit_coreml
from anec.emit.descriptors import emit_descriptors
from anec.emit.ir import emit_ir
from anec.emit.miltext import emit_mil_text
from anec.emit.options import EmitOptions

__all__ = ["EMITTERS", "EmitOptions", "Emitter"]


@dataclass(frozen=True)
class Emitter:
    write: Callable[[Any, Path, EmitOptions], None]
    suffix: str
    """The artifact's default file suffix (`anec compile model.onnx` writes `model<suffix>`)."""
    takes: Literal["graph", "descriptors"]
    """The product it writes: the graph-level module, or the descriptor program's `.anec` bytes."""


EMITTERS: dict[str, Emitter] = {
    "ir": Emitter(emit_ir, ".mlir", "graph"),
    "coreml": Emitter(emit_coreml, ".mlpackage", "graph"),
    "mil-text": Emitter(emit_mil_text, "", "graph"),
    "descriptors": Emitter(emit_descriptors, ".anec", "descriptors"),
}
"""`--emit` kind -> its emitter."""
