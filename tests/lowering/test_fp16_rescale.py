"""ane-fp16's exact rescaling: a sum or mean that overflows fp16 on the sample inputs is computed
on its input scaled by a power of two and scaled back where it fits; bit for bit the unscaled
result wherever that one did not overflow."""

from __future__ import annotations

import re

import numpy as np
import pytest

import anec
from anec.interpreter import interpret
from tests.precision_models import rms_inputs, rms_norm, scaled_sum, unit_inputs


def rms(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)


@pytest.mark.parametrize("square", ["Mul", "Pow"])
def test_an_overflowing_mean_of_squares_is_rescaled_and_gives_the_right_norm(square: str) -> None:
    x = rms_inputs()
    plain = anec.compile(rms_norm(square), emit="descriptors")
    fixed = anec.compile(rms_norm(square), emit="descriptors", example_inputs={"x": x})
    (note,) = fixed.report.fp16_fixes
    assert re.fullmatch(r"mean_square: addends reach [0-9.e+]+ on the sample inputs, beyond fp16's 65504: "
                        r"summed scaled by 2\^-[0-9]+ and scaled back after \(exact: powers of two\)", note)
    assert not any("65504" in w for w in fixed.report.fp16_warnings)
    assert np.abs(plain.run({"x": x})["y"] - rms(x)).max() > 0.5  # x² overflowed: the norm is wrong
    np.testing.assert_allclose(fixed.run({"x": x})["y"], rms(x), atol=1e-2)


def test_an_overflowing_sum_scaled_after_is_rescaled_into_the_constants() -> None:
    x = unit_inputs()
    fixed = anec.compile(scaled_sum(unscale=True), emit="descriptors", example_inputs={"x": x})
    assert [n.split(":")[0] for n in fixed.report.fp16_fixes] == ["total"]
    assert [r.op for r in fixed.report.ops if r.op == "mul"] == ["mul", "mul"]  # no multiply added: folded into the constants
    np.testing.assert_allclose(fixed.run({"x": x})["y"], (x.astype(np.float64) * 1000).sum(-1, keepdims=True) / 1000, rtol=2e-3)


@pytest.mark.parametrize("build, samples", [(lambda: rms_norm("Mul"), rms_inputs), (lambda: rms_norm("Pow"), rms_inputs),
                                            (lambda: scaled_sum(unscale=True), unit_inputs)])
def test_rescaling_is_bit_for_bit_where_the_unscaled_sum_fits(build, samples) -> None:
    plain = anec.compile(build(), emit="ir")
    fixed = anec.compile(build(), emit="ir", example_inputs={"x": samples()})
    assert fixed.report.fp16_fixes
    for shrink in (10.0, 100.0, 1000.0):
        small = {"x": samples() / shrink}
        (want,), (got,) = interpret(plain.ir, small), interpret(fixed.ir, small)
        assert np.isfinite(want).all()
        assert np.array_equal(got, want)


def test_a_sum_that_overflows_where_it_is_used_is_left_alone() -> None:
    compiled = anec.compile(scaled_sum(), emit="ir", example_inputs={"x": unit_inputs()})
    assert not compiled.report.fp16_fixes  # the sum is the output: no place keeps it within fp16
    assert any("above fp16's 65504" in w for w in compiled.report.fp16_warnings)
