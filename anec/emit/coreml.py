"""`--emit coreml`: the compiled module as a Core ML `.mlpackage`, through coremltools.

anec's passes have already legalized, laid out, cast to fp16 and fused the graph, so the program
built by `anec.emit.mil` goes through `ct.convert` with an empty main pass pipeline (only the
backend's serialization passes run) and is written straight to the staging path `CompiledModel.save`
hands us. On the device, Core ML compiles the package with Apple's own ANE compiler.

The deployment target (iOS 16 / 17 / 18, or the macOS of the same year) picks the MIL opset and
so which ops exist: fused scaled-dot-product attention only from iOS 18.

coremltools is imported only when a package is written (it imports torch, which costs seconds).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anec.errors import AnecError

if TYPE_CHECKING:
    from coremltools.converters.mil.mil import Program

    from anec.pipeline import CompiledModel


@dataclass(frozen=True)
class DeploymentTarget:
    """The oldest OS a package must run on: it fixes the MIL opset (`iOS16` … `iOS18`)."""

    name: str
    ios: int

    @property
    def opset(self) -> Any:
        """coremltools' `ct.target` member for this OS generation."""
        import coremltools as ct

        return getattr(ct.target, f"iOS{self.ios}")

    @property
    def fused_attention(self) -> bool:
        """MIL's `scaled_dot_product_attention` op exists from iOS 18 / macOS 15."""
        return self.ios >= 18


DEPLOYMENT_TARGETS: dict[str, int] = {"ios16": 16, "ios17": 17, "ios18": 18, "macos13": 16, "macos14": 17, "macos15": 18}
"""Deployment-target names -> the iOS generation whose MIL opset they share."""

DEFAULT_DEPLOYMENT_TARGET = "ios17"


def deployment_target(name: str) -> DeploymentTarget:
    key = name.lower().replace(" ", "").replace("_", "")
    if key not in DEPLOYMENT_TARGETS:
        raise AnecError(f"unknown deployment target {name!r}", hint=f"use one of {', '.join(DEPLOYMENT_TARGETS)}")
    return DeploymentTarget(key, DEPLOYMENT_TARGETS[key])


def mil_name(name: str) -> str:
    """`name` as a MIL identifier: letters, digits and underscores, not starting with a digit."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "v"
    return f"v_{cleaned}" if cleaned[0].isdigit() else cleaned


INPUT_NAMES_KEY = "anec.inputs"
OUTPUT_NAMES_KEY = "anec.outputs"
"""User-defined metadata of a package: the model's original input/output names, in MIL order."""


@contextlib.contextmanager
def quiet_coremltools():
    """coremltools logs import warnings (no Core ML runtime on Linux) and draws progress bars."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def emit_coreml(model: CompiledModel, path: Path) -> None:
    """Write `model` as the `.mlpackage` folder `path`."""
    if path.suffix != ".mlpackage":
        raise AnecError(f"{path}: a Core ML package must be named *.mlpackage", hint="use -o NAME.mlpackage")
    program, target = core_ml_program(model)
    write_package(program, path, target, model_metadata(model, target))


BACKEND_PASSES = ("mil_backend::adjust_io_to_supported_types", "nn_backend::handle_unused_inputs")
"""The coremltools passes a program from `anec.emit.mil` still needs: Core ML's I/O types (bool
outputs) and a use for every input. Everything else was done by anec's own passes."""


def core_ml_program(model: CompiledModel) -> tuple[Program, DeploymentTarget]:
    """The pymil program of `model`, as it is serialized (a package or MIL text)."""
    target = deployment_target(model.options.deployment_target)
    with quiet_coremltools():
        from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

        from anec.emit.mil import build_program

        program = build_program(model.ir, target)
        for name in BACKEND_PASSES:
            PASS_REGISTRY[name](program)
        try:
            program._check_early_error_out_for_invalid_program()
        except ValueError as e:
            raise AnecError("the model cannot be a Core ML program", why=str(e).splitlines()[0]) from e
    return program, target


def model_metadata(model: CompiledModel, target: DeploymentTarget) -> dict[str, str]:
    from anec.interpreter import entry_function, input_names, output_names

    fn = entry_function(model.ir)
    return {INPUT_NAMES_KEY: json.dumps(input_names(fn)), OUTPUT_NAMES_KEY: json.dumps(output_names(fn)),
            "anec.target": model.target.name, "anec.deployment_target": target.name}


def write_package(program: Program, path: Path, target: DeploymentTarget, metadata: dict[str, str]) -> None:
    """Serialize `program` (ops and weights) as the package `path`.

    This is what `ct.convert(program, pass_pipeline=ct.PassPipeline.EMPTY)` does after its backend
    passes, minus the costs that buy nothing here: printing the whole program for debug logs before
    each pipeline, a forced `gc.collect()`, and a second write of the spec to record metadata.
    """
    with quiet_coremltools():
        import coremltools as ct
        from coremltools.converters.mil.backend.mil.load import load as mil_to_spec
        from coremltools.models.utils import _create_mlpackage

        with tempfile.TemporaryDirectory(prefix="anec-weights-") as weights_dir:
            spec = mil_to_spec(program, weights_dir, specification_version=target.opset.value, convert_to="mlprogram")
            spec.description.metadata.userDefined.update({"com.github.apple.coremltools.version": ct.__version__, **metadata})
            _create_mlpackage(spec, weights_dir, str(path))
