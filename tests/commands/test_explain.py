"""`anec explain`: the legality predicate's verdict, rule and hint for one op on one chip; tiles for
limits the tile pass removes; one-line errors (exit 2) for ops, shapes and attributes it cannot take."""

from __future__ import annotations

import re

import pytest

from anec.cli import main
from anec.legality import NO_ANE_EQUIVALENT, conv_dilation, conv_kernel_width, sin_cos


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    return out


def test_a_too_wide_kernel_runs_on_the_ane_once_tiled(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, "Conv", "--shape", "1x64x56x56", "--weight", "128x64x31x31", "--attr", "strides=4,4", "--target", "m1")
    assert out.startswith("Conv on the M1 (h13):\n  ane.conv conv: 1x64x56x56, 128x64x31x31 → 1x128x7x7\n")
    tiles = re.search(r"ANE, once the tile pass splits it into (\d+) tiles  \[rule conv-kernel-width: kernel width 31 exceeds the fp16 limit of 13\]", out)
    assert tiles and int(tiles[1]) > 1, out
    assert f"how: {conv_kernel_width.hint}" in out


def test_sin_is_a_cpu_op_before_m3_and_the_answer_names_the_chips_that_run_it(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, "sin", "--shape", "1x128", "--target", "m2")
    assert "CPU — sin needs an A15-family ANE (M3 and later)  [rule sin-cos]" in out
    assert f"what would let it: {sin_cos.hint}" in out
    assert "runs on the ANE of: M3, M4, M5, M5 Pro/Max" in out
    assert "ANE — within every limit of this chip" in explain(capsys, "Sin", "--shape", "1x128", "--target", "m3")


def test_a_limit_no_chip_lifts_and_an_op_without_ane_equivalent(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, "Conv", "--shape", "1x8x32x32", "--weight", "8x8x3x3", "--attr", "dilations=12,12")
    assert "CPU — dilation 12 exceeds the maximum of 8  [rule conv-dilation]" in out
    assert f"what would let it: {conv_dilation.hint}" in out and "no chip's ANE runs it as it is" in out
    out = explain(capsys, "Hardmax", "--shape", "1x1000")
    assert "onnx.Hardmax hardmax: 1x1000 → 1x1000" in out and "[rule no-ane-op]" in out and NO_ANE_EQUIVALENT.hint in out


def test_matmul_shows_every_op_the_node_becomes(capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, "matmul", "--shape", "1x128x64", "--shape", "1x64x32", "--target", "m5")
    assert out.startswith("MatMul on the M5 (h17):\n") and "1x128x64, 1x64x32" in out
    verdicts = [ln.strip() for ln in out.splitlines() if ln.startswith("    ")]
    assert verdicts and all(v == "ANE — within every limit of this chip" for v in verdicts), out


@pytest.mark.parametrize(("args", "message"), [
    (["Frobnicate", "--shape", "1"], "unknown op 'Frobnicate': explain takes an ONNX op type"),
    (["Cnov", "--shape", "1x3x8x8"], "(hint: did you mean Conv?)"),
    (["Conv", "--shape", "1x-3x8"], "shape '1x-3x8' is not D0xD1x… with positive sizes"),
    (["Conv", "--shape", "1x3:quad"], "unknown element type 'quad'"),
    (["Conv", "--shape", "1x3x8x8", "--weight", "4x3x3x3", "--attr", "stride=2"], "Conv has no attribute 'stride'"),
    (["Conv", "--shape", "1x3x8x8", "--weight", "4x3x3x3", "--attr", "strides=two"], "strides takes ints"),
    (["Relu", "--shape", "1x3", "--shape", "3"], "Relu does not take these inputs"),
    (["Relu"], "Relu needs its inputs"),
    (["Relu", "--shape", "4", "--target", "m9"], "unknown target 'm9'"),
    (["TopK", "--shape", "4", "--value", "1,x"], "--value '1,x' is not a comma-separated list of numbers"),
    (["NonZero", "--shape", "4x4"], "depends on the input values"),
])
def test_bad_requests_fail_with_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("anec: error: ") and message in err, err
