"""ane-compress (`anec compile --compress`): data-free int8 (per channel or block), 4- and 6-bit palettes and
magnitude pruning for a float model's large MAC weights, with the layers it skips and the error it reports per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import anec
from anec.cli import main
from anec.compression import palettize, quantize_int8
from anec.dialects import ane
from anec.errors import AnecError
from anec.weights import compressed_of
from tests.importers.quantized_models import INPUT_SHAPE, cosine, float_model

RNG = np.random.default_rng(21)


def test_int8_is_symmetric_per_output_channel() -> None:
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 0.1, 0], np.float32).reshape(4, 1, 1, 1)
    q = quantize_int8(w, axis=0)
    assert q.axis == 0 and not q.zero_point.any() and np.abs(q.quantized).max() == 127
    assert q.scale[3] == 1.0 and not q.fp16()[3].any()
    for c in range(3):  # each channel's error is half its step, plus the fp16 rounding of the value
        assert np.abs(q.fp16()[c].astype(np.float32) - w[c]).max() <= q.scale[c] / 2 + np.abs(w[c]).max() * 2.0**-11


def test_palettize_finds_a_palette_the_values_already_have() -> None:
    levels = np.sort(RNG.standard_normal(16)).astype(np.float16)
    w = levels[RNG.integers(0, 16, (64, 64))].astype(np.float32)
    p = palettize(w, 4)
    assert p.bits == 4 and p.fp16().astype(np.float32).tolist() == w.tolist()


def test_palettize_reaches_the_lloyd_max_optimum_on_gaussian_weights() -> None:
    """The optimal 16-level quantizer of a unit Gaussian has a mean squared error of 0.009497 (Max, 1960)."""
    w = RNG.standard_normal(50_000).astype(np.float32)
    mse = float(np.mean((palettize(w, 4).fp16().astype(np.float32) - w) ** 2))
    assert mse < 0.009497 * 1.03


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return float_model(tmp_path_factory.mktemp("compress") / "float.onnx")


def _reference(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize(("mode", "ratio", "min_cosine"), [("int8", 0.55, 0.999), ("int8-block", 0.57, 0.999), ("palettize4", 0.30, 0.98),
                                                          ("palettize6", 0.41, 0.995), ("prune50", 0.58, 0.94)])
def test_compress_shrinks_the_weights_and_keeps_the_output(model: Path, mode: str, ratio: float, min_cosine: float) -> None:
    pytest.importorskip("onnxruntime")
    compiled = anec.compile(model, target="m1", emit="ir", compress=mode)
    report = compiled.report
    compressed = {r.name for r in report.ops if r.weight_form}
    assert compressed == {"conv2", "fc1", "fc2"}  # conv1's 864 values are under the threshold
    assert report.stored_weight_bytes <= ratio * report.weight_bytes
    assert all("relative weight error" in r.weight_form for r in report.ops if r.weight_form)
    x = np.random.default_rng(2).standard_normal(INPUT_SHAPE).astype(np.float32)
    assert cosine(compiled.run({"x": x})["y"], _reference(model, x)) >= min_cosine


def test_compress_skip_leaves_the_named_layers_alone(model: Path) -> None:
    compiled = anec.compile(model, target="m1", emit="ir", compress="palettize4", compress_skip=("fc1", "conv2"))
    stored = [compressed_of(op) for op in compiled.ir.walk() if isinstance(op, ane.ConstOp) and op.stored is not None]
    assert len(stored) == 1 and stored[0].shape == (64, 128, 1, 1)  # fc2, a 1x1 conv after ane-layout
    assert {r.name for r in compiled.report.ops if r.weight_form} == {"fc2"}


def test_an_unknown_mode_is_one_clear_error(model: Path) -> None:
    with pytest.raises(AnecError, match="--compress int3: no such mode"):
        anec.compile(model, target="m1", emit="ir", compress="int3")


def test_the_cli_compresses_and_prints_the_weight_summary(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.mlpackage"
    assert main(["compile", str(model), "--compress", "palettize4", "--compress-skip", "fc1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights: " in printed and "2 compressed op(s), 2 streamed compressed" in printed
    assert any(p.name == "weight.bin" for p in out.rglob("weight.bin"))
