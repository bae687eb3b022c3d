"""`anec check MODEL`: the differential check of every compile stage, and the op where the first
disagreement enters (see `anec.differential`)."""

from __future__ import annotations

import argparse

from anec.commands.compile import parse_freeze, parse_input_range, parse_input_shape
from anec.commands.run import read_inputs

DISAGREES = 3
"""Exit status when a stage disagrees with its reference (2 stays "bad input", 1 "internal error")."""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("check", parents=[common], help="check every compile stage against its reference and find the op at fault",
                       description="Compile MODEL stage by stage and compare each stage with its reference: the imported IR "
                       "with onnxruntime / eager PyTorch, each graph pass with the IR before it, the simulated descriptor "
                       "program with the fp16 IR interpreter. For the first stage that disagrees (cosine < 0.999 or "
                       f"relative L2 > 1e-2 on an output), name the first op whose output parts. Exit status {DISAGREES} "
                       "when a stage disagrees.")
    p.add_argument("model", help="an .onnx file or a torch.export.save .pt2 file")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input tensor (repeatable; default: seeded random inputs)")
    p.add_argument("--target", default="m1", help="chip (m1 … m5-max); default m1")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,…", help="fix a dynamic input's shape (repeatable)")
    p.add_argument("--freeze", action="append", default=[], metavar="NAME=VALUE", help="fix an input to a value (repeatable)")
    p.add_argument("--input-range", action="append", default=[], metavar="NAME=LO,HI",
                   help="the values an input takes: seeded inputs are drawn from it, and the fp16 range analysis uses it as "
                   "`anec compile --input-range` does (repeatable)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anec.differential import check

    report = check(args.model, read_inputs(args.input) or None, target=args.target,
                   input_shapes=dict(parse_input_shape(s) for s in args.input_shape) or None,
                   input_values=dict(parse_freeze(s) for s in args.freeze) or None,
                   input_ranges=dict(parse_input_range(s) for s in args.input_range) or None)
    for line in report.lines():
        print(line)
    return 0 if report.ok else DISAGREES
