"""Real models from ONNX through every lowering pass, per chip: every op left on the ANE is legal,
the outputs match onnxruntime, and the report puts (nearly) all FLOPs on the ANE.

The small zoo variants run always; the full-size models (minutes each) are marked `slow`.
"""

from __future__ import annotations

import numpy as np
import pytest

import anec
from anec.dialects import ane
from anec.legality import legality
from tests import zoo

SMALL = ["bert-tiny", "resnet-tiny"]
FULL = ["bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2"]
TARGETS = ["m1", "m4"]


def check_model(name: str, target: str) -> anec.CompiledModel:
    path = zoo.onnx_model(name, "legacy")
    feeds = zoo.inputs(name)
    compiled = anec.compile(str(path), target=target, emit="descriptors", stop_after="ane-tile")
    placed = [op for op in compiled.ir.walk() if isinstance(op, ane.SegmentOp)]
    assert placed, "nothing runs on the ANE"
    for segment in placed:
        for op in segment.body.block.ops:
            if not isinstance(op, ane.ConstOp | ane.YieldOp):
                verdict = legality(op, compiled.target, strict=True)
                assert verdict.ok, f"{op.name} is not legal on the {compiled.target}: {verdict.reason}"
    import onnxruntime

    expected = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    actual = compiled.run(feeds)[zoo.ZOO[name].output]
    rel = np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected)
    assert rel <= 1e-2, f"relative L2 error {rel:.2e} against onnxruntime"
    assert compiled.report.ane_flops_fraction >= 0.99, [(r.name, r.op, r.flops) for r in compiled.report.host_ops]
    return compiled


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", SMALL)
def test_small_zoo_model_compiles_legal_and_correct(name: str, target: str) -> None:
    compiled = check_model(name, target)
    stats = compiled.report.stats
    assert stats["padding_bytes_after_layout"] <= stats["padding_bytes_before_layout"]


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", FULL)
def test_full_size_zoo_model_compiles_legal_and_correct(name: str, target: str) -> None:
    check_model(name, target)
