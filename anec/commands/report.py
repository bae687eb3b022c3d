"""`anec report MODEL -o report.html`: compile for a chip and write one self-contained HTML page —
the graph colored by placement, a per-op table, a roofline plot and every chip's predicted latency."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from anec.commands.compile import add_model_options, model_options


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help="write an HTML page: graph by placement, per-op table, roofline, chips",
                       description="Compile MODEL (.onnx or .pt2) for a chip and write one self-contained HTML page (no network "
                       "needed): the graph with each op colored by where it runs and why not on the ANE, a per-op table "
                       "(shape, FLOPs, bytes, predicted time, tiles, fp16 range), a roofline plot and every chip's predicted latency.")
    add_model_options(p)
    p.add_argument("-o", "--output", help="the .html file to write (default: MODEL with the suffix .html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anec.html_report import ChipRun, render, write_atomically
    from anec.importers import import_model, source_op_types
    from anec.pipeline import compile as compile_model
    from anec.targets import TARGETS, get_target

    start = time.perf_counter()
    target = get_target(args.target)  # a typo fails before the model is imported
    out = Path(args.output) if args.output else Path(args.model).with_suffix(".html")
    options = model_options(args)
    module = import_model(args.model, input_shapes=options["input_shapes"], example_inputs=options["example_inputs"],
                          input_values=options["input_values"])
    options["source_op_types"] = source_op_types(args.model)  # the module has node names, not ONNX op types
    compiled = compile_model(module, target=target, emit="descriptors", **options)
    # placement and latency do not depend on calibration, so the comparison compiles without it (and
    # without --precision auto's search; the ops it kept on the selected chip stay kept)
    chips = [ChipRun(t, compile_model(module, target=t, emit="ir", input_shapes=options["input_shapes"],
                                      min_segment_ops=options["min_segment_ops"], keep_fp32=options["keep_fp32"],
                                      auto_fp32=compiled.options.auto_fp32, source_op_types=options["source_op_types"]).report) for t in TARGETS]
    write_atomically(out, render(compiled.report, target, title=f"{Path(args.model).name} on the {target.name}", chips=chips))
    report = compiled.report
    print(f"{args.model} → {out}: {len(report.ops) - len(report.host_ops)} of {len(report.ops)} ops on the ANE of the {target.name}, "
          f"{len(report.host_ops)} on the CPU, predicted {(report.predicted_latency_s or 0.0) * 1e3:.3f} ms "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
