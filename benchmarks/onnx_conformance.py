"""onnx's backend node cases, run in one process by anec, onnxruntime and onnx's ReferenceEvaluator.

    python benchmarks/onnx_conformance.py [--target m1]

Prints how many cases each engine passes, and for anec how many of its passes ran wholly on the
ANE path (fp16, no CPU op), plus the rate over ANE-capable cases (float inputs and outputs, every
op mapped to an ANE op). anec's comparison is `outputs_match` (fp16-aware when an ANE segment ran);
onnxruntime and the reference evaluator are held to each case's own tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anec.integrations.onnx_backend import AnecBackend, outputs_match
from tests.conformance.cases import float_io, node_cases


def arrays(values) -> list:
    return [onnx.numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v for v in values]


def run_anec(case, target: str) -> tuple[bool, bool, bool]:
    """(passed, wholly on the ANE, ANE-capable)."""
    try:
        rep = AnecBackend.prepare(case.model, target=target)
        for inputs, expected in case.data_sets:
            got = rep.run(arrays(inputs))
            if outputs_match(arrays(expected), got, case.rtol, case.atol, fp16=rep.used_ane):
                return False, False, rep.mapped_to_ane and float_io(case.model)
    except Exception:
        return False, False, False
    return True, rep.wholly_on_ane, rep.mapped_to_ane and float_io(case.model)


def run_with(make: Callable[[onnx.ModelProto], Callable[[list], list]]) -> Callable:
    def run(case) -> bool:
        try:
            session = make(case.model)
            for inputs, expected in case.data_sets:
                if outputs_match(arrays(expected), session(arrays(inputs)), case.rtol, case.atol, fp16=False):
                    return False
        except Exception:
            return False
        return True
    return run


def onnxruntime_session(model: onnx.ModelProto) -> Callable[[list], list]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: failures are counted, not printed
    sess = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda xs: sess.run(None, dict(zip(names, xs)))


def reference_session(model: onnx.ModelProto) -> Callable[[list], list]:
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(model)
    names = list(ref.input_names)
    return lambda xs: ref.run(None, dict(zip(names, xs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="m1")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    cases = node_cases()
    counts = {"anec": 0, "onnxruntime": 0, "ReferenceEvaluator": 0}
    seconds = dict.fromkeys(counts, 0.0)
    whole = capable = capable_whole = 0
    engines = {"onnxruntime": run_with(onnxruntime_session), "ReferenceEvaluator": run_with(reference_session)}
    for case in cases:
        start = time.perf_counter()
        passed, on_ane, is_capable = run_anec(case, args.target)
        seconds["anec"] += time.perf_counter() - start
        counts["anec"] += passed
        whole += passed and on_ane
        capable += is_capable
        capable_whole += is_capable and passed and on_ane
        for name, run in engines.items():
            start = time.perf_counter()
            counts[name] += run(case)
            seconds[name] += time.perf_counter() - start
    total = len(cases)
    print(f"onnx {onnx.__version__} backend node cases: {total} (target {args.target} for anec)")
    print(f"{'engine':<20}{'passed':>8}{'share':>9}{'seconds':>10}")
    for name, n in counts.items():
        print(f"{name:<20}{n:>8}{n / total:>9.1%}{seconds[name]:>10.1f}")
    print(f"anec passes wholly on the ANE path: {whole} of its {counts['anec']}")
    print(f"ANE-capable cases (float I/O, every op mapped to an ANE op): {capable}; "
          f"passing wholly on the fp16 ANE path: {capable_whole} ({capable_whole / max(capable, 1):.1%})")
    print(f"anec vs onnxruntime: {counts['anec'] - counts['onnxruntime']:+d} cases "
          f"({counts['anec'] / max(counts['onnxruntime'], 1):.2f}x)")


if __name__ == "__main__":
    main()
