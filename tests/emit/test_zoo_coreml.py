"""Real models end to end: ONNX -> `anec compile` -> `.mlpackage` that coremltools reads back, whose
MIL (run by the test interpreter) matches onnxruntime on the zoo's inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import anec
from anec.cli import main as anec_main
from tests import zoo
from tests.emit.support import emit_package, op_types, rel_l2, run_emitted

SMALL = ("bert-tiny", "resnet-tiny")
FULL = ("bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2")


def _onnxruntime(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _check(name: str, exporter: str, tmp_path: Path) -> list[str]:
    onnx_path = zoo.onnx_model(name, exporter)
    feeds = zoo.inputs(name)
    program = emit_package(anec.compile(str(onnx_path), emit="coreml"), tmp_path / f"{name}.mlpackage")
    got = run_emitted(program, feeds)
    expected = _onnxruntime(onnx_path, feeds)
    assert len(got) == len(expected)
    for (out_name, value), want in zip(got.items(), expected):
        assert value.shape == want.shape, out_name
        assert rel_l2(value, want) <= 1e-2, f"{name} {out_name}: relative L2 {rel_l2(value, want):.2e}"
    return op_types(program)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", SMALL)
def test_small_models_match_onnxruntime(name: str, exporter: str, tmp_path: Path):
    ops = _check(name, exporter, tmp_path)
    assert {"bert-tiny": "gather", "resnet-tiny": "conv"}[name] in ops  # the embedding lookup runs as a MIL gather


def _unique_float_parameter_bytes(onnx_path: Path) -> int:
    """Bytes of the model's distinct float initializers, each stored once in fp16."""
    import onnx
    from onnx import numpy_helper

    arrays = (numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer)
    return 2 * sum({a.tobytes(): a.size for a in arrays if a.dtype.kind == "f"}.values())


@pytest.mark.parametrize("name", SMALL)
def test_the_package_stores_each_parameter_once_in_fp16(name: str, tmp_path: Path):
    """The embedding table the gather reads on the CPU is rounded to fp16 before the ANE reads its rows,
    so the package stores it in fp16 (it was float32: BERT-base's package was 264 MB for 218 MB of weights)."""
    onnx_path = zoo.onnx_model(name, "legacy")
    package = anec.compile(str(onnx_path), emit="coreml").save(tmp_path / f"{name}.mlpackage")
    stored = sum(p.stat().st_size for p in package.rglob("weight.bin"))
    assert 1.0 <= stored / _unique_float_parameter_bytes(onnx_path) <= 1.03  # blob headers and alignment


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_models_match_onnxruntime(name: str, tmp_path: Path):
    _check(name, "legacy", tmp_path)


def test_anec_compile_writes_a_package_by_default(tmp_path: Path):
    onnx_path = zoo.onnx_model("resnet-tiny", "legacy")
    out = tmp_path / "resnet.mlpackage"
    assert anec_main(["compile", str(onnx_path), "-o", str(out), "--deployment-target", "macos15"]) == 0
    assert (out / "Manifest.json").exists() and list(tmp_path.iterdir()) == [out]
    import coremltools as ct

    assert ct.models.MLModel(str(out), skip_model_load=True).user_defined_metadata["anec.deployment_target"] == "macos15"


def test_anec_compile_emits_mil_text(tmp_path: Path):
    onnx_path = zoo.onnx_model("resnet-tiny", "legacy")
    out = tmp_path / "resnet"
    assert anec_main(["compile", str(onnx_path), "--emit", "mil-text", "-o", str(out), "--deployment-target", "ios18"]) == 0
    text = (out / "model.mil").read_text()
    assert text.startswith("program(1.3)") and "func main<ios18>(tensor<fp32, [1, 3, 64, 64]> pixel_values)" in text
    assert text.count("BLOBFILE") >= 6 and (out / "weights" / "weight.bin").stat().st_size > 10_000


def test_a_bad_deployment_target_is_one_line_and_writes_nothing(tmp_path: Path, capsys):
    onnx_path = zoo.onnx_model("resnet-tiny", "legacy")
    assert anec_main(["compile", str(onnx_path), "-o", str(tmp_path / "m.mlpackage"), "--deployment-target", "ios15"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anec: error: unknown deployment target 'ios15'") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
