"""The real-world corpus campaign (issue 17): every manifest model on every chip, one subprocess each.

    python -m tests.wild.fetch                       # once: wheels -> ~/.cache/anec/wild/
    python benchmarks/wild.py run [--targets m1,m4] [--only NAME ...] [--timeout 300] [--mem-gb 8]
    python benchmarks/wild.py report                 # docs/wild.md from the results
    python benchmarks/wild.py reclassify             # verdicts again from stored errors (classify changed)
    python benchmarks/wild.py auto [--targets m1,m4]  # --precision auto on every fp16 mismatch (issue 18)
    python benchmarks/wild.py auto-report            # its table (docs/fp16.md)

Each (model, chip) runs `tests.wild.evaluate` in its own process under a wall-clock timeout and an
address-space limit, so a crash, a hang or a memory blow-up costs one row, not the campaign. Results
are merged into benchmarks/wild-results.json after every row (a rerun of some models keeps the rest).
`auto` runs `tests.wild.precision_auto` the same way on the fp16-mismatch rows, into
benchmarks/wild-precision-auto.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.wild.classes import CLASSES, classify_record, failing  # noqa: E402
from tests.wild.evaluate import STATUSES, classify  # noqa: E402
from tests.wild.manifest import Entry, by_name, load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "wild-results.json"
DOC = ROOT / "docs" / "wild.md"
AUTO_RESULTS = ROOT / "benchmarks" / "wild-precision-auto.json"
"""`auto`: `--precision auto` on every fp16-mismatch row of RESULTS (`tests.wild.precision_auto`)."""


def _limit_memory(gigabytes: float):
    def apply() -> None:
        limit = int(gigabytes * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.setsid()  # its own process group, so a timeout kills every child it started
    return apply


def run_one(entry: Entry, target: str, timeout: float, mem_gb: float,
            evaluator: tuple[str, ...] = ("-m", "tests.wild.evaluate")) -> dict[str, Any]:
    """One row: the subprocess's record, or a timeout / crash record when it did not write one.
    `evaluator` is what runs: `python EVALUATOR NAME TARGET --json OUT` writes the record."""
    base = {"name": entry.name, "package": entry.package, "version": entry.version, "task": entry.task,
            "target": target, "path": entry.path}
    if not entry.cached():
        return {**base, "status": "missing", "stage": "fetch", "reason": "not in the cache: run python -m tests.wild.fetch"}
    env = {**os.environ, "ANEC_SIM_THREADS": os.environ.get("ANEC_SIM_THREADS", "1"),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        cmd = [sys.executable, *evaluator, entry.name, target, "--json", str(out)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=_limit_memory(mem_gb))
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            return {**base, "status": "timeout", "stage": "", "reason": f"over {timeout:.0f} s"}
        wall = round(time.perf_counter() - start, 1)
        if out.exists():
            return {**json.loads(out.read_text()), "wall_seconds": wall}
        tail = [line for line in err.strip().splitlines() if line.strip()][-1:] or [f"exit code {proc.returncode}"]
        kind = "MemoryError (over the memory limit)" if "MemoryError" in err or proc.returncode == -9 else tail[0]
        return {**base, "status": "crash", "stage": "process", "reason": f"{kind[:300]} (exit {proc.returncode})",
                "wall_seconds": wall}


def load_results(path: Path = RESULTS) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def save_results(rows: list[dict[str, Any]], path: Path = RESULTS) -> None:
    order = {e.name: i for i, e in enumerate(load())}
    rows = sorted(rows, key=lambda r: (r["target"], order.get(r["name"], 1 << 30)))
    path.write_text(json.dumps(rows, indent=1, default=float) + "\n")


def campaign(args: argparse.Namespace) -> int:
    entries = [e for e in load() if (not args.only or e.name in args.only) and (not args.ci or e.ci)]
    rows = {(r["name"], r["target"]): r for r in load_results(args.results)}
    for target in args.targets.split(","):
        for entry in entries:
            row = run_one(entry, target, args.timeout, args.mem_gb)
            rows[(entry.name, target)] = row
            save_results(list(rows.values()), args.results)
            print(f"{target} {entry.name:28} {row['status']:15} {row.get('stage', '')}: {row.get('reason', '')[:110]}",
                  flush=True)
    return 0


_MODEL_DIR = re.compile(r"/[^\s:'\"]*/models/[^/\s]+/")


def _text(value: Any) -> str:
    """A reason for a Markdown cell: no machine-specific cache paths, no cell breaks."""
    return _MODEL_DIR.sub("", str(value or "")).replace("|", "\\|")


def reclassify(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that ran every route get their verdict again from their stored errors (after a change to
    `classify`); rows that stopped early keep theirs (their exception is not re-derivable)."""
    out = []
    for r in rows:
        if r.get("status") in ("ok", "at-input-floor", "fp16-mismatch", "wrong", "importer-wrong") and "sim" in r.get("errors", {}):
            r = {**r, **classify(r["errors"], None)}
        out.append(r)
    return out


def _fmt_err(errors: dict[str, dict[str, float]] | None) -> str:
    if not errors:
        return "–"
    parts = []
    for name, e in errors.items():
        short = name if len(name) <= 18 else name[:15] + "…"
        parts.append(f"{short}: {e['cosine']:.4f} / {e['rel_l2']:.1e}")
    return "<br>".join(parts[:4]) + (f"<br>(+{len(parts) - 4} more)" if len(parts) > 4 else "")


def _coreml(row: dict[str, Any]) -> str:
    if "coreml_saved" not in row:
        return "–"
    return "saved" if row["coreml_saved"] else "refused: " + _text(row.get("coreml_reason"))[:120]


def report(rows: list[dict[str, Any]]) -> str:
    """docs/wild.md: counts per status and chip, then one row per model and chip."""
    targets = sorted({r["target"] for r in rows})
    entries = load()
    lines = [
        "# The real-world corpus (issue 17)",
        "",
        "<!-- generated by `python benchmarks/wild.py report` from benchmarks/wild-results.json; do not edit -->",
        "",
        f"{len({e.path + e.version for e in entries})} model files ({len(entries)} entries with their input sizes) "
        f"from {len({e.package for e in entries})} PyPI packages, {len({e.task for e in entries})} task families, "
        "shipped inside the packages' wheels. Each runs on realistic inputs (`tests/wild/inputs.py`) through "
        "anec's simulator and against onnxruntime, compiled calibrated on those inputs (`example_inputs`: the fp16 "
        "analysis and its exact fixes see them, as `anec compile --example-inputs` does). Pass: cosine ≥ 0.999 and "
        "relative L2 ≤ 1e-2 on every output.",
        "",
        "Reproduce: `python -m tests.wild.fetch && python benchmarks/wild.py run --targets m1,m4 && "
        "python benchmarks/wild.py report`; tests: `pytest -m wild tests/wild`.",
        "",
        "Statuses: **ok**; **at-input-floor** (off onnxruntime by no more than 1.5× what onnxruntime itself moves "
        "when only its inputs are rounded to fp16, as the ANE's are); **fp16-mismatch** (simulator agrees with the fp16 "
        "interpreter, both off onnxruntime); "
        "**wrong** (anec's own routes disagree: a graph pass at f32, or simulator vs interpreter); "
        "**importer-wrong** (the imported IR at f32 is already off); **refused** (an AnecError); "
        "**crash** (any other exception); **timeout**. *fp16 warnings*: how many the ane-fp16 pass "
        "gives when calibrated on the same inputs (does anec tell the user?). *Core ML*: the same graph "
        "emitted as an .mlpackage.",
        "",
        "## Scoreboard",
        "",
        "| status | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    counts = {t: Counter(r["status"] for r in rows if r["target"] == t) for t in targets}
    for status in (*STATUSES, "missing"):
        if any(counts[t][status] for t in targets):
            lines.append(f"| {status} | " + " | ".join(str(counts[t][status]) for t in targets) + " |")
    lines.append("| **total** | " + " | ".join(str(sum(counts[t].values())) for t in targets) + " |")
    lines.append("| Core ML package saved | " + " | ".join(
        str(sum(1 for r in rows if r["target"] == t and r.get("coreml_saved"))) for t in targets) + " |")
    lines += ["", "## Failure classes", "",
              "Each failing record is put in the first class that matches it (`tests/wild/classes.py`); "
              "the reproducers are tiny ONNX graphs in `tests/wild/repros.py` (`python -m tests.wild.repros NAME`). "
              "`python -m tests.wild.triage NAME --mode stages|fp16|next` finds the pass, the op, or what fails "
              "once the import blockers are worked around.", "",
              "| class | status | stage / op at fault | models (" + ", ".join(targets) + ") | reproducer | what happens |",
              "|---|---|---|---|---|---|"]
    assigned: dict[str, dict[str, list[str]]] = {}
    unclassified = []
    for r in rows:
        if not failing(r):
            continue
        keys = classify_record(r)
        if not keys:
            unclassified.append(r)
        for k in keys:
            assigned.setdefault(k, {}).setdefault(r["target"], []).append(r["name"])
    for c in CLASSES:
        if c.key not in assigned:
            continue
        by_target = assigned[c.key]
        names = sorted({n for t in targets for n in by_target.get(t, [])})
        per = " / ".join(str(len(by_target.get(t, []))) for t in targets)
        repro = f"`{c.repro}`" if c.repro else "–"
        lines.append(f"| {c.key} | {c.status} | {c.stage} | {per}: {', '.join(names)} | {repro} | {c.summary} |")
    for r in unclassified:
        lines.append(f"| unclassified | {r['status']} | {r.get('stage', '')} | {r['target']}: {r['name']} | – | "
                     f"{_text(r.get('reason'))} |")
    blocked = [r for r in rows if r.get("next")]
    if blocked:
        lines += ["", "### Past the import blockers", "",
                  "What the models stopped by an import blocker (invalid value names, unused op domains) do "
                  "once `tests.wild.triage.patched_model` works around it in a copy of the model:", "",
                  "| model | chip | status then | stage | reason | class |", "|---|---|---|---|---|---|"]
        for r in blocked:
            n = r["next"]
            reason = _text(n.get("reason"))
            keys = classify_record({**n, "path": r["path"], "node_domains": r.get("node_domains", [])}) if n.get("status") != "ok" else []
            lines.append(f"| {r['name']} | {r['target']} | {n.get('status')} | {n.get('stage', '')} | {reason} | "
                         f"{', '.join(keys) or '–'} |")
    for t in targets:
        lines += ["", f"## {t}", "",
                  "| model | package | task | ops | ANE FLOPs | sim vs onnxruntime (cosine / rel L2) | status | stage | reason "
                  "| fp16 warnings | Core ML |",
                  "|---|---|---|---:|---:|---|---|---|---|---:|---|"]
        for r in (r for r in rows if r["target"] == t):
            frac = r.get("ane_flops_fraction")
            reason = _text(r.get("reason"))
            frozen = "".join(f" (--freeze {k}={v})" for k, v in r.get("frozen", {}).items())
            lines.append(f"| {r['name']}{frozen} | {r['package']} {r['version']} | {r['task']} | {r.get('ops', '–')} | "
                         f"{'–' if frac is None else f'{100 * frac:.1f}%'} | {_fmt_err(r.get('errors', {}).get('sim'))} | "
                         f"{r['status']} | {r.get('stage', '')} | {reason} | {r.get('fp16_warning_count', '–')} | {_coreml(r)} |")
    return "\n".join(lines) + "\n"


def auto_campaign(args: argparse.Namespace) -> int:
    mismatches = [r for r in load_results(args.results) if r["status"] == "fp16-mismatch" and r["target"] in args.targets.split(",")
                  and (not args.only or r["name"] in args.only)]
    for m in mismatches:
        row = run_one(by_name(m["name"]), m["target"], args.timeout, args.mem_gb, ("-m", "tests.wild.precision_auto"))
        rows = {(r["name"], r["target"]): r for r in load_results(args.out)}  # read again: a run for another chip may have added rows
        rows[(m["name"], m["target"])] = row
        save_results(list(rows.values()), args.out)
        print(f"{m['target']} {m['name']:24} " + (_auto_line(row) if "choice" in row else f"{row.get('status')}: {row.get('reason', '')}"),
              flush=True)
    return 0


def _worst_error(errors: dict[str, dict[str, float]]) -> str:
    e = max(errors.values(), key=lambda e: e["rel_l2"] if e["rel_l2"] == e["rel_l2"] else float("inf"))
    return f"{e['cosine']:.4f} / {e['rel_l2']:.2e}"


def _auto_line(row: dict[str, Any]) -> str:
    c = row["choice"]
    types = ", ".join(f"{k} ×{v}" for k, v in sorted(row["moved_types"].items())) or "–"
    outcome = "within tolerance" if row["met_after"] else "NOT within tolerance"
    why = _auto_why(row)
    return (f"{_worst_error(row['before'])} → {_worst_error(row['after'])}: {outcome}; moved {len(c['moved'])} ({types}); "
            f"{c['before']['latency_ms']:.3g} → {c['after']['latency_ms']:.3g} ms, segments {c['before']['segments']} → "
            f"{c['after']['segments']}; {why}")


def _auto_why(row: dict[str, Any]) -> str:
    """Auto's reason; or, when it met the tolerance on the fp16 interpreter (what it measures) and the
    simulator still misses, the interpreter's figures."""
    c = row["choice"]
    if c["why"]:
        return _text(c["why"])
    if not row["met_after"]:
        return f"met on the fp16 interpreter (rel L2 {c['worst_before']:.2g} → {c['worst_after']:.2g}); the simulator misses"
    return "–"


def auto_report(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | chip | sim vs onnxruntime before (worst cosine / rel L2) | after | within tolerance | ops moved "
             "| predicted latency (ms) | segments | CPU ops | compile s (auto) | why not |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "choice" not in r:
            lines.append(f"| {r['name']} | {r['target']} | – | – | {r.get('status')} | – | – | – | – | – | {r.get('reason', '')} |")
            continue
        c = r["choice"]
        types = ", ".join(f"{k} ×{v}" for k, v in sorted(r["moved_types"].items())) or "none"
        lines.append(f"| {r['name']} | {r['target']} | {_worst_error(r['before'])} | {_worst_error(r['after'])} | "
                     f"{'yes' if r['met_after'] else 'no'} | {len(c['moved'])}: {types} | "
                     f"{c['before']['latency_ms']:.3g} → {c['after']['latency_ms']:.3g} | {c['before']['segments']} → "
                     f"{c['after']['segments']} | {c['before']['cpu_ops']} → {c['after']['cpu_ops']} | "
                     f"{r['compile_seconds']} ({r['auto_compile_seconds']}) | {_auto_why(r)} |")
    met = sum(1 for r in rows if r.get("met_after"))
    lines.append("")
    lines.append(f"{met} of {len(rows)} within tolerance after `--precision auto`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the campaign")
    run.add_argument("--targets", default="m1")
    run.add_argument("--only", nargs="*", help="manifest names to run (default: all)")
    run.add_argument("--ci", action="store_true", help="only the entries marked ci = true")
    run.add_argument("--timeout", type=float, default=300.0, help="seconds per model and chip")
    run.add_argument("--mem-gb", type=float, default=8.0, help="address-space limit per model process")
    run.add_argument("--results", type=Path, default=RESULTS)
    again = sub.add_parser("reclassify", help="re-derive the verdicts of completed rows from their errors")
    again.add_argument("--results", type=Path, default=RESULTS)
    rep = sub.add_parser("report", help="write docs/wild.md from the results")
    rep.add_argument("--results", type=Path, default=RESULTS)
    rep.add_argument("-o", "--output", type=Path, default=DOC)
    auto = sub.add_parser("auto", help="--precision auto on every fp16-mismatch row of the results (to " + AUTO_RESULTS.name + ")")
    auto.add_argument("--targets", default="m1")
    auto.add_argument("--only", nargs="*", help="manifest names (default: every fp16 mismatch)")
    auto.add_argument("--timeout", type=float, default=900.0, help="seconds per model and chip")
    auto.add_argument("--mem-gb", type=float, default=8.0, help="address-space limit per model process")
    auto.add_argument("--results", type=Path, default=RESULTS)
    auto.add_argument("--out", type=Path, default=AUTO_RESULTS, help="the file its rows are merged into")
    sub.add_parser("auto-report", help="print the Markdown table of the --precision auto rows")
    args = parser.parse_args(argv)
    if args.command == "auto":
        return auto_campaign(args)
    if args.command == "auto-report":
        print(auto_report(load_results(AUTO_RESULTS)))
        return 0
    if args.command == "run":
        return campaign(args)
    if args.command == "reclassify":
        save_results(reclassify(load_results(args.results)), args.results)
        return 0
    args.output.write_text(report(load_results(args.results)))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
