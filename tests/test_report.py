"""The placement report's graph edges: read off SSA values at graph level, and off the buffers the
tasks read and write once lowered to descriptors; both give the same graph."""

from __future__ import annotations

from anec.pipeline import compile as compile_model
from anec.report import Report
from tests import zoo


def edges(report: Report) -> set[tuple[str, str]]:
    return {(report.ops[j].name, op.name) for op in report.ops for j in op.inputs}


def test_edges_through_task_buffers_match_the_graph_level_edges() -> None:
    path = zoo.onnx_model("resnet-tiny", "legacy")
    graph = compile_model(path, emit="ir").report
    lowered = compile_model(path, emit="descriptors").report
    assert [r.name for r in lowered.ops] == [r.name for r in graph.ops]
    assert edges(lowered) == edges(graph)
    assert len(edges(graph)) == len(graph.ops) - 1 + 2  # a chain plus the two residual branches joining adds
    assert all(j < i for i, r in enumerate(lowered.ops) for j in r.inputs)  # producers come first


def test_traffic_counts_weights_and_inputs_beyond_the_output() -> None:
    report = compile_model(zoo.onnx_model("resnet-tiny", "legacy"), emit="descriptors").report
    conv = next(r for r in report.ops if r.op == "conv")
    assert conv.traffic_bytes > conv.bytes > 0
    assert all(r.fp16_peak is None for r in report.ops)  # not calibrated
