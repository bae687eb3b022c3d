"""`--precision auto` on one corpus model and chip (issue 18): what `benchmarks/wild.py auto` runs per row.

    python -m tests.wild.precision_auto NAME TARGET [--json OUT]

Compiles the model twice to descriptors, calibrated on the inputs it runs (as `tests.wild.evaluate`
does): the default way and with `precision="auto"` (tolerance 1e-2). Both programs run on the
simulator against onnxruntime with the campaign's bar (cosine >= 0.999 and relative L2 <= 1e-2 on
every output). The record holds the errors before and after, what auto moved to float32 (names and
op types), its predicted latency, segments and CPU ops before and after (the timing model), and its
reason when it cannot reach the tolerance.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.wild.evaluate import all_ok, pair_errors
from tests.wild.manifest import by_name


def evaluate(name: str, target: str) -> dict[str, Any]:
    """One record: both compiles, both simulator runs, the choice."""
    import anec
    from anec.runtime.check import reference_outputs
    from tests.wild.inputs import make_inputs

    entry = by_name(name)
    feeds = make_inputs(entry)
    frozen = {spec.name: spec.value for spec in entry.inputs if spec.kind == "const"}
    samples = {k: v for k, v in feeds.items() if k not in frozen}
    reference = reference_outputs(entry.file, feeds)
    record: dict[str, Any] = {"name": name, "target": target}
    common = {"target": target, "emit": "descriptors", "input_shapes": entry.input_shapes, "input_values": frozen or None,
              "example_inputs": samples}
    start = time.perf_counter()
    before = anec.compile(str(entry.file), **common)
    record["compile_seconds"] = round(time.perf_counter() - start, 1)
    record["before"] = pair_errors(before.run(feeds), reference)
    start = time.perf_counter()
    after = anec.compile(str(entry.file), precision="auto", **common)
    record["auto_compile_seconds"] = round(time.perf_counter() - start, 1)
    record["after"] = pair_errors(after.run(feeds), reference)
    choice = after.report.stats["precision_auto"]
    moved = set(choice["moved"])
    record["choice"] = choice
    record["moved_types"] = dict(Counter(r.op for r in after.report.ops if r.name in moved))
    record["met_before"] = all_ok(record["before"])
    record["met_after"] = all_ok(record["after"])
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("target")
    parser.add_argument("--json", type=Path, help="write the record here (else print it)")
    args = parser.parse_args(argv)
    text = json.dumps(evaluate(args.name, args.target), indent=1, default=float)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
