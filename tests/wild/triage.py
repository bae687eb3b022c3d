"""Find where a corpus model goes wrong: the first op whose value leaves the reference.

    python -m tests.wild.triage NAME [--target m1] [--stop-after ane-fp16] [--mode fp16|stages]

`fp16` interprets the IR before ane-fp16 (f32) and after `--stop-after` (fp16 segments), matches
ops by `ane.name`, and lists the first whose fp16 value leaves the pass bar, with the largest
magnitude each reached (fp16 saturates at 65504). `stages` interprets the IR at f32 after
each graph pass in turn and prints its error against onnxruntime, naming the pass that broke it.
`next` works around the import blockers (unused op domains, value names xDSL rejects) in a copy of
the model and runs the campaign's evaluation on it: what would fail once those are fixed.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from tests.wild.evaluate import all_ok, pair_errors
from tests.wild.inputs import make_inputs
from tests.wild.manifest import Entry, by_name


def _named_values(ir: Any, feeds: dict[str, np.ndarray], segments: str) -> dict[str, tuple[str, np.ndarray]]:
    """Each named op's first result (as f64) from one interpreter run, by its `ane.name`."""
    from anec.interpreter import interpret

    seen: dict[str, tuple[str, np.ndarray]] = {}

    def observe(op: Any, outs: list[np.ndarray]) -> None:
        name = op.attributes.get("ane.name")
        if name is not None and outs and isinstance(outs[0], np.ndarray):
            seen[str(name.data)] = (op.name, np.array(outs[0], dtype=np.float64, copy=True))

    interpret(ir, feeds, precision="f32", segments=segments, observe=observe)  # type: ignore[arg-type]
    return seen


def fp16_divergence(entry: Entry, target: str, stop_after: str, limit: int = 12) -> list[str]:
    """Lines naming the first ops whose value after `stop_after` (fp16 segments) differs from the
    same-named op's f32 value before ane-fp16 beyond the pass bar, in execution order."""
    import anec
    from anec.runtime.check import error

    feeds = make_inputs(entry)

    def ir_after(stage: str) -> Any:
        return anec.compile(str(entry.file), target=target, emit="coreml", input_shapes=entry.input_shapes,
                            stop_after=stage).ir

    f32 = _named_values(ir_after("ane-partition"), feeds, "f32")
    f16 = _named_values(ir_after(stop_after), feeds, "f16")
    lines = []
    for name, (op, b) in f16.items():
        if name not in f32 or f32[name][1].size != b.size or b.size == 0:
            continue
        a = f32[name][1].reshape(b.shape)
        e = error(b, a)
        if not e.ok:
            lines.append(f"{op} {name}: cosine {e.cosine:.4f} rel L2 {e.rel_l2:.2e} |f32| max {np.abs(a).max():.3g}"
                         f" |f16| max {np.abs(b[np.isfinite(b)]).max(initial=0):.3g} non-finite {int((~np.isfinite(b)).sum())}")
            if len(lines) >= limit:
                break
    return lines


def stage_errors(entry: Entry, target: str) -> list[str]:
    """One line per graph pass: the f32 interpreter's error against onnxruntime after it."""
    import anec
    from anec.importers import import_model
    from anec.interpreter import entry_function, interpret, output_names
    from anec.pipeline import GRAPH_PASSES
    from anec.runtime.check import reference_outputs

    feeds = make_inputs(entry)
    ref = reference_outputs(entry.file, feeds)
    module = import_model(str(entry.file), input_shapes=entry.input_shapes)
    lines = []
    for stage in ("import", *GRAPH_PASSES):
        ir = module if stage == "import" else anec.compile(module, target=target, emit="coreml", stop_after=stage).ir
        segments = "f16" if stage in ("ane-fp16", "ane-fuse") else "f32"
        outs = dict(zip(output_names(entry_function(ir)), interpret(ir, feeds, precision="f32", segments=segments)))
        errs = pair_errors(outs, ref)
        worst = min(errs.values(), key=lambda e: e["cosine"] if e["cosine"] == e["cosine"] else -2)
        lines.append(f"{stage:14} {'ok ' if all_ok(errs) else 'BAD'} worst cosine {worst['cosine']:.5f} rel L2 {worst['rel_l2']:.2e}")
    return lines


def patched_model(model: Any) -> Any:
    """A copy of an onnx ModelProto with the two import blockers of docs/wild.md worked around:
    opset imports of domains no node uses are dropped, and value names that are not valid xDSL
    names (a leading digit, ':' …) are prefixed and sanitised. Shows what fails next."""

    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    used = {n.domain for n in model.graph.node} | {"", "ai.onnx"}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)

    def fix(name: str) -> str:
        return patched_name(name) if name else name

    g = model.graph
    for n in g.node:
        n.input[:] = [fix(i) for i in n.input]
        n.output[:] = [fix(o) for o in n.output]
    for coll in (g.input, g.output, g.value_info, g.initializer):
        for v in coll:
            v.name = fix(v.name)
    return model


def next_failure(entry: Entry, target: str) -> dict[str, Any]:
    """The campaign record of `entry` with its model patched by `patched_model`."""
    import os
    import tempfile
    from dataclasses import replace

    import onnx

    from tests.wild.evaluate import evaluate

    original = onnx.load(str(entry.file))  # before the cache moves
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("ANEC_WILD_CACHE")
        os.environ["ANEC_WILD_CACHE"] = tmp
        try:
            inputs = tuple(replace(i, name=patched_name(i.name)) for i in entry.inputs)
            copy = replace(entry, inputs=inputs)
            copy.file.parent.mkdir(parents=True, exist_ok=True)
            onnx.save(patched_model(original), str(copy.file))
            return evaluate(copy, target)
        finally:
            if old is None:
                os.environ.pop("ANEC_WILD_CACHE", None)
            else:
                os.environ["ANEC_WILD_CACHE"] = old


def patched_name(name: str) -> str:
    import re

    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.-]*", name) else "v_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--target", default="m1")
    parser.add_argument("--stop-after", default="ane-fp16")
    parser.add_argument("--mode", choices=("fp16", "stages", "next"), default="fp16")
    args = parser.parse_args(argv)
    entry = by_name(args.name)
    if args.mode == "next":
        r = next_failure(entry, args.target)
        print(r["status"], r.get("stage"), r.get("reason"), {k: min(e["cosine"] for e in v.values()) for k, v in r.get("errors", {}).items()})
        return 0
    lines = stage_errors(entry, args.target) if args.mode == "stages" else \
        fp16_divergence(entry, args.target, args.stop_after)
    print("\n".join(lines) or "no op leaves the bar")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
