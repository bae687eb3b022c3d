"""Compressed weights on zoo models: QDQ models from onnxruntime's `quantize_static`, integer-op models
from its `quantize_dynamic`, and anec's own `--compress`, beside coremltools' `palettize_weights` /
`linear_quantize_weights` on the same package.

    python benchmarks/compression.py resnet50 bert-base --chips m1,m4
    python benchmarks/compression.py resnet50 --modes dynamic,palettize4   # some rows only

Per model and chip it prints the package's weight bytes and the `.anec` file's bytes against the fp16
ones, the simulated output's cosine against onnxruntime running the same (quantized or float) model,
and compile times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anec
from anec.compression import COMPRESSORS
from tests import zoo


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
MODES = (*QUANTIZERS, *COMPRESSORS, "coremltools")


def coremltools_side(package: Path, folder: Path) -> list[tuple[str, int, float]]:
    """(mode, weight bytes, seconds) of coremltools' own compression of anec's fp16 package."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    rows = []
    model = ct.models.MLModel(str(package), skip_model_load=True)
    for mode, config, compress in (
        ("ct palettize4 (uniform: its k-means needs scikit-learn)", cto.OptimizationConfig(cto.OpPalettizerConfig(mode="uniform", nbits=4)), cto.palettize_weights),
        ("ct int8", cto.OptimizationConfig(cto.OpLinearQuantizerConfig(mode="linear_symmetric")), cto.linear_quantize_weights),
    ):
        start = time.perf_counter()
        out = compress(model, config)
        seconds = time.perf_counter() - start
        path = folder / f"ct-{len(rows)}.mlpackage"
        out.save(str(path))
        rows.append((mode, weight_bytes(path), seconds))
    return rows


def run(name: str, chips: list[str], modes: list[str], simulate: bool) -> None:
    source = zoo.onnx_model(name)
    feeds = zoo.inputs(name)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
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
            start = time.perf_counter()
            fp16 = anec.compile(source, target=chip)
            fp16.save(fp16_package)
            base, base_s = weight_bytes(fp16_package), time.perf_counter() - start
            base_program = len(fp16.program_bytes)
            del fp16
            print(f"{name} {chip} fp16: {base:,} weight bytes, .anec {base_program:,} bytes, compiled in {base_s:.1f} s", flush=True)
            for label, model, options, reference in rows:
                start = time.perf_counter()
                # blockwise scales exist in Core ML from iOS 18
                compiled = anec.compile(model, target=chip, deployment_target="ios18" if label == "int8-block" else "ios17", **options)
                package = compiled.save(folder / f"{label}-{chip}.mlpackage")
                seconds = time.perf_counter() - start
                line = (f"{name} {chip} {label}: {weight_bytes(package) / base:.3f}x fp16 weight bytes, "
                        f".anec {len(compiled.program_bytes) / base_program:.3f}x, compiled in {seconds:.1f} s")
                if simulate:
                    (simulated,) = compiled.run(feeds).values()
                    line += f", cosine vs onnxruntime ({reference}) {cosine(simulated, expected[reference]):.5f}"
                    if reference != "float":  # how far onnxruntime's own quantized model is from the float one
                        line += f" (vs float {cosine(simulated, expected['float']):.5f}; onnxruntime's {cosine(expected[reference], expected['float']):.5f})"
                print(line + f"; {compiled.report.weight_summary}", flush=True)
            if "coremltools" in modes:
                for mode, size, seconds in coremltools_side(fp16_package, folder):
                    print(f"{name} {chip} {mode}: {size / base:.3f}x fp16 weight bytes, in {seconds:.1f} s (after anec's fp16 compile)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="zoo model names (resnet50, bert-base, bert-tiny, resnet-tiny, …)")
    parser.add_argument("--chips", default="m1,m4")
    parser.add_argument("--modes", default=",".join(MODES), help=f"rows to run, of {', '.join(MODES)} (default: all)")
    parser.add_argument("--no-simulate", action="store_true", help="sizes and times only")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    for name in args.models:
        run(name, args.chips.split(","), modes, not args.no_simulate)


if __name__ == "__main__":
    main()
