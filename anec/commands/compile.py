"""`anec compile MODEL`: import, lower for a chip, write the artifact, summarize the placement."""

from __future__ import annotations

import argparse
from pathlib import Path

from anec.errors import AnecError


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


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compile", parents=[common], help="compile an ONNX or torch.export model for the ANE",
                       description="Import MODEL (.onnx or .pt2), lower it for a chip, write the artifact and print where each op runs.")
    p.add_argument("model", help="an .onnx file or a torch.export.save .pt2 file")
    p.add_argument("-o", "--output", help="where to write the artifact (default: next to MODEL)")
    p.add_argument("--target", default="m1", help="chip (m1 … m5-max) or architecture (h13 …); default m1")
    p.add_argument("--emit", default="coreml", help="coreml (.mlpackage), descriptors (.anec), mil-text (folder) or ir (.mlir)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,…", help="fix a dynamic input's shape (repeatable)")
    p.add_argument("--deployment-target", default="ios17", metavar="OS",
                   help="for --emit coreml/mil-text: oldest OS to run on, ios16/17/18 or macos13/14/15 (default ios17)")
    p.add_argument("--min-segment-ops", type=int, default=1, help="run ANE segments smaller than this on the CPU")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--stop-after", metavar="PASS", help="stop the pipeline after this pass")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anec.emit.coreml import deployment_target
    from anec.pipeline import compile as compile_model

    deployment_target(args.deployment_target)  # a typo fails before the model is compiled
    shapes = dict(parse_input_shape(s) for s in args.input_shape) or None
    compiled = compile_model(args.model, target=args.target, emit=args.emit, input_shapes=shapes,
                             min_segment_ops=args.min_segment_ops, deployment_target=args.deployment_target,
                             print_ir_after_all=args.print_ir_after_all,
                             stop_after=args.stop_after)
    out = Path(args.output) if args.output else compiled.default_output(Path(args.model))
    compiled.save(out)
    report = compiled.report
    ane_ops = len(report.ops) - len(report.host_ops)
    print(f"{args.model}: {ane_ops} of {len(report.ops)} ops on the ANE of the {compiled.target}, "
          f"{report.ane_flops_fraction:.1%} of FLOPs, {report.segments} segment(s)")
    for r in report.host_ops:
        print(f"  CPU  {r.name} ({r.op}): {r.reason}")
    print(f"wrote {out}")
    return 0
