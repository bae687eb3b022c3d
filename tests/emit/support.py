"""Shared steps of the Core ML emitter tests: wrap IR as a compiled model, emit, read back, run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from anec.mlpackage import mil_name
from anec.pipeline import CompiledModel, CompileOptions
from anec.report import build_report
from anec.targets import get_target
from tests.emit.mil_interpreter import load_package, run_program


def compiled_model(module: ModuleOp, *, emit: str = "coreml", deployment_target: str = "ios17") -> CompiledModel:
    """`module` as if the pipeline had produced it (for IR built by hand)."""
    target = get_target("m1")
    options = CompileOptions(emit=emit, deployment_target=deployment_target)
    return CompiledModel(ir=module, target=target, options=options, report=build_report(module, target, {}))


def emit_package(model: CompiledModel, path: Path) -> Any:
    """Save `model` as `path` (an .mlpackage) and return the MIL program read back from disk."""
    model.save(path)
    return load_package(path)


def run_emitted(program: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an emitted program on inputs named as in the source model."""
    return run_program(program, {mil_name(k): v for k, v in inputs.items()})


def rel_l2(got: np.ndarray, expected: np.ndarray) -> float:
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.linalg.norm(np.asarray(got, dtype=np.float64) - expected) / max(np.linalg.norm(expected), 1e-12))


def dtype_name(var: Any) -> str:
    """A MIL value's element type as MIL spells it: fp16, fp32, int32, bool."""
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(var.dtype)


def op_types(program: Any) -> list[str]:
    return [op.op_type for op in program.functions["main"].operations if op.op_type != "const"]
