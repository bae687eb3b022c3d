"""The timing model against every published ANE measurement it can reproduce (ane-hardware.md).

    python benchmarks/timing_calibration.py

Prints, per measurement, the measured and the predicted figure and the relative error, then the
median error (goal: under 25%), over all measurements and over those that are not themselves a
parameter of the model.
"""

from __future__ import annotations

import statistics

from anec.calibration import errors


def main() -> None:
    rows = errors()
    print(f"{'workload':36} {'chip':7} {'measured':>16} {'predicted':>16} {'error':>7}  source")
    for m, predicted, error in rows:
        scale, unit = (1e3, "ms") if m.unit == "s" else (1e-9, "GFLOP/s")
        note = "  (a model parameter)" if m.parameter else ""
        print(f"{m.name:36} {m.target:7} {m.measured * scale:8.4g} {unit:7} {predicted * scale:8.4g} {unit:7} {error:6.1%}  {m.source}{note}")
    independent = [e for m, _, e in rows if not m.parameter]
    print(f"median error {statistics.median(e for _, _, e in rows):.1%} over {len(rows)} measurements; "
          f"{statistics.median(independent):.1%} over the {len(independent)} that are not model parameters (goal: < 25%)")


if __name__ == "__main__":
    main()
