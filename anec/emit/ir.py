"""`--emit ir`: the final module as text, with its weights beside it (`NAME.weights.npz`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import StringAttr
from xdsl.printer import Printer

from anec.weights import WEIGHTS_FILE_ATTR

if TYPE_CHECKING:
    from anec.pipeline import CompiledModel


def weights_path(ir_path: Path) -> Path:
    return ir_path.with_name(ir_path.name.removesuffix(".mlir") + ".weights.npz")


def emit_ir(model: CompiledModel, path: Path) -> None:
    """Writes PATH (the IR); the weights go to a sibling file that the IR names (relative to it)."""
    module = model.ir.clone()
    module.attributes[WEIGHTS_FILE_ATTR] = StringAttr(weights_path(path).name)
    with open(path, "w") as f:
        Printer(stream=f).print_op(module)
        f.write("\n")
    model.weights.save(weights_path(path))
