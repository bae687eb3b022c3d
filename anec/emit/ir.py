"""`--emit ir`: the final module as text, with its weights beside it (`NAME.weights.npz`)."""

from __future__ import annotations

from pathlib import Path

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.printer import Printer

from anec.dialects.discardable import WEIGHTS_FILE_ATTR
from anec.emit.options import EmitOptions
from anec.weights import store_of


def weights_path(ir_path: Path) -> Path:
    return ir_path.with_name(ir_path.name.removesuffix(".mlir") + ".weights.npz")


def emit_ir(module: ModuleOp, path: Path, options: EmitOptions) -> None:
    """Writes PATH (the IR); the weights go to a sibling file that the IR names (relative to it)."""
    text = module.clone()
    text.attributes[WEIGHTS_FILE_ATTR] = StringAttr(weights_path(path).name)
    with open(path, "w") as f:
        Printer(stream=f).print_op(text)
        f.write("\n")
    store_of(module).save(weights_path(path))
