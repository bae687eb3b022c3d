"""`anec report`: one self-contained HTML page with a row and a graph node per op, host ops with
their reasons, a roofline and every chip; it renders in headless Chromium (see tests/commands/chromium.py)."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from anec.cli import main
from anec.pipeline import compile as compile_model
from anec.report import Report
from anec.targets import TARGETS
from tests import zoo
from tests.commands import chromium
from tests.importers.onnx_models import F, model, random

TOPK_REASON = "top-k fails the M1's code generator (it passes only its validator)"


def small_model() -> onnx.ModelProto:
    """conv → TopK (CPU) → relu, and an add that reads both sides of the host op."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("TopK", ["c", "k"], ["v", "i"], name="topk", axis=3),
             helper.make_node("Relu", ["v"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "v"], ["y"], name="add")]
    return model(nodes, [("x", F, [1, 3, 8, 8])], ["y"], {"w": random((4, 3, 3, 3)), "k": np.array([2], np.int64)})


class Page(HTMLParser):
    """Collects what the tests look at, and checks that every element is closed in order."""

    VOID = {"meta", "input", "br", "img", "link", "hr", "path", "rect", "line", "circle", "polyline"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.rows: list[dict[str, object]] = []
        self.nodes: list[dict[str, str]] = []
        self.paths = self.points = 0
        self.chip_rows = 0
        self.srcs: list[str] = []
        self.ids: set[str] = set()
        self._cells: list[str] | None = None
        self._in_chips = False
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements {self.stack}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.ids.add(a.get("id", ""))
        self.srcs += [a[k] for k in ("src", "href") if k in a]
        if tag == "table" and a.get("id") == "chips":
            self._in_chips = True
        if tag == "tr" and a.get("id", "").startswith("op"):
            self._cells = []
            self.rows.append({"class": a.get("class", ""), "cells": self._cells})
        elif tag == "tr" and self._in_chips and self.stack[-1] == "tbody":
            self.chip_rows += 1
        if tag == "td" and self._cells is not None:
            self._cells.append("")
        if tag == "g" and a.get("class", "").startswith("node "):
            self.nodes.append({"class": a["class"], "title": ""})
        self.paths += tag == "path"
        self.points += tag == "circle" and a.get("class") == "pt"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag == "tr":
            self._cells = None
        if tag == "table":
            self._in_chips = False

    def handle_data(self, data: str) -> None:
        if not self.stack:  # white space around <html>
            return
        if self._cells is not None and self.stack[-1] == "td":
            self._cells[-1] += data
        if self.stack[-1] == "title" and self.nodes and len(self.stack) > 2 and self.stack[-2] == "g":
            self.nodes[-1]["title"] += data


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Report]:
    """(the model, its report page, the report the page should show) — compiled once."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "model.onnx"
    path.write_bytes(small_model().SerializeToString())
    out = folder / "out" / "model.html"
    assert main(["report", str(path), "-o", str(out), "--calibrate"]) == 0
    expected = compile_model(path, emit="descriptors", pass_options={"ane-fp16": {"calibrate": True}}).report
    return path, out, expected


def test_every_op_has_a_row_with_its_figures_and_host_ops_their_reason(small: tuple[Path, Path, Report]) -> None:
    _, out, expected = small
    page = Page(out.read_text())
    assert [r["cells"][1] for r in page.rows] == [r.name for r in expected.ops] == ["conv", "topk", "relu", "add"]
    by_name = {r["cells"][1]: r for r in page.rows}
    assert by_name["topk"]["class"] == "host" and TOPK_REASON in by_name["topk"]["cells"][-1]
    assert by_name["topk"]["cells"][3] == "CPU" and by_name["conv"]["cells"][3] == "ANE 0"
    conv = next(r for r in expected.ops if r.name == "conv")
    cells = by_name["conv"]["cells"]
    assert cells[2] == "conv" and cells[4] == "×".join(map(str, conv.shape))
    assert cells[5] == "13.8 k" and conv.flops == 2 * 4 * 8 * 8 * 3 * 9  # 2 × outputs × (Cin·3·3)
    assert cells[8] == f"{conv.predicted_s * 1e6:.2f}" and cells[9] == "1"
    assert float(cells[10]) == pytest.approx(conv.fp16_peak, rel=1e-2) and conv.fp16_peak > 0  # calibrated range


def test_the_graph_has_a_node_per_op_an_edge_per_input_and_marks_host_reasons(small: tuple[Path, Path, Report]) -> None:
    _, out, expected = small
    page = Page(out.read_text())
    assert len(page.nodes) == len(expected.ops)
    assert [n["class"].split()[1] for n in page.nodes] == [r.placement for r in expected.ops]
    assert TOPK_REASON in page.nodes[1]["title"]
    assert escape(TOPK_REASON[:40]) in out.read_text().split('id="graph-svg"')[1].split("</svg>")[0]  # drawn in the node, not only its tooltip
    # edges: topk reads conv; relu reads topk; add reads relu and topk
    assert [r.inputs for r in expected.ops] == [[], [0], [1], [1, 2]]
    assert page.paths == sum(len(r.inputs) for r in expected.ops) == 4


def test_roofline_plots_every_computing_ane_op_and_chips_lists_every_target(small: tuple[Path, Path, Report]) -> None:
    _, out, expected = small
    page = Page(out.read_text())
    assert {"graph-svg", "roofline-svg", "ops", "chips"} <= page.ids
    assert page.points == sum(1 for r in expected.ops if r.placement == "ane" and r.flops and r.predicted_s) == 3
    assert page.chip_rows == len(TARGETS)
    text = out.read_text()
    assert "peak 12 TFLOP/s; DRAM 85 GB/s" in text  # M1's roof from anec.targets


def test_the_page_is_self_contained(small: tuple[Path, Path, Report]) -> None:
    _, out, _ = small
    text = out.read_text()
    page = Page(text)
    assert page.srcs == []
    assert set(re.findall(r"https?://[^\s\"')]+", text)) == {"http://www.w3.org/2000/svg"}  # the SVG namespace, not a fetch
    assert "<style>" in text and "<script>" in text


@pytest.mark.parametrize("args, message", [
    (["missing.onnx"], "missing.onnx: no such file"),
    (["MODEL", "--target", "m9"], "unknown target 'm9'"),
    (["MODEL", "--input-shape", "x"], "--input-shape 'x' is not NAME=D0,D1,…"),
])
def test_bad_input_fails_with_one_line_and_exit_2_writing_nothing(small: tuple[Path, Path, Report], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    out = tmp_path / "r.html"
    argv = [str(small[0]) if a == "MODEL" else str(tmp_path / a) if a.endswith(".onnx") else a for a in args]
    assert main(["report", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_neither_page_nor_temporary_file(small: tuple[Path, Path, Report], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import anec.html_report

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(anec.html_report.os, "replace", broken)
    assert main(["report", str(small[0]), "-o", str(tmp_path / "r.html")]) == 1
    assert list(tmp_path.iterdir()) == []
    assert main(["report", str(small[0]), "-o", str(tmp_path)]) == 2  # a folder is refused
    assert "is a folder" in capsys.readouterr().err


def check_renders(page: Path, shot: Path, ops: int) -> str:
    """Chromium draws the page (a non-blank screenshot) and its script ran over every row; returns the DOM."""
    pixels = chromium.screenshot(page, shot)
    print(f"screenshot: {shot}")
    assert pixels.shape[:2] == (1000, 1400)
    colors = np.unique(pixels.reshape(-1, pixels.shape[2])[:, :3], axis=0)
    assert len(colors) > 50, f"the screenshot looks blank ({len(colors)} colors)"
    assert (np.abs(pixels[..., :3].astype(int) - [0x2a, 0x9d, 0x8f]).sum(axis=2) < 30).any(), "no ANE-colored node drawn"
    dom = chromium.dump_dom(page)
    assert 'data-ready="yes"' in dom, "the page's script did not finish"
    assert f"{ops} of {ops} ops shown" in dom
    assert len(re.findall(r'<tr id="op\d+"', dom)) == ops
    return dom


def test_the_page_renders_in_headless_chromium(small: tuple[Path, Path, Report], tmp_path: Path) -> None:
    _, out, expected = small
    dom = check_renders(out, tmp_path / "small.png", len(expected.ops))
    assert TOPK_REASON in dom


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert-base", "resnet50"])
def test_full_size_reports_render_in_headless_chromium(name: str, tmp_path: Path) -> None:
    path = zoo.onnx_model(name, "legacy")
    out = tmp_path / f"{name}.html"
    assert main(["report", str(path), "-o", str(out)]) == 0
    ops = len(Page(out.read_text()).rows)
    assert ops > 50
    check_renders(out, tmp_path / f"{name}.png", ops)
