"""`anec run`: outputs, saving them, the Core ML device off macOS, and bad input as one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from anec.cli import main
from anec.commands.run import save_outputs
from anec.runtime import read_file, run_file
from anec.runtime.check import compare, reference_outputs
from tests.commands.programs import write_program


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_program(tmp_path_factory.mktemp("run"))


def test_run_prints_and_saves_the_outputs(program, tmp_path: Path, capsys) -> None:
    path, x = program
    out = tmp_path / "out.npz"
    assert main(["run", str(path), "--input", f"x0={x}", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "y0: float32[1, 8, 6, 6]" in printed and f"wrote {out}" in printed
    expected = run_file(read_file(path), {"x0": np.load(x)})["y0"]
    assert np.array_equal(np.load(out)["y0"], expected)


def test_saved_outputs_keep_names_np_savez_takes_for_its_own_arguments(tmp_path: Path) -> None:
    outputs = {"file": np.arange(3, dtype=np.float32), "allow_pickle": np.ones((2, 2), np.float16), "y": np.zeros(1)}
    save_outputs(tmp_path / "out.npz", outputs)
    with np.load(tmp_path / "out.npz") as saved:
        assert sorted(saved.files) == sorted(outputs)
        assert all(np.array_equal(saved[k], v) and saved[k].dtype == v.dtype for k, v in outputs.items())


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS; this checks the message elsewhere")
def test_coreml_device_fails_with_one_line_off_macos(program, capsys) -> None:
    path, x = program
    assert main(["run", str(path), "--input", f"x0={x}", "--device", "coreml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anec: error: --device coreml needs macOS")


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "missing.anec"], "no such file"),
    (["run", "{path}"], "missing input 'x0'"),
    (["run", "{path}", "--input", "x0"], "is not NAME=FILE.npy"),
    (["run", "{path}", "--input", "x0=nowhere.npy"], "cannot read input 'x0'"),
    (["run", "{path}", "--input", "x0={x}", "--target", "m4"], "was compiled for h13"),
    (["run", "{path}", "--input", "x0={x}", "--check"], "no reference model"),
])
def test_bad_input_is_one_line(program, capsys, argv: list[str], message: str) -> None:
    path, x = program
    assert main([a.format(path=path, x=x) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_corrupt_program_is_one_line(tmp_path: Path, program, capsys) -> None:
    bad = tmp_path / "bad.anec"
    bad.write_bytes(program[0].read_bytes()[:500])
    assert main(["run", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_check_compares_with_onnxruntime(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    x = np.array([[-1.0, 2.0, 3.0], [4.0, -5.0, 6.5]], np.float32)
    reference = reference_outputs(path, {"x": x})
    assert np.array_equal(reference["y"], np.maximum(x, 0))
    good, bad = compare({"y": np.maximum(x, 0)}, reference), compare({"y": -x}, reference)
    assert good[0].startswith("check y: cosine 1.000000") and good[0].endswith("ok")
    assert "MISMATCH" in bad[0]


def small_onnx(path: Path) -> Path:
    """Conv + ReLU + global average pool + Gemm: what `anec compile` turns into one ANE program."""
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    fc = onnx.numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32) * 0.3, "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w, fc])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_compile_to_descriptors_then_run_and_check_against_onnxruntime(tmp_path: Path, capsys) -> None:
    model = small_onnx(tmp_path / "small.onnx")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32))
    program = tmp_path / "small.anec"
    assert main(["compile", str(model), "--emit", "descriptors", "-o", str(program)]) == 0
    assert program.exists()
    capsys.readouterr()
    assert main(["run", str(program), "--input", f"x={x}", "--check"]) == 0   # the file names its source
    checked = capsys.readouterr().out
    assert "check y: cosine" in checked and checked.rstrip().endswith("ok")
    assert main(["run", str(model), "--input", f"x={x}", "--check", "--target", "m4"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("ok")


def test_run_freezes_inputs_and_feeds_them_to_the_reference(tmp_path: Path, capsys) -> None:
    """A model whose shapes depend on an input (a sample rate) runs and checks with --freeze: the
    program is compiled with the value fixed and onnxruntime gets it, as the input's int64 type."""
    nodes = [helper.make_node("Div", ["sr", "k8"], ["cols"]), helper.make_node("Unsqueeze", ["cols", "zero"], ["cols1"]),
             helper.make_node("Concat", ["minus_one", "cols1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["z"])]
    constants = [onnx.numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("k8", 8000), ("zero", [0]), ("minus_one", [-1]))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                                           helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], constants)
    model = tmp_path / "rate.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), model)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(2).standard_normal((1, 8)).astype(np.float32))
    assert main(["run", str(model), "--input", f"x={x}", "--freeze", "sr=8000", "--check"]) == 0
    printed = capsys.readouterr().out
    assert "z: float32[8, 1]" in printed and printed.rstrip().endswith("ok")
    assert main(["run", str(model), "--input", f"x={x}", "--check"]) == 2
    assert "--freeze" in capsys.readouterr().err
