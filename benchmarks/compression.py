"""Compressed weights on zoo models: QDQ models from onnxruntime's `quantize_static`, integer-op models
from its `quantize_dynamic`, and anec's own `--compress`, beside coremltools' `palettize_weights` /
`linear_quantize_weights` on the same package.

    python benchmarks/compression.py resnet50 bert-base --chips m1,m4
    python benchmarks/compression.py resnet50 --modes dynamic,palettize4   # some rows only

Per model and chip it prints the package's weight bytes and the `.anec` file's bytes against the fp16
ones, the simulated output's cosine against onnxruntime running the same (quantized or float) model,
and compile times. For every `--compress` mode it also runs coremltools' equivalent
(`linear_quantize_weights`, `palettize_weights` — k-means when scikit-learn is installed, else
uniform —, `prune_weights`) on anec's fp16 package of the same model, runs the result with the test
MIL interpreter, and ends with a table of both side by side: size, time, cosine against float32, and
anec's compile time (and its ane-compress pass alone) over coremltools' compression time — and over
what a coremltools user pays in all: `ct.convert` of the model's `torch.export` program to an fp16
package (timed once per model, as `benchmarks/coreml.py` does) plus the compression call. Times are CPU
seconds of this process (`time.process_time`, BLAS and OpenMP on one thread: `CLOCK`): the machine is
shared, and wall time there measures the neighbours.

Like for like: anec's `--compress` rows are emitted for iOS 18, the deployment target of the fp16
package coremltools compresses, so both write iOS 18's `constexpr_*` forms. coremltools 9.0's
magnitude pruner takes `np.percentile` of the float16 weights, which under numpy 2 overflows to NaN
for a tensor of more than 65504 values: such a tensor keeps all its values (stored sparse, 1.06x its
fp16 bytes). The prune50 row says how many values coremltools zeroed, and a second row runs it with the
percentile taken in float32, which is what it means to do.

Requirements: the `test` extra (onnxruntime, transformers, torch) and scikit-learn, which
coremltools' k-means palettizer needs (`pip install -e .[test,bench]`).
"""

from __future__ import annotations

import os

# one BLAS / OpenMP thread, set before numpy loads (see CLOCK)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coreml import coremltools_seconds  # benchmarks/coreml.py, beside this script

import anec
from anec.compression import COMPRESSORS
from tests import zoo

CLOCK = time.process_time
"""CPU seconds of this process, all threads. BLAS and OpenMP run one thread each (set before numpy
loads, unless the environment says otherwise): on a shared machine their idle threads spin while they
wait for a core, which counted several times the work (anec's float32 run on BERT-base: 4.6 CPU s with
OpenBLAS's threads, 0.76 s with one)."""


def weight_bytes(package: Path) -> int:
    return sum(p.stat().st_size for p in package.rglob("weight.bin"))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def onnxruntime_output(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def quantize(source: Path, feeds: dict[str, np.ndarray], out: Path) -> Path:
    """`quantize_static` in QDQ form (int8 weights per channel, uint8 activations), calibrated on four
    perturbed copies of the zoo inputs."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    def sample(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {k: (v + rng.standard_normal(v.shape).astype(v.dtype) * 0.1) if v.dtype.kind == "f" else v for k, v in feeds.items()}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([sample(s) for s in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return out


def quantize_integer_ops(source: Path, out: Path) -> Path:
    """`quantize_dynamic` with int8 weights per tensor: DynamicQuantizeLinear and ConvInteger /
    MatMulInteger, embedding tables dequantized (convs and gathers are quantized only when named in
    `op_types_to_quantize`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul", "Gemm", "Gather"])
    return out


QUANTIZERS = {"qdq": quantize, "dynamic": lambda source, feeds, out: quantize_integer_ops(source, out)}
"""onnxruntime's quantization tools, each a row compared with onnxruntime running the quantized model."""
MODES = (*QUANTIZERS, *COMPRESSORS)


def kmeans_available() -> bool:
    """coremltools' k-means palettizer needs scikit-learn; without it the uniform palettizer stands in."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def coremltools_equivalent(mode: str) -> tuple[str, Any, Callable[..., Any]]:
    """(label, config, function) of coremltools' `coremltools.optimize.coreml` doing what `--compress mode` does."""
    import coremltools.optimize.coreml as cto

    palette = "kmeans" if kmeans_available() else "uniform"
    found = {
        "int8": ("linear_quantize_weights symmetric per channel", cto.OpLinearQuantizerConfig(mode="linear_symmetric"),
                 cto.linear_quantize_weights),
        "int8-block": ("linear_quantize_weights per block of 32", cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", granularity="per_block", block_size=32), cto.linear_quantize_weights),
        "palettize4": (f"palettize_weights {palette} 4-bit", cto.OpPalettizerConfig(mode=palette, nbits=4), cto.palettize_weights),
        "palettize6": (f"palettize_weights {palette} 6-bit", cto.OpPalettizerConfig(mode=palette, nbits=6), cto.palettize_weights),
        "prune50": ("prune_weights magnitude 50%", cto.OpMagnitudePrunerConfig(target_sparsity=0.5), cto.prune_weights),
    }
    label, config, function = found[mode]
    return label, cto.OptimizationConfig(global_config=config), function


@dataclass(frozen=True)
class Side:
    """One tool's compression of one model: weight bytes against fp16, seconds, cosine against float32."""

    size: float
    seconds: float
    cosine: float | None

    def cells(self) -> list[str]:
        return [f"{self.size:.3f}x", f"{self.seconds:.1f}", "-" if self.cosine is None else f"{self.cosine:.5f}"]


@contextlib.contextmanager
def percentile_in_float32() -> Iterator[None]:
    """`np.percentile` of float16 arrays taken in float32 while coremltools prunes (its float16 one is
    NaN past 65504 values under numpy 2)."""
    original = np.percentile

    def percentile(a: Any, q: Any, *args: Any, **kwargs: Any) -> Any:
        a = np.asarray(a)
        return original(a.astype(np.float32) if a.dtype == np.float16 else a, q, *args, **kwargs)

    np.percentile = percentile
    try:
        yield
    finally:
        np.percentile = original


def zeroed_share(model: Any) -> float:
    """The share of the values of `model`'s sparse weights (`constexpr_sparse_to_dense`, iOS 18 form:
    one mask element a value) that are zero."""
    masks = [op.inputs["mask"].val for function in model._mil_program.functions.values()
             for op in function.find_ops(op_type="constexpr_sparse_to_dense")]
    total = sum(m.size for m in masks)
    return 1 - sum(int(np.count_nonzero(m)) for m in masks) / max(total, 1)


def coremltools_side(mode: str, fp16_package: Path, base: int, folder: Path, feeds: dict[str, np.ndarray],
                     expected: np.ndarray | None, fixed: bool = False) -> tuple[str, Side]:
    """coremltools' compression of anec's fp16 package in `mode`'s equivalent, timed alone (the model is
    loaded first), its output run by the test MIL interpreter; `fixed`: pruning with the percentile in
    float32 (`percentile_in_float32`)."""
    import coremltools as ct

    from tests.emit.mil_interpreter import load_package
    from tests.emit.support import run_emitted

    label, config, compress = coremltools_equivalent(mode)
    model = ct.models.MLModel(str(fp16_package), skip_model_load=True)
    with percentile_in_float32() if fixed else contextlib.nullcontext():
        start = CLOCK()
        out = compress(model, config)
        seconds = CLOCK() - start
    if mode.startswith("prune"):
        label += f" (zeroed {zeroed_share(out):.0%} of the values{', percentile in float32' if fixed else ''})"
    path = folder / f"ct-{mode}{'-fixed' if fixed else ''}.mlpackage"
    out.save(str(path))
    similarity = None
    if expected is not None:
        (got,) = run_emitted(load_package(path), feeds).values()
        similarity = cosine(got, expected)
    return label, Side(weight_bytes(path) / base, seconds, similarity)


def run(name: str, chips: list[str], modes: list[str], simulate: bool, against_coremltools: bool) -> list[list[str]]:
    """Print each row as it is measured; returns the anec-versus-coremltools table's rows."""
    source = zoo.onnx_model(name)
    feeds = zoo.inputs(name)
    table: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        convert_s = float("nan")
        if against_coremltools and set(modes) & set(COMPRESSORS):
            convert_s, _ = coremltools_seconds(name, "ios18", folder / "ct-convert.mlpackage", CLOCK)
            print(f"{name}: coremltools converts its torch.export program to an fp16 package in {convert_s:.1f} s", flush=True)
        expected = {"float": onnxruntime_output(source, feeds)} if simulate else {}
        rows: list[tuple[str, Path, dict[str, str], str]] = []
        for label, quantizer in QUANTIZERS.items():
            if label in modes:
                quantized = quantizer(source, feeds, folder / f"{label}.onnx")
                rows.append((label, quantized, {}, label))
                if simulate:
                    expected[label] = onnxruntime_output(quantized, feeds)
        rows += [(mode, source, {"compress": mode}, "float") for mode in COMPRESSORS if mode in modes]
        for chip in chips:
            fp16_package = folder / f"fp16-{chip}.mlpackage"
            start = CLOCK()
            # iOS 18: coremltools' blockwise quantization needs it; fp16 weights are the same bytes
            fp16 = anec.compile(source, target=chip, deployment_target="ios18")
            fp16.save(fp16_package)
            base, base_s = weight_bytes(fp16_package), CLOCK() - start
            base_program = len(fp16.program_bytes)
            del fp16
            print(f"{name} {chip} fp16: {base:,} weight bytes, .anec {base_program:,} bytes, compiled in {base_s:.1f} s", flush=True)
            for label, model, options, reference in rows:
                start = CLOCK()
                # --compress: iOS 18, as coremltools' input package (and blockwise scales need it)
                compiled = anec.compile(model, target=chip, deployment_target="ios18" if label in COMPRESSORS else "ios17", **options)
                package = compiled.save(folder / f"{label}-{chip}.mlpackage")
                seconds = CLOCK() - start
                size = weight_bytes(package) / base
                line = f"{name} {chip} {label}: {size:.3f}x fp16 weight bytes, .anec {len(compiled.program_bytes) / base_program:.3f}x, compiled in {seconds:.1f} s"
                similarity = None
                if simulate:
                    (simulated,) = compiled.run(feeds).values()
                    similarity = cosine(simulated, expected[reference])
                    line += f", cosine vs onnxruntime ({reference}) {similarity:.5f}"
                    if reference != "float":  # how far onnxruntime's own quantized model is from the float one
                        line += f" (vs float {cosine(simulated, expected['float']):.5f}; onnxruntime's {cosine(expected[reference], expected['float']):.5f})"
                print(line + f"; {compiled.report.weight_summary}", flush=True)
                if label in COMPRESSORS and against_coremltools:
                    pass_seconds = compiled.report.stats.get("pass_cpu_seconds", {})
                    compress_s = pass_seconds.get("ane-compress", float("nan")) if isinstance(pass_seconds, dict) else float("nan")
                    ours = Side(size, seconds, similarity)
                    for fixed in (False, True) if label.startswith("prune") else (False,):
                        tool, theirs = coremltools_side(label, fp16_package, base, folder, feeds, expected.get("float"), fixed)
                        table.append([name, chip, label, *ours.cells(), f"{compress_s:.1f}", *theirs.cells(),
                                      f"{seconds / theirs.seconds:.2f}", f"{compress_s / theirs.seconds:.2f}",
                                      f"{seconds / (convert_s + theirs.seconds):.2f}", tool])
                        print("  coremltools " + " | ".join(table[-1][-1:] + theirs.cells()), flush=True)
                del compiled
    return table


TABLE_HEADER = ["model", "chip", "mode", "anec size", "anec compile s", "anec cosine", "ane-compress s",
                "ct size", "ct s", "ct cosine", "anec compile / ct", "ane-compress / ct", "anec compile / (ct convert + ct)",
                "coremltools"]


def print_table(rows: list[list[str]]) -> None:
    """anec's compile beside coremltools' compression, per mode (cosines against float32 onnxruntime:
    anec's simulated, coremltools' package run by the test MIL interpreter; ct seconds: its
    compression call alone, on anec's fp16 package; ct convert: `ct.convert` of the torch.export
    program, what a coremltools user pays before compressing)."""
    print("| " + " | ".join(TABLE_HEADER) + " |")
    print("|" + "---|" * len(TABLE_HEADER))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="zoo model names (resnet50, bert-base, bert-tiny, resnet-tiny, …)")
    parser.add_argument("--chips", default="m1,m4")
    parser.add_argument("--modes", default=",".join(MODES), help=f"rows to run, of {', '.join(MODES)} (default: all)")
    parser.add_argument("--no-simulate", action="store_true", help="sizes and times only")
    parser.add_argument("--no-coremltools", action="store_true", help="skip coremltools' side of each --compress mode")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    table = [row for name in args.models for row in run(name, args.chips.split(","), modes, not args.no_simulate, not args.no_coremltools)]
    if table:
        print_table(table)


if __name__ == "__main__":
    main()
