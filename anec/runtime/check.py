"""Compare anec's outputs with a reference framework: onnxruntime for ONNX, eager PyTorch for .pt2."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from anec.agreement import COSINE_MIN, REL_L2_MAX, Error, error
from anec.errors import AnecError, first_line

__all__ = ["COSINE_MIN", "REL_L2_MAX", "Error", "compare", "error", "reference_outputs"]

def reference_outputs(model: Path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference framework's outputs for `inputs` (onnxruntime for .onnx, eager PyTorch for .pt2)."""
    try:
        return _reference(model, inputs)
    except AnecError:
        raise
    except Exception as e:  # the frameworks raise their own error types
        raise AnecError(f"the reference framework cannot run {model}", why=first_line(e, typed=False)) from None


def _reference(model: Path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if model.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        feeds = {i.name: np.asarray(inputs[i.name], dtype=onnx_numpy_type(i.type)) for i in session.get_inputs() if i.name in inputs}
        return dict(zip(names, session.run(names, feeds)))
    if model.suffix == ".pt2":
        import torch

        program = torch.export.load(str(model))
        with torch.no_grad():
            result = program.module()(*(torch.from_numpy(np.asarray(v)) for v in inputs.values()))
        results = result if isinstance(result, tuple | list) else (result,)
        return {f"output{i}": r.detach().numpy() for i, r in enumerate(results)}
    raise AnecError(f"cannot run {model} as a reference", hint="the reference is an .onnx or .pt2 model")


ONNXRUNTIME_TYPES = {f"tensor({name})": np.dtype(dtype) for name, dtype in (
    ("float", "float32"), ("double", "float64"), ("float16", "float16"), ("bool", "bool"),
    *((kind, kind) for kind in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")))}


def onnx_numpy_type(onnxruntime_type: str) -> np.dtype | None:
    """The numpy dtype of an onnxruntime input type such as `tensor(int64)` (None for others), so a
    frozen value or a float64 `.npy` file feeds the model as the type it declares."""
    return ONNXRUNTIME_TYPES.get(onnxruntime_type)


def compare(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> list[str]:
    """One line per output: cosine similarity, relative L2 and max abs error against the reference."""
    pairs = [(n, outputs[n], reference[n]) for n in outputs if n in reference] or \
        [(n, v, r) for (n, v), r in zip(outputs.items(), reference.values())]
    lines = []
    for name, got, want in pairs:
        e = error(got, want)
        verdict = "ok" if e.ok else f"MISMATCH (needs cosine >= {COSINE_MIN}, rel L2 <= {REL_L2_MAX})"
        lines.append(f"check {name}: cosine {e.cosine:.6f}  rel L2 {e.rel_l2:.3e}  max abs {e.max_abs:.3e}  {verdict}")
    return lines
