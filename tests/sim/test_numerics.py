"""Edge numerics of the simulator: the MAC port, NaN and indeterminate forms, rounding ties,
denormals, the Q.4 width-slice crop, activation tables and bit-determinism."""

from __future__ import annotations

import numpy as np
import pytest

from anec.dialects import ane
from anec.pipeline import descriptor_program
from anec.runtime import run_file
from anec.sim.builders import segment_module
from tests.sim.support import float32_samples

F16 = np.float16


def simulate(module, inputs: list[np.ndarray], arch: str = "h13", **options) -> list[np.ndarray]:
    file = descriptor_program(module, arch, {"to-anehw": options} if options else None)
    return [v.astype(np.float32) for v in run_file(file, inputs).values()]


def channel_sum(values: list[float], arch: str = "h13", weight: float = 1.0) -> float:
    """A 1x1 convolution summing the channels of one pixel (times `weight`): one trip through the MAC port."""
    module = segment_module([(1, len(values), 1, 1)],
                            lambda b, x: [b.add(ane.ConvOp(x[0], b.const(np.full((1, len(values), 1, 1), weight))))])
    return float(simulate(module, [np.array(values, np.float32).reshape(1, -1, 1, 1)], arch)[0].item())


def elementwise(cls: type, *values: float) -> float:
    module = segment_module([(1,)] * len(values), lambda b, x: [b.add(cls(*x))])
    return float(simulate(module, [np.array([v], np.float32) for v in values])[0].item())


def unary(cls: type, value: float) -> float:
    module = segment_module([(1,)], lambda b, x: [b.add(cls(x[0]))])
    return float(simulate(module, [np.array([value], np.float32)])[0].item())


def test_the_mac_port_saturates_at_2_to_the_15() -> None:
    assert channel_sum([16376.0, 16376.0]) == 32752.0
    assert channel_sum([16384.0, 16384.0]) == np.inf
    assert channel_sum([-16384.0, -16384.0]) == -np.inf


def test_elementwise_ops_keep_the_full_fp16_range() -> None:
    assert elementwise(ane.AddOp, 16384.0, 16384.0) == 32768.0
    assert elementwise(ane.AddOp, 32768.0, 32768.0) == np.inf   # past 65504


def test_nan_inputs_become_plus_infinity() -> None:
    assert unary(ane.ReluOp, np.nan) == np.inf
    assert unary(ane.NegOp, np.nan) == -np.inf


@pytest.mark.parametrize(("op", "values", "expected"), [
    (ane.AddOp, (np.inf, -np.inf), 0.0),
    (ane.MulOp, (0.0, np.inf), 0.0),
    (ane.SubOp, (np.inf, np.inf), 0.0),
])
def test_indeterminate_forms_give_plus_zero(op: type, values: tuple[float, float], expected: float) -> None:
    result = elementwise(op, *values)
    assert result == expected and not np.signbit(result)


def test_special_values_of_activations() -> None:
    assert unary(ane.SqrtOp, -1.0) == 0.0
    assert unary(ane.LogOp, -1.0) == 0.0
    assert unary(ane.LogOp, 0.0) == -45440.0
    assert unary(ane.ReciprocalOp, -0.0) == np.inf


@pytest.mark.parametrize(("value", "expected"), [(-3.5, -1.0), (2.0**-24, 1.0), (0.0, 0.0), (-np.inf, -1.0), (np.nan, 1.0)])
def test_sign_is_a_native_neuron_mode(value: float, expected: float) -> None:
    """SIGN is one of the neuron modes of the first ANE (H13): exact, no table; NaN enters as +inf."""
    assert unary(ane.SignOp, value) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (2048.0, 1.0, 2048.0),            # 2049 is halfway between 2048 and 2050: to even
    (2048.0, 3.0, 2052.0),            # 2051 is halfway between 2050 and 2052: to even
    (1.0, 2.0**-11, 1.0),
    (1.0, 3 * 2.0**-11, 1.0 + 2.0**-9),
])
def test_rounding_ties_go_to_even(a: float, b: float, expected: float) -> None:
    assert elementwise(ane.AddOp, a, b) == expected


def test_denormals_pass_elementwise_but_are_flushed_in_the_m1_mac() -> None:
    tiny = 2.0**-24
    assert unary(ane.ReluOp, tiny) == tiny
    assert channel_sum([tiny]) == 0.0
    assert channel_sum([2.0**-12], weight=2.0**-12) == 0.0           # normal operands, denormal product
    assert channel_sum([2.0**-12], weight=2.0**-12, arch="h17s") == tiny
    assert channel_sum([tiny], arch="h17s") == tiny       # kept on M5


def width_slice(begin: int, arch: str) -> np.ndarray:
    module = segment_module([(1, 1, 1, 8)], lambda b, x: [b.add(ane.SliceOp(x[0], [0, 0, 0, begin], [1, 1, 1, 8]))])
    return simulate(module, [np.full((1, 1, 1, 8), 5000.0, np.float32)], arch)[0]


def test_a_width_slice_with_an_offset_overflows_above_4094_on_m1_only() -> None:
    assert np.all(width_slice(1, "h13") == np.inf)
    assert np.all(width_slice(0, "h13") == 5000.0)
    assert np.all(width_slice(1, "h15") == 5000.0)


def test_lut_activations_are_piecewise_linear_and_close() -> None:
    module = segment_module([(1, 1, 16, 64)], lambda b, x: [b.add(ane.SigmoidOp(x[0])), b.add(ane.GeluOp(x[0]))])
    x = np.linspace(-6, 6, 16 * 64, dtype=np.float32).reshape(1, 1, 16, 64)
    exact, table = simulate(module, [x]), simulate(module, [x], lut_activations=True)
    for e, t, bound in zip(exact, table, (0.005, 0.02)):
        error = np.abs(e - t).max()
        assert 0 < error < bound


def test_execution_is_bit_deterministic() -> None:
    module = segment_module([(1, 16, 12, 12)], lambda b, x: [b.add(ane.SoftmaxOp(b.add(ane.ConvOp(
        x[0], b.random((16, 16, 3, 3), 0.2), pads=[1, 1, 1, 1])), 1))])
    x = np.random.default_rng(3).standard_normal((1, 16, 12, 12)).astype(np.float32)
    first, second = simulate(module, [x])[0], simulate(module, [x])[0]
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize(("saturation", "flush"), [(32768.0, True), (32768.0, False), (65536.0, False)])
def test_fp16_values_round_as_the_conversion_does(saturation: float, flush: bool) -> None:
    """`fp16_values` (float32 arithmetic) gives bit for bit what converting to fp16 and reading the
    MAC port table gives; NaN stays NaN."""
    from anec.sim.fp16_kernels import fp16_values, mac_port_table

    x = float32_samples()
    with np.errstate(all="ignore"):
        converted = x.astype(F16)
        if saturation == 65536.0:
            expected = converted.astype(np.float32)
        else:
            expected = mac_port_table(saturation, flush)[converted.view(np.uint16)].view(F16).astype(np.float32)
        got = fp16_values(x.copy(), saturation, flush)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    mismatched = np.flatnonzero(got[~nan].view(np.uint32) != expected[~nan].view(np.uint32))
    assert mismatched.size == 0, f"{x[~nan][mismatched[:5]]} -> {got[~nan][mismatched[:5]]}, expected {expected[~nan][mismatched[:5]]}"


def max_pool(values: list[float], kernel: list[int], strides: list[int], pads: list[int]) -> np.ndarray:
    module = segment_module([(1, 1, 1, len(values))], lambda b, x: [b.add(ane.MaxPoolOp(x[0], kernel, strides, pads))])
    return simulate(module, [np.array(values, np.float32).reshape(1, 1, 1, -1)])[0].ravel()


def test_max_pooling_orders_fp16_values_with_minus_zero_below_plus_zero() -> None:
    """Max pooling compares fp16 values exactly (denormals included) and picks +0 over -0 whichever
    tap comes first; its padding never wins, even over negative values."""
    pooled = max_pool([-0.0, 0.0, 0.0, -0.0, -3.0, -2.0**-24, 2.0**-24, 2.0**-23], [1, 2], [1, 2], [0, 0, 0, 0])
    assert pooled.tolist() == [0.0, 0.0, -2.0**-24, 2.0**-23] and not np.signbit(pooled[:2]).any()
    assert max_pool([-0.0, -0.0], [1, 2], [1, 1], [0, 0, 0, 0]).tolist() == [-0.0]
    assert np.signbit(max_pool([-0.0, -0.0], [1, 2], [1, 1], [0, 0, 0, 0])).all()
    assert max_pool([-5.0, -7.0], [3, 3], [1, 1], [1, 1, 1, 1]).tolist() == [-5.0, -5.0]
