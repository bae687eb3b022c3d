"""`anec compile MODEL`: import, lower for a chip, write the artifact, summarize the placement."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from anec.errors import AnecError

if TYPE_CHECKING:
    from anec.report import OpRecord, Report


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


def add_model_options(p: argparse.ArgumentParser) -> None:
    """What to compile and for which chip: the options `anec compile` shares with `anec report`."""
    p.add_argument("model", help="an .onnx file or a torch.export.save .pt2 file")
    p.add_argument("--target", default="m1", help="chip (m1 … m5-max) or architecture (h13 …); default m1")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,…", help="fix a dynamic input's shape (repeatable)")
    p.add_argument("--min-segment-ops", type=int, default=1, help="run ANE segments smaller than this on the CPU")
    p.add_argument("--calibrate", nargs="*", metavar="NAME=FILE.npy", help="calibrate the fp16 range lint on these sample inputs "
                   "(.npy files; with none, on seeded random inputs)")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `anec.pipeline.compile` from the options of `add_model_options`."""
    shapes = dict(parse_input_shape(s) for s in args.input_shape) or None
    samples = dict(load_sample(s) for s in args.calibrate) if args.calibrate else None
    calibrate = {"ane-fp16": {"calibrate": True}} if args.calibrate == [] else {}
    return {"input_shapes": shapes, "example_inputs": samples, "min_segment_ops": args.min_segment_ops, "pass_options": calibrate}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compile", parents=[common], help="compile an ONNX or torch.export model for the ANE",
                       description="Import MODEL (.onnx or .pt2), lower it for a chip, write the artifact and print where each op runs.")
    add_model_options(p)
    p.add_argument("-o", "--output", help="where to write the artifact (default: next to MODEL)")
    p.add_argument("--emit", default="coreml", help="coreml (.mlpackage), descriptors (.anec), mil-text (folder) or ir (.mlir); "
                   "an emitter not in this build is refused before compiling")
    p.add_argument("--deployment-target", default="ios17", metavar="OS",
                   help="for --emit coreml/mil-text: oldest OS to run on, ios16/17/18 or macos13/14/15 (default ios17)")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--stop-after", metavar="PASS", help="stop the pipeline after this pass")
    p.add_argument("--all-ops", action="store_true", help="list every ANE op in the placement table, not one row per segment")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anec.emit import EMITTERS
    from anec.emit.coreml import deployment_target
    from anec.pipeline import compile as compile_model

    if args.emit not in EMITTERS:  # say so before a long compile, not after it
        raise AnecError(f"--emit {args.emit} is not available in this build", why="its emitter has not landed yet",
                        hint=f"use --emit {' or --emit '.join(EMITTERS)}")
    deployment_target(args.deployment_target)  # a typo fails before the model is compiled
    compiled = compile_model(args.model, target=args.target, emit=args.emit, deployment_target=args.deployment_target,
                             print_ir_after_all=args.print_ir_after_all, stop_after=args.stop_after, **model_options(args))
    out = Path(args.output) if args.output else compiled.default_output(Path(args.model))
    compiled.save(out)
    print_placement(compiled.report, f"{args.model} → {out}", compiled.target.name, all_ops=args.all_ops)
    return 0


def print_placement(report: Report, title: str, chip: str, *, all_ops: bool = False, console: Console | None = None) -> None:
    """Where each op runs: one row per ANE segment (or per op with `all_ops`) and per CPU op, why."""
    console = console or Console(highlight=False)
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
    for kind, notes in (("fixed", report.fp16_fixes), ("warning", report.fp16_warnings)):
        for note in notes:
            console.print(f"fp16 {kind}: {note}")


def load_sample(text: str) -> tuple[str, np.ndarray]:
    """`NAME=FILE.npy` → (name, array) for --calibrate."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise AnecError(f"--calibrate {text!r} is not NAME=FILE.npy", hint="e.g. --calibrate input_ids=ids.npy")
    try:
        return name, np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise AnecError(f"--calibrate {text!r}: cannot read {path}", why=str(e).splitlines()[0], hint="give a .npy file (numpy.save)") from None


def _runs(ops: list[OpRecord], all_ops: bool) -> list[list[OpRecord]]:
    """Consecutive ops of one segment grouped (unless `all_ops`); each CPU op on its own."""
    runs: list[list[OpRecord]] = []
    for r in ops:
        if runs and not all_ops and r.placement == "ane" and runs[-1][0].placement == "ane" and runs[-1][0].segment == r.segment:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs
