"""The published ANE measurements the timing model is fitted to, and the fitter.

Each measurement names its workload (a single-segment module lowered through the same hardware passes
as a real compile, so the prediction is that of the decoded descriptor program), the figure measured,
how to read that figure off a `ProgramTime`, and a group (a sweep, a family of ops) for the
leave-one-group-out check. Two sources:

- M1 (h13): the figures of ane-hardware.md (sbryngelson/ane-guide); M5 Pro's peak slope from the
  same guide.
- M5 Pro (h17s): ANEForge's 27 single-op latencies (`sim/data/m5pro-single-op-latency.json`, MIT
  licence, `sim/data/LICENSE-ANEFORGE`); `min_us`, the minimum end-to-end call over 40 repetitions, dispatch
  included. Where the file leaves a shape open (pool window, group count) the workload says what we
  assumed.

`fit` adjusts `targets.FIT_PARAMETERS` of one generation by least squares on log(predicted/measured),
with a weak prior at the published figure (`targets.PUBLISHED`) so that a parameter the points do not
constrain stays where the literature puts it. The fitted values are data in `anec/targets.py`;
`benchmarks/timing_calibration.py --fit` reproduces them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from anec.dialects import ane
from anec.pipeline import descriptor_program
from anec.sim.builders import SegmentBuilder, segment_module
from anec.sim.timing import ProgramTime, program_time
from anec.targets import FIT_PARAMETERS, PUBLISHED, Fact, Target, get_target

DATA = Path(__file__).parent / "sim" / "data"
M5_LATENCIES = DATA / "m5pro-single-op-latency.json"

DATA_SIGMA = 0.1
"""Spread of a measurement in log space (min-of-40 calls still moves ~10% between neighbours)."""
PRIOR_SIGMA = math.log(3.0)
"""Spread of a published figure in log space: a parameter far from it costs like a 3x miss."""
BOUNDS: dict[str, tuple[float, float]] = {"narrow_kernel_exponent": (0.0, 1.5), "cliff_slowdown": (1.0, 10.0)}
"""Parameters with a physical range (the others are only positive)."""
LINEAR = frozenset({"narrow_kernel_exponent"})
"""Parameters fitted as themselves (an exponent); the rest are rates and times, fitted as logarithms."""


# ------------------------------------------------------------------------------------------------
# Workloads
# ------------------------------------------------------------------------------------------------


def conv(channels: int, size: int, kernel: int = 3, stride: int = 1) -> ModuleOp:
    """A k×k convolution, `channels` in and out, same padding."""
    def build(b: SegmentBuilder, x: list) -> list:
        w = b.const(np.zeros((channels, channels, kernel, kernel)), "w")
        return [b.add(ane.ConvOp(x[0], w, strides=[stride, stride], pads=[kernel // 2] * 4))]
    return segment_module([(1, channels, size, size)], build)


def conv3x3(channels: int, size: int) -> ModuleOp:
    return conv(channels, size)


def vector_matmul(k: int) -> ModuleOp:
    """x[1,K] @ W[K,K] as the importer lowers a matmul with constant weights: a 1×1 convolution."""
    return segment_module([(1, k, 1, 1)], lambda b, x: [b.add(ane.ConvOp(x[0], b.const(np.zeros((k, k, 1, 1)), "w")))])


def relu(shape: tuple[int, ...]) -> ModuleOp:
    return segment_module([shape], lambda b, x: [b.add(ane.ReluOp(x[0]))])


def conv1x1_chain(channels: int, length: int, layers: int) -> ModuleOp:
    """A chain of 1×1 convolutions on a (1, C, 1, S) activation (the guide's matmul chain)."""
    def build(b: SegmentBuilder, x: list) -> list:
        y = x[0]
        for i in range(layers):
            y = b.add(ane.ConvOp(y, b.const(np.zeros((channels, channels, 1, 1)), f"w{i}")))
        return [y]
    return segment_module([(1, channels, 1, length)], build)


def _rms_norm(b: SegmentBuilder, x: list) -> list:
    """x · rsqrt(mean(x²) + ε) · g over the last axis, as the importers lower it (no fused op)."""
    width = x[0].type.get_shape()[-1]
    mean = b.add(ane.ReduceMeanOp(b.add(ane.MulOp(x[0], x[0])), [1]))
    scale = b.add(ane.RsqrtOp(b.add(ane.AddOp(mean, b.const(np.full((1, 1), 1e-5), "eps")))))
    return [b.add(ane.MulOp(b.add(ane.MulOp(x[0], scale)), b.const(np.ones((1, width)), "g")))]


def _affine(b: SegmentBuilder, shape: Sequence[int]) -> tuple:
    return b.const(np.ones(shape), "scale"), b.const(np.zeros(shape), "bias")


FUSED: dict[str, Callable[[SegmentBuilder, list], list]] = {
    "relu": lambda b, x: [b.add(ane.ReluOp(x[0]))],
    "gelu": lambda b, x: [b.add(ane.GeluOp(x[0]))],
    "sigmoid": lambda b, x: [b.add(ane.SigmoidOp(x[0]))],
    "softmax": lambda b, x: [b.add(ane.SoftmaxOp(x[0], 1))],
    "l2_norm": lambda b, x: [b.add(ane.L2NormOp(x[0], axes=[1]))],
    "rms_norm": _rms_norm,
    "layer_norm": lambda b, x: [b.add(ane.LayerNormOp(x[0], *_affine(b, x[0].type.get_shape()[1:]), axes=[1]))],
    "max_pool": lambda b, x: [b.add(ane.MaxPoolOp(x[0], [2, 2], [2, 2]))],    # window assumed: 2×2, stride 2
    "avg_pool": lambda b, x: [b.add(ane.AvgPoolOp(x[0], [2, 2], [2, 2]))],    # window assumed: 2×2, stride 2
    "group_norm": lambda b, x: [b.add(ane.GroupNormOp(x[0], *_affine(b, x[0].type.get_shape()[1:2]), num_groups=32))],  # 32 assumed
    "pixel_shuffle": lambda b, x: [b.add(ane.DepthToSpaceOp(x[0], 2, "CRD"))],
}
"""ANEForge's fused single ops (softmax and the norms over the last axis of a (64, 256) input)."""


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------


def seconds(t: ProgramTime) -> float:
    return t.total_s


def throughput(t: ProgramTime) -> float:
    return t.flops / t.total_s


def slope(t: ProgramTime) -> float:
    """Work over time above the dispatch floor: how the guide measures sustained rate (t = t0 + W/R)."""
    return t.flops / (t.total_s - t.dispatch_s)


@dataclass(frozen=True)
class Measurement:
    name: str
    target: str
    measured: float
    unit: str
    build: Callable[[], ModuleOp]
    metric: Callable[[ProgramTime], float]
    source: str
    group: str
    parameter: bool = False
    """The point alone pins one parameter (a dispatch floor, the cliff factor)."""


M1_MEASUREMENTS = (
    Measurement("3x3 conv, 256 ch, 28x28", "m1", 0.51e-3, "s", lambda: conv3x3(256, 28), seconds, "guide §6: 0.51 ms, 1823 GFLOP/s on M1", "conv"),
    Measurement("3x3 conv, 64 ch, 16x16", "m1", 63e9, "FLOP/s", lambda: conv3x3(64, 16), throughput, "guide §6: 64-ch sweep, 63 GFLOP/s at 16²", "conv"),
    Measurement("3x3 conv, 64 ch, 256x256", "m1", 1247e9, "FLOP/s", lambda: conv3x3(64, 256), throughput, "guide §6: 64-ch sweep, 1247 GFLOP/s at 256²", "conv"),
    Measurement("dispatch floor (one small op)", "m1", 0.21e-3, "s", lambda: relu((1, 1, 1, 64)), seconds, "guide §2: t0 = 0.19-0.23 ms on M1", "floor", True),
    Measurement("1x1-conv chain, 2.0 MB activation", "m1", 12e12, "FLOP/s", lambda: conv1x1_chain(1024, 1024, 8), slope,
                "guide §2: 12 TFLOP/s below the 2 MB cliff (the peak slope)", "chain", True),
    Measurement("1x1-conv chain, 2.5 MB activation", "m1", 4.8e12, "FLOP/s", lambda: conv1x1_chain(1024, 1280, 8), slope,
                "guide §2: 4.8 TFLOP/s past the cliff", "chain", True),
)


def _m5_workload(group: str, row: dict) -> Callable[[], ModuleOp]:
    if group == "matmul":
        return lambda: vector_matmul(row["K"])
    if group == "conv":
        return lambda: conv(row["C"], row["H"], row["k"], row["stride"])
    op = row["label"].split()[0]
    return lambda: segment_module([tuple(row["shape"])], FUSED[op])


@cache
def m5_measurements() -> tuple[Measurement, ...]:
    """ANEForge's M5 Pro latencies; the conv points keep their sweep as group (spatial, kernel, stride)."""
    data = json.loads(M5_LATENCIES.read_text())
    out = []
    for group, rows in data["measurements"].items():
        for row in rows:
            name = f"{group} {row['label']}" if group == "matmul" else row["label"]
            out.append(Measurement(name, "m5-max", row["min_us"] * 1e-6, "s", _m5_workload(group, row), seconds,
                                   f"ANEForge M5 Pro, min of {data['method']['reps']} calls", f"conv-{row['sweep']}" if group == "conv" else group))
    return tuple(out)


M5_SLOPE = Measurement("1x1-conv chain, 2.0 MB activation", "m5-max", 19.6e12, "FLOP/s", lambda: conv1x1_chain(1024, 1024, 8), slope,
                       "guide §1: 19.6 TFLOP/s slope on M5 (H17s)", "chain", True)
"""The M5 counterpart of M1's peak slope: without it, ANEForge's points (all small or narrow-kernel
convs) cannot tell the full-lane MAC rate from the narrow-kernel exponent."""


def measurements() -> tuple[Measurement, ...]:
    return (*M1_MEASUREMENTS, *m5_measurements(), M5_SLOPE)


# ------------------------------------------------------------------------------------------------
# Predictions, errors and the fitter
# ------------------------------------------------------------------------------------------------


@cache
def _baseline(m: Measurement) -> ProgramTime:
    """The decoded program of a measurement, costed once; refits only re-cost its tasks."""
    target = get_target(m.target)
    return program_time(descriptor_program(m.build(), target.arch).programs[0], target)


def predict(m: Measurement, target: Target | None = None) -> float:
    base = _baseline(m)
    return m.metric(base if target is None else base.retimed(target))


def error(predicted: float, m: Measurement) -> float:
    return abs(predicted - m.measured) / m.measured


def errors(points: Sequence[Measurement] | None = None) -> list[tuple[Measurement, float, float]]:
    """(measurement, predicted, relative error) for every measurement, with the committed parameters."""
    out = []
    for m in points if points is not None else measurements():
        predicted = predict(m)
        out.append((m, predicted, error(predicted, m)))
    return out


def with_parameters(target: Target, values: dict[str, float]) -> Target:
    return replace(target, perf=target.perf.with_fitted({k: Fact(v, "measured", "fit") for k, v in values.items()}))


def free_parameters(points: Sequence[Measurement]) -> list[str]:
    """The parameters the points constrain: weight stream only with weight-heavy points, the cliff
    factor only with a point past the cliff; the rest always."""
    names = [p for p in FIT_PARAMETERS if p not in ("weight_stream_bytes_per_s", "cliff_slowdown")]
    tasks = [t for m in points for t in _baseline(m).tasks]
    if any(t.cost.weight_s > 0.25 * t.cost.total_s for t in tasks):
        names.append("weight_stream_bytes_per_s")
    if any(t.cost.cliff for t in tasks):
        names.append("cliff_slowdown")
    return names


def fit(arch: str, points: Sequence[Measurement]) -> dict[str, float]:
    """Least squares in log space over `points` (all of generation `arch`), with the published
    figures as a weak prior; returns the free parameters' values."""
    from scipy.optimize import least_squares

    published = PUBLISHED[arch]
    target = get_target(arch)
    names = free_parameters(points)
    prior = np.array([_to_x(n, getattr(published, n).value) for n in names])
    low = [_to_x(n, BOUNDS[n][0]) if n in BOUNDS else -np.inf for n in names]
    high = [_to_x(n, BOUNDS[n][1]) if n in BOUNDS else np.inf for n in names]

    def residuals(x: np.ndarray) -> np.ndarray:
        t = with_parameters(target, {n: _from_x(n, v) for n, v in zip(names, x)})
        data = [math.log(predict(m, t) / m.measured) / DATA_SIGMA for m in points]
        return np.array(data + list((x - prior) / PRIOR_SIGMA))

    start = np.clip(prior, np.array(low) + 1e-9, np.array(high) - 1e-9)
    result = least_squares(residuals, start, bounds=(low, high), x_scale=1.0)
    return {n: _from_x(n, v) for n, v in zip(names, result.x)}


def _to_x(name: str, value: float) -> float:
    return value if name in LINEAR else math.log(value)


def _from_x(name: str, x: float) -> float:
    return x if name in LINEAR else math.exp(x)


def leave_one_group_out(arch: str, points: Sequence[Measurement]) -> dict[str, list[tuple[Measurement, float, float]]]:
    """For each group: fit on the other groups, predict the left-out ones."""
    out = {}
    target = get_target(arch)
    for group in dict.fromkeys(m.group for m in points):
        kept = [m for m in points if m.group != group]
        t = with_parameters(target, fit(arch, kept))
        out[group] = [(m, p, error(p, m)) for m in points if m.group == group for p in [predict(m, t)]]
    return out
