"""The `anec` command line: help, the chip table, `anec opt`, and errors as one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anec.cli import main
from anec.weights import WeightStore

ANEC = str(Path(sys.executable).parent / "anec")

RELU_AND_DEAD_EXP = """\
func.func @main(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %dead = ane.exp %x : tensor<2x3xf32>
  %y = ane.relu %x : tensor<2x3xf32>
  func.return %y : tensor<2x3xf32>
}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_commands() -> None:
    done = subprocess.run([ANEC, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == ""
    for command in ("compile", "targets", "opt"):
        assert f"    {command} " in done.stdout


def test_unknown_chip_exits_2_with_one_line_and_no_traceback() -> None:
    done = subprocess.run([ANEC, "targets", "m9"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("anec: error: unknown target 'm9' (hint: use one of h13,")


def test_targets_lists_the_seven_chips(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "targets")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["M1", "M1 Pro/Max", "M2", "M3", "M4", "M5", "M5 Pro/Max"]
    assert [row.split("│")[2].strip() for row in rows] == ["h13", "h13g", "h14", "h15", "h16", "h17", "h17s"]
    assert "new caps from M3: global_argmax, sin_cos" in out


def test_targets_of_one_chip_shows_every_fact_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "targets", "m1")
    assert code == 0
    assert "M1 (h13)" in out and "max_kernel_width_fp16" in out and "guide §3: kernel width <= 13 in fp16" in out


def test_targets_json_for_one_chip(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "targets", "m4", "--json")
    assert code == 0
    (chip,) = json.loads(out)
    assert (chip["name"], chip["arch"], chip["aliases"]) == ("M4", "h16", ["m4"])
    assert "wide_dims" in chip["capabilities"]
    assert chip["facts"]["limits.max_spatial"]["value"] == 65536
    assert all(f["source"] and f["kind"] in ("measured", "decompiled", "spec", "predicted") for f in chip["facts"].values())


def test_targets_json_all(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "targets", "all", "--json")
    assert code == 0 and [c["arch"] for c in json.loads(out)] == ["h13", "h13g", "h14", "h15", "h16", "h17", "h17s"]


def test_opt_runs_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.mlir"
    path.write_text(RELU_AND_DEAD_EXP)
    code, out, _ = run(capsys, "opt", str(path), "-p", "dce")
    assert code == 0
    assert "ane.relu %x : tensor<2x3xf32>" in out and "ane.exp" not in out
    code, unchanged, _ = run(capsys, "opt", str(path))
    assert code == 0 and "ane.exp" in unchanged


def test_opt_prints_the_ir_after_every_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.mlir"
    path.write_text(RELU_AND_DEAD_EXP)
    code, out, _ = run(capsys, "opt", str(path), "-p", "dce,canonicalize", "--print-ir-after-all")
    assert code == 0 and "IR after dce:" in out


def test_opt_writes_the_output_file_only_on_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, out_file = tmp_path / "good.mlir", tmp_path / "bad.mlir", tmp_path / "out.mlir"
    good.write_text(RELU_AND_DEAD_EXP)
    bad.write_text(RELU_AND_DEAD_EXP.replace("ane.relu %x : tensor<2x3xf32>", "ane.relu %x : tensor<2x3xi32>"))
    code, _, err = run(capsys, "opt", str(bad), "-o", str(out_file))
    assert code == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["bad.mlir", "good.mlir"]  # no output, no partial file
    assert err.startswith("anec: error: ") and err.count("\n") == 1
    code, _, _ = run(capsys, "opt", str(good), "-o", str(out_file))
    assert code == 0 and "ane.relu" in out_file.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mlir", "good.mlir", "out.mlir"]


@pytest.mark.parametrize("text, message", [
    ("func.func @f(%x: tensor<2xi32>) {\n  %0 = ane.relu %x : tensor<2xi32>\n  func.return\n}\n",
     "in.mlir: ane.relu needs float tensors, got tensor<2xi32>"),
    ("func.func @f(%x: tensor<2xf32>) {\n  %0 = ane.relu %x : tensor<3xf32>\n  func.return\n}\n",
     "in.mlir:2:17: operand is used with type tensor<3xf32>, but has been previously used or defined with type tensor<2xf32>"),
    ("func.func @f() {\n  %0 = ane.nonsense : tensor<2xf32>\n  func.return\n}\n", "in.mlir:2:21: Operation ane.nonsense is not registered"),
])
def test_opt_reports_bad_input_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    path = tmp_path / "in.mlir"
    path.write_text(text)
    code, out, err = run(capsys, "opt", str(path))
    assert code == 2 and out == ""
    assert err.startswith("anec: error: ") and err.count("\n") == 1 and message in err


def test_opt_reports_a_missing_file_and_an_unknown_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "opt", str(tmp_path / "missing.mlir"))
    assert code == 2 and err == f"anec: error: cannot read {tmp_path / 'missing.mlir'}: No such file or directory\n"
    path = tmp_path / "in.mlir"
    path.write_text(RELU_AND_DEAD_EXP)
    code, _, err = run(capsys, "opt", str(path), "-p", "no-such-pass")
    assert code == 2 and "no-such-pass" in err and err.count("\n") == 1


def test_opt_loads_weights_given_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, weights = tmp_path / "w.mlir", tmp_path / "elsewhere.npz"
    path.write_text('func.func @f() -> tensor<4x5xf32> {\n  %w = ane.const "fc.weight" : tensor<4x5xf32>\n  func.return %w : tensor<4x5xf32>\n}\n')
    store = WeightStore()
    store.add(np.ones((4, 5), np.float32), "fc.weight")
    store.save(weights)
    code, out, _ = run(capsys, "opt", str(path), "--weights", str(weights))
    assert code == 0 and 'ane.const "fc.weight" : tensor<4x5xf32>' in out
    code, _, err = run(capsys, "opt", str(path), "--weights", str(tmp_path / "nope.npz"))
    assert code == 2 and "cannot read weights from" in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = subprocess.run([ANEC, "targets", "m9", "--debug"], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "Traceback" in done.stderr and "AnecError" in done.stderr
