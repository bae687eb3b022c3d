"""Compile time per pass and peak memory, over the zoo and the real-world corpus.

    python benchmarks/compile_time.py [--zoo small|full|none] [--wild] [--synthetic [NAME ...]] [--target m1]
                                      [--emit descriptors coreml ...] [--only NAME ...]

Each model compiles in a fresh subprocess (peak memory is per process) through `anec.compile` with
each given emitter (route), and reports the same stage table as `anec compile --timings`: import, each
pass, the report and the emitter, with the peak resident memory after each. Prints every model's CPU
time (user + system of the whole subprocess, start-up included: on a shared machine wall time mostly
measures the neighbours), its stages' wall time and peak, the slowest models by CPU time and, summed
over all models, the slowest stages. The real-world corpus is the one `python -m tests.wild.fetch`
caches (`--wild`; models not fetched are listed as skipped); `--synthetic` adds the models of
`tests.synthetic` (all of them, or the ones named), such as the pitch tracker whose 1-D convs are
written as (K, 1) kernels on (N, C, T, 1) tensors.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anec.pipeline import PIPELINES  # noqa: E402

ZOO = {"small": ("bert-tiny", "resnet-tiny"), "full": ("bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2")}

ONE = """
import json, sys, tempfile, time
from pathlib import Path
import anec
from anec.commands.compile import timing_rows
from anec.pipeline import peak_memory_mb
path, target, emit, shapes, values = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
compiled = anec.compile(path, target=target, emit=emit, input_shapes=shapes or None, input_values=values or None)
with tempfile.TemporaryDirectory() as folder:
    start = time.perf_counter()
    compiled.save(Path(folder) / ("model" + {"descriptors": ".anec", "coreml": ".mlpackage"}.get(emit, ".mlir")))
    compiled.report.stats.update(emit_seconds=time.perf_counter() - start, emit_peak_mb=peak_memory_mb())
print(json.dumps(timing_rows(compiled.report.stats, emit)))
"""


def models(zoo: str, wild: bool, synthetic: list[str] | None, folder: Path) -> list[tuple[str, Path | None, dict, dict]]:
    """(name, file, input shapes, frozen input values): a corpus model compiles as its evaluation does."""
    found: list[tuple[str, Path | None, dict, dict]] = []
    if synthetic is not None:
        from tests.synthetic import MODELS, write

        found += [(name, write(name, folder / f"{name}.onnx"), {}, {}) for name in (synthetic or MODELS)]
    if zoo != "none":
        from tests.zoo import onnx_model

        found += [(name, onnx_model(name), {}, {}) for name in ZOO["small"] + (ZOO["full"] if zoo == "full" else ())]
    if wild:
        from tests.wild.manifest import load

        for entry in load():
            frozen = {spec.name: spec.value for spec in entry.inputs if spec.kind == "const"}  # what --freeze asks of a user
            found.append((entry.name, entry.file if entry.cached() else None, entry.input_shapes, frozen))
    return found


def cpu_seconds() -> float:
    """User + system time of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", choices=("small", "full", "none"), default="small")
    parser.add_argument("--wild", action="store_true", help="also the real-world corpus (fetched with python -m tests.wild.fetch)")
    parser.add_argument("--synthetic", nargs="*", metavar="NAME", help="also the models of tests.synthetic (all, or those named)")
    parser.add_argument("--target", default="m1")
    parser.add_argument("--emit", nargs="+", choices=tuple(PIPELINES), default=["descriptors"], help="one or more routes")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only the models named (of those selected)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}
    per_pass: Counter[str] = Counter()
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="anec-compile-time-") as folder:
        cases = [case for case in models(args.zoo, args.wild, args.synthetic, Path(folder)) if not args.only or case[0] in args.only]
        for (name, path, shapes, values), emit in ((case, emit) for case in cases for emit in args.emit):
            key = f"{name} [{emit}]" if len(args.emit) > 1 else name
            if path is None:
                print(f"{key:34} skipped (not fetched)")
                continue
            before = cpu_seconds()
            try:
                done = subprocess.run([sys.executable, "-c", ONE, str(path), args.target, emit, json.dumps(shapes), json.dumps(values)],
                                      capture_output=True, text=True, cwd=ROOT, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{key:34} timed out after {args.timeout:.0f} s wall ({cpu_seconds() - before:.0f} s CPU)")
                continue
            if done.returncode != 0:
                print(f"{key:34} failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:120]}")
                continue
            cpu[key] = cpu_seconds() - before
            rows = json.loads(done.stdout.strip().splitlines()[-1])
            wall[key] = sum(seconds for _, seconds, _ in rows)
            peaks[key] = max(peak for _, _, peak in rows)
            per_pass.update({stage: seconds for stage, seconds, _ in rows})
            slowest = max(rows, key=lambda r: r[1])
            print(f"{key:34} {cpu[key]:7.2f} s CPU {wall[key]:7.2f} s wall  peak {peaks[key]:6.0f} MiB  "
                  f"slowest stage {slowest[0]} ({slowest[1]:.2f} s wall)")
    if not cpu:
        return
    print("\nslowest models by CPU time:")
    for key in sorted(cpu, key=lambda k: -cpu[k])[:10]:
        print(f"  {key:32} {cpu[key]:7.2f} s CPU {wall[key]:7.2f} s wall  peak {peaks[key]:6.0f} MiB")
    print("slowest stages (wall), summed over the models:")
    for stage, seconds in per_pass.most_common(5):
        print(f"  {stage:32} {seconds:7.2f} s")
    worst = max(cpu, key=lambda k: cpu[k])
    print(f"worst: {worst} {cpu[worst]:.2f} s CPU ({wall[worst]:.2f} s wall); largest peak: {max(peaks.values()):.0f} MiB")


if __name__ == "__main__":
    main()
