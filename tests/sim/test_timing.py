"""The timing model: calibration against the published measurements, and the behaviour it must show."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from anec.calibration import conv1x1_chain, conv3x3, errors
from anec.dialects import ane
from anec.pipeline import descriptor_program, lower_segments
from anec.report import build_report
from anec.sim.builders import segment_module
from anec.sim.timing import op_seconds, program_time
from anec.targets import get_target

M1 = get_target("m1")


def predicted(module, target=M1):
    return program_time(descriptor_program(module, target.arch).programs[0], target)


def test_calibration_median_error_is_under_25_percent() -> None:
    rows = errors()
    assert len(rows) >= 7
    assert statistics.median(e for _, _, e in rows) < 0.25
    assert statistics.median(e for m, _, e in rows if not m.parameter) < 0.25


def test_a_program_never_beats_its_dispatch_floor() -> None:
    t = predicted(segment_module([(1, 1, 1, 64)], lambda b, x: [b.add(ane.ReluOp(x[0]))]))
    assert M1.perf.dispatch_floor_s.value <= t.total_s < 1.01 * M1.perf.dispatch_floor_s.value


def test_a_3x3_kernel_keeps_a_quarter_of_the_lanes_busy() -> None:
    tiles = predicted(conv3x3(256, 28)).tasks  # the kernel-memory split makes output-channel tiles
    assert len(tiles) > 1 and {t.work.lane_utilization for t in tiles} == {0.25}
    assert sum(t.cost.compute_s for t in tiles) > sum(t.cost.memory_s for t in tiles)  # the input is read once
    one = predicted(conv1x1_chain(256, 784, 1)).tasks[0]
    assert one.work.lane_utilization == 1.0


def test_few_output_channels_leave_cores_idle() -> None:
    module = segment_module([(1, 64, 28, 28)], lambda b, x: [b.add(ane.ConvOp(x[0], b.const(np.zeros((8, 64, 1, 1)))))])
    task = predicted(module).tasks[0]
    assert task.work.core_utilization == 1 / M1.perf.cores.value


def test_past_the_l2_cliff_a_flop_costs_more() -> None:
    below, above = predicted(conv1x1_chain(1024, 1024, 2)), predicted(conv1x1_chain(1024, 1280, 2))
    rate = lambda t: t.flops / (t.total_s - t.dispatch_s)  # noqa: E731
    assert rate(below) / rate(above) == pytest.approx(M1.perf.cliff_slowdown.value, rel=0.05)


def test_faster_chips_predict_less_time() -> None:
    module = conv3x3(128, 56)
    assert predicted(module, get_target("m5-max")).total_s < predicted(module, get_target("m4")).total_s < predicted(module).total_s


def test_graph_level_estimate_agrees_with_the_task_level_one() -> None:
    module = conv3x3(64, 56)
    conv = next(op for op in module.walk() if isinstance(op, ane.ConvOp))
    task = predicted(module).tasks[0].cost.total_s
    assert op_seconds(conv, M1) == pytest.approx(task, rel=0.3)


def test_report_predicts_every_op_and_the_latency_for_both_routes() -> None:
    module = segment_module([(1, 32, 14, 14)], lambda b, x: [b.add(ane.ReluOp(b.add(ane.ConvOp(
        x[0], b.random((32, 32, 3, 3), 0.1), pads=[1, 1, 1, 1]))))])
    graph = build_report(module, M1)
    tasks = build_report(lower_segments(module, "h13"), M1)
    for report in (graph, tasks):
        ane_ops = [r for r in report.ops if r.placement == "ane" and r.op in ("conv", "relu")]
        assert len(ane_ops) == 2 and all(r.predicted_s and r.predicted_s > 0 for r in ane_ops)
        assert report.predicted_latency_s > M1.perf.dispatch_floor_s.value
        assert report.to_json()["predicted_latency_s"] == report.predicted_latency_s
    assert tasks.predicted_latency_s == pytest.approx(graph.predicted_latency_s, rel=0.25)
