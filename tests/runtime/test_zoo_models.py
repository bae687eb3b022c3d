"""Real architectures (small configs of the test zoo) through the descriptor route: compile, encode,
decode, simulate, and agree with onnxruntime within the simulator's acceptance bar."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

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



def test_an_embedding_table_only_ane_programs_read_is_stored_in_fp16_and_runs_the_same() -> None:
    """bert-tiny's word embeddings: the CPU gathers rows that enter an ANE program, which rounds them
    to fp16, so the file stores the table in fp16 (half the bytes) and the outputs do not move."""
    path = zoo.onnx_model("bert-tiny", "legacy")
    name = "model.embeddings.word_embeddings.weight"
    file = decode(anec.compile(str(path), target="m1", emit="descriptors").program_bytes)
    assert file.host_weights[name].dtype == np.float16 and file.host_weights[name].shape == (30522, 64)
    feeds = zoo.inputs("bert-tiny")
    from_fp16 = run_file(file, feeds)
    original = next(numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.name == name)
    file.host_weights[name] = original.astype(np.float32)
    for output, value in run_file(file, feeds).items():
        np.testing.assert_array_equal(value, from_fp16[output])
