"""`anec dump PROGRAM.anec`: a decoded descriptor program, readably."""

from __future__ import annotations

import argparse

from anec.descriptors.program import Program, Task, f32_value, fp16_value
from anec.isa.fields import FieldTable


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dump", parents=[common], help="print a .anec program: header, buffers, task descriptors, graph",
                       description="Decode PROGRAM.anec (checking it) and print its buffer tables, every task descriptor's "
                       "nonzero fields with their units, the weight sections and the host graph.")
    p.add_argument("program", help="a .anec file")
    p.add_argument("--summary", action="store_true", help="one line per task instead of every field")
    p.add_argument("--no-graph", action="store_true", help="leave out the host graph")
    p.set_defaults(run=run)


def field_text(table: FieldTable, group: str, name: str, value: int) -> str:
    f = table.field(group, name)
    if f.encoding == "fp16":
        return f"{name}={fp16_value(value):g}"
    if f.encoding == "f32":
        return f"{name}={f32_value(value):g}"
    return f"{name}={value}" + (f" ({value * f.unit} B)" if f.unit > 1 else "")


def print_task(table: FieldTable, index: int, task: Task, summary: bool) -> None:
    from anec.sim.timing import describe

    print(f"  TD {index} {task.name!r}: {describe(task)}, in {list(task.in_extents)} -> out {list(task.out_extents)}")
    if summary:
        return
    for group, values in task.regs.items():
        if values:
            print(f"    {group:10} " + " ".join(field_text(table, group, k, v) for k, v in sorted(values.items())))


def print_program(program: Program, summary: bool) -> None:
    print(f"\n{program.name}: {len(program.tasks)} task descriptors, {len(program.weights)}-byte weight section")
    print(f"  {'slot':>4} {'role':12} {'port':>4} {'shape':22} {'strides (B)':24} {'offset':>10} {'size':>10} {'live':>11}")
    for b in sorted(program.buffers, key=lambda b: (b.slot, b.offset)):
        shape, strides = "x".join(map(str, b.shape)), ",".join(map(str, b.strides))
        print(f"  {b.slot:4d} {b.role:12} {b.port:4d} {shape:22} {strides:24} {b.offset:10d} {b.size:10d} {b.first_task:5d}..{b.last_task:<5d}")
    for i, task in enumerate(program.tasks):
        print_task(program.table, i, task, summary)


def run(args: argparse.Namespace) -> int:
    from anec.runtime import read_file

    file = read_file(args.program)
    table = file.programs[0].table if file.programs else None
    print(f"{args.program}: anec program for {file.arch}" + (f" (TD layout {table.tag})" if table else "")
          + f", {len(file.programs)} program(s), {len(file.host_weights)} host weight(s)")
    if file.source:
        print(f"compiled from {file.source}")
    for program in file.programs:
        print_program(program, args.summary)
    if not args.no_graph:
        print("\nhost graph:")
        print(file.graph.rstrip())
    return 0
