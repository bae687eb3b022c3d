"""anec: a compiler for the Apple Neural Engine.

    import anec
    compiled = anec.compile("model.onnx", target="m4")
    compiled.report.to_json(); compiled.run({"x": x}); compiled.save("model.mlpackage")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from anec.errors import AnecError, AnecFallbackWarning
from anec.targets import TARGETS, Target, get_target

if TYPE_CHECKING:
    from anec.integrations.export_buckets import BucketedModel
    from anec.pipeline import CompiledModel, CompileOptions

__all__ = ["TARGETS", "AnecError", "AnecFallbackWarning", "CompileOptions", "CompiledModel", "Target", "compile", "get_target"]


def compile(model: Any, *, dynamic_dims: Mapping[str, Sequence[int]] | None = None, **options: Any) -> CompiledModel | BucketedModel:
    """Import and compile a model; see `anec.pipeline.compile` for the options. `dynamic_dims`
    (`{"x.1": [128, 256, 512]}`, a PyTorch module with example_inputs) compiles one program per
    bucket and runs inputs padded to the bucket (`anec.integrations.export_buckets`)."""
    if dynamic_dims is not None:
        from anec.integrations.export_buckets import compile_bucketed

        return compile_bucketed(model, dynamic_dims, **options)
    from anec.pipeline import compile as _compile

    return _compile(model, **options)


def __getattr__(name: str) -> Any:
    if name in ("CompiledModel", "CompileOptions"):
        from anec import pipeline

        return getattr(pipeline, name)
    if name == "BucketedModel":
        from anec.integrations import export_buckets

        return export_buckets.BucketedModel
    raise AttributeError(name)
