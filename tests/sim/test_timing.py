"""The timing model: calibration against the published measurements, and the behaviour it must show."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from anec.calibration import (
    M1_MEASUREMENTS,
    M5_LATENCIES,
    conv1x1_chain,
    conv3x3,
    errors,
    fit,
    leave_one_group_out,
    m5_measurements,
    measurements,
    predict,
    vector_matmul,
)
from anec.dialects import ane
from anec.pipeline import descriptor_program, lower_segments
from anec.report import build_report
from anec.sim.builders import segment_module
from anec.sim.timing import Cost, op_seconds, pipelined_s, program_time
from anec.targets import DVFS, FITTED, get_target

M1 = get_target("m1")


def predicted(module, target=M1):
    return program_time(descriptor_program(module, target.arch).programs[0], target)


def _m5_points_from_the_data() -> list[tuple[float, float]]:
    """(measured, predicted) seconds of every M5 Pro point, read from the JSON file itself."""
    data = json.loads(M5_LATENCIES.read_text())["measurements"]
    by_name = {m.name: m for m in m5_measurements()}
    out = []
    for group, rows in data.items():
        for row in rows:
            m = by_name[f"{group} {row['label']}" if group == "matmul" else row["label"]]
            out.append((row["min_us"] * 1e-6, predict(m)))
    return out


def test_the_fitted_model_is_within_10_percent_in_median_on_the_m5_pro_latencies() -> None:
    points = _m5_points_from_the_data()
    assert len(points) == 27
    assert statistics.median(abs(p - m) / m for m, p in points) <= 0.10


def test_the_fitted_model_is_within_10_percent_in_median_on_the_m1_figures() -> None:
    rows = errors(M1_MEASUREMENTS)
    assert len(rows) == 6 and statistics.median(e for _, _, e in rows) <= 0.10


def test_a_group_left_out_of_the_fit_is_predicted_within_20_percent_in_median() -> None:
    pytest.importorskip("scipy")
    points = [m for m in measurements() if m.target == "m5-max"]
    logo = leave_one_group_out("h17s", points)
    assert {"matmul", "fused", "conv-spatial", "conv-kernel", "conv-stride"} <= set(logo)
    assert statistics.median(e for rows in logo.values() for _, _, e in rows) <= 0.20


def test_the_committed_parameters_are_what_the_fitter_finds() -> None:
    pytest.importorskip("scipy")
    points = [m for m in measurements() if get_target(m.target).arch == "h13"]
    refit = fit("h13", points)
    assert set(refit) == set(FITTED["h13"])
    for name, value in refit.items():
        assert value == pytest.approx(FITTED["h13"][name], rel=0.02), name


def test_fitted_parameters_say_what_they_were_fitted_to() -> None:
    for arch in FITTED:
        perf = get_target(arch).perf
        for name in FITTED[arch]:
            assert "fitted to" in getattr(perf, name).source and "timing_calibration.py" in getattr(perf, name).source
    m4 = get_target("m4").perf.ne_flops_per_s
    assert m4.kind == "predicted" and "h17s fit" in m4.source


def test_the_dvfs_figures_are_those_of_the_firmware_tables() -> None:
    tables = json.loads((M5_LATENCIES.parent / "chip-dvfs-tables.json").read_text())
    assert (M5_LATENCIES.parent / "LICENSE-ANEFORGE").exists()
    for arch, (cores, clock) in DVFS.items():
        table = tables[arch[0].upper() + arch[1:]]
        assert cores == table["cores_0x238"] and clock == max(e[1] for e in table["eff_map_0x7a8"])


def test_a_dma_bound_run_of_tasks_hides_the_per_task_overhead() -> None:
    streaming = [Cost(overhead_s=1e-6, compute_s=1e-6, weight_s=10e-6)] * 100
    assert pipelined_s(streaming) == pytest.approx(100 * 10e-6, rel=0.01)
    computing = [Cost(overhead_s=1e-6, compute_s=10e-6, weight_s=2e-6)] * 100
    assert pipelined_s(computing) == pytest.approx(100 * 11e-6, rel=1e-9)  # the loads hide behind compute
    alone = Cost(overhead_s=1e-6, compute_s=10e-6, weight_s=2e-6)
    assert pipelined_s([alone]) == alone.total_s == pytest.approx(11e-6)


@pytest.mark.parametrize("chip", ["m1", "m5-max"])
def test_a_program_of_n_small_tasks_costs_far_less_than_n_single_task_programs(chip: str) -> None:
    target = get_target(chip)

    def convs(n: int):
        def build(b, x):
            y = x[0]
            for i in range(n):
                y = b.add(ane.ReluOp(b.add(ane.ConvOp(y, b.const(np.zeros((32, 32, 3, 3)), f"w{i}"), pads=[1, 1, 1, 1]))))
            return [y]
        return segment_module([(1, 32, 8, 8)], build)

    one, chain = predicted(convs(1), target), predicted(convs(32), target)
    assert len(chain.tasks) >= 32
    assert chain.total_s < 0.25 * 32 * one.total_s  # the dispatch is paid once, not 32 times
    assert chain.total_s - chain.dispatch_s <= 32 * (one.total_s - one.dispatch_s) * 1.01


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
    # within 10%: the first task's input load is exposed before the pipeline fills
    assert rate(below) / rate(above) == pytest.approx(M1.perf.cliff_slowdown.value, rel=0.1)


def test_faster_chips_predict_less_time() -> None:
    module = conv3x3(128, 56)
    assert predicted(module, get_target("m5-max")).total_s < predicted(module, get_target("m4")).total_s < predicted(module).total_s


def test_graph_level_estimate_agrees_with_the_task_level_one() -> None:
    module = conv3x3(64, 56)
    conv = next(op for op in module.walk() if isinstance(op, ane.ConvOp))
    tasks = sum(t.cost.total_s for t in predicted(module).tasks)  # its kernel-memory tiles
    assert op_seconds(conv, M1) == pytest.approx(tasks, rel=0.3)


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


def test_the_report_latency_is_the_program_model_not_a_sum_of_ops() -> None:
    m5 = get_target("m5-max")
    module = segment_module([(1, 256, 16, 16)], lambda b, x: [b.add(ane.ReluOp(b.add(ane.ConvOp(
        b.add(ane.ConvOp(x[0], b.random((256, 256, 3, 3), 0.01), pads=[1, 1, 1, 1])), b.random((256, 256, 1, 1), 0.01)))))])
    tasks = build_report(lower_segments(module, m5.arch), m5)
    programs = descriptor_program(module, m5.arch).programs
    assert tasks.predicted_latency_s == pytest.approx(sum(program_time(p, m5).total_s for p in programs))
    summed = sum(r.predicted_s or 0.0 for r in tasks.ops) + tasks.segments * m5.perf.dispatch_floor_s.value
    assert tasks.predicted_latency_s < summed  # weight streams hide behind the previous task's compute
    graph = build_report(module, m5)
    assert graph.predicted_latency_s == pytest.approx(tasks.predicted_latency_s, rel=0.25)


def test_each_cost_names_the_term_that_bounds_it() -> None:
    assert Cost(1e-6, 10e-6, weight_s=2e-6).bound == "compute"
    assert Cost(1e-6, 1e-6, weight_s=20e-6, activation_s=2e-6).bound == "weights"
    assert Cost(1e-6, 1e-6, weight_s=2e-6, activation_s=20e-6).bound == "activations"
    assert Cost(5e-6, 1e-6).bound == "overhead"
    assert Cost(0.0, 10e-6, engine="pe").bound == "activations"  # the planar engine moves bytes
    assert Cost(0.0, 10e-6, activation_s=1e-6, cliff=True).bound == "l2-cliff"
    small = predicted(segment_module([(1, 1, 1, 64)], lambda b, x: [b.add(ane.ReluOp(x[0]))]))
    assert small.bound == "dispatch"
    streamed = predicted(vector_matmul(4096), get_target("m5-max"))  # 32 MB of weights: 3x the floor
    assert streamed.bound == "weights" and {t.cost.bound for t in streamed.tasks} == {"weights"}


def test_the_report_names_what_bounds_each_ane_op() -> None:
    report = build_report(lower_segments(vector_matmul(2048), "h17s"), get_target("m5-max"))
    conv = next(r for r in report.ops if r.op == "conv")
    assert conv.tiles > 1 and conv.bound == "weights"
    assert report.to_json()["ops"][report.ops.index(conv)]["bound"] == "weights"


def _selection(k: int):
    def build(b, x):
        op = ane.TopkOp(x[0], k, 1)
        b.block.add_op(op)
        return list(op.results)
    return segment_module([(256, 2048)], build)


def test_a_top_k_streams_its_source_once_per_compare_pass() -> None:
    """ceil(log2(k + 1)) passes at the planar rate (an assumption: no ANE top-k timing is published):
    k = 1 streams like a reduce_max of the same rows, a sort of 2048 takes 12 passes."""
    m4 = get_target("m4")
    reduce_max = predicted(segment_module([(256, 2048)], lambda b, x: [b.add(ane.ReduceMaxOp(x[0], [1]))]), m4).tasks[0]
    (one,) = [t for t in predicted(_selection(1), m4).tasks if t.kind == "topk.largest"]
    (sort,) = [t for t in predicted(_selection(2048), m4).tasks if t.kind == "topk.largest"]
    assert (one.work.passes, sort.work.passes) == (1, 12)
    assert one.cost.compute_s == pytest.approx(reduce_max.cost.compute_s, rel=0.05)
    assert sort.cost.compute_s > 10 * one.cost.compute_s
    topk = next(op for op in _selection(2048).walk() if isinstance(op, ane.TopkOp))
    assert op_seconds(topk, m4) == pytest.approx(sort.cost.total_s, rel=0.3)
