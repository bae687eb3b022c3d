"""The timing model against every published ANE measurement (anec.calibration).

    python benchmarks/timing_calibration.py          # errors of the committed parameters, and LOGO
    python benchmarks/timing_calibration.py --fit    # refit; print the FITTED table for anec/targets.py

Prints, per measurement, the measured and the predicted figure and the relative error; the median
error per chip (goal: at most 10%); and the leave-one-group-out error: per chip, each group (a
sweep, the matmuls, the fused ops, ...) is predicted by parameters fitted without it (goal: median
at most 20%). The fit needs scipy.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from anec.calibration import Measurement, errors, fit, leave_one_group_out, measurements
from anec.targets import FITTED, get_target


def _by_arch(points: tuple[Measurement, ...]) -> dict[str, list[Measurement]]:
    out: dict[str, list[Measurement]] = defaultdict(list)
    for m in points:
        out[get_target(m.target).arch].append(m)
    return out


def _show(value: float, unit: str) -> str:
    scale, shown = {"s": (1e6, "µs"), "FLOP/s": (1e-9, "GFLOP/s")}[unit]
    return f"{value * scale:9.1f} {shown:7}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="refit every measured generation and print the FITTED table")
    args = parser.parse_args()
    groups = _by_arch(measurements())
    if args.fit:
        print("FITTED: dict[str, dict[str, float]] = {")
        for arch, points in groups.items():
            values = fit(arch, points)
            print(f'    "{arch}": {{' + ", ".join(f'"{k}": {v:.4g}' for k, v in values.items()) + "},")
        print("}")
        return
    print(f"{'workload':34} {'chip':7} {'group':13} {'measured':>17} {'predicted':>17} {'error':>7}")
    for arch, points in groups.items():
        rows = errors(points)
        for m, predicted, e in rows:
            note = "  (pins a parameter)" if m.parameter else ""
            print(f"{m.name:34} {m.target:7} {m.group:13} {_show(m.measured, m.unit)} {_show(predicted, m.unit)} {e:6.1%}{note}")
        independent = [e for m, _, e in rows if not m.parameter]
        print(f"{arch}: median error {statistics.median(e for _, _, e in rows):.1%} over {len(rows)} measurements, "
              f"{statistics.median(independent):.1%} over the {len(independent)} that do not pin a parameter "
              f"(fitted: {', '.join(FITTED[arch]) or 'nothing'})\n")
    for arch, points in groups.items():
        logo = leave_one_group_out(arch, points)
        left_out = [e for rows in logo.values() for _, _, e in rows]
        print(f"{arch}: leave-one-group-out median error {statistics.median(left_out):.1%} over {len(left_out)} points; per group: "
              + ", ".join(f"{g} {statistics.median(e for _, _, e in rows):.0%}" for g, rows in logo.items()))


if __name__ == "__main__":
    main()
