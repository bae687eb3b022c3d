"""Compile time per pass and peak memory, over the zoo and the real-world corpus.

    python benchmarks/compile_time.py [--zoo small|full|none] [--wild] [--synthetic [NAME ...]] [--target m1] [--emit descriptors]

Each model compiles in a fresh subprocess (peak memory is per process) through `anec.compile` with
the given emitter, and reports the same stage table as `anec compile --timings`: import, each pass,
the report and the emitter, with the peak resident memory after each. Prints every model's total,
the slowest models and, summed over all models, the slowest passes. The real-world corpus is the
one `python -m tests.wild.fetch` caches (`--wild`; models not fetched are listed as skipped);
`--synthetic` adds the models of `tests.synthetic` (all of them, or the ones named), such as the
pitch tracker whose 1-D convs are written as (K, 1) kernels on (N, C, T, 1) tensors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZOO = {"small": ("bert-tiny", "resnet-tiny"), "full": ("bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2")}

ONE = """
import json, sys, tempfile, time
from pathlib import Path
import anec
from anec.commands.compile import timing_rows
from anec.pipeline import peak_memory_mb
path, target, emit, shapes = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
compiled = anec.compile(path, target=target, emit=emit, input_shapes=shapes or None)
with tempfile.TemporaryDirectory() as folder:
    start = time.perf_counter()
    compiled.save(Path(folder) / ("model" + {"descriptors": ".anec", "coreml": ".mlpackage"}.get(emit, ".mlir")))
    compiled.report.stats.update(emit_seconds=time.perf_counter() - start, emit_peak_mb=peak_memory_mb())
print(json.dumps(timing_rows(compiled.report.stats, emit)))
"""


def models(zoo: str, wild: bool, synthetic: list[str] | None, folder: Path) -> list[tuple[str, Path | None, dict]]:
    found: list[tuple[str, Path | None, dict]] = []
    if synthetic is not None:
        from tests.synthetic import MODELS, write

        found += [(name, write(name, folder / f"{name}.onnx"), {}) for name in (synthetic or MODELS)]
    if zoo != "none":
        from tests.zoo import onnx_model

        found += [(name, onnx_model(name), {}) for name in ZOO["small"] + (ZOO["full"] if zoo == "full" else ())]
    if wild:
        from tests.wild.manifest import load

        for entry in load():
            found.append((entry.name, entry.file if entry.cached() else None, entry.input_shapes))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", choices=("small", "full", "none"), default="small")
    parser.add_argument("--wild", action="store_true", help="also the real-world corpus (fetched with python -m tests.wild.fetch)")
    parser.add_argument("--synthetic", nargs="*", metavar="NAME", help="also the models of tests.synthetic (all, or those named)")
    parser.add_argument("--target", default="m1")
    parser.add_argument("--emit", default="descriptors")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    totals: dict[str, float] = {}
    per_pass: Counter[str] = Counter()
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="anec-compile-time-") as folder:
        cases = models(args.zoo, args.wild, args.synthetic, Path(folder))
        for name, path, shapes in cases:
            if path is None:
                print(f"{name:34} skipped (not fetched)")
                continue
            try:
                done = subprocess.run([sys.executable, "-c", ONE, str(path), args.target, args.emit, json.dumps(shapes)],
                                      capture_output=True, text=True, cwd=ROOT, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{name:34} timed out after {args.timeout:.0f} s")
                continue
            if done.returncode != 0:
                print(f"{name:34} failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:120]}")
                continue
            rows = json.loads(done.stdout.strip().splitlines()[-1])
            totals[name] = sum(seconds for _, seconds, _ in rows)
            peaks[name] = max(peak for _, _, peak in rows)
            per_pass.update({stage: seconds for stage, seconds, _ in rows})
            slowest = max(rows, key=lambda r: r[1])
            print(f"{name:34} {totals[name]:7.2f} s  peak {peaks[name]:6.0f} MiB  slowest stage {slowest[0]} ({slowest[1]:.2f} s)")
    if not totals:
        return
    print("\nslowest models:")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {name:32} {seconds:7.2f} s  peak {peaks[name]:6.0f} MiB")
    print("slowest stages, summed over the models:")
    for stage, seconds in per_pass.most_common(5):
        print(f"  {stage:32} {seconds:7.2f} s")
    print(f"worst: {max(totals.values()):.2f} s; largest peak: {max(peaks.values()):.0f} MiB")


if __name__ == "__main__":
    main()
