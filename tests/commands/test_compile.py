"""`anec compile`: bad models are refused with one line and exit 2, nothing written; good ones
compile, write the IR and print where each op runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from anec.cli import main
from anec.weights import load_module
from tests.importers.onnx_models import F, model, random


def good_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("TopK", ["c", "k"], ["v", "i"], name="topk", axis=3),
             helper.make_node("Relu", ["v"], ["y"], name="relu")]
    return model(nodes, [("x", F, ["n", 3, 8, 8])], ["y"], {"w": random((4, 3, 3, 3)), "k": np.array([2], np.int64)})


def compile_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compile", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, m: onnx.ModelProto) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def missing_initializer() -> onnx.ModelProto:
    return model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [("x", F, [2, 4])], ["y"])


def cycle() -> onnx.ModelProto:
    return model([helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")],
                 [("x", F, [2])], ["b"])


def unknown_domain() -> onnx.ModelProto:
    return model([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.acme")], [("x", F, [2])], ["y"],
                 extra_opsets={"com.acme": 1})


def too_new() -> onnx.ModelProto:
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], ["y"])
    m.ir_version = onnx.IR_VERSION + 1
    return m


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD: dict[str, tuple] = {
    "not-a-protobuf": (lambda p: write_bytes(p, b"this is not a model\n" * 20), "not a protobuf-encoded ONNX model"),
    "truncated": (lambda p: write_bytes(p, good_model().SerializeToString()[:300]), "ends early or is corrupt"),
    "missing-initializer": (lambda p: write(p, missing_initializer()), "node 'mm' (MatMul): input 'w' is not produced"),
    "cycle": (lambda p: write(p, cycle()), "the graph has a cycle"),
    "unknown-domain": (lambda p: write(p, unknown_domain()), "unknown op domain 'com.acme'"),
    "too-new-ir-version": (lambda p: write(p, too_new()), f"IR version {onnx.IR_VERSION + 1} is newer than the installed onnx"),
    "dynamic-dimension": (lambda p: write(p, good_model()), "input 'x' has a dynamic dimension 0 (n)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_models_fail_with_one_line_and_exit_2_writing_nothing(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, message = BAD[case]
    path = make(tmp_path / "model.onnx")
    out_dir = tmp_path / "out"
    code, out, err = compile_cli(capsys, str(path), "--emit", "ir", "-o", str(out_dir / "model.mlir"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("anec: error: ") and message in err, err
    assert "Traceback" not in err + out
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_an_emitter_not_in_this_build_is_refused_before_compiling(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from anec.emit import EMITTERS

    monkeypatch.delitem(EMITTERS, "descriptors")
    code, _, err = compile_cli(capsys, str(tmp_path / "does-not-matter.onnx"), "--emit", "descriptors")
    assert code == 2
    assert err.startswith("anec: error: --emit descriptors is not available in this build") and "--emit ir" in err


def test_compile_writes_ir_and_weights_and_prints_the_placement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "model.onnx", good_model())
    out = tmp_path / "build" / "model.mlir"
    code, stdout, err = compile_cli(capsys, str(path), "--emit", "ir", "-o", str(out), "--input-shape", "x=1,3,8,8")
    assert code == 0, err
    assert out.exists() and out.with_name("model.weights.npz").exists()
    assert "2 of 3 ops on the ANE of the M1" in stdout and "2 segment(s)" in stdout
    assert "topk" in stdout and "top-k fails the M1's code generator" in stdout
    module = load_module(out)
    from anec.interpreter import interpret

    x = random((1, 3, 8, 8))
    y = interpret(module, {"x": x})[0]
    assert y.shape == (1, 4, 8, 2) and np.all(y >= 0)


def test_print_ir_after_all_shows_the_partitioned_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "model.onnx", good_model())
    code, stdout, _ = compile_cli(capsys, str(path), "--emit", "ir", "-o", str(tmp_path / "m.mlir"), "--input-shape", "x=1,3,8,8",
                                  "--print-ir-after-all")
    assert code == 0
    assert "// -----// IR after ane-partition //----- //" in stdout and "ane.segment" in stdout


def test_timings_list_every_stage_with_its_time_and_peak_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "model.onnx", good_model())
    code, out, _ = compile_cli(capsys, str(path), "--emit", "descriptors", "--timings", "--input-shape", "x=1,3,8,8")
    assert code == 0
    table = out.split("compile time on the M1", 1)[1].split("total", 1)[0]
    stages = [line.split()[0] for line in table.splitlines() if line.strip() and line.split()[0][0].isalpha() and "stage" not in line]
    assert stages[0] == "import" and stages[-2:] == ["report", "emit"]
    assert {"ane-legalize", "ane-tile", "to-anehw", "plan-memory"} <= set(stages)


def test_keep_fp32_naming_no_op_fails_with_one_line_naming_close_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.precision_models import scaled_sum

    path = write(tmp_path / "sum.onnx", scaled_sum())
    code, out, err = compile_cli(capsys, str(path), "--emit", "ir", "--keep-fp32", "totl", "ReduceSum")
    assert code != 0 and not out
    assert err.count("\n") == 1 and "--keep-fp32 'totl' names no op of the model" in err and "did you mean total" in err
    assert not (tmp_path / "sum.mlir").exists()


def test_keep_fp32_and_precision_auto_are_in_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.precision_models import scaled_sum, unit_inputs

    path = write(tmp_path / "sum.onnx", scaled_sum())
    code, out, _ = compile_cli(capsys, str(path), "--emit", "ir", "--keep-fp32", "ane.reduce_sum")
    assert code == 0 and "kept in float32 by --keep-fp32" in out
    np.save(tmp_path / "x.npy", unit_inputs())
    code, out, _ = compile_cli(capsys, str(path), "--emit", "ir", "--precision", "auto", "--tolerance", "1e-2",
                               "--calibrate", f"x={tmp_path / 'x.npy'}")
    assert code == 0 and "kept in float32 by --precision auto" in out
    assert "precision auto on the example inputs: moved 2 op(s) to float32 on the CPU (total, total#layout); outputs within rel L2 0.01" in out
