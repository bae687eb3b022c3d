"""`anec profile MODEL --target T`: the timing model's per-task table and the predicted total."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from anec.errors import AnecError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("profile", parents=[common], help="predict how long a model takes on a chip, task by task",
                       description="Compile MODEL (or read a .anec program) and print the timing model's time for every task "
                       "descriptor with the term that bounds it (overhead, compute, weights, activations, l2-cliff), each "
                       "program's total with its dispatch floor and bound (dispatch when the floor outweighs the tasks), "
                       "and the predicted latency.")
    p.add_argument("model", help="a .anec program, or an .onnx / .pt2 model")
    p.add_argument("--target", help="chip (m1 … m5-max); a .anec file knows its own")
    p.add_argument("--top", type=int, default=0, metavar="N", help="show only the N slowest tasks of each program")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anec.commands.run import load_program
    from anec.dialects import ane, host
    from anec.sim.timing import host_seconds, program_time
    from anec.targets import get_target

    path = Path(args.model)
    if not path.exists():
        raise AnecError(f"{path}: no such file", hint="check the path")
    file = load_program(path, args.target)
    target = get_target(file.arch)
    total = 0.0
    print(f"{path}: {len(file.programs)} ANE program(s) for the {target}")
    for program in file.programs:
        times = program_time(program, target)
        tasks = sorted(times.tasks, key=lambda t: -t.cost.total_s)[:args.top] if args.top else times.tasks
        print(f"\n{program.name}: {len(program.tasks)} tasks")
        print(f"  {'#':>5} {'task':32} {'kind':22} {'shape':18} {'MFLOP':>9} {'KB':>9} {'bound':>8} {'µs':>9}")
        for t in tasks:
            moved = (t.work.read_bytes + t.work.write_bytes + t.work.weight_bytes) / 1024
            shape = "x".join(map(str, t.shape))
            print(f"  {t.index:5d} {t.name[:32]:32} {t.kind[:22]:22} {shape[:18]:18} {t.work.flops / 1e6:9.2f} {moved:9.1f} "
                  f"{t.cost.bound:>8} {t.cost.total_s * 1e6:9.1f}")
        print(f"  dispatch floor {times.dispatch_s * 1e6:.0f} µs; program {times.total_s * 1e3:.3f} ms ({times.bound}-bound), "
              f"{times.flops / 1e9:.3f} GFLOP, {times.flops / times.total_s / 1e12:.2f} TFLOP/s, "
              f"{times.utilization:.0%} of the roofline")
        total += times.total_s
    assert file.module is not None, "read_file parses the file's graph"
    host_ops = [op for op in file.module.walk() if isinstance(op, host.HostOp) or
                (ane.is_ane(op) and not isinstance(op, ane.ConstOp | ane.YieldOp))]
    cpu = sum(host_seconds(op, target) for op in host_ops)
    if host_ops:
        print(f"\nCPU: {len(host_ops)} op(s), {cpu * 1e3:.3f} ms (Core ML segmenter's CPU anchors)")
    total += cpu
    print(f"\npredicted latency on the {target}: {total * 1e3:.3f} ms" + ("" if math.isfinite(total) else " (unbounded)"))
    return 0
