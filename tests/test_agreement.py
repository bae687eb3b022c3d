"""The agreement bar: cosine and relative L2, with the arithmetic's noise floor for near-zero outputs."""

from __future__ import annotations

import numpy as np

from anec.agreement import F32_NOISE, FP16_NOISE, error


def test_differences_at_the_noise_of_a_near_zero_output_agree_within_the_floor() -> None:
    want = 1e-6 * np.linspace(0.5, 1.5, 1000)
    got = want + 2e-7 * np.sin(np.arange(1000))
    e = error(got, want)
    assert not e.ok and e.ok_within(F32_NOISE) and abs(e.scale - 1.5e-6) < 1e-12


def test_a_real_difference_does_not_hide_under_the_floor() -> None:
    want = np.linspace(-1, 1, 1000)
    got = want.copy()
    got[10] += 0.01
    e = error(got, want)
    assert e.ok and not error(-want, want).ok_within(FP16_NOISE)
    assert not error(want + 0.05 * np.cos(np.arange(1000)), want).ok_within(F32_NOISE)


def test_nan_where_the_reference_has_nan_agrees_and_nan_elsewhere_does_not() -> None:
    want = np.array([1.0, np.nan, -np.inf, 2.0])
    assert error(want.copy(), want).ok_within(FP16_NOISE)
    assert not error(np.array([1.0, np.nan, -np.inf, np.nan]), want).ok_within(FP16_NOISE)
    assert not error(np.array([1.0, np.inf, -np.inf, 2.0]), want).ok_within(FP16_NOISE)
