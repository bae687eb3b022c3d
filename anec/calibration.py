"""The published ANE measurements the timing model is calibrated against (ane-hardware.md).

Each measurement names its workload (a single-segment module lowered through the same hardware passes
as a real compile, so the prediction is that of the decoded descriptor program), the figure measured
and how to read that figure off a `ProgramTime`. `benchmarks/timing_calibration.py` prints the error
of each; a measurement marked `parameter` is itself a parameter of the model (a dispatch floor, the
cliff factor), so its error only shows that the model applies it where it should.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anec.dialects import ane
from anec.pipeline import descriptor_program
from anec.sim.builders import SegmentBuilder, segment_module
from anec.sim.timing import ProgramTime, program_time
from anec.targets import get_target


def conv3x3(channels: int, size: int):
    def build(b: SegmentBuilder, x: list) -> list:
        w = b.const(np.zeros((channels, channels, 3, 3)), "w")
        return [b.add(ane.ConvOp(x[0], w, pads=[1, 1, 1, 1]))]
    return segment_module([(1, channels, size, size)], build)


def relu(shape: tuple[int, ...]):
    return segment_module([shape], lambda b, x: [b.add(ane.ReluOp(x[0]))])


def conv1x1_chain(channels: int, length: int, layers: int):
    """A chain of 1×1 convolutions on a (1, C, 1, S) activation (the guide's matmul chain)."""
    def build(b: SegmentBuilder, x: list) -> list:
        y = x[0]
        for i in range(layers):
            y = b.add(ane.ConvOp(y, b.const(np.zeros((channels, channels, 1, 1)), f"w{i}")))
        return [y]
    return segment_module([(1, channels, 1, length)], build)


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
    build: Callable[[], object]
    metric: Callable[[ProgramTime], float]
    source: str
    parameter: bool = False


MEASUREMENTS = (
    Measurement("3x3 conv, 256 ch, 28x28", "m1", 0.51e-3, "s", lambda: conv3x3(256, 28), seconds, "guide §6: 0.51 ms, 1823 GFLOP/s on M1"),
    Measurement("3x3 conv, 64 ch, 16x16", "m1", 63e9, "FLOP/s", lambda: conv3x3(64, 16), throughput, "guide §6: 64-ch sweep, 63 GFLOP/s at 16²"),
    Measurement("3x3 conv, 64 ch, 256x256", "m1", 1247e9, "FLOP/s", lambda: conv3x3(64, 256), throughput, "guide §6: 64-ch sweep, 1247 GFLOP/s at 256²"),
    Measurement("dispatch floor (one small op)", "m1", 0.21e-3, "s", lambda: relu((1, 1, 1, 64)), seconds, "guide §2: t0 = 0.19-0.23 ms on M1", True),
    Measurement("dispatch floor (one small op)", "m5-max", 0.11e-3, "s", lambda: relu((1, 1, 1, 64)), seconds, "guide §1: 0.11 ms on M5", True),
    Measurement("1x1-conv chain, 2.0 MB activation", "m1", 12e12, "FLOP/s", lambda: conv1x1_chain(1024, 1024, 8), slope,
                "guide §2: 12 TFLOP/s below the 2 MB cliff (the peak slope)", True),
    Measurement("1x1-conv chain, 2.5 MB activation", "m1", 4.8e12, "FLOP/s", lambda: conv1x1_chain(1024, 1280, 8), slope,
                "guide §2: 4.8 TFLOP/s past the cliff", True),
)


def predict(m: Measurement) -> float:
    target = get_target(m.target)
    program = descriptor_program(m.build(), target.arch).programs[0]  # type: ignore[arg-type]
    return m.metric(program_time(program, target))


def errors() -> list[tuple[Measurement, float, float]]:
    """(measurement, predicted, relative error) for every measurement."""
    out = []
    for m in MEASUREMENTS:
        predicted = predict(m)
        out.append((m, predicted, abs(predicted - m.measured) / m.measured))
    return out
