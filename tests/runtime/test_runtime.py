"""CompiledModel.run goes through descriptors and the simulator; host ops run on the CPU in between."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anec.dialects import ane
from anec.pipeline import CompiledModel, CompileOptions
from anec.report import build_report
from anec.runtime import read_file, run_file, run_interpreted
from anec.runtime.check import error
from anec.sim.builders import host_stage, segment, segment_module, stages_module
from anec.targets import get_target


def compiled(module, emit: str = "coreml", target: str = "m1") -> CompiledModel:
    t = get_target(target)
    return CompiledModel(ir=module, target=t, options=CompileOptions(target=t.arch, emit=emit), report=build_report(module, t))


def saturating_sum(b, x):
    return [b.add(ane.ConvOp(x[0], b.const(np.ones((1, 2, 1, 1)))))]


def test_run_uses_the_simulator_not_the_interpreter() -> None:
    model = compiled(segment_module([(1, 2, 1, 1)], saturating_sum))
    x = {"x0": np.full((1, 2, 1, 1), 16384.0, np.float32)}
    assert model.run(x)["y0"].item() == np.inf                  # the MAC port saturates at 2^15
    assert run_interpreted(model.ir, x)["y0"].item() == 32768.0     # the interpreter has no MAC port


def conv_relu(b, x):
    return [b.add(ane.ReluOp(b.add(ane.ConvOp(x[0], b.random((8, 8, 3, 3), 0.2), pads=[1, 1, 1, 1]))))]


def test_host_ops_run_on_the_cpu_between_programs() -> None:
    module = stages_module([(1, 8, 6, 6)], [segment(conv_relu), host_stage("onnx.Neg"), segment(conv_relu)])
    x = {"x0": np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32)}
    model = compiled(module)
    got, want = model.run(x)["y0"], run_interpreted(model.ir, x)["y0"]
    assert error(got, want).ok and np.abs(got).max() > 0


def test_saved_descriptors_run_like_the_compiled_model(tmp_path: Path) -> None:
    module = stages_module([(1, 8, 6, 6)], [segment(conv_relu), host_stage("onnx.Neg"), segment(conv_relu)])
    model = compiled(module, emit="descriptors")
    path = model.save(tmp_path / "m.anec")
    x = {"x0": np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)}
    assert np.array_equal(run_file(read_file(path), x)["y0"], model.run(x)["y0"])
    assert compiled(module, emit="descriptors").save(tmp_path / "again.anec").read_bytes() == path.read_bytes()


def test_bad_inputs_are_user_errors() -> None:
    model = compiled(segment_module([(1, 8, 6, 6)], conv_relu))
    from anec.errors import AnecError

    with pytest.raises(AnecError, match="missing input"):
        model.run({})
    with pytest.raises(AnecError, match="shape"):
        model.run({"x0": np.zeros((1, 8, 6, 5), np.float32)})
