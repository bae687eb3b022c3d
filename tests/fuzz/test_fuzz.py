"""The CI subset of the fuzzing campaign (issue 17): a fixed range of random ONNX graphs, each compiled
to descriptors for the M1 or the M4 and run on the simulator, must neither crash the compiler nor
disagree with anec's fp16 interpreter. `python benchmarks/fuzz.py --seeds 0:1000` runs more."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.fuzz.differential import check, check_calibrated, mismatch
from tests.fuzz.generator import random_graph

pytestmark = pytest.mark.fuzz

SEEDS = range(0, 1000)
CALIBRATED_SEEDS = range(0, 40)
"""A few seconds: 8 of these hazard graphs miss fp16 tolerance, of every kind the attribution names
(`python benchmarks/fuzz.py --calibrated --seeds 0:1000` runs more)."""
"""About a minute on one core; the range holds 24 graphs that crashed or mismatched before issue 17's
fixes, of every class fixed (benchmarks/fuzz.py --seeds 0:1000 on the parent commit lists them)."""


def test_generator_is_seeded_and_makes_valid_models() -> None:
    a, inputs_a = random_graph(7)
    b, inputs_b = random_graph(7)
    assert a.SerializeToString() == b.SerializeToString()
    assert all(np.array_equal(inputs_a[k], inputs_b[k]) for k in inputs_a)
    onnx.checker.check_model(a, full_check=True)
    assert random_graph(8)[0].SerializeToString() != a.SerializeToString()


def test_mismatch_tolerates_fp16_rounding_only() -> None:
    want = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    rounded = want.astype(np.float16).astype(np.float32)
    assert mismatch(rounded, want, 1e-2, 1e-2) is None
    shifted = np.roll(want, 1)
    assert mismatch(shifted, want, 1e-2, 1e-2) is not None


def test_random_graphs_neither_crash_nor_disagree_with_the_interpreter_or_onnxruntime() -> None:
    bad = [r for r in map(check, SEEDS) if r.outcome in ("crash", "sim-mismatch", "ref-mismatch")]
    assert not bad, "\n".join(r.line() for r in bad)


def test_fp16_rounding_that_misses_onnxruntime_is_told_apart_from_wrong_semantics() -> None:
    """Seed 273: an InstanceNormalization over values a few fp16 ulps apart (cos of nearly equal
    numbers) divides their rounding by a tiny deviation; the float32 import agrees with onnxruntime."""
    res = check(273)
    assert res.outcome == "fp16-flagged" and "InstanceNormalization_18" in res.detail, res.line()


def test_every_calibrated_graph_that_misses_float32_is_flagged_where_its_error_enters() -> None:
    results = [check_calibrated(seed) for seed in CALIBRATED_SEEDS]
    missed = [r for r in results if r.outcome in ("missed", "crash", "refused")]
    assert not missed, "\n".join(r.line() for r in missed)
    flagged = {r.seed: r.detail for r in results if r.outcome == "flagged"}
    assert len(flagged) >= 6, flagged  # the hazards do reach the outputs
    kinds = {2: "(cancellation", 12: "(discontinuity", 14: "(near a pole", 20: "(underflow", 32: "(overflow"}
    wrong = {seed: flagged.get(seed) for seed, kind in kinds.items() if kind not in flagged.get(seed, "")}
    assert not wrong, wrong


def test_a_cast_to_an_integer_that_flips_a_few_values_is_named_where_the_error_enters() -> None:
    """Seed 197 (Mul, Cast to int32, Cast back, Conv, …): the rounded product lands on the other
    integer in ~1% of values, within the bar at the cast itself; the conv after it amplifies that."""
    res = check_calibrated(197)
    assert res.outcome == "flagged" and "Cast_4 (discontinuity" in res.detail, res.line()
