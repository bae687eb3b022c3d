"""`anec compile MODEL`: import, lower for a chip, write the artifact, summarize the placement."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from anec.compression import COMPRESSORS
from anec.errors import AnecError, first_line
from anec.targets import get_target

if TYPE_CHECKING:
    from rich.progress import TaskID

    from anec.report import OpRecord, Report
    from anec.targets import Target


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """`NAME=D0,D1,…` (NAME may itself contain '=' only before the last one)."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = [int(d) for d in dims.split(",")] if sep and name else None
    except ValueError:
        shape = None
    if not shape or any(d <= 0 for d in shape):
        raise AnecError(f"--input-shape {text!r} is not NAME=D0,D1,…", hint="e.g. --input-shape input_ids=1,128")
    return name, shape


def parse_freeze(text: str) -> tuple[str, Any]:
    """`NAME=VALUE`: a number, `true`/`false`, comma-separated numbers, or a .npy file."""
    name, sep, value = text.rpartition("=")
    if not sep or not name or not value:
        raise AnecError(f"--freeze {text!r} is not NAME=VALUE", hint="e.g. --freeze sample_rate=16000")
    if value.endswith(".npy"):
        try:
            return name, np.load(value, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AnecError(f"--freeze {text!r}: cannot read {value}", why=first_line(e, typed=False),
                            hint="give a .npy file (numpy.save)") from None
    words = {"true": True, "false": False}

    def number(word: str) -> int | float | bool:
        word = word.strip()
        if word.lower() in words:
            return words[word.lower()]
        try:
            return int(word)
        except ValueError:
            return float(word)

    try:
        numbers = [number(w) for w in value.split(",")]
    except ValueError:
        raise AnecError(f"--freeze {text!r}: {value!r} is not a number, a list of numbers or a .npy file",
                        hint="e.g. --freeze sample_rate=16000 or --freeze scales=1,2") from None
    return name, numbers[0] if len(numbers) == 1 else numbers


def parse_input_range(text: str) -> tuple[str, tuple[float, float]]:
    """`NAME=LO,HI`: the values an input takes, for the fp16 range analysis."""
    name, sep, bounds = text.rpartition("=")
    try:
        lo, hi = (float(b) for b in bounds.split(",")) if sep and name else (np.nan, np.nan)
    except ValueError:
        lo = hi = np.nan
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise AnecError(f"--input-range {text!r} is not NAME=LO,HI with finite LO <= HI", hint="e.g. --input-range pixel_values=0,1")
    return name, (lo, hi)


def load_example_inputs(path: str) -> dict[str, np.ndarray]:
    """`--example-inputs FILE.npz`: one array per model input, named as the model names it."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as e:
        raise AnecError(f"--example-inputs {path}: cannot read it", why=first_line(e, typed=False),
                        hint="give an .npz archive with one array per model input (numpy.savez(FILE, name=array, …))") from None


def add_model_options(p: argparse.ArgumentParser, every_chip: bool = False) -> None:
    """What to compile and for which chip: the options `anec compile` shares with `anec report`."""
    p.add_argument("model", help="an .onnx file or a torch.export.save .pt2 file")
    p.add_argument("--target", default="m1", help="chip (m1 … m5-max), architecture (h13 …)" + (
        " or 'all': compile for every chip, write one artifact per chip and print a per-chip comparison" if every_chip else "")
        + "; default m1")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,…", help="fix a dynamic input's shape (repeatable)")
    p.add_argument("--freeze", action="append", default=[], metavar="NAME=VALUE",
                   help="fix an input to a value (a number, comma-separated numbers or a .npy file), so the shapes and branches "
                   "that depend on it are decided at compile time (repeatable; ONNX models)")
    p.add_argument("--min-segment-ops", type=int, default=1, help="run ANE segments smaller than this on the CPU")
    p.add_argument("--calibrate", nargs="*", metavar="NAME=FILE.npy", help="calibrate the fp16 range lint on these sample inputs "
                   "(.npy files; with none, on seeded random inputs)")
    p.add_argument("--example-inputs", metavar="FILE.npz", help="sample inputs, one array per model input (numpy.savez): the fp16 "
                   "lint is calibrated on them and names the ops where fp16 error enters (the same as --calibrate NAME=FILE.npy …)")
    p.add_argument("--input-range", action="append", default=[], metavar="NAME=LO,HI",
                   help="the values an input takes, for the fp16 range analysis (repeatable; default: the dtype's range for "
                   "8-bit and bool inputs, the table's for indices, else [-1, 1])")
    p.add_argument("--keep-fp32", action="extend", nargs="+", default=[], metavar="NAME-OR-OP-TYPE",
                   help="run these ops on the CPU in float32 (the ANE has only fp16): an op name as the report shows it (or its "
                   "source node's name), or an op type: ane.softmax, onnx.TopK, or the ONNX type Softmax (repeatable)")
    p.add_argument("--precision", choices=("fp16", "auto"), default="fp16",
                   help="auto: keep in float32 the fewest ops, chosen by the fp16 error attribution, that bring every output within "
                   "--tolerance of float32 on the --calibrate inputs (seeded random ones without); the summary says what moved and "
                   "what it costs")
    p.add_argument("--tolerance", type=float, default=1e-2, metavar="REL_L2",
                   help="--precision auto: the relative L2 error each output may have against float32 (default 1e-2)")
    p.add_argument("--compress", choices=sorted(COMPRESSORS), help="store the weights of convolutions and matmuls (2048 values or "
                   "more) compressed: " + "; ".join(f"{k}: {v}" for k, v in COMPRESSORS.items()))
    p.add_argument("--compress-skip", nargs="+", default=[], metavar="NAME", help="ops (by name, as the report shows them) whose "
                   "weights --compress leaves alone")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `anec.pipeline.compile` from the options of `add_model_options`."""
    shapes = dict(parse_input_shape(s) for s in args.input_shape) or None
    if args.example_inputs and args.calibrate is not None:
        raise AnecError("--example-inputs and --calibrate both give sample inputs", hint="use one of them")
    samples = dict(load_sample(s) for s in args.calibrate) if args.calibrate else None
    if args.example_inputs:
        samples = load_example_inputs(args.example_inputs)
    calibrate = {"ane-fp16": {"calibrate": True}} if args.calibrate == [] else {}
    frozen = dict(parse_freeze(s) for s in args.freeze) or None
    ranges = dict(parse_input_range(s) for s in args.input_range) or None
    return {"input_shapes": shapes, "example_inputs": samples, "min_segment_ops": args.min_segment_ops, "pass_options": calibrate,
            "input_values": frozen, "input_ranges": ranges, "keep_fp32": args.keep_fp32, "precision": args.precision,
            "tolerance": args.tolerance, "compress": args.compress or "", "compress_skip": tuple(args.compress_skip)}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compile", parents=[common], help="compile an ONNX or torch.export model for the ANE",
                       description="Import MODEL (.onnx or .pt2), lower it for a chip, write the artifact and print where each op runs: "
                       "ops and FLOPs on the ANE, each CPU op with its reason, fp16 warnings and fixes, tiles, the predicted "
                       "latency and the files written. Progress goes to stderr when it is a terminal.")
    add_model_options(p, every_chip=True)
    p.add_argument("-o", "--output", help="where to write the artifact (default: next to MODEL); with --target all each chip's "
                   "artifact gets the chip's architecture before the suffix (model.h13.mlpackage, model.h14.mlpackage, …)")
    p.add_argument("--emit", default="coreml", help="coreml (.mlpackage), descriptors (.anec), mil-text (folder) or ir (.mlir); "
                   "an emitter not in this build is refused before compiling")
    p.add_argument("--deployment-target", default="ios17", metavar="OS",
                   help="for --emit coreml/mil-text: oldest OS to run on, ios16/17/18 or macos13/14/15 (default ios17)")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--stop-after", metavar="PASS", help="stop the pipeline after this pass")
    p.add_argument("--all-ops", action="store_true", help="list every ANE op in the placement table, not one row per segment")
    p.add_argument("--timings", action="store_true", help="print each stage's time and the peak memory after it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary; only errors")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anec.emit import EMITTERS
    from anec.mlpackage import deployment_target
    from anec.pipeline import PIPELINES, compile_targets, peak_memory_mb
    from anec.targets import resolve_targets

    if args.emit not in EMITTERS:  # say so before a long compile, not after it
        raise AnecError(f"--emit {args.emit} is not available in this build", why="its emitter has not landed yet",
                        hint=f"use --emit {' or --emit '.join(EMITTERS)}")
    deployment_target(args.deployment_target)  # a typo fails before the model is compiled
    chips = resolve_targets(args.target)
    stages = 1 + len(chips) * (len(PIPELINES[args.emit]) + 2)  # import; per chip: passes, report, emit
    with StageProgress(stages, enabled=not args.quiet) as progress:
        compiled = compile_targets(args.model, chips, emit=args.emit, deployment_target=args.deployment_target,
                                   print_ir_after_all=args.print_ir_after_all, stop_after=args.stop_after,
                                   progress=progress, **model_options(args))
        base = Path(args.output) if args.output else compiled[0].default_output(Path(args.model))
        written: list[Path] = []
        for model in compiled:
            progress(f"emit {args.emit}" if len(compiled) == 1 else f"{model.target.name}: emit {args.emit}")
            start = time.perf_counter()
            written += model.write(base if len(compiled) == 1 else with_chip(base, model.target.arch))
            model.report.stats.update(emit_seconds=time.perf_counter() - start, emit_peak_mb=peak_memory_mb())
    if args.quiet:
        return 0
    console = Console(highlight=False, markup=False, soft_wrap=True, width=max(Console().width, 120))
    if args.timings:
        for model in compiled:
            print_timings(model.report.stats, model.target.name, args.emit, console)
    if len(compiled) == 1:
        print_summary(compiled[0].report, f"{args.model} → {base}", compiled[0].target.name, all_ops=args.all_ops, console=console)
    else:
        console.print(f"{args.model} on every chip (--emit {args.emit}):")
        print_comparison([m.report for m in compiled], [m.target for m in compiled], console)
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0


def with_chip(path: Path, arch: str) -> Path:
    """`model.mlpackage` → `model.h13.mlpackage` (a suffix-less folder: `model` → `model.h13`)."""
    return path.with_name(f"{path.stem}.{arch}{path.suffix}")


class StageProgress:
    """A transient rich progress bar on stderr naming the stage running; silent when stderr is not a
    terminal (pipes, CI logs, tests) or when disabled."""

    def __init__(self, stages: int, *, enabled: bool = True, console: Console | None = None) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = console or Console(stderr=True)
        self.progress = (Progress(SpinnerColumn(), TextColumn("{task.description:<32}"), BarColumn(), TimeElapsedColumn(),
                                  console=console, transient=True)
                         if enabled and console.is_terminal else None)
        self.stages, self.started = stages, 0
        self.task: TaskID | None = None

    def __enter__(self) -> StageProgress:
        if self.progress:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=self.stages)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def __call__(self, stage: str) -> None:
        if self.progress and self.task is not None:
            self.progress.update(self.task, description=stage, completed=self.started)
        self.started += 1


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.3g} µs"


def print_summary(report: Report, title: str, chip: str, *, all_ops: bool = False, console: Console | None = None) -> None:
    """The placement table, then ops and FLOPs on the ANE, fp16 notes, tiles and the predicted latency."""
    console = console or Console(highlight=False, markup=False)
    print_placement(report, title, chip, all_ops=all_ops, console=console)
    ane = [r for r in report.ops if r.placement == "ane"]
    ane_flops, total_flops = sum(r.flops for r in ane), sum(r.flops for r in report.ops)
    console.print(f"on the ANE: {len(ane)} of {len(report.ops)} ops ({len(ane) / max(len(report.ops), 1):.1%}), "
                  f"{_si(ane_flops, 'FLOP')} of {_si(total_flops, 'FLOP')} ({report.ane_flops_fraction:.1%})")
    console.print(_tiles_line(report))
    host_s = sum(r.predicted_s or 0.0 for r in report.host_ops)
    dispatch_s = report.segments * get_target(report.target).perf.dispatch_floor_s.value
    ane_s = (report.predicted_latency_s or 0.0) - dispatch_s - host_s  # the ops overlap: less than their sum
    by_bound: dict[str, float] = {}
    for r in ane:
        by_bound[r.bound or "?"] = by_bound.get(r.bound or "?", 0.0) + (r.predicted_s or 0.0)
    bound = f"; ANE ops mostly {max(by_bound, key=lambda b: by_bound[b])}-bound" if by_bound else ""
    console.print(f"predicted latency on the {chip}: {_ms(report.predicted_latency_s)} "
                  f"(ANE {_ms(ane_s)}, {report.segments} dispatch(es) {_ms(dispatch_s)}, CPU {_ms(host_s)}){bound}")


def _tiles_line(report: Report) -> str:
    if not report.ran("ane-tile"):
        return "tiles: not tiled here; Core ML's compiler tiles on the device (--emit descriptors shows anec's tiling)"
    tiled = [r for r in report.ops if r.placement == "ane" and r.tiles > 1]
    if not tiled:
        return "tiles: every ANE op fits in one task"
    listed = ", ".join(f"{r.name} ×{r.tiles}" for r in tiled[:6]) + (", …" if len(tiled) > 6 else "")
    return f"tiles: {len(tiled)} op(s) split into {report.tiles} tiles: {listed}"


def print_comparison(reports: list[Report], chips: list[Target], console: Console) -> None:
    """`--target all`: one row per chip, then each CPU op with its reason and the chips it leaves."""
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for column in ("chip", "arch", "predicted latency", "ANE FLOPs", "ANE ops", "CPU ops", "segments", "tiles", "fp16 warnings"):
        table.add_column(column, justify="left" if column in ("chip", "arch") else "right")
    for report, chip in zip(reports, chips):
        tiled = report.ran("ane-tile")
        table.add_row(chip.name, chip.arch, _ms(report.predicted_latency_s), f"{report.ane_flops_fraction:.1%}",
                      str(len(report.ops) - len(report.host_ops)), str(len(report.host_ops)), str(report.segments),
                      str(report.tiles) if tiled else "—", str(len(report.fp16_warnings)))
    console.print(table)
    chips_by_host_op: dict[tuple[str, str, str], list[str]] = {}
    for report, chip in zip(reports, chips):
        for r in report.host_ops:
            chips_by_host_op.setdefault((r.name, r.op, r.reason), []).append(chip.name)
    for (name, op, reason), names in chips_by_host_op.items():
        where = "every chip" if len(names) == len(chips) else ", ".join(names)
        console.print(f"CPU on {where}: {name} ({op}): {reason}")
    for kind, notes in (("fixed", reports[0].fp16_fixes), ("warning", reports[0].fp16_warnings)):
        for note in notes:
            console.print(f"fp16 {kind} (on {chips[0].name}): {note}")


def print_placement(report: Report, title: str, chip: str, *, all_ops: bool = False, console: Console | None = None) -> None:
    """Where each op runs: one row per ANE segment (or per op with `all_ops`) and per CPU op, why."""
    console = console or Console(highlight=False, markup=False)
    ane_ops = len(report.ops) - len(report.host_ops)
    console.print(f"{title}: {ane_ops} of {len(report.ops)} ops on the ANE of the {chip} "
                  f"({report.ane_flops_fraction:.1%} of FLOPs) in {report.segments} segment(s), "
                  f"{len(report.host_ops)} on the CPU")
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for column in ("where", "op", "name", "why not the ANE"):
        table.add_column(column, overflow="fold")
    for group in _runs(report.ops, all_ops):
        first = group[0]
        if first.placement == "host":
            table.add_row("CPU", first.op, first.name, first.reason)
        elif len(group) == 1:
            table.add_row(f"ANE {first.segment}", first.op, first.name, "")
        else:
            kinds = Counter(r.op for r in group)
            summary = ", ".join(f"{op} ×{n}" for op, n in kinds.most_common(4)) + (", …" if len(kinds) > 4 else "")
            table.add_row(f"ANE {first.segment}", f"{len(group)} ops", summary, "")
    console.print(table)
    if report.weight_summary is not None:
        console.print(report.weight_summary)
    flagged = {f"{name}: {flag.note()}" for name, flag in report.fp16_flags}
    for kind, notes in (("fixed", report.fp16_fixes), ("warning", [w for w in report.fp16_warnings if w not in flagged])):
        for note in notes:
            console.print(f"fp16 {kind}: {note}")
    if isinstance(choice := report.stats.get("precision_auto"), dict):
        console.print(choice["summary"])
    print_fp16(report, console)


def print_fp16(report: Report, console: Console) -> None:
    """The fp16 section: the range analysis's flags, and where error enters on the sample inputs."""
    flags = report.fp16_flags
    if flags:
        verdicts = Counter(flag.verdict for _, flag in flags)
        console.print("fp16 range analysis: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items(), key=lambda vn: vn[0] != "proven")))
        table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
        for column in ("verdict", "kind", "bound", "limit", "op", "why"):
            table.add_column(column, overflow="fold", justify="right" if column in ("bound", "limit") else "left")
        for name, flag in flags:
            table.add_row(flag.verdict, flag.kind, f"{flag.bound:.3g}", f"{flag.limit:g}", name, flag.why)
        console.print(table)
    sources = report.fp16_error_sources
    if sources:
        console.print(f"fp16 on the sample inputs: error enters at {len(sources)} op(s), worst first: "
                      + ", ".join(f"{name} ({kind}, rel L2 {error:.2g})" for name, kind, error in sources[:5])
                      + (", …" if len(sources) > 5 else ""))


def load_sample(text: str) -> tuple[str, np.ndarray]:
    """`NAME=FILE.npy` → (name, array) for --calibrate."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise AnecError(f"--calibrate {text!r} is not NAME=FILE.npy", hint="e.g. --calibrate input_ids=ids.npy")
    try:
        return name, np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise AnecError(f"--calibrate {text!r}: cannot read {path}", why=first_line(e, typed=False), hint="give a .npy file (numpy.save)") from None


def _runs(ops: list[OpRecord], all_ops: bool) -> list[list[OpRecord]]:
    """Consecutive ops of one segment grouped (unless `all_ops`); each CPU op on its own."""
    runs: list[list[OpRecord]] = []
    for r in ops:
        if runs and not all_ops and r.placement == "ane" and runs[-1][0].placement == "ane" and runs[-1][0].segment == r.segment:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def timing_rows(stats: dict[str, Any], emit: str) -> list[tuple[str, float, float]]:
    """(stage, seconds, peak MiB after it) for import, each pass, the report and the emitter."""
    rows = [("import", stats.get("import_seconds", 0.0), stats.get("import_peak_mb", 0.0))]
    peaks = stats.get("pass_peak_mb", {})
    rows += [(name, seconds, peaks.get(name, 0.0)) for name, seconds in stats.get("pass_seconds", {}).items()]
    rows.append(("report", stats.get("report_seconds", 0.0), stats.get("report_peak_mb", 0.0)))
    if "emit_seconds" in stats:
        rows.append((f"emit {emit}", stats["emit_seconds"], stats.get("emit_peak_mb", 0.0)))
    return rows


def print_timings(stats: dict[str, Any], chip: str, emit: str, console: Console) -> None:
    rows = timing_rows(stats, emit)
    table = Table(title=f"compile time on the {chip}", box=box.SIMPLE, title_justify="left")
    for column in ("stage", "seconds", "peak MiB"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, seconds, peak in rows:
        table.add_row(name, f"{seconds:.2f}", f"{peak:.0f}")
    table.add_row("total", f"{sum(r[1] for r in rows):.2f}", f"{max(r[2] for r in rows):.0f}")
    console.print(table)
