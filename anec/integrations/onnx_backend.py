"""anec as an `onnx.backend.base.Backend`, so onnx's own test runner (and any tool that speaks the
backend API) can compile and run models with it:

    from anec.integrations.onnx_backend import AnecBackend
    outputs = AnecBackend.prepare(model).run([x])

`prepare` compiles the model (for the `m1` unless `target=` says otherwise); `run` executes it with
ANE segments in fp16 and host ops on the CPU. The ANE needs static shapes, so a model that cannot
be compiled without seeing its inputs is compiled on its first `run`, specialized to them (and
again for new ones): dynamic input dimensions take the shapes given, and inputs that may decide
output shapes (a Reshape's target, a reduction's axes, TopK's k, a Range's limits: inputs never
used as an op's first operand, and small integer tensors) take the values given, as constants.

Outputs computed on the ANE carry fp16 rounding. `outputs_match` is the tolerance anec's
conformance tests and benchmark apply: the case's own tolerance for outputs computed entirely on
the CPU, and an fp16-aware one when any ANE segment ran (see `FP16_RTOL`, `FP16_ATOL_SCALE`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from anec.importers.onnx_graph import DataDependentShape
from anec.pipeline import CompiledModel, compile
from anec.report import Report

FP16_RTOL = 4e-3
"""Relative tolerance for outputs of ANE segments: about 4 fp16 ULPs (2^-10 relative each) of
rounding in a short chain of ops."""
FP16_ATOL_SCALE = 1e-3
"""Absolute tolerance for outputs of ANE segments, as a fraction of the output's largest finite
magnitude: fp16 rounds intermediate values relative to their own size, so an output that cancels
(a sum of large terms near zero) is only as exact as the terms were."""


def _dynamic(model: onnx.ModelProto) -> bool:
    """Does some tensor input have a dimension only a run can fix? (Non-tensor inputs: compile now,
    so the user hears at once that anec takes tensors only.)"""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if any(v.type.WhichOneof("value") != "tensor_type" for v in inputs):
        return False
    return any(not v.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
               for v in inputs)


SHAPE_INPUT_MAX_ELEMENTS = 64


def _shape_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs that may decide shapes: those only ever feeding later operands (axes, shapes,
    counts, never an op's data), and small integer tensors."""
    first = {n.input[0] for n in model.graph.node if n.input}
    used = {x for n in model.graph.node for x in n.input}
    small_ints = set()
    for v in model.graph.input:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else SHAPE_INPUT_MAX_ELEMENTS + 1 for d in t.shape.dim]
        if t.elem_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64) and math.prod(dims) <= SHAPE_INPUT_MAX_ELEMENTS:
            small_ints.add(v.name)
    return {v.name for v in model.graph.input if v.name in used and (v.name not in first or v.name in small_ints)}


class AnecBackendRep(BackendRep):
    """A compiled model, or one specialized per input shapes and shape-deciding input values."""

    def __init__(self, model: onnx.ModelProto, options: Mapping[str, Any]):
        self.model = model
        self.options = dict(options)
        self.compiled: CompiledModel | None = None
        self.frozen: set[str] = set()
        if not _dynamic(model):
            try:
                self.compiled = compile(model, **self.options)
            except DataDependentShape:
                self.frozen = _shape_inputs(model)
                if not self.frozen:
                    raise
        self._specialized: dict[tuple, tuple[CompiledModel, list[int]]] = {}

    def _for_inputs(self, inputs: Sequence[np.ndarray]) -> tuple[CompiledModel, list[int]]:
        """The compiled model for these inputs, and which of the inputs it takes."""
        initializers = {t.name for t in self.model.graph.initializer}
        names = [v.name for v in self.model.graph.input if v.name not in initializers]
        if self.compiled is not None:
            return self.compiled, list(range(len(inputs)))
        frozen = {n: np.asarray(x) for n, x in zip(names, inputs) if n in self.frozen}
        shapes = {n: list(np.shape(x)) for n, x in zip(names, inputs) if n not in frozen}
        key = (tuple((n, tuple(s)) for n, s in shapes.items()), tuple((n, x.dtype.str, x.shape, x.tobytes()) for n, x in frozen.items()))
        if key not in self._specialized:
            model = self.model
            if frozen:
                model = onnx.ModelProto()
                model.CopyFrom(self.model)
                model.graph.initializer.extend(onnx.numpy_helper.from_array(x, n) for n, x in frozen.items())
                kept = [v for v in model.graph.input if v.name not in frozen]
                del model.graph.input[:]
                model.graph.input.extend(kept)
            taken = [i for i, n in enumerate(names) if n not in frozen]
            self._specialized[key] = (compile(model, input_shapes=shapes if _dynamic(model) else None, **self.options), taken)
        return self._specialized[key]

    @property
    def report(self) -> Report | None:
        """The report of the model as compiled (most recently specialized, if it had to be)."""
        if self.compiled is not None:
            return self.compiled.report
        return next(reversed(self._specialized.values()))[0].report if self._specialized else None

    @property
    def used_ane(self) -> bool:
        """Did any op run on the ANE (in fp16)?"""
        report = self.report
        return report is not None and report.segments > 0

    @property
    def wholly_on_ane(self) -> bool:
        """Did every op run on the ANE (nothing on the CPU)?"""
        report = self.report
        return report is not None and not report.host_ops

    @property
    def mapped_to_ane(self) -> bool:
        """Did the importer map every op to an ANE op (no `host.op`, whatever the target's legality)?"""
        report = self.report
        return report is not None and not any(r.op.startswith("onnx.") for r in report.ops)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, Mapping):
            inputs = [inputs[v.name] for v in self.model.graph.input if v.name in inputs]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = list(inputs)
        compiled, taken = self._for_inputs(inputs)
        outputs = compiled.run([inputs[i] for i in taken])
        return tuple(outputs[o.name] for o in self.model.graph.output)


class AnecBackend(Backend):
    """onnx's backend API over anec (`prepare(model, device="CPU", target="m1")`)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> AnecBackendRep:
        options = {"target": kwargs.pop("target", "m1"), "emit": "ir"}
        return AnecBackendRep(model, options)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """anec runs on the ANE (simulated) and the CPU; onnx's runner calls that device "CPU"."""
        return device == "CPU"


def outputs_match(expected: Sequence[Any], actual: Sequence[Any], rtol: float, atol: float, fp16: bool) -> str | None:
    """None when `actual` matches `expected`, else why not (anec's conformance tolerance)."""
    if len(expected) != len(actual):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for i, (ref, out) in enumerate(zip(expected, actual)):
        ref, out = np.asarray(ref), np.asarray(out)
        if out.shape != ref.shape:
            return f"output {i} has shape {list(out.shape)}, expected {list(ref.shape)}"
        if out.dtype != ref.dtype:
            return f"output {i} has dtype {out.dtype}, expected {ref.dtype}"
        if ref.dtype == object or ref.dtype.kind in "biuUS":
            if not np.array_equal(out, ref):
                return f"output {i} differs"
            continue
        r, o = ref.astype(np.float64), out.astype(np.float64)
        tol_r, tol_a = rtol, atol
        if ref.dtype.itemsize < 2 or ref.dtype.name == "bfloat16":
            tol_r = max(rtol, 2**-6)
        if fp16:
            finite = np.abs(r[np.isfinite(r)])
            tol_r = max(tol_r, FP16_RTOL)
            tol_a = max(tol_a, FP16_ATOL_SCALE * (float(finite.max()) if finite.size else 0.0))
        if not np.allclose(o, r, rtol=tol_r, atol=tol_a, equal_nan=True):
            bad = ~np.isclose(o, r, rtol=tol_r, atol=tol_a, equal_nan=True)
            k = int(np.argmax(bad.reshape(-1)))
            return (f"output {i}: {int(bad.sum())} of {bad.size} values differ, e.g. {o.reshape(-1)[k]!r} vs expected "
                    f"{r.reshape(-1)[k]!r} (rtol {tol_r:g}, atol {tol_a:g})")
    return None
