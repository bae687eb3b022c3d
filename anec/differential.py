"""The differential check (`anec check`): every stage of a compile against the one before it, and
for the first stage that disagrees, the first op whose output parts from its reference.

Stages and their references:

- **import**: the imported IR run in float32 against the source framework (onnxruntime for ONNX,
  eager PyTorch for `.pt2`): importer semantics. Per op, an ONNX node's first output is compared
  with the op that carries the node's name.
- **each graph pass**: the IR after the pass against the IR before it (float32 until `ane-fp16`,
  fp16 storage inside segments after it). Per op, ops with the same name and shape are compared.
- **hardware**: the descriptor program on the simulator against the fp16 IR interpreter on the
  graph-level IR it was lowered from (tile, to-anehw, plan-memory, the simulator). Per op, every
  value computed inside a segment is made a program output, so each op's simulated result can be
  read and compared with the interpreter's.

An output agrees when its cosine similarity is at least 0.999 and its relative L2 error at most
1e-2 (`anec.agreement`), the bar a model's outputs must meet against the reference, or when every
difference is within the arithmetic's noise (`anec.agreement.F32_NOISE` for float32 stages,
`FP16_NOISE` once fp16 is in play).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, FunctionType, ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from anec.agreement import F32_NOISE, FP16_NOISE, Error, error
from anec.context import make_context
from anec.dialects import ane
from anec.dialects.discardable import NAME_ATTR, name_of, string_attr
from anec.importers import InputShapes, import_model
from anec.interpreter import entry_function, input_names, interpret, output_names
from anec.pipeline import GRAPH_PASSES, CompileOptions, build_passes, descriptor_program
from anec.runtime import run_file, run_interpreted
from anec.runtime.check import reference_outputs
from anec.targets import get_target
from anec.types import numpy_dtype
from anec.weights import copy_module

Values = dict[str, np.ndarray]


@dataclass(frozen=True)
class StageCheck:
    stage: str
    """`import`, a graph pass's name, or `hardware`."""
    against: str
    """What the stage's outputs were compared with."""
    errors: dict[str, Error]
    """Per output of the model."""
    noise: tuple[float, float] = F32_NOISE
    """Differences within this fraction of an output's scale are arithmetic noise (`anec.agreement`)."""

    @property
    def ok(self) -> bool:
        return all(e.ok_within(self.noise) for e in self.errors.values())


@dataclass(frozen=True)
class Culprit:
    stage: str
    op: str
    """The `ane.name` of the first op whose output parts from its reference."""
    kind: str
    error: Error


@dataclass
class CheckReport:
    stages: list[StageCheck] = field(default_factory=list)
    culprit: Culprit | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stages)

    @property
    def first_failure(self) -> StageCheck | None:
        return next((s for s in self.stages if not s.ok), None)

    def lines(self) -> list[str]:
        out = []
        for s in self.stages:
            worst = max(s.errors.values(), key=lambda e: e.rel_l2, default=None)
            figures = f"cosine {worst.cosine:.6f}  rel L2 {worst.rel_l2:.2e}" if worst else "no outputs"
            out.append(f"{s.stage:16} vs {s.against:26} {'ok' if s.ok else 'DISAGREES':10} {figures}")
        if self.culprit is not None:
            c = self.culprit
            out.append(f"first disagreement: {c.stage}, at {c.op} ({c.kind}): cosine {c.error.cosine:.6f}, "
                       f"rel L2 {c.error.rel_l2:.2e}, max abs {c.error.max_abs:.3g}")
        elif (failed := self.first_failure) is not None:
            out.append(f"first disagreement: {failed.stage} (no single op's output parts from its reference)")
        return out


def sample_inputs(module: ModuleOp, seed: int = 0, ranges: Mapping[str, tuple[float, float]] | None = None) -> Values:
    """Seeded inputs for every model input: uniform in its declared range (`--input-range`), else
    normal floats, small non-negative integers, booleans."""
    rng = np.random.default_rng(seed)
    fn = entry_function(module)
    out: Values = {}
    for name, arg in zip(input_names(fn), fn.args):
        dtype = numpy_dtype(ane.element_type_of(arg))
        shape = ane.shape_of(arg)
        if ranges and name in ranges:
            lo, hi = ranges[name]
            values = rng.uniform(lo, hi, shape)
            out[name] = (values if dtype.kind == "f" else np.round(values)).astype(dtype)
        elif dtype.kind == "f":
            out[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[name] = rng.integers(0, 8, shape).astype(dtype)
    return out


def check(model: Any, inputs: Mapping[str, np.ndarray] | None = None, *, target: str = "m1",
          input_shapes: InputShapes | None = None, input_values: Mapping[str, Any] | None = None,
          input_ranges: Mapping[str, tuple[float, float]] | None = None,
          pass_options: Mapping[str, Mapping[str, Any]] | None = None) -> CheckReport:
    """Run every stage of compiling `model` for `target` on `inputs` (seeded ones when None, within
    `input_ranges` where declared) and compare each with its reference; stop at the first stage that
    disagrees and find its op. `input_ranges` reaches the fp16 range analysis as in `compile`."""
    report = CheckReport()
    module = import_model(model, input_shapes=input_shapes, input_values=input_values)
    feeds = dict(inputs) if inputs is not None else sample_inputs(module, ranges=input_ranges)
    previous = _outputs(module, feeds)
    with tempfile.TemporaryDirectory(prefix="anec-check-") as scratch:
        source = _reference_source(model, Path(scratch))
        if source is not None:
            reference = reference_outputs(source, feeds)
            stage = StageCheck("import", "the source framework", _errors(previous, reference))
            report.stages.append(stage)
            if not stage.ok:
                report.culprit = _import_culprit(module, source, feeds, Path(scratch)) if source.suffix == ".onnx" else None
                return report
    options = CompileOptions(target=get_target(target).arch, emit="descriptors", input_ranges=input_ranges,
                             pass_options=pass_options or {})
    ctx = make_context()
    fp16 = False
    for p in build_passes(options):
        if p.name not in GRAPH_PASSES:
            continue
        before = copy_module(module)
        p.apply(ctx, module)
        after = _outputs(module, feeds)
        fp16 = fp16 or p.name == "ane-fp16"
        noise = FP16_NOISE if fp16 else F32_NOISE
        stage = StageCheck(p.name, f"the IR before {p.name}", _errors(after, previous), noise)
        report.stages.append(stage)
        if not stage.ok:
            report.culprit = _op_culprit(p.name, before, module, feeds, noise)
            return report
        previous = after
    report.stages.append(_hardware(module, options, feeds, report))
    return report


def _reference_source(model: Any, scratch: Path) -> Path | None:
    """The model file the source framework can run, if there is one (a ModelProto saved in `scratch`)."""
    if isinstance(model, str | Path) and Path(model).suffix in (".onnx", ".pt2"):
        return Path(model)
    if isinstance(model, onnx.ModelProto):
        path = scratch / "model.onnx"
        onnx.save(model, str(path))
        return path
    return None


def _outputs(module: ModuleOp, feeds: Mapping[str, np.ndarray]) -> Values:
    return dict(zip(output_names(entry_function(module)), interpret(module, feeds, precision="f32", segments="f32")))


def _errors(got: Values, want: Mapping[str, np.ndarray]) -> dict[str, Error]:
    pairs = [(n, got[n], want[n]) for n in got if n in want] or [(n, v, w) for (n, v), w in zip(got.items(), want.values())]
    return {name: error(np.asarray(g, np.float64), np.asarray(w, np.float64)) for name, g, w in pairs}


def _observed(module: ModuleOp, feeds: Mapping[str, np.ndarray]) -> list[tuple[Operation, np.ndarray]]:
    """Every named op's first output, in execution order (float32, or fp16 where the IR says so)."""
    seen: list[tuple[Operation, np.ndarray]] = []

    def observe(op: Operation, outs: list[np.ndarray]) -> None:
        if NAME_ATTR in op.attributes and outs and not isinstance(op, ane.ConstOp):
            seen.append((op, np.asarray(outs[0])))

    interpret(module, feeds, precision="f32", segments="f32", observe=observe)
    return seen


def _first_parting(stage: str, got: list[tuple[Operation, np.ndarray]], want: Callable[[Operation], np.ndarray | None],
                   noise: tuple[float, float]) -> Culprit | None:
    for op, value in got:
        reference = want(op)
        if reference is None or reference.shape != value.shape or value.dtype.kind not in "fiub":
            continue
        e = error(value.astype(np.float64), reference.astype(np.float64))
        if not e.ok_within(noise):
            return Culprit(stage, name_of(op), ane.kind(op) if ane.is_ane(op) else op.name, e)
    return None


def _op_culprit(stage: str, before: ModuleOp, after: ModuleOp, feeds: Mapping[str, np.ndarray], noise: tuple[float, float]) -> Culprit | None:
    by_name: dict[str, np.ndarray] = {}
    for op, value in _observed(before, feeds):
        by_name.setdefault(name_of(op), value)
    return _first_parting(stage, _observed(after, feeds), lambda op: by_name.get(name_of(op)), noise)


def _import_culprit(module: ModuleOp, source: Path, feeds: Mapping[str, np.ndarray], scratch: Path) -> Culprit | None:
    """Ask onnxruntime for every node's first output and compare it with the op named after the node
    (the model with those outputs added is written to `scratch`, never beside the user's file)."""
    model = onnx.load(str(source))
    known = {o.name for o in model.graph.output}
    firsts = {n.name: n.output[0] for n in model.graph.node if n.output and n.output[0]}
    model.graph.output.extend(onnx.ValueInfoProto(name=v) for v in firsts.values() if v not in known)
    path = scratch / "all-outputs.onnx"
    onnx.save(model, str(path))
    try:
        values = reference_outputs(path, feeds)
    except Exception:  # a model whose intermediate values onnxruntime cannot type stays undiagnosed
        return None
    return _first_parting("import", _observed(module, feeds), lambda op: values.get(firsts.get(name_of(op), "")), F32_NOISE)


def _hardware(module: ModuleOp, options: CompileOptions, feeds: Mapping[str, np.ndarray], report: CheckReport) -> StageCheck:
    """The simulator on the descriptor program against the fp16 interpreter; per op on failure."""
    program = descriptor_program(module, options.target, options.pass_options)
    got = run_file(program, feeds)
    stage = StageCheck("hardware", "the fp16 IR interpreter", _errors(got, run_interpreted(module, feeds)), FP16_NOISE)
    if not stage.ok:
        report.culprit = _hardware_culprit(module, options, feeds)
    return stage


PROBES_PER_PROGRAM = 16
"""Values made program outputs at once (a program has 32 buffer slots for its inputs and outputs)."""


def _hardware_culprit(module: ModuleOp, options: CompileOptions, feeds: Mapping[str, np.ndarray]) -> Culprit | None:
    """The first value computed inside a segment whose simulated result parts from the interpreter's.

    Values are probed a few at a time (each probe lowers and simulates the module with them as extra
    outputs): a binary search over the values in program order when the last one disagrees (an error
    flows downstream), else a scan in batches."""
    count = len(segment_values(module))

    def parting(indices: Sequence[int]) -> Culprit | None:
        probed, names = with_values_returned(module, indices)
        sim = run_file(descriptor_program(probed, options.target, options.pass_options), feeds)
        interp = run_interpreted(probed, feeds)
        for name, op in names.items():
            e = error(np.asarray(sim[name], np.float64), np.asarray(interp[name], np.float64))
            if not e.ok_within(FP16_NOISE):
                return Culprit("hardware", name_of(op), ane.kind(op), e)
        return None

    if count == 0:
        return None
    if (found := parting([count - 1])) is not None:
        lo, hi = 0, count - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if (at := parting([mid])) is not None:
                hi, found = mid, at
            else:
                lo = mid + 1
        return found
    for start in range(0, count, PROBES_PER_PROGRAM):
        if (found := parting(range(start, min(start + PROBES_PER_PROGRAM, count)))) is not None:
            return found
    return None


def segment_values(module: ModuleOp) -> list[SSAValue]:
    """Every named value computed inside the segments of the entry function, in program order."""
    fn = entry_function(module)
    return [r for segment in fn.body.block.ops if isinstance(segment, ane.SegmentOp) for op in segment.body.block.ops
            if not isinstance(op, ane.ConstOp | ane.YieldOp) and NAME_ATTR in op.attributes for r in op.results[:1]]


def with_every_value_returned(module: ModuleOp) -> tuple[ModuleOp, dict[str, Operation]]:
    """`with_values_returned` for every value the segments compute."""
    return with_values_returned(module, range(len(segment_values(module))))


def with_values_returned(module: ModuleOp, indices: Sequence[int]) -> tuple[ModuleOp, dict[str, Operation]]:
    """A copy of `module` whose function also returns the segment values at `indices` (of
    `segment_values`), so the simulator's result of those ops can be read; with each extra output's
    name and op."""
    probed = copy_module(module)
    fn = entry_function(probed)
    chosen = {id(v) for i, v in enumerate(segment_values(probed)) if i in set(indices)}
    extra: list[SSAValue] = []
    names: dict[str, Operation] = {}
    for segment in [op for op in fn.body.block.ops if isinstance(op, ane.SegmentOp)]:
        yield_op = segment.body.block.last_op
        assert isinstance(yield_op, ane.YieldOp)
        yielded = set(yield_op.operands)
        new = [r for op in segment.body.block.ops if not isinstance(op, ane.ConstOp | ane.YieldOp) and NAME_ATTR in op.attributes
               for r in op.results[:1] if r not in yielded and id(r) in chosen]
        if not new:
            continue
        results = _extend_segment(segment, new)
        for value, result in zip(new, results):
            name = f"{string_attr(value.owner, NAME_ATTR)}@{len(names)}"
            names[name] = value.owner
            extra.append(result)
    ret = fn.body.block.last_op
    assert isinstance(ret, func.ReturnOp)
    old_names = [StringAttr(n) for n in output_names(fn)]
    ret.operands = [*ret.operands, *extra]
    fn.function_type = FunctionType.from_lists(fn.function_type.inputs.data, [v.type for v in ret.operands])
    fn.res_attrs = ArrayAttr([DictionaryAttr({NAME_ATTR: n}) for n in [*old_names, *map(StringAttr, names)]])
    return probed, names


def _extend_segment(segment: ane.SegmentOp, values: Sequence[SSAValue]) -> list[SSAValue]:
    """Replace `segment` by one that also yields `values`; the new results for them."""
    yield_op = segment.body.block.last_op
    assert yield_op is not None
    kept = len(segment.results)
    yield_op.operands = [*yield_op.operands, *values]
    body = segment.detach_region(segment.body)
    grown = ane.SegmentOp.create(operands=list(segment.operands), result_types=[v.type for v in yield_op.operands],
                                 regions=[body], attributes=dict(segment.attributes), properties=dict(segment.properties))
    block = segment.parent_block()
    assert block is not None
    block.insert_op_before(grown, segment)
    for old, new in zip(segment.results, grown.results):
        old.replace_all_uses_with(new)
    block.erase_op(segment)
    return list(grown.results[kept:])
