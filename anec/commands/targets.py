"""`anec targets [CHIP] [--json]`: the chip table, or every fact of one chip with its source."""

from __future__ import annotations

import argparse
import json
from typing import Any

from anec.legality import all_rules, basis_values
from anec.targets import TARGETS, Fact, Target, facts, resolve_targets

_KIND_MARK = {"measured": "", "decompiled": "", "spec": "†", "predicted": "~"}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("targets", parents=[common], help="list the ANE generations anec knows, with provenance",
                       description="List the chips. With CHIP, show every limit and figure of that chip and where it comes from.")
    p.add_argument("chip", nargs="?", help="a chip (m1, m4, m5-max …), an architecture (h13 …) or 'all'")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(run=run)


def _show(fact: Fact, scale: float = 1.0, fmt: str = "{:g}") -> str:
    value = fact.value
    text = "—" if value is None else fmt.format(value / scale) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
    return _KIND_MARK[fact.kind] + text


def summary_rows() -> list[dict[str, str]]:
    rows = []
    for t in TARGETS:
        p, m, lim = t.perf, t.memory, t.limits
        rows.append({
            "chip": t.name, "arch": t.arch, "names": " ".join(t.aliases),
            "cores": _show(p.cores), "clock GHz": _show(p.clock_hz, 1e9, "{:.2f}"),
            "peak TFLOP/s": _show(p.peak_fp16_flops, 1e12, "{:.1f}"), "fit TFLOP/s": _show(p.sustained_fp16_flops, 1e12, "{:.2f}"),
            "DRAM GB/s": _show(p.dram_bytes_per_s, 1e9, "{:.0f}"), "dispatch ms": _show(p.dispatch_floor_s, 1e-3, "{:.2f}"),
            "L2 MB": _show(m.l2_bytes, 2**20), "kernel KB": _show(m.kernel_memory_bytes, 2**10),
            "max W/H": _show(lim.max_spatial), "kernel W": _show(lim.max_kernel_width_fp16), "pool": _show(lim.max_pool_window),
            "caps": str(len(t.capabilities)),
        })
    return rows


def _as_json(t: Target) -> dict:
    return {"name": t.name, "arch": t.arch, "aliases": list(t.aliases), "capabilities": sorted(t.capabilities),
            "facts": {name: {"value": f.value, "kind": f.kind, "source": f.source, "note": f.note} for name, f in facts(t)}}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    chosen = resolve_targets(args.chip) if args.chip else list(TARGETS)
    if args.json:
        print(json.dumps([_as_json(t) for t in chosen], indent=2))
        return 0
    console = Console(width=max(Console().width, 180))
    if not args.chip:
        rows = summary_rows()
        table = Table(title="ANE generations (~ predicted, † Apple spec, otherwise measured or decompiled)")
        for col in rows[0]:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row.values())
        console.print(table)
        seen: set[str] = set()
        for t in TARGETS:
            if new := sorted(t.capabilities - seen):
                console.print(f"new caps from {t.name}: {', '.join(new)}")
                seen |= t.capabilities
        console.print("Every figure with its source: anec targets CHIP   (e.g. anec targets m1)")
        return 0
    for t in chosen:
        table = Table(title=f"{t}: {t.soc}, family {t.family.value}; capabilities: {', '.join(sorted(t.capabilities)) or 'M1 baseline'}")
        for col in ("fact", "value", "kind", "source", "note"):
            table.add_column(col, overflow="fold")
        for name, f in facts(t):
            table.add_row(name, _show(f).lstrip("~†"), f.kind, f.source, f.note)
        console.print(table)
        console.print(rules_table(t))
    return 0


def rule_rows(target: Target) -> list[dict[str, str]]:
    """Every legality rule with the limits it reads on `target`, what differs from the M1, and its source."""
    baseline = TARGETS[0]
    rows = []
    for rule in all_rules():
        here, there = basis_values(rule, target), basis_values(rule, baseline)
        changed = [f"{k.split('.')[-1].removeprefix('capability:')} {there[k]} -> {v}" for k, v in here.items() if v != there[k]]
        rows.append({"rule": rule.name, "reads": ", ".join(f"{k.split('.')[-1]}={v}" for k, v in here.items()) or "-",
                     f"since {baseline.name}": "; ".join(changed) or "-", "tileable": "yes" if rule.tileable else "",
                     "source": rule.source})
    return rows


def rules_table(target: Target) -> Any:
    from rich.table import Table

    rows = rule_rows(target)
    table = Table(title=f"legality on the {target.name}: every rule, the limits it reads here, and its source")
    for col in rows[0]:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    return table
