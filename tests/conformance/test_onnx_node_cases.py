"""onnx's backend node cases (all 1,884 that onnx 1.23 generates) through `AnecBackend`, with
onnx's own `BackendTest` runner, for the m1.

Each case must do what `expectations.toml` says: pass, unless a "fails" bucket lists it (then it
must fail, so a fixed case cannot hide). A case is *ANE-capable* when its inputs and outputs are
float32/float16 tensors and anec's importer maps every op to an ANE op (no `host.op`); a passing
ANE-capable case must run wholly on the ANE path (fp16, nothing on the CPU) unless an "off-ane"
bucket lists it with the reason. Outputs are compared by `outputs_match` (fp16-aware when any ANE
segment ran).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest
from onnx.backend.test import BackendTest

from anec.integrations.onnx_backend import AnecBackend, AnecBackendRep, outputs_match
from tests.conformance.cases import TARGET, buckets, expectation_of, float_io


class RecordingBackend(AnecBackend):
    """AnecBackend that remembers the model it prepared last (the runner does not hand it back)."""

    last: ClassVar[AnecBackendRep | None] = None
    target: ClassVar[str] = TARGET

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> AnecBackendRep:
        cls.last = None
        cls.last = super().prepare(model, device, target=cls.target, **kwargs)
        return cls.last


class AnecBackendTest(BackendTest):
    """onnx's runner with anec's fp16-aware comparison."""

    @classmethod
    def assert_similar_outputs(cls, ref_outputs, outputs, rtol, atol, model_dir=None) -> None:  # type: ignore[override]
        rep = RecordingBackend.last
        why = outputs_match(ref_outputs, outputs, rtol, atol, fp16=rep is not None and rep.used_ane)
        if why:
            raise AssertionError(why)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    NODE_CASES = AnecBackendTest(RecordingBackend, __name__).test_cases["OnnxBackendNodeModelTest"]
NODE_CASES.__test__ = False  # run through test_node_case below, not collected as unittest methods (CUDA ones would skip)
NAMES = sorted(n.removesuffix("_cpu") for n in vars(NODE_CASES) if n.startswith("test_") and n.endswith("_cpu"))


def run_case(name: str) -> tuple[str | None, AnecBackendRep | None]:
    """(why it failed or None, the prepared model)."""
    test = NODE_CASES(f"{name}_cpu")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            getattr(test, f"{name}_cpu")()
    except Exception as e:  # any failure is an outcome the expectations decide about
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", RecordingBackend.last
    return None, RecordingBackend.last


@pytest.mark.parametrize("name", NAMES)
def test_node_case(name: str) -> None:
    failure, rep = run_case(name)
    bucket = expectation_of().get(name)
    if bucket is not None and bucket.kind == "fails":
        assert failure is not None, f"{name} now passes: remove it from bucket {bucket.name!r} in expectations.toml"
        return
    assert failure is None, f"{name} fails: {failure}"
    assert rep is not None
    capable = rep.mapped_to_ane and float_io(rep.model)
    if bucket is not None:
        assert capable and not rep.wholly_on_ane, (
            f"{name} now runs wholly on the ANE (or is no longer ANE-capable): remove it from bucket {bucket.name!r}")
    elif capable:
        cpu = [f"{r.name} ({r.op}): {r.reason}" for r in rep.report.host_ops]  # type: ignore[union-attr]
        assert rep.wholly_on_ane, f"{name} is ANE-capable but runs ops on the CPU: {cpu[:3]}"


def test_every_listed_case_exists() -> None:
    unknown = sorted(set(expectation_of()) - set(NAMES))
    assert not unknown, f"expectations.toml lists cases onnx does not generate: {unknown}"


def test_every_bucket_gives_a_reason() -> None:
    for b in buckets():
        assert b.reason.strip() and b.cases, f"bucket {b.name!r} needs a reason and cases"


TOP_K_CASES = ("test_top_k", "test_top_k_negative_axis", "test_top_k_smallest")
"""The float TopK cases (the others select from int64 data, which the ANE does not hold)."""


@pytest.mark.parametrize("name", TOP_K_CASES)
@pytest.mark.parametrize("target", ["m1", "m2", "m4"])
def test_top_k_cases_select_on_the_ane_from_the_m2(name: str, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an M2 or M4 the TopK runs on the ANE, indices included (exact in fp16, widened to int64 as
    the program's output is read); on the M1, whose code generator fails top-k, it runs on the CPU
    and says why."""
    monkeypatch.setattr(RecordingBackend, "target", target)
    failure, rep = run_case(name)
    assert failure is None and rep is not None and rep.report is not None
    topk = [r for r in rep.report.ops if r.op == "topk"]
    assert len(topk) == 1
    if target == "m1":
        assert topk[0].placement != "ane" and "M1's code generator" in topk[0].reason
    else:
        assert rep.used_ane and topk[0].placement == "ane" and not rep.report.host_ops
