"""Run one corpus entry on one chip through every route and say what went wrong, if anything.

    python -m tests.wild.evaluate NAME TARGET [--json OUT]

Four measurements separate the kinds of failure:

* import-f32: the imported IR in the interpreter at f32 against onnxruntime -> importer semantics;
* graph-f32:  the IR after legalize, layout and partition, still f32 -> a graph pass broke the maths;
* interp-f16: the IR after every graph pass, fp16 ANE segments (`run_interpreted`) -> what fp16 costs;
* sim:        the descriptor program on anec's simulator (`CompiledModel.run`) -> the hardware path,
  compared with onnxruntime (the verdict) and with interp-f16 (tile / to-anehw / simulator bugs).

One more measures the model rather than anec: input-f16, onnxruntime on the inputs rounded to fp16
(what the ANE's inputs are) against onnxruntime on the originals. A model that re-quantizes its
activations (QuantizeLinear, DynamicQuantizeLinear) rounds to integers at every layer, so a change at
the level of fp16 rounding flips values there and moves its outputs by far more than 1e-2: when the
simulator is off onnxruntime by no more than `FLOOR_FACTOR` times what the reference itself moves,
the verdict is `at-input-floor` — no fp16 compiler can do better — instead of `fp16-mismatch`.

The Core ML route is also compiled and saved to a temporary folder; its refusal is recorded on its
own (`coreml_saved`, `coreml_reason`) so it does not hide the simulator's verdict. Every stage is
timed; the first other exception decides the status, with the stage that was running.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anec.errors import AnecError
from anec.runtime.check import COSINE_MIN, REL_L2_MAX, error
from tests.wild.inputs import make_inputs
from tests.wild.manifest import Entry, by_name

STATUSES = ("ok", "at-input-floor", "fp16-mismatch", "wrong", "importer-wrong", "refused", "crash", "timeout")
"""Every verdict, best first: `wrong` is a disagreement anec's own routes should not have (a graph
pass, or simulator against interpreter); `importer-wrong` is the imported IR already off at f32."""

FLOOR_FACTOR = 1.5
"""How far past the reference's own move under fp16 input rounding (input-f16) the simulator may be
and still be `at-input-floor`: the two are independent roundings of the same size, so an fp16 route
that only adds its own rounding lands near the floor, not at it."""


def pair_errors(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output of `want`: cosine, relative L2 and max abs of `got` (by name, else by position)."""
    names = list(want)
    by_pos = not all(n in got for n in names)
    got_list = list(got.values())
    out = {}
    for i, name in enumerate(names):
        g = got_list[i] if by_pos else got[name]
        if np.shape(g) != np.shape(want[name]) and np.size(g) == np.size(want[name]):
            g = np.reshape(g, np.shape(want[name]))
        if np.size(g) != np.size(want[name]):
            out[name] = {"cosine": float("nan"), "rel_l2": float("inf"), "max_abs": float("inf"),
                         "shape": f"{list(np.shape(g))} vs {list(np.shape(want[name]))}"}
            continue
        e = error(g, want[name])
        out[name] = {"cosine": e.cosine, "rel_l2": e.rel_l2, "max_abs": e.max_abs}
    return out


def all_ok(errors: Mapping[str, Mapping[str, float]]) -> bool:
    """The pass criterion on every output: cosine >= 0.999 and relative L2 <= 1e-2."""
    return bool(errors) and all(e["cosine"] >= COSINE_MIN and e["rel_l2"] <= REL_L2_MAX for e in errors.values())


def within_floor(errors: Mapping[str, Mapping[str, float]], floor: Mapping[str, Mapping[str, float]]) -> bool:
    """Is every output no further from the reference than `FLOOR_FACTOR` times the reference's own
    move under fp16 input rounding (per output, by cosine distance and relative L2)?"""
    return bool(errors) and all(
        name in floor and 1 - e["cosine"] <= FLOOR_FACTOR * (1 - floor[name]["cosine"]) and e["rel_l2"] <= FLOOR_FACTOR * floor[name]["rel_l2"]
        for name, e in errors.items())


def describe(exc: BaseException) -> str:
    """One line: AnecErrors as they print; others as type, message and the innermost frame."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, AnecError):
        return first
    tb = traceback.extract_tb(exc.__traceback__)
    where = ""
    if tb:
        f = tb[-1]
        path = f.filename.split("/anec/", 1)[-1] if "/anec/" in f.filename else Path(f.filename).name
        where = f" at {path}:{f.lineno} in {f.name}"
    return f"{type(exc).__name__}: {first}{where}"


class Stages:
    """Runs the measurements in order, remembering the running stage, timings and the first failure."""

    def __init__(self) -> None:
        self.stage = "start"
        self.seconds: dict[str, float] = {}
        self.failure: dict[str, str] | None = None
        self.failures: dict[str, dict[str, str]] = {}
        self.side_stages = frozenset({"emit-coreml", "onnxruntime-f16-inputs"})
        """Stages whose failure is reported on its own and does not decide the status."""

    def progress(self, name: str) -> None:
        self.stage = name

    def run(self, stage: str, fn: Callable[[], Any]) -> Any:
        self.stage = stage
        start = time.perf_counter()
        try:
            return fn()
        except Exception as e:  # recorded and classified: one model must not stop the campaign
            failure = {"status": "refused" if isinstance(e, AnecError) else "crash",
                       "stage": self.stage, "reason": describe(e)}
            self.failures[stage] = failure
            if self.failure is None and stage not in self.side_stages:
                self.failure = failure
            return None
        finally:
            self.seconds[stage] = round(time.perf_counter() - start, 2)


def evaluate(entry: Entry, target: str) -> dict[str, Any]:
    """The result record of one entry on one chip (what `benchmarks/wild.py` stores)."""
    import anec
    from anec.importers import import_model
    from anec.interpreter import entry_function, interpret, output_names
    from anec.runtime import run_interpreted
    from anec.runtime.check import reference_outputs

    path = entry.file
    feeds = make_inputs(entry)
    record: dict[str, Any] = {"name": entry.name, "package": entry.package, "version": entry.version,
                              "task": entry.task, "target": target, "path": entry.path}
    st = Stages()
    ref = st.run("onnxruntime", lambda: reference_outputs(path, feeds))
    if ref is None:
        record.update(status="crash", stage="onnxruntime", reason=st.failure["reason"] if st.failure else "")
        return record
    import onnx

    graph_proto = onnx.load(str(path), load_external_data=False).graph
    errors: dict[str, dict] = {}
    rounded = {k: v.astype(np.float16).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in feeds.items()}
    if any(not np.array_equal(rounded[k], feeds[k]) for k in feeds):
        ref16 = st.run("onnxruntime-f16-inputs", lambda: reference_outputs(path, rounded))
        if ref16 is not None:
            errors["input-f16"] = pair_errors(ref16, ref)
    record["onnx_nodes"] = len(graph_proto.node)
    record["node_domains"] = sorted({n.domain for n in graph_proto.node})
    frozen = {spec.name: spec.value for spec in entry.inputs if spec.kind == "const"}  # what --freeze's hint asks of a user
    if frozen:
        record["frozen"] = frozen
    samples = {k: v for k, v in feeds.items() if k not in frozen}  # both routes calibrate on the inputs they run: the same fp16 fixes
    module = st.run("import", lambda: import_model(str(path), input_shapes=entry.input_shapes, input_values=frozen or None))
    if module is not None:
        def interpret_f32(ir):
            outs = interpret(ir, feeds, precision="f32", segments="f32")
            return dict(zip(output_names(entry_function(ir)), outs))

        got = st.run("interpret-f32", lambda: interpret_f32(module))
        if got is not None:
            errors["import-f32"] = pair_errors(got, ref)
        partitioned = st.run("partition", lambda: anec.compile(module, target=target, emit="coreml",
                                                               stop_after="ane-partition", progress=st.progress))
        if partitioned is not None:  # before ane-fp16: still f32, so any error is a pass's
            got = st.run("interpret-graph-f32", lambda: interpret_f32(partitioned.ir))
            if got is not None:
                errors["graph-f32"] = pair_errors(got, ref)
        graph = st.run("graph-passes", lambda: anec.compile(module, target=target, emit="coreml",
                                                            example_inputs=samples, progress=st.progress))
        if graph is not None:  # calibrated on the same inputs: did anec warn about what fp16 does?
            record["fp16_warnings"] = graph.report.fp16_warnings[:5]
            record["fp16_warning_count"] = len(graph.report.fp16_warnings)
            record["ops"] = len(graph.report.ops)
            record["ane_flops_fraction"] = graph.report.ane_flops_fraction  # placement; the descriptor route refines it
            record["host_ops"] = sorted({r.op for r in graph.report.host_ops})
            interp = st.run("interpret-f16", lambda: run_interpreted(graph.ir, feeds))
            if interp is not None:
                errors["interp-f16"] = pair_errors(interp, ref)
            with tempfile.TemporaryDirectory() as tmp:
                saved = st.run("emit-coreml", lambda: graph.save(Path(tmp) / "model.mlpackage"))
                record["coreml_saved"] = saved is not None
                if saved is None:
                    record["coreml_reason"] = st.failures["emit-coreml"]["reason"]
        hw = st.run("descriptors", lambda: anec.compile(module, target=target, emit="descriptors", example_inputs=samples,
                                                        progress=st.progress))
        if hw is not None:
            record["ane_flops_fraction"] = hw.report.ane_flops_fraction
            record["ops"] = len(hw.report.ops)
            sim = st.run("simulator", lambda: hw.run(feeds))
            if sim is not None:
                errors["sim"] = pair_errors(sim, ref)
                if graph is not None and interp is not None:
                    errors["sim-vs-interp"] = pair_errors(sim, {k: interp[k] for k in interp})
    record["errors"] = errors
    record["seconds"] = st.seconds
    record.update(classify(errors, st.failure))
    return record


def classify(errors: Mapping[str, Mapping[str, Mapping[str, float]]], failure: Mapping[str, str] | None) -> dict[str, str]:
    """Status, stage and reason from the measurements, blaming the earliest route that went wrong."""
    def bad(key: str) -> bool:
        return key in errors and not all_ok(errors[key])

    def worst(key: str) -> str:
        name, e = min(errors[key].items(), key=lambda kv: (kv[1]["cosine"] if kv[1]["cosine"] == kv[1]["cosine"] else -2))
        return f"{key}: output {name} cosine {e['cosine']:.4f}, rel L2 {e['rel_l2']:.2e}"

    if bad("import-f32"):
        return {"status": "importer-wrong", "stage": "import", "reason": worst("import-f32")}
    if bad("graph-f32"):
        return {"status": "wrong", "stage": "graph passes", "reason": worst("graph-f32")}
    if failure is not None:
        return dict(failure)
    if "sim" not in errors:
        return {"status": "crash", "stage": "simulator", "reason": "no simulator outputs"}
    if all_ok(errors["sim"]):
        return {"status": "ok", "stage": "", "reason": ""}
    if bad("sim-vs-interp") and not bad("interp-f16"):
        # the fp16 interpreter is right and the simulator is away from it: tile, to-anehw or the simulator
        return {"status": "wrong", "stage": "tile/to-anehw/simulator", "reason": worst("sim")}
    if "input-f16" in errors and within_floor(errors["sim"], errors["input-f16"]):
        return {"status": "at-input-floor", "stage": "fp16", "reason": worst("sim") + f"; onnxruntime itself moves as far "
                f"when its inputs are rounded to fp16 ({worst('input-f16')})"}
    return {"status": "fp16-mismatch", "stage": "fp16", "reason": worst("sim") + (
        f"; the fp16 interpreter too ({worst('interp-f16')})" if bad("interp-f16") else "")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("target")
    parser.add_argument("--json", type=Path, help="write the record here (else print it)")
    args = parser.parse_args(argv)
    entry = by_name(args.name)
    if not entry.cached():
        print(f"{entry.name} is not in the cache: run python -m tests.wild.fetch", file=sys.stderr)
        return 2
    record = evaluate(entry, args.target)
    from tests.wild.classes import BLOCKERS, classify_record

    if set(classify_record(record)) & BLOCKERS:  # what fails once the import blockers are worked around
        from tests.wild.triage import next_failure

        after = next_failure(entry, args.target)
        record["next"] = {k: after.get(k) for k in ("status", "stage", "reason", "ane_flops_fraction", "ops",
                                                 "fp16_warnings")}
        record["next"]["sim"] = after.get("errors", {}).get("sim")
    text = json.dumps(record, indent=1, default=float)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
