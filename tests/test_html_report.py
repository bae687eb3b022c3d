"""The HTML report's pieces: the layered graph layout, figures, and the roofline's geometry."""

from __future__ import annotations

import re
from itertools import pairwise

import numpy as np
from onnx import TensorProto, helper

from anec.html_report import LAYER_PITCH, layout, render, roofline_svg, si
from anec.pipeline import compile as compile_model
from anec.report import OpRecord
from anec.targets import get_target
from tests import zoo


def ops(inputs: list[list[int]], placement: str = "ane") -> list[OpRecord]:
    return [OpRecord(f"op{i}", "add", placement, "", 1, 1, [1], inputs=ins) for i, ins in enumerate(inputs)]  # type: ignore[arg-type]


def test_layers_follow_the_edges_and_ops_wait_beside_their_first_consumer() -> None:
    # 0 → 1 → 2 → 4 and a side input 3 → 4: 3 is drawn just above 4, not at the top
    boxes = layout(ops([[], [0], [1], [], [2, 3]]))
    layer = [b.y // LAYER_PITCH for b in boxes]
    assert layer == [0, 1, 2, 2, 3]


def test_ops_of_one_layer_never_overlap() -> None:
    boxes = layout(ops([[], [0], [0], [0], [0], [1, 2, 3, 4]]))
    row = sorted((b for b in boxes if b.y == LAYER_PITCH), key=lambda b: b.x)
    assert len(row) == 4
    assert all(a.x + a.width <= b.x for a, b in pairwise(row))


def test_host_ops_carry_their_reason_in_the_label() -> None:
    record = OpRecord("t", "onnx.TopK", "host", "onnx.TopK has no ANE equivalent, so it runs on the CPU and more words here", 1, 1, [1])
    label = layout([record])[0].label
    assert label.startswith("onnx.TopK — onnx.TopK has no ANE equivalent") and label.endswith("…")


def test_si_prefixes() -> None:
    assert [si(0), si(1234), si(2.5e9, "FLOP/s"), si(85e9, "B/s"), si(3e-6, "s")] == ["0", "1.23 k", "2.5 GFLOP/s", "85 GB/s", "3 µs"]


def test_no_op_is_drawn_above_the_compute_roof() -> None:
    target = get_target("m1")
    report = compile_model(zoo.onnx_model("resnet-tiny", "legacy"), emit="descriptors").report
    svg = roofline_svg(report, target)
    roof = [float(y) for y in re.findall(r'points="[^"]*? [\d.]+,([\d.]+) [\d.]+,[\d.]+"', svg)]
    dots = [float(y) for y in re.findall(r'<circle class="pt" data-i="\d+" cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert len(dots) == sum(1 for r in report.ops if r.flops) and roof
    assert all(y >= roof[0] - 0.05 for y in dots)  # SVG y grows downwards: below the peak line


def test_the_fp16_section_lists_range_flags_and_shades_ops_where_error_enters() -> None:
    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("ReduceSum", ["sq"], ["y"], keepdims=1)], "m",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    samples = {"x": np.full((1, 64), 40.0, np.float32)}
    compiled = compile_model(onnx_model, emit="ir", input_ranges={"x": (30.0, 50.0)}, example_inputs=samples)
    page = render(compiled.report, compiled.target, title="m")
    flags = page.split('<table id="fp16-flags">')[1].split("</table>")[0]
    assert "<td>proven</td><td>overflow</td>" in flags and ">y</a>" in flags
    errors = page.split('<table id="fp16-errors">')[1].split("</table>")[0]
    assert ">y</a></td><td>overflow</td>" in errors
    shaded = re.findall(r'<tr id="op\d+" class="ane" data-i="\d+" style="--err:([\d.]+)" data-error="([^"]+)">', page)
    assert shaded and float(shaded[0][0]) == 1.0  # the overflow's error is inf: full shade
