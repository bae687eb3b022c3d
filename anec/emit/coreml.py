"""`--emit coreml`: the compiled module as a Core ML `.mlpackage`, through coremltools.

anec's passes have already legalized, laid out, cast to fp16 and fused the graph, so the program
built by `anec.emit.mil` goes through `ct.convert` with an empty main pass pipeline (only the
backend's serialization passes run) and is written straight to the path the pipeline's
`CompiledModel.save` hands us (a staging folder). On the device, Core ML compiles the package with Apple's own ANE compiler.

The deployment target (iOS 16 / 17 / 18, or the macOS of the same year) picks the MIL opset and
so which ops exist: fused scaled-dot-product attention only from iOS 18.

coremltools is imported only when a package is written (it imports torch, which costs seconds).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdsl.dialects.builtin import ModuleOp

from anec.emit.options import EmitOptions
from anec.errors import AnecError, first_line
from anec.interpreter import entry_function, input_names, output_names
from anec.mlpackage import (
    INPUT_NAMES_KEY,
    OUTPUT_NAMES_KEY,
    DeploymentTarget,
    deployment_target,
    quiet_coremltools,
)

if TYPE_CHECKING:
    from coremltools.converters.mil.mil import Program


def emit_coreml(module: ModuleOp, path: Path, options: EmitOptions) -> None:
    """Write the graph-level `module` as the `.mlpackage` folder `path`."""
    if path.suffix != ".mlpackage":
        raise AnecError(f"{path}: a Core ML package must be named *.mlpackage", hint="use -o NAME.mlpackage")
    program, target = core_ml_program(module, options.deployment_target)
    write_package(program, path, target, package_metadata(module, options.chip, target))


BACKEND_PASSES = ("mil_backend::adjust_io_to_supported_types", "nn_backend::handle_unused_inputs")
"""The coremltools passes a program from `anec.emit.mil` still needs: Core ML's I/O types (bool
outputs) and a use for every input. Everything else was done by anec's own passes."""


def core_ml_program(module: ModuleOp, deployment: str) -> tuple[Program, DeploymentTarget]:
    """The pymil program of `module` for the deployment target named `deployment`, as it is
    serialized (a package or MIL text)."""
    target = deployment_target(deployment)
    with quiet_coremltools():
        from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

        from anec.emit.mil import build_program

        program = build_program(module, target)
        for name in BACKEND_PASSES:
            PASS_REGISTRY[name](program)
        try:
            program._check_early_error_out_for_invalid_program()
        except ValueError as e:
            raise AnecError("the model cannot be a Core ML program", why=first_line(e, typed=False)) from e
    return program, target


def package_metadata(module: ModuleOp, chip: str, target: DeploymentTarget) -> dict[str, str]:
    """The user metadata of a package: original I/O names, the chip and the deployment target."""
    fn = entry_function(module)
    return {INPUT_NAMES_KEY: json.dumps(input_names(fn)), OUTPUT_NAMES_KEY: json.dumps(output_names(fn)),
            "anec.target": chip, "anec.deployment_target": target.name}


class KeyOrdered:
    """A Core ML spec that serializes its map fields (the package metadata) in key order.

    protobuf's default order follows the process's string-hash seed, so two runs would write
    different `model.mlmodel` bytes for the same model; `_create_mlpackage` only calls
    `SerializeToString()`, which this gives deterministically.
    """

    def __init__(self, spec: Any):
        self.spec = spec

    def SerializeToString(self) -> bytes:
        return self.spec.SerializeToString(deterministic=True)


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
            _create_mlpackage(KeyOrdered(spec), weights_dir, str(path))


def join_functions(functions: Mapping[str, Path], path: Path, default: str) -> Path:
    """One package `path` holding each single-function package's `main` as the named function, `default`
    the function a plain load runs. coremltools' `save_multifunction` stores the weights the functions
    share once (identical constants are deduplicated across functions). Written beside `path` and moved
    into place, so a failure leaves nothing behind."""
    if path.suffix != ".mlpackage":
        raise AnecError(f"{path}: a Core ML package must be named *.mlpackage", hint="use NAME.mlpackage")
    if path.exists():
        raise AnecError(f"{path} already exists", hint="remove it or choose another path")
    with quiet_coremltools():
        import coremltools as ct

        descriptor = ct.utils.MultiFunctionDescriptor()
        for name, single in functions.items():
            descriptor.add_function(str(single), src_function_name="main", target_function_name=name)
        descriptor.default_function_name = default
        with tempfile.TemporaryDirectory(prefix="anec-functions-", dir=path.parent) as staging:
            staged = Path(staging, path.name)
            ct.utils.save_multifunction(descriptor, str(staged))
            os.replace(staged, path)
    return path
