"""The HTML report: one self-contained page (inline CSS, JS and SVG; nothing fetched) that shows a
compiled model's graph colored by placement, a per-op table, a roofline plot and a per-chip comparison.

Everything on the page comes from `anec.report.Report` records and `anec.targets`; this module only
lays it out. The graph uses a simple layered layout (layer = longest path from an input, nodes
ordered by their inputs' positions) drawn top to bottom, so a 1000-op model is a tall, scrollable
picture rather than an unreadable square.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template

from anec.errors import AnecError
from anec.report import OpRecord, Report
from anec.targets import Target

NODE_HEIGHT = 24
LAYER_PITCH = 46
NODE_GAP = 14
CHAR_WIDTH = 6.6
"""Width of one character of the 11px monospace node labels, for sizing boxes without a browser."""
REASON_CHARS = 60


@dataclass(frozen=True)
class ChipRun:
    """One chip of the comparison: its report from the same model and options."""

    target: Target
    report: Report


# ------------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------------


def si(value: float, unit: str = "") -> str:
    """1234567 → '1.23 M' (+unit): short figures for tables and axes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}".strip()
    exponent = min(max(math.floor(math.log10(abs(value)) / 3), -4), 4)
    prefix = {-4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T"}[exponent]
    return f"{value / 1000 ** exponent:.3g} {prefix}{unit}".strip()


def intensity(record: OpRecord) -> float | None:
    """FLOP per byte moved; None when the op computes or moves nothing."""
    return record.flops / record.traffic_bytes if record.flops and record.traffic_bytes else None


def achieved(record: OpRecord) -> float | None:
    """FLOP/s the predicted time implies."""
    return record.flops / record.predicted_s if record.flops and record.predicted_s else None


def where(record: OpRecord) -> str:
    return "CPU" if record.placement == "host" else f"ANE {record.segment}"


# ------------------------------------------------------------------------------------------------
# Graph
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    label: str


def node_label(record: OpRecord) -> str:
    label = record.op + (f" ×{record.tiles}" if record.tiles > 1 else "")
    if record.placement == "host":
        reason = record.reason if len(record.reason) <= REASON_CHARS else record.reason[:REASON_CHARS - 1] + "…"
        label += f" — {reason}"
    return label


def layout(ops: Sequence[OpRecord]) -> list[Box]:
    """A box per op: layer = longest path from an input, then each op moved down to just above its
    first consumer (so a mask computed from an input sits beside the attention that uses it, not
    at the top); within a layer, ops sit below the mean position of their inputs, packed left to
    right without overlap."""
    layer: list[int] = []
    consumers: list[list[int]] = [[] for _ in ops]
    for i, r in enumerate(ops):
        layer.append(1 + max((layer[j] for j in r.inputs if j < i), default=-1))
        for j in r.inputs:
            if j < i:
                consumers[j].append(i)
    for i in reversed(range(len(ops))):
        if consumers[i]:
            layer[i] = min(layer[c] for c in consumers[i]) - 1
    by_layer: dict[int, list[int]] = {}
    for i, n in enumerate(layer):
        by_layer.setdefault(n, []).append(i)
    centers: dict[int, float] = {}
    boxes: dict[int, Box] = {}
    for n in sorted(by_layer):
        def wanted(i: int) -> float:
            xs = [centers[j] for j in ops[i].inputs if j in centers]
            return sum(xs) / len(xs) if xs else 0.0
        cursor = 0.0
        for i in sorted(by_layer[n], key=lambda i: (wanted(i), i)):
            label = node_label(ops[i])
            width = len(label) * CHAR_WIDTH + 16
            x = max(cursor, wanted(i) - width / 2)
            boxes[i] = Box(x, n * LAYER_PITCH, width, label)
            centers[i] = x + width / 2
            cursor = x + width + NODE_GAP
    return [boxes[i] for i in range(len(ops))]


def graph_svg(ops: Sequence[OpRecord]) -> str:
    boxes = layout(ops)
    width = max((b.x + b.width for b in boxes), default=0) + 2 * NODE_GAP
    height = max((b.y for b in boxes), default=0) + NODE_HEIGHT + 2 * NODE_GAP
    edges, nodes = [], []
    for i, (r, b) in enumerate(zip(ops, boxes)):
        for j in r.inputs:
            a = boxes[j]
            x1, y1, x2, y2 = a.x + a.width / 2, a.y + NODE_HEIGHT, b.x + b.width / 2, b.y
            bend = (y2 - y1) / 2
            edges.append(f'<path d="M{x1:.1f} {y1:.1f} C{x1:.1f} {y1 + bend:.1f} {x2:.1f} {y2 - bend:.1f} {x2:.1f} {y2:.1f}"/>')
        tip = "\n".join(filter(None, [r.name, f"{r.op} {'×'.join(map(str, r.shape))}", where(r), r.reason, *r.fp16_warnings]))
        nodes.append(f'<g class="node {r.placement}" id="n{i}" data-i="{i}"><title>{escape(tip)}</title>'
                     f'<rect x="{b.x:.1f}" y="{b.y}" width="{b.width:.1f}" height="{NODE_HEIGHT}" rx="4"/>'
                     f'<text x="{b.x + 8:.1f}" y="{b.y + 16}">{escape(b.label)}</text></g>')
    return (f'<svg id="graph-svg" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="{-NODE_GAP} {-NODE_GAP} {width:.0f} {height:.0f}">'
            f'<g class="edges">{"".join(edges)}</g><g class="nodes">{"".join(nodes)}</g></svg>')


# ------------------------------------------------------------------------------------------------
# Per-op table
# ------------------------------------------------------------------------------------------------


def _cell(text: str, sort_value: float | str | None = None, cls: str = "") -> str:
    value = "" if sort_value is None else f' data-v="{escape(str(sort_value))}"'
    return f'<td{value}{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{escape(text)}</td>'


def fp16_range(record: OpRecord, target: Target) -> tuple[str, str]:
    """(text, css class) of the calibrated output range, flagged past fp16's or the MAC port's limit."""
    if record.fp16_peak is None:
        return "—", ""
    limit = target.numerics.fp16_max.value
    return f"{record.fp16_peak:.3g}", "bad" if record.fp16_peak > limit or record.fp16_warnings else ""


def op_rows(report: Report, target: Target) -> str:
    rows = []
    for i, r in enumerate(report.ops):
        notes = [r.reason] if r.placement == "host" else []
        notes += [f"fp16 warning: {w}" for w in r.fp16_warnings] + [f"fp16 fix: {f}" for f in r.fp16_fixes]
        if r.weight_form:
            notes.append(f"weights {si(r.stored_weight_bytes, 'B')} stored of {si(r.weight_bytes, 'B')} in fp16: {r.weight_form}")
        peak_text, peak_class = fp16_range(r, target)
        seconds = r.predicted_s or 0.0
        rows.append(
            f'<tr id="op{i}" class="{r.placement}" data-i="{i}"{error_style(r)}>' + "".join([
                _cell(str(i), i), _cell(r.name), _cell(r.op), _cell(where(r), -1 if r.segment is None else r.segment),
                _cell("×".join(map(str, r.shape)), math.prod(r.shape) if r.shape else 0),
                _cell(si(r.flops), r.flops), _cell(si(r.bytes, "B"), r.bytes), _cell(si(r.traffic_bytes, "B"), r.traffic_bytes),
                _cell(f"{seconds * 1e6:.2f}", seconds), _cell(str(r.tiles), r.tiles),
                _cell(peak_text, -1 if r.fp16_peak is None else r.fp16_peak, peak_class),
                _cell("; ".join(notes), cls="notes"),
            ]) + "</tr>")
    return "\n".join(rows)


def error_style(record: OpRecord) -> str:
    """A red shade on the row of an op where fp16 error enters on the sample inputs: from faint at the
    agreement bar (rel L2 1e-2) to full at 1 and beyond."""
    if record.fp16_error is None:
        return ""
    error = record.fp16_error[1]
    strength = 1.0 if not math.isfinite(error) else min(1.0, max(0.15, (math.log10(max(error, 1e-2)) + 2) / 2))
    return f' style="--err:{strength:.2f}" data-error="{error:.3g}"'


def fp16_section(report: Report) -> str:
    """The range analysis's flags and, with samples, where error enters: tables, or a sentence when empty."""
    index = {r.name: i for i, r in enumerate(report.ops)}

    def op_link(name: str) -> str:
        return f'<a href="#op{index[name]}">{escape(name)}</a>' if name in index else escape(name)

    parts = []
    flags = report.fp16_flags
    if flags:
        rows = "".join(f'<tr class="{escape(f.verdict)}"><td>{escape(f.verdict)}</td><td>{escape(f.kind)}</td><td>{f.bound:.3g}</td>'
                       f'<td>{f.limit:g}</td><td>{op_link(name)}</td><td>{escape(f.why)}</td></tr>' for name, f in flags)
        parts.append('<table id="fp16-flags"><thead><tr><th>verdict</th><th>kind</th><th>bound</th><th>limit</th><th>op</th>'
                     f'<th>why</th></tr></thead><tbody>{rows}</tbody></table>')
    else:
        parts.append('<p class="note">The range analysis found no value that can pass fp16\'s limits.</p>')
    outputs, sources = report.fp16_output_errors, report.fp16_error_sources
    if outputs or sources:
        parts.append("<h3>On the sample inputs</h3>" + "".join(f"<p>{escape(o)}</p>" for o in outputs))
        rows = "".join(f"<tr><td>{op_link(name)}</td><td>{escape(kind)}</td><td>{error:.3g}</td></tr>" for name, kind, error in sources)
        parts.append('<table id="fp16-errors"><thead><tr><th>op where error enters</th><th>kind</th><th>rel L2 vs float32</th></tr>'
                     f"</thead><tbody>{rows}</tbody></table>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# Roofline
# ------------------------------------------------------------------------------------------------

PLOT_W, PLOT_H, MARGIN_L, MARGIN_B, MARGIN_T, MARGIN_R = 720, 420, 70, 46, 16, 20


def _decades(values: Sequence[float]) -> tuple[int, int]:
    return math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))


def roofline_svg(report: Report, target: Target) -> str:
    """Achieved FLOP/s against FLOP/byte for every ANE op, under the roof min(peak, bandwidth × x)."""
    peak, bandwidth = target.perf.peak_fp16_flops.value, target.perf.dram_bytes_per_s.value
    points = [(i, x, y) for i, r in enumerate(report.ops)
              if r.placement == "ane" and (x := intensity(r)) is not None and (y := achieved(r)) is not None]
    xs = [x for _, x, _ in points] + [peak / bandwidth]
    ys = [y for _, _, y in points] + [peak]
    (x0, x1), (y0, y1) = _decades(xs), _decades(ys)
    x1, y0 = max(x1, x0 + 1), min(y0, y1 - 1)
    inner_w, inner_h = PLOT_W - MARGIN_L - MARGIN_R, PLOT_H - MARGIN_T - MARGIN_B

    def px(x: float) -> float:
        return MARGIN_L + (math.log10(x) - x0) / (x1 - x0) * inner_w

    def py(y: float) -> float:
        return MARGIN_T + (y1 - math.log10(y)) / (y1 - y0) * inner_h

    grid = []
    for k in range(x0, x1 + 1):
        grid.append(f'<line class="grid" x1="{px(10.0 ** k):.1f}" y1="{MARGIN_T}" x2="{px(10.0 ** k):.1f}" y2="{MARGIN_T + inner_h}"/>'
                    f'<text class="tick" x="{px(10.0 ** k):.1f}" y="{MARGIN_T + inner_h + 16}" text-anchor="middle">{escape(si(10.0 ** k))}</text>')
    for k in range(y0, y1 + 1):
        grid.append(f'<line class="grid" x1="{MARGIN_L}" y1="{py(10.0 ** k):.1f}" x2="{MARGIN_L + inner_w}" y2="{py(10.0 ** k):.1f}"/>'
                    f'<text class="tick" x="{MARGIN_L - 6}" y="{py(10.0 ** k) + 4:.1f}" text-anchor="end">{escape(si(10.0 ** k))}</text>')
    ridge = peak / bandwidth
    lo = 10.0 ** x0
    roof = (f'<polyline class="roof" points="{px(lo):.1f},{py(max(bandwidth * lo, 10.0 ** y0)):.1f} {px(ridge):.1f},{py(peak):.1f} '
            f'{px(10.0 ** x1):.1f},{py(peak):.1f}"/>'
            f'<text class="roof-label" x="{px(10.0 ** x1) - 4:.1f}" y="{py(peak) - 6:.1f}" text-anchor="end">'
            f'peak {escape(si(peak, "FLOP/s"))}; DRAM {escape(si(bandwidth, "B/s"))}</text>')
    dots = []
    for i, x, y in points:
        r = report.ops[i]
        tip = f"{r.name} ({r.op}): {x:.3g} FLOP/B, {si(y, 'FLOP/s')}"
        dots.append(f'<circle class="pt" data-i="{i}" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5"><title>{escape(tip)}</title></circle>')
    axes = (f'<text class="axis" x="{MARGIN_L + inner_w / 2:.0f}" y="{PLOT_H - 6}" text-anchor="middle">arithmetic intensity (FLOP/byte)</text>'
            f'<text class="axis" transform="translate(14 {MARGIN_T + inner_h / 2:.0f}) rotate(-90)" text-anchor="middle">achieved FLOP/s</text>')
    return (f'<svg id="roofline-svg" xmlns="http://www.w3.org/2000/svg" width="{PLOT_W}" height="{PLOT_H}" viewBox="0 0 {PLOT_W} {PLOT_H}">'
            f'{"".join(grid)}{roof}{"".join(dots)}{axes}</svg>')


# ------------------------------------------------------------------------------------------------
# Chips
# ------------------------------------------------------------------------------------------------


def chip_rows(chips: Sequence[ChipRun], selected: Target) -> str:
    slowest = max((c.report.predicted_latency_s or 0.0 for c in chips), default=0.0) or 1.0
    rows = []
    for c in chips:
        r, latency = c.report, c.report.predicted_latency_s or 0.0
        bar = f'<div class="bar" style="width:{100 * latency / slowest:.1f}%"></div>'
        rows.append(f'<tr class="{"selected" if c.target.arch == selected.arch else ""}">'
                    f'{_cell(c.target.name)}{_cell(c.target.arch)}{_cell(f"{len(r.ops) - len(r.host_ops)} / {len(r.ops)}")}'
                    f'{_cell(str(len(r.host_ops)))}{_cell(str(r.segments))}{_cell(f"{r.ane_flops_fraction:.1%}")}'
                    f'{_cell(f"{latency * 1e3:.3f}")}<td class="barcell">{bar}</td></tr>')
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------
# Page
# ------------------------------------------------------------------------------------------------

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>anec report: $title</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 24px 40px; color: #1d2327; }
h1 { font-size: 20px; margin: 18px 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.summary { color: #444; } .summary b { color: #1d2327; }
.legend span { display: inline-block; padding: 1px 8px; border-radius: 4px; margin-right: 8px; color: #fff; }
.legend .ane, .node.ane rect { background: #2a9d8f; fill: #2a9d8f; }
.legend .host, .node.host rect { background: #d1495b; fill: #d1495b; }
#graph { max-height: 70vh; overflow: auto; border: 1px solid #ccd; background: #fbfcfd; }
#graph .edges path { fill: none; stroke: #8a94a6; stroke-opacity: .55; stroke-width: 1.2; }
.node { cursor: pointer; } .node text { font: 11px monospace; fill: #fff; pointer-events: none; }
.node.selected rect { stroke: #111; stroke-width: 3; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e6ea; text-align: left; vertical-align: top; }
th { position: sticky; top: 0; background: #eef1f4; cursor: pointer; user-select: none; }
#ops-wrap { max-height: 70vh; overflow: auto; border: 1px solid #ccd; }
#ops td:nth-child(n+6):nth-child(-n+11) { text-align: right; font-variant-numeric: tabular-nums; }
tr.host td { background: #fdecee; } tr[data-error] td { background: rgba(208, 73, 91, var(--err)); } tr.selected td { background: #fff3bf; }
#fp16-flags tr.proven td:first-child { color: #b00020; font-weight: 600; }
td.notes { max-width: 520px; } td.bad { color: #b00020; font-weight: 600; }
.controls { margin: 6px 0; } .controls input[type=text] { width: 260px; }
#roofline-svg .grid { stroke: #e3e6ea; } #roofline-svg .tick { font-size: 10px; fill: #555; }
#roofline-svg .roof { fill: none; stroke: #1d2327; stroke-width: 2; } #roofline-svg .roof-label { font-size: 11px; }
#roofline-svg .axis { font-size: 12px; } #roofline-svg .pt { fill: #2a9d8f; fill-opacity: .75; stroke: #1b5e57; }
#roofline-svg .pt.selected { fill: #ffbf00; r: 6; }
#chips tr.selected td { font-weight: 600; } #chips .barcell { width: 240px; }
#chips .bar { height: 12px; background: #577590; border-radius: 2px; }
.note { color: #666; font-size: 12px; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="summary">$summary</p>
<p class="legend"><span class="ane">ANE</span><span class="host">CPU (host)</span> click an op in the graph to find its row</p>

<h2>Graph</h2>
<div id="graph">$graph</div>

<h2>Ops</h2>
<div class="controls"><input type="text" id="filter" placeholder="filter by name, op, reason…">
<label><input type="checkbox" id="cpu-only"> CPU ops only</label> <span id="shown"></span></div>
<div id="ops-wrap"><table id="ops">
<thead><tr><th>#</th><th>name</th><th>op</th><th>where</th><th>shape</th><th>FLOPs</th><th>out bytes</th><th>traffic</th>
<th>predicted µs</th><th>tiles</th><th>fp16 max |x|</th><th>notes (why not the ANE; fp16)</th></tr></thead>
<tbody>
$rows
</tbody></table></div>
<p class="note">$fp16_note</p>

<h2>fp16</h2>
$fp16_section
<p class="note">Range analysis: every tensor bounded from the input ranges and the weights, without samples. <i>proven</i>: every
input in range, or a witness input drawn from the ranges, reaches the limit; <i>possible</i>: the bound passes it by at most 4×
and the witnesses came within 4× of it (see docs/troubleshooting.md, fp16).
Rows of the op table are shaded by the fp16 error that enters at the op on the sample inputs (--example-inputs).</p>

<h2>Roofline on the $chip</h2>
$roofline
<p class="note">$roofline_note</p>

<h2>Chips</h2>
<table id="chips">
<thead><tr><th>chip</th><th>arch</th><th>ANE ops</th><th>CPU ops</th><th>segments</th><th>FLOPs on ANE</th><th>predicted ms</th><th></th></tr></thead>
<tbody>
$chips
</tbody></table>
<p class="note">Each chip compiles the same model through the graph passes (before tiling); the latency is the timing
model's per-op prediction plus one dispatch floor per segment. The figure above the graph for the $chip comes from its
tiled task descriptors.</p>

<script>
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('#ops tbody tr'));
  var filter = document.getElementById('filter'), cpuOnly = document.getElementById('cpu-only');
  var shown = document.getElementById('shown');
  function apply() {
    var q = filter.value.toLowerCase(), n = 0;
    rows.forEach(function (r) {
      var ok = (!cpuOnly.checked || r.classList.contains('host')) && r.textContent.toLowerCase().indexOf(q) >= 0;
      r.hidden = !ok;
      if (ok) { n++; }
    });
    shown.textContent = n + ' of ' + rows.length + ' ops shown';
  }
  filter.addEventListener('input', apply);
  cpuOnly.addEventListener('change', apply);
  var direction = {};
  document.querySelectorAll('#ops th').forEach(function (th) {
    th.addEventListener('click', function () {
      var k = th.cellIndex, up = direction[k] = !direction[k], body = rows[0] && rows[0].parentNode;
      function key(r) { var c = r.cells[k], v = c.getAttribute('data-v'); return v === null ? c.textContent : parseFloat(v); }
      rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  function select(i, from) {
    document.querySelectorAll('.selected').forEach(function (e) { if (!e.closest('#chips')) { e.classList.remove('selected'); } });
    var row = document.getElementById('op' + i), node = document.getElementById('n' + i);
    var pt = document.querySelector('#roofline-svg .pt[data-i="' + i + '"]');
    [row, node, pt].forEach(function (e) { if (e) { e.classList.add('selected'); } });
    var target = from === 'row' ? node : row;
    if (target) { target.scrollIntoView({block: 'center', inline: 'center'}); }
  }
  document.querySelectorAll('#graph .node, #roofline-svg .pt').forEach(function (g) {
    g.addEventListener('click', function () { select(g.getAttribute('data-i'), 'graph'); });
  });
  rows.forEach(function (r) { r.addEventListener('click', function () { select(r.getAttribute('data-i'), 'row'); }); });
  apply();
  document.body.setAttribute('data-ready', 'yes');
})();
</script>
</body>
</html>
""")


def render(report: Report, target: Target, *, title: str, chips: Sequence[ChipRun] = ()) -> str:
    """The whole page as one string."""
    ane_ops = len(report.ops) - len(report.host_ops)
    latency = report.predicted_latency_s or 0.0
    summary = (f"<b>{ane_ops}</b> of {len(report.ops)} ops on the ANE of the <b>{escape(target.name)}</b> "
               f"({report.ane_flops_fraction:.1%} of FLOPs) in {report.segments} segment(s); "
               f"<b>{len(report.host_ops)}</b> on the CPU; {report.tiles} tiles; "
               f"predicted latency <b>{latency * 1e3:.3f} ms</b>; "
               f"{len(report.fp16_warnings)} fp16 warning(s), {len(report.fp16_fixes)} fix(es)"
               + (f"; {escape(report.weight_summary)}" if report.weight_summary else ""))
    calibrated = any(r.fp16_peak is not None for r in report.ops)
    fp16_note = ("fp16 max |x|: the largest output magnitude on the calibration inputs (fp16 holds "
                 f"{target.numerics.fp16_max.value:g}; the MAC port saturates at {target.numerics.mac_saturation.value:g})."
                 if calibrated else "fp16 max |x| is measured when calibrating: rerun with --calibrate (seeded random inputs) "
                 "or --calibrate NAME=FILE.npy.")
    plotted = sum(1 for r in report.ops if r.placement == "ane" and intensity(r) is not None and achieved(r) is not None)
    roofline_note = (f"{plotted} ANE ops plotted (ops that compute nothing, and CPU ops, are not). x: FLOPs over bytes read, "
                     "written and streamed as weights; y: FLOPs over the predicted time. The roof is min(peak FP16 FLOP/s, "
                     "DRAM bandwidth × x) from anec.targets. The bytes are all the engine moves, on-chip (L2) traffic included, so an "
                     "op whose tensors stay on chip can sit above the DRAM slope.")
    return PAGE.substitute(
        title=escape(title), summary=summary, graph=graph_svg(report.ops), rows=op_rows(report, target),
        fp16_note=escape(fp16_note), fp16_section=fp16_section(report), chip=escape(target.name), roofline=roofline_svg(report, target),
        roofline_note=escape(roofline_note), chips=chip_rows(chips, target),
    )


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder, so a failure leaves no half page."""
    if path.is_dir():
        raise AnecError(f"{path} is a folder", hint="give -o a file name such as report.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".anec-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a report is for sharing
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
