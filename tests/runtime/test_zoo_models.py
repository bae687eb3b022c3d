"""Real architectures (small configs of the test zoo) through the descriptor route: compile, encode,
decode, simulate, and agree with onnxruntime within the simulator's acceptance bar."""

from __future__ import annotations

import pytest

import anec
from anec.descriptors.binary import decode, encode
from anec.descriptors.build import anec_file
from anec.pipeline import lower_segments
from anec.runtime import run_file
from anec.runtime.check import error
from tests import zoo


@pytest.mark.parametrize(("name", "target"), [("resnet-tiny", "m1"), ("bert-tiny", "m1"), ("bert-tiny", "m4")])
def test_zoo_model_simulates_like_onnxruntime(name: str, target: str) -> None:
    import onnxruntime

    path = zoo.onnx_model(name, "legacy")
    feeds = zoo.inputs(name)
    compiled = anec.compile(str(path), target=target, emit="descriptors")
    data = encode(anec_file(lower_segments(compiled.ir, compiled.target.arch), compiled.target.arch))
    assert encode(decode(data)) == data
    got = run_file(decode(data), feeds)
    reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    e = error(next(iter(got.values())), reference[0])
    assert e.ok, e
    assert compiled.report.predicted_latency_s and compiled.report.predicted_latency_s > compiled.target.perf.dispatch_floor_s.value


def test_compiling_twice_gives_identical_files(tmp_path) -> None:
    path = zoo.onnx_model("resnet-tiny", "legacy")
    first = anec.compile(str(path), emit="descriptors").save(tmp_path / "a.anec").read_bytes()
    second = anec.compile(str(path), emit="descriptors").save(tmp_path / "b.anec").read_bytes()
    assert first == second
