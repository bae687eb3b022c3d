"""`precision="auto"`: the fewest ops kept in float32, chosen by the fp16 error attribution, that
bring every output within the tolerance; what moved and what it costs."""

from __future__ import annotations

import numpy as np
import pytest

import anec
from anec import precision
from anec.errors import AnecError
from tests.precision_models import (
    amplified_upstream_rounding,
    cancellation,
    harmless,
    many_sums,
    scale_folded_into_matmul,
    scaled_sum,
    unit_inputs,
)


def test_auto_keeps_the_op_at_fault_and_the_answer_becomes_right() -> None:
    x = unit_inputs()
    compiled = anec.compile(scaled_sum(), emit="descriptors", precision="auto", example_inputs={"x": x})
    choice = compiled.report.stats["precision_auto"]
    assert choice["moved"] == ("total", "total#layout")  # the sum, and the reshape that reads its 128 000
    assert choice["met"] and choice["worst_before"] == float("inf") and choice["worst_after"] < 1e-2
    assert choice["samples"] == "the example inputs"
    assert choice["before"]["cpu_ops"] == 0 and choice["after"]["cpu_ops"] >= 1
    assert choice["after"]["latency_ms"] > 0 and choice["before"]["segments"] == 1
    assert {r.name for r in compiled.report.host_ops if r.reason.startswith("kept in float32 by --precision auto")} >= {"total"}
    assert "moved 2 op(s) to float32 on the CPU (total, total#layout)" in choice["summary"]
    np.testing.assert_allclose(compiled.run({"x": x})["y"], (x.astype(np.float64) * 1000).sum(-1, keepdims=True), rtol=1e-3)


def test_auto_leaves_a_model_without_hazards_untouched() -> None:
    plain = anec.compile(harmless(), emit="ir")
    compiled = anec.compile(harmless(), emit="ir", precision="auto", example_inputs={"x": unit_inputs()})
    choice = compiled.report.stats["precision_auto"]
    assert choice["moved"] == () and choice["met"] and choice["steps"] == 1
    assert choice["before"] == choice["after"]
    assert [(r.name, r.placement) for r in compiled.report.ops] == [(r.name, r.placement) for r in plain.report.ops]


def test_auto_without_samples_says_it_used_seeded_random_inputs() -> None:
    compiled = anec.compile(harmless(), emit="ir", precision="auto")
    assert compiled.report.stats["precision_auto"]["samples"].startswith("seeded random inputs")


def test_auto_says_why_when_it_cannot_meet_the_tolerance(monkeypatch) -> None:
    monkeypatch.setattr(precision, "MAX_STEPS", 1)
    choice = anec.compile(many_sums(4), emit="ir", precision="auto", example_inputs={"x": unit_inputs()}).report.stats["precision_auto"]
    assert not choice["met"] and choice["steps"] == 1 and choice["moved"] == ()
    assert choice["why"] == "4 output(s) still miss it after 1 compiles (y0, y1, y2, y3)"
    assert "NOT met" in choice["summary"]


def test_several_overflows_move_in_one_step() -> None:
    """Each sum gives inf on the ANE whatever else moves: all four move at once, not one per compile
    (ddddocr-common-old: dozens of quantized convs whose accumulators pass 65504)."""
    choice = anec.compile(many_sums(4), emit="ir", precision="auto", example_inputs={"x": unit_inputs()}).report.stats["precision_auto"]
    assert choice["met"] and choice["steps"] == 2, choice["summary"]
    assert {f"total{i}" for i in range(4)} <= set(choice["moved"])


def test_unknown_precision_and_bad_tolerance_are_errors() -> None:
    with pytest.raises(AnecError, match="unknown precision 'fp8'"):
        anec.compile(harmless(), emit="ir", precision="fp8")
    with pytest.raises(AnecError, match="tolerance must be a positive"):
        anec.compile(harmless(), emit="ir", precision="auto", tolerance=0)


def test_cancellation_moves_the_subtraction_then_the_add_that_rounded_its_operand() -> None:
    x = {"x": 0.01 * unit_inputs() - 0.005}
    choice = anec.compile(cancellation(), emit="ir", precision="auto", example_inputs=x).report.stats["precision_auto"]
    assert choice["met"] and choice["moved"] == ("restore", "shift") and choice["steps"] == 3


def test_moves_that_do_not_reduce_the_error_are_undone(monkeypatch) -> None:
    monkeypatch.setattr(precision, "MAX_STEPS", 2)  # the subtraction alone moves: the rounded operand still cancels
    x = {"x": 0.01 * unit_inputs() - 0.005}
    compiled = anec.compile(cancellation(), emit="ir", precision="auto", example_inputs=x)
    choice = compiled.report.stats["precision_auto"]
    assert not choice["met"] and choice["moved"] == () and not compiled.report.host_ops
    assert choice["why"].endswith("what moved did not reduce the error, so nothing stays in float32")
    assert choice["before"] == choice["after"] and choice["worst_before"] == choice["worst_after"] > 0.1


def test_error_entering_at_an_op_that_fuse_folds_away_is_still_named_and_moved() -> None:
    """`amplify` overflows; ane-fuse folds it into `project`'s weights after the attribution: the
    report names it through the MAC it was folded into, and auto keeps `amplify` itself in float32."""
    x = unit_inputs()
    plain = anec.compile(scale_folded_into_matmul(), emit="ir", example_inputs={"x": x})
    assert "amplify" not in {r.name for r in plain.report.ops}  # folded
    sources = plain.report.fp16_error_sources
    assert sources and sources[0][:2] == ("project", "overflow"), sources
    assert any("(in amplify, folded into this op)" in w for w in plain.report.fp16_warnings)
    choice = anec.compile(scale_folded_into_matmul(), emit="ir", precision="auto", example_inputs={"x": x}).report.stats["precision_auto"]
    assert choice["moved"][0] == "amplify" and "project" not in choice["moved"] and choice["met"], choice["summary"]


def test_error_amplified_on_the_cpu_moves_its_nearest_ane_ancestors_until_the_rounding_source() -> None:
    """`difference` cancels; once it and `down` run in float32, error still enters there, from the
    rounding of `up` two ops further up, reached through the ops already kept."""
    choice = anec.compile(amplified_upstream_rounding(), emit="ir", precision="auto",
                          example_inputs={"x": unit_inputs()}).report.stats["precision_auto"]
    assert choice["met"] and choice["moved"][:2] == ("difference", "down") and "up" in choice["moved"], choice["summary"]


def test_short_of_the_tolerance_auto_names_the_op_that_amplifies_upstream_rounding(monkeypatch) -> None:
    monkeypatch.setattr(precision, "MAX_STEPS", 2)
    choice = anec.compile(amplified_upstream_rounding(), emit="ir", precision="auto",
                          example_inputs={"x": unit_inputs()}).report.stats["precision_auto"]
    assert not choice["met"] and choice["moved"] == (), choice["summary"]  # moving `difference` alone did not help
    assert choice["why"].startswith("1 output(s) still miss it after 2 compiles (y); error still enters at difference, "
                                    "in float32 on the CPU"), choice["why"]
    assert "× its inputs' rel L2" in choice["why"] and "comes from the whole network upstream" in choice["why"]
