"""ane-compress (`anec compile --compress`): data-free int8 (per channel or block), 4- and 6-bit palettes and
magnitude pruning for a float model's large MAC weights, with the layers it skips and the error it reports per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
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


# ------------------------------------------------------------------------------------------------
# palettize4's mixed widths: the layers that lose the most per byte get 6 or 8 bits, or stay fp16
# ------------------------------------------------------------------------------------------------


def test_allocate_bits_buys_the_most_error_per_byte_within_the_budget() -> None:
    from anec.compression import allocate_bits, mixed_nbytes

    sizes = [4096, 4096, 65536]
    errors = [{4: 1e-2, 6: 1e-3, 8: 1e-4, 16: 0.0}, {4: 1e-3, 6: 1e-4, 8: 1e-5, 16: 0.0}, {4: 1e-2, 6: 1e-3, 8: 1e-4, 16: 0.0}]
    floor = sum(mixed_nbytes(n, 4) for n in sizes)
    assert allocate_bits(sizes, errors, floor) == [4, 4, 4]
    # room for one 4 -> 6 step of a small layer: the one that loses ten times more takes it
    assert allocate_bits(sizes, errors, floor + mixed_nbytes(4096, 6) - mixed_nbytes(4096, 4)) == [6, 4, 4]
    generous = allocate_bits(sizes, errors, floor + 40_000)
    assert generous[0] >= generous[1] and sum(mixed_nbytes(n, b) for n, b in zip(sizes, generous, strict=True)) <= floor + 40_000
    assert allocate_bits(sizes, errors, 10**9) == [16, 16, 16]


def _two_branch_model(path: Path) -> Path:
    """y1 = b(relu(a(x))) with a, b 128x128; y2 = d(relu(c(x))) with c 128x1024 and d 1024x2."""
    rng = np.random.default_rng(3)
    shapes = {"a": (128, 128), "b": (128, 128), "c": (128, 1024), "d": (1024, 2)}
    inits = [onnx.numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32), f"w{k}") for k, s in shapes.items()]
    nodes = [onnx.helper.make_node("MatMul", ["x", "wa"], ["ha"], name="a"), onnx.helper.make_node("Relu", ["ha"], ["ra"]),
             onnx.helper.make_node("MatMul", ["ra", "wb"], ["y1"], name="b"),
             onnx.helper.make_node("MatMul", ["x", "wc"], ["hc"], name="c"), onnx.helper.make_node("Relu", ["hc"], ["rc"]),
             onnx.helper.make_node("MatMul", ["rc", "wd"], ["y2"], name="d")]
    graph = onnx.helper.make_graph(nodes, "two", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 128])],
                                   [onnx.helper.make_tensor_value_info("y1", onnx.TensorProto.FLOAT, [1, 128]),
                                    onnx.helper.make_tensor_value_info("y2", onnx.TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


def test_palettize4_spends_its_budget_on_wider_palettes_and_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anec.lowering.compress as compress_pass

    model = _two_branch_model(tmp_path / "two.onnx")
    x = {"x": np.random.default_rng(4).standard_normal((1, 128)).astype(np.float32)}
    expected = np.concatenate([v.ravel() for v in _reference_all(model, x)])

    def error(compiled) -> float:
        return 1 - cosine(np.concatenate([v.ravel() for v in compiled.run(x).values()]), expected)

    mixed = anec.compile(model, target="m1", emit="ir", compress="palettize4")
    report = mixed.report
    widened = sorted(r.name for r in report.ops if "more bits" in r.weight_form)
    assert widened and report.stored_weight_bytes <= 0.29 * report.weight_bytes
    summary = report.weight_summary
    assert summary is not None and "more bits for the layers that lose the most" in summary
    listed = summary.split("lose the most (")[1].rstrip(")").split("; ")
    assert sorted(name for group in listed for name in group.split(": ")[1].split(", ")) == widened
    monkeypatch.setattr(compress_pass, "MIXED_RATIO", 0.0)  # no budget: uniform 4-bit palettes
    uniform = anec.compile(model, target="m1", emit="ir", compress="palettize4")
    assert not any("more bits" in r.weight_form for r in uniform.report.ops) and uniform.report.weight_summary is not None
    assert error(mixed) < 0.8 * error(uniform)


def _reference_all(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)


# ------------------------------------------------------------------------------------------------
# Bias correction: the expected output shift (W_q - W)·E[x] folded into the bias, E[x] measured on
# seeded inputs from the model's input ranges (data-free)
# ------------------------------------------------------------------------------------------------


def _relu_then(kind: str, path: Path) -> Path:
    """y = relu(x) · W: a 1x1 conv over [1, 64, 32, 32] or a matmul over [1, 1024, 64]; W is 64x64, and
    relu(x) has a positive mean, so a changed weight shifts every output channel's mean."""
    w = (np.random.default_rng(5).standard_normal((64, 64)) / 8).astype(np.float32)
    if kind == "conv":
        shape, weight = [1, 64, 32, 32], w.reshape(64, 64, 1, 1)
        mac = onnx.helper.make_node("Conv", ["r", "w"], ["y"], name="mac")
    else:
        shape, weight = [1, 1024, 64], w
        mac = onnx.helper.make_node("MatMul", ["r", "w"], ["y"], name="mac")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["r"]), mac], "relu_mac",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                                   [onnx.numpy_helper.from_array(weight, "w")])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("kind", ["conv", "matmul"])
@pytest.mark.parametrize("mode", ["palettize6", "prune50"])
def test_the_expected_output_shift_of_a_compressed_weight_is_folded_into_the_bias(kind: str, mode: str, tmp_path: Path) -> None:
    from anec.lowering.compress import compress

    model = _relu_then(kind, tmp_path / "m.onnx")
    weight = onnx.numpy_helper.to_array(onnx.load(model).graph.initializer[0])
    channels = 1 if kind == "conv" else -1
    matrix = weight.reshape(64, 64) if kind == "conv" else weight.T  # [out, in]
    delta = compress(matrix, mode, 0, 1).fp16().astype(np.float32) - matrix
    uncorrected = delta @ np.full(64, 0.25)  # E[relu(x)] for x uniform on [-1, 1], the default input range
    compiled = anec.compile(model, target="m1", emit="ir", compress=mode)
    x = np.random.default_rng(6).uniform(-1, 1, compiled.ir.body.block.ops.first.args[0].type.get_shape()).astype(np.float32)
    error = compiled.run({"x": x})["y"] - _reference(model, x)
    shift = np.moveaxis(error, channels, -1).reshape(-1, 64).mean(axis=0)
    assert np.abs(uncorrected).mean() > 3e-3  # the shift is there to correct
    assert np.abs(shift).mean() < 0.2 * np.abs(uncorrected).mean()
    assert not any(isinstance(op, ane.AddOp) for op in compiled.ir.walk())  # the correction is the MAC's bias, no op of its own
