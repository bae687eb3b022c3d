"""anec: a compiler for the Apple Neural Engine.

    import anec
    compiled = anec.compile("model.onnx", target="m4")
    compiled.report.to_json(); compiled.run({"x": x}); compiled.save("model.mlpackage")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anec.errors import AnecError, AnecFallbackWarning
from anec.targets import TARGETS, Target, get_target

if TYPE_CHECKING:
    from anec.pipeline import CompiledModel, CompileOptions

__all__ = ["TARGETS", "AnecError", "AnecFallbackWarning", "CompileOptions", "CompiledModel", "Target", "compile", "get_target"]


def compile(model: Any, **options: Any) -> CompiledModel:
    """Import and compile a model; see `anec.pipeline.compile` for the options."""
    from anec.pipeline import compile as _compile

    return _compile(model, **options)


def __getattr__(name: str) -> Any:
    if name in ("CompiledModel", "CompileOptions"):
        from anec import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
