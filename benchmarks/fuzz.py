"""A fuzzing campaign over random ONNX graphs (issue 17): counts per outcome, one line per finding.

    python benchmarks/fuzz.py --seeds 0:1000 [--jobs 2] [--timeout 120] [--log fuzz.log]
    python benchmarks/fuzz.py --calibrated --seeds 0:200 --jobs 1

Each seed's graph (`tests/fuzz/generator.py`) is compiled for the M1 (even seeds) or the M4 (odd
seeds); the decoded descriptor program runs on the simulator and is compared with anec's fp16 IR
interpreter, and the interpreter with onnxruntime (`tests/fuzz/differential.py`). Outcomes: ok,
fp16-flagged (fp16 rounding the calibrated report names), refused (an AnecError), crash,
sim-mismatch (a hardware-path bug), ref-mismatch (wrong semantics, or fp16 error not named), timeout.

`--calibrated` (issue 18) runs `check_calibrated` instead: each seed's graph with fp16 hazards
(`random_graph(seed, hazards=True)`), compiled calibrated on its own inputs, its fp16 outputs against
float32. Outcomes: ok, flagged (outside tolerance, and the report names where fp16 error enters),
missed (outside tolerance, not named: a silent wrong answer), refused, crash, timeout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.differential import CALIBRATED_OUTCOMES, OUTCOMES, Result, campaign, counts


def seed_range(text: str) -> range:
    """`A:B` -> range(A, B); `N` -> range(N, N + 1)."""
    if ":" in text:
        a, b = text.split(":")
        return range(int(a), int(b))
    return range(int(text), int(text) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_range, default=range(0, 100), help="A:B (default 0:100)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per graph")
    parser.add_argument("--log", type=Path, help="also write every result line here")
    parser.add_argument("--verbose", action="store_true", help="print ok and refused results too")
    parser.add_argument("--calibrated", action="store_true", help="hazard graphs calibrated on their inputs, fp16 against float32: "
                        "is every miss flagged?")
    args = parser.parse_args(argv)
    log = args.log.open("w") if args.log else None
    results: list[Result] = []
    start = time.perf_counter()
    for res in campaign(args.seeds, jobs=args.jobs, timeout=args.timeout, calibrated=args.calibrated):
        results.append(res)
        if log:
            print(res.line(), file=log, flush=True)
        if args.verbose or res.outcome not in ("ok", "refused"):
            print(res.line(), flush=True)
    outcomes = CALIBRATED_OUTCOMES if args.calibrated else OUTCOMES
    tally = counts(results, outcomes)
    print(f"{len(results)} graphs in {time.perf_counter() - start:.0f} s: " + ", ".join(f"{o} {tally[o]}" for o in outcomes))
    if args.calibrated:
        print(f"outside tolerance {tally['flagged'] + tally['missed']}: flagged {tally['flagged']}, missed {tally['missed']}")
        return 0 if tally["crash"] == tally["missed"] == 0 else 1
    return 0 if tally["crash"] == tally["sim-mismatch"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
