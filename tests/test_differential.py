"""`anec check` / `anec.differential`: each stage against its reference, and the op where the first
disagreement enters — shown on the shipped example with a fault planted in one stage at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anec import interpreter
from anec.cli import main
from anec.dialects import ane
from anec.differential import check, with_every_value_returned
from anec.importers import import_model
from anec.isa.tasks import Kind
from anec.runtime import run_interpreted
from anec.sim import functional

TINY = str(Path(__file__).resolve().parents[1] / "examples" / "tiny.onnx")


@pytest.mark.parametrize("target", ["m1", "m4"])
def test_every_stage_of_the_example_agrees(target: str) -> None:
    report = check(TINY, target=target)
    stages = [s.stage for s in report.stages]
    assert stages[0] == "import" and "ane-fp16" in stages and stages[-1] == "hardware"
    assert report.ok and report.culprit is None


def test_a_simulator_fault_is_found_at_its_op(monkeypatch: pytest.MonkeyPatch) -> None:
    softmax = functional.EXECUTORS[Kind.SOFTMAX]
    monkeypatch.setitem(functional.EXECUTORS, Kind.SOFTMAX, lambda m, task, x, y: softmax(m, task, x, y)[..., ::-1])
    report = check(TINY, target="m1")
    assert report.first_failure is not None and report.first_failure.stage == "hardware"
    assert report.culprit is not None and report.culprit.kind == "softmax"


def test_an_importer_fault_is_found_at_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    relu = interpreter.KERNELS.lookup(ane.ReluOp)
    assert relu is not None
    monkeypatch.setitem(interpreter.KERNELS, ane.ReluOp, lambda op, x: -relu(op, x))
    report = check(TINY, target="m1")
    assert [s.stage for s in report.stages] == ["import"] and not report.ok
    assert report.culprit is not None and report.culprit.kind == "relu" and report.culprit.stage == "import"


def test_every_value_returned_keeps_the_model_outputs() -> None:
    from anec.pipeline import CompileOptions, run_pipeline

    module = import_model(TINY)
    run_pipeline(module, CompileOptions(target="m1", emit="descriptors", stop_after="ane-fuse"))
    probed, names = with_every_value_returned(module)
    x = {"image": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    before, after = run_interpreted(module, x), run_interpreted(probed, x)
    assert names and set(before) < set(after)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_the_command_exits_3_on_a_disagreement(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", TINY]) == 0
    assert "hardware" in capsys.readouterr().out
    softmax = functional.EXECUTORS[Kind.SOFTMAX]
    monkeypatch.setitem(functional.EXECUTORS, Kind.SOFTMAX, lambda m, task, x, y: softmax(m, task, x, y) * 2)
    assert main(["check", TINY]) == 3
    assert "first disagreement: hardware, at" in capsys.readouterr().out


def _square_model(path: Path) -> str:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"], name="square")], "square", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_the_command_draws_inputs_from_a_declared_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """x·x is exact in fp16 for normal inputs; for x in [200, 300] it passes 65504 at the ane-fp16 stage."""
    model = _square_model(tmp_path / "square.onnx")
    assert main(["check", model]) == 0
    assert main(["check", model, "--input-range", "x=-2,2"]) == 0
    capsys.readouterr()
    assert main(["check", model, "--input-range", "x=200,300"]) == 3
    assert "first disagreement: ane-fp16" in capsys.readouterr().out


def test_the_command_refuses_a_range_for_no_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _square_model(tmp_path / "square.onnx")
    assert main(["check", model, "--input-range", "y=0,1"]) == 2
    assert "no input of" in capsys.readouterr().err
