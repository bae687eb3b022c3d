"""Run a compiled `.mlpackage` with Core ML (`anec run --device coreml`): macOS only.

On a Mac, coremltools loads the package with the requested compute units (`CPU_AND_NE` by
default, so Core ML may place the model on the Neural Engine) and predicts. Everywhere else this
raises an `AnecError`: Core ML exists only on Apple's systems. The macOS path is not exercised by
anec's test suite (there is no Mac in CI); the input and output handling around it is.

Packages written by anec record the model's original input and output names (MIL names must be
identifiers); inputs may be given under either name and outputs come back under the original ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anec.errors import AnecError
from anec.mlpackage import INPUT_NAMES_KEY, OUTPUT_NAMES_KEY, quiet_coremltools

COMPUTE_UNITS = ("CPU_AND_NE", "ALL", "CPU_ONLY", "CPU_AND_GPU")


def predict(mlpackage_path: str | Path, inputs: Mapping[str, np.ndarray], compute_units: str = "CPU_AND_NE") -> dict[str, np.ndarray]:
    """Outputs by name of the package at `mlpackage_path` for `inputs`, computed by Core ML."""
    path = Path(mlpackage_path)
    if compute_units not in COMPUTE_UNITS:
        raise AnecError(f"unknown compute units {compute_units!r}", hint=f"use one of {', '.join(COMPUTE_UNITS)}")
    if not path.exists():
        raise AnecError(f"{path}: no such Core ML package", hint="compile the model with `anec compile MODEL --emit coreml` first")
    if sys.platform != "darwin":
        raise AnecError("Core ML prediction needs macOS", where=str(path),
                        why=f"Core ML, which runs .mlpackage files, exists only on Apple's systems (this is {sys.platform})",
                        hint="copy the package to a Mac, or run the model here with `anec run` on the simulator")
    with quiet_coremltools():
        import coremltools as ct

        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        raw = model.predict(core_ml_feeds(model.get_spec(), inputs))
    return named_outputs(model.get_spec(), raw)


def _names(spec: Any, key: str, features: Any) -> list[tuple[str, str]]:
    """(Core ML name, original name) of a package's inputs or outputs."""
    mil = [f.name for f in features]
    recorded = spec.description.metadata.userDefined.get(key)
    original = json.loads(recorded) if recorded else mil
    return list(zip(mil, original))


def _numpy_dtype(array_data_type: int) -> type:
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType as A

    return {A.FLOAT16: np.float16, A.FLOAT32: np.float32, A.DOUBLE: np.float64, A.INT32: np.int32}.get(array_data_type, np.float32)


def core_ml_feeds(spec: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`inputs` under the package's input names, at the element types it declares (int64 ids
    become int32: Core ML has no 64-bit integer inputs)."""
    names = _names(spec, INPUT_NAMES_KEY, spec.description.input)
    feeds: dict[str, np.ndarray] = {}
    for feature, (mil, original) in zip(spec.description.input, names):
        value = inputs.get(original, inputs.get(mil))
        if value is None:
            raise AnecError(f"missing input {original!r}", hint=f"the model's inputs are {[o for _, o in names]}")
        feeds[mil] = np.asarray(value).astype(_numpy_dtype(feature.type.multiArrayType.dataType), copy=False)
    return feeds


def named_outputs(spec: Any, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Core ML's outputs under the model's original output names."""
    return {original: np.asarray(raw[mil]) for mil, original in _names(spec, OUTPUT_NAMES_KEY, spec.description.output)}
