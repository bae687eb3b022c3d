"""Real architectures (random weights, tests/zoo.py) exported with both exporters: they import,
compile, and match onnxruntime — relative L2 error ≤ 1e-5 interpreted in f32, ≤ 1e-2 with the ANE
segments in fp16."""

from __future__ import annotations

import numpy as np
import pytest

import anec
from anec.interpreter import interpret
from tests import zoo

SMALL = ["bert-tiny", "resnet-tiny"]
FULL = ["bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2"]
EXPORTERS = ["legacy", "dynamo"]


def relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def check_model(name: str, exporter: str) -> anec.CompiledModel:
    import onnxruntime

    path = zoo.onnx_model(name, exporter)
    feeds = zoo.inputs(name)
    (want,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    compiled = anec.compile(path, emit="ir")
    (f32,) = interpret(compiled.ir, feeds, segments="f32")
    f16 = compiled.run(feeds)[zoo.ZOO[name].output]
    assert relative_l2(f32, want) <= 1e-5, f"{name}/{exporter} f32: {relative_l2(f32, want):.2e}"
    assert relative_l2(f16, want) <= 1e-2, f"{name}/{exporter} fp16: {relative_l2(f16, want):.2e}"
    return compiled


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", SMALL)
def test_small_zoo_models_match_onnxruntime(name: str, exporter: str) -> None:
    compiled = check_model(name, exporter)
    assert compiled.report.segments == 1
    assert all(r.op in ("onnx.Gather", "onnx.GatherND", "cast") for r in compiled.report.host_ops), compiled.report.host_ops


@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", FULL)
def test_full_size_zoo_models_match_onnxruntime(name: str, exporter: str) -> None:
    """Only embedding lookups (and the integer mask cast) may run on the CPU."""
    compiled = check_model(name, exporter)
    cpu = {r.op for r in compiled.report.host_ops}
    assert cpu <= {"onnx.Gather", "onnx.GatherND", "cast"}, cpu
