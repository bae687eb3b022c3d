"""`anec compile`'s summary: CPU ops with reasons, ops and FLOPs on the ANE, fp16 notes, tiles, the
predicted latency and the files written; `--target all` compares every chip; progress on stderr."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from rich.console import Console

from anec.cli import main
from anec.commands.compile import StageProgress
from anec.pipeline import compile_targets
from anec.targets import TARGETS
from tests.importers.onnx_models import F, model, random


def mixed_model() -> onnx.ModelProto:
    """A conv too wide for one task (tiled), a tiny epsilon (fixed), sin (CPU before M3), Hardmax (CPU
    everywhere) and a constant beyond fp16 (warned)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="wide_conv", pads=[0, 15, 0, 15]),
             helper.make_node("LayerNormalization", ["c", "g", "b"], ["n"], name="norm", axis=-1, epsilon=1e-12),
             helper.make_node("Sin", ["n"], ["s"], name="sin"),
             helper.make_node("Hardmax", ["s"], ["v"], name="hardmax", axis=-1),
             helper.make_node("Relu", ["v"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "huge"], ["y"], name="shift")]
    weights = {"w": random((8, 4, 1, 31)), "g": np.ones(8, np.float32), "b": np.zeros(8, np.float32),
               "huge": np.array([1e6], np.float32)}
    return model(nodes, [("x", F, [1, 4, 8, 8])], ["y"], weights)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("summary") / "mixed.onnx"
    path.write_bytes(mixed_model().SerializeToString())
    return path


def compile_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    code = main(["compile", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_summary_names_cpu_ops_fp16_notes_tiles_latency_and_files(model_path: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "mixed.anec"
    stdout, stderr = compile_cli(capsys, str(model_path), "--emit", "descriptors", "-o", str(out_file))
    assert stderr == ""  # progress only on a terminal
    lines = stdout.splitlines()
    assert any(re.match(r"CPU\s+sin\s+sin\s+sin needs an A15-family ANE \(M3 and later\)", ln) for ln in lines), stdout
    assert any(re.match(r"CPU\s+onnx\.Hardmax\s+hardmax\s+onnx\.Hardmax has no ANE equivalent", ln) for ln in lines), stdout
    assert "fp16 fixed: norm: epsilon 1e-12 raised to 1e-07" in stdout
    assert "fp16 warning: shift: constant operand holds 1e+06, beyond the fp16 range" in stdout
    on_ane = re.search(r"on the ANE: (\d+) of (\d+) ops \(([\d.]+)%\), .*FLOP of .*FLOP \(([\d.]+)%\)", stdout)
    assert on_ane and int(on_ane[2]) - int(on_ane[1]) == 2 and 90 < float(on_ane[4]) < 100, stdout
    tiles = re.search(r"tiles: 1 op\(s\) split into (\d+) tiles: wide_conv ×(\d+)", stdout)
    assert tiles and tiles[1] == tiles[2] and int(tiles[1]) > 1, stdout
    [report] = [m.report for m in compile_targets(str(model_path), ["m1"], emit="descriptors")]
    latency = re.search(r"predicted latency on the M1: ([\d.]+) ms \(ANE .*, 2 dispatch\(es\) .*, CPU .*\)", stdout)
    assert latency and float(latency[1]) == pytest.approx(report.predicted_latency_s * 1e3, rel=1e-2), stdout
    assert lines[-1] == f"wrote {out_file}" and out_file.stat().st_size > 0


def test_ir_summary_lists_the_weights_file_and_says_core_ml_tiles(model_path: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "mixed.mlir"
    stdout, _ = compile_cli(capsys, str(model_path), "--emit", "ir", "-o", str(out_file))
    weights = tmp_path / "mixed.weights.npz"
    assert stdout.splitlines()[-1] == f"wrote {out_file}, {weights}" and out_file.exists() and weights.exists()
    assert "tiles: not tiled here; Core ML's compiler tiles on the device" in stdout


def test_target_all_compares_every_chip_and_writes_one_artifact_each(model_path: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    stdout, _ = compile_cli(capsys, str(model_path), "--emit", "descriptors", "--target", "all", "-o", str(tmp_path / "mixed.anec"))
    reports = {m.target.arch: m.report for m in compile_targets(str(model_path), list(TARGETS), emit="descriptors")}
    for chip in TARGETS:
        row = re.search(rf"^{re.escape(chip.name)}\s+{chip.arch}\s+([\d.]+) ms\s+([\d.]+)%\s+(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+(\d+)$",
                        stdout, re.M)
        assert row, (chip.name, stdout)
        report = reports[chip.arch]
        assert float(row[1]) == pytest.approx(report.predicted_latency_s * 1e3, rel=1e-2)
        assert int(row[4]) == len(report.host_ops) == (2 if chip.generation < 15 else 1)
        assert int(row[5]) == report.tiles > 1 and int(row[6]) == 1
        assert (tmp_path / f"mixed.{chip.arch}.anec").stat().st_size > 0
    assert "CPU on M1, M1 Pro/Max, M2: sin (sin): sin needs an A15-family ANE (M3 and later)" in stdout
    assert "CPU on every chip: hardmax (onnx.Hardmax): onnx.Hardmax has no ANE equivalent" in stdout
    assert stdout.splitlines()[-1].startswith(f"wrote {tmp_path / 'mixed.h13.anec'}, ")


def test_quiet_prints_nothing_and_still_writes(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "q.mlir"
    assert compile_cli(capsys, str(model_path), "--emit", "ir", "-q", "-o", str(out_file)) == ("", "")
    assert out_file.exists()


def test_progress_names_each_stage_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with StageProgress(3, console=console) as progress:
        for stage in ("import", "ane-legalize", "emit ir"):
            progress(stage)
            progress.progress.refresh()  # type: ignore[union-attr]
    shown = screen.getvalue()
    assert "import" in shown and "ane-legalize" in shown and "emit ir" in shown
    assert StageProgress(3, console=Console(file=io.StringIO())).progress is None  # not a terminal: silent
    assert StageProgress(3, enabled=False, console=console).progress is None


def test_every_stage_is_reported_in_order_naming_the_chip_when_there_are_several(model_path: Path) -> None:
    from anec.pipeline import PIPELINES

    stages: list[str] = []
    compile_targets(str(model_path), ["m1", "m3"], emit="ir", progress=stages.append)
    per_chip = [*PIPELINES["ir"], "report"]
    assert stages == ["import", *(f"{chip}: {s}" for chip in ("M1", "M3") for s in per_chip)]
