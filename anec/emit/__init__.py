"""Emitters write a compiled model to disk, one per `--emit` kind.

An emitter is called with the destination's file name inside an empty staging folder; it may
write that path (a file or a folder) and siblings beside it. `CompiledModel.save` moves everything
into place only when the emitter returns, so a failure never leaves a half-written output.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anec.pipeline import CompiledModel

Emitter = Callable[["CompiledModel", Path], None]

EMITTERS: dict[str, tuple[str, str, str]] = {
    "ir": ("anec.emit.ir", "emit_ir", ".mlir"),
    "coreml": ("anec.emit.coreml", "emit_coreml", ".mlpackage"),
    "mil-text": ("anec.emit.miltext", "emit_mil_text", ""),
}
"""`--emit` kind -> (module, function, default file suffix); modules load lazily."""


def emitter(kind: str) -> tuple[Emitter, str]:
    module, name, suffix = EMITTERS[kind]
    return getattr(importlib.import_module(module), name), suffix
