"""The compile driver and the named pass pipelines — the one place pipelines are assembled.

`compile(model, …)` imports the model, runs the pipeline of its `emit` kind for the chosen target,
and returns a `CompiledModel` that can run, report and save itself. Data flows one way:
import → passes → artifacts → run. The pipeline builds every product a compiled model needs — the
graph-level IR, and on demand its lowered module and descriptor program (`HARDWARE_PASSES`, run
only here) — and hands them to the emitters and the runtime, which never run passes themselves.
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.printer import Printer

from anec.analysis import total_padding_bytes
from anec.context import make_context
from anec.descriptors.binary import decode, encode
from anec.descriptors.build import anec_file
from anec.descriptors.program import AnecFile
from anec.dialects import ane
from anec.dialects.discardable import SOURCE_ATTR
from anec.emit import EMITTERS, EmitOptions
from anec.errors import AnecError
from anec.importers import InputShapes, import_model
from anec.report import Report, build_report
from anec.runtime import run_file
from anec.targets import Target, get_target
from anec.universe import PASSES
from anec.weights import WeightStore, copy_module, store_of

GRAPH_PASSES: tuple[str, ...] = ("ane-compress", "ane-legalize", "ane-layout", "ane-partition", "ane-fp16", "ane-fuse")
"""Graph-level passes every route runs, in order (legalize, layout, partition, fp16, fuse)."""

HARDWARE_PASSES: tuple[str, ...] = ("ane-tile", "to-anehw", "plan-memory")
"""Passes that take ANE segments to task descriptors (tile, to-anehw, plan-memory)."""

PIPELINES: dict[str, tuple[str, ...]] = {
    "ir": GRAPH_PASSES,
    "coreml": GRAPH_PASSES,
    "mil-text": GRAPH_PASSES,
    "descriptors": GRAPH_PASSES + HARDWARE_PASSES,
}
"""`--emit` kind -> the passes that prepare a module for it."""


@dataclass(frozen=True)
class CompileOptions:
    target: str = "m1"
    emit: str = "coreml"
    input_shapes: InputShapes | None = None
    example_inputs: Any = None
    input_values: Mapping[str, Any] | None = None
    """ONNX inputs fixed to values at import (`--freeze NAME=VALUE`)."""
    min_segment_ops: int = 1
    deployment_target: str = "ios17"
    """Oldest OS a Core ML package must run on (ios16/17/18, macos13/14/15): the MIL opset."""
    print_ir_after_all: bool = False
    stop_after: str | None = None
    pass_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Extra options per pass name, e.g. {"ane-fp16": {"calibrate": True}}."""
    compress: str = ""
    """Store large MAC weights compressed: "int8" or "palettize4" (`ane-compress`); empty: as imported."""
    compress_skip: tuple[str, ...] = ()
    """Ops (by name) whose weights `compress` leaves alone."""


def build_passes(options: CompileOptions) -> list[ModulePass]:
    names = PIPELINES.get(options.emit)
    if names is None:
        raise AnecError(f"unknown --emit kind {options.emit!r}", hint=f"use one of {', '.join(PIPELINES)}")
    passes = []
    for name in names:
        cls = PASSES[name]()
        fields = {f.name for f in dataclasses.fields(cls)}
        given = (("target", options.target), ("min_segment_ops", options.min_segment_ops), ("example_inputs", options.example_inputs),
                 ("compress", options.compress), ("compress_skip", tuple(options.compress_skip)))
        kwargs = {k: v for k, v in given if k in fields}
        kwargs.update(options.pass_options.get(name, {}))
        passes.append(cls(**kwargs))
    return passes


Progress = Callable[[str], None]
"""Told the name of each stage as it starts ("import", a pass name, "report"; with several chips "M2: ane-tile")."""


def run_pipeline(module: ModuleOp, options: CompileOptions, out=None, progress: Progress | None = None) -> dict[str, object]:
    """Run the pipeline of `options.emit` over `module` in place; returns its statistics."""
    out = out or sys.stdout  # looked up per call, so redirected output (tests, notebooks) is honoured
    ctx = make_context()
    stats: dict[str, object] = {"pass_seconds": {}, "pass_peak_mb": {}}
    if options.stop_after and options.stop_after not in PIPELINES.get(options.emit, ()):
        raise AnecError(f"--stop-after {options.stop_after}: no such pass in the {options.emit} pipeline",
                        hint=f"passes: {', '.join(PIPELINES.get(options.emit, ())) or '(none)'}")
    for p in build_passes(options):
        if progress:
            progress(p.name)
        if p.name == "ane-layout":
            stats["padding_bytes_before_layout"] = total_padding_bytes(module)
        start = time.perf_counter()
        p.apply(ctx, module)
        stats["pass_seconds"][p.name] = time.perf_counter() - start  # type: ignore[index]
        stats["pass_peak_mb"][p.name] = peak_memory_mb()  # type: ignore[index]
        if p.name == "ane-layout":
            stats["padding_bytes_after_layout"] = total_padding_bytes(module)
        module.verify()
        if options.print_ir_after_all:
            print(f"// -----// IR after {p.name} //----- //", file=out)
            Printer(stream=out).print_op(module)
            print(file=out)
        if p.name == options.stop_after:
            break
    return stats


def peak_memory_mb() -> float:
    """The process's peak resident memory so far, in MiB (what `--timings` reports after each stage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def lower_segments(module: ModuleOp, arch: str, pass_options: Mapping[str, Mapping[str, Any]] | None = None) -> ModuleOp:
    """A copy of `module` with its ANE segments lowered to planned programs (`HARDWARE_PASSES`);
    the module itself when it has no segment left to lower."""
    if not any(isinstance(op, ane.SegmentOp) for op in module.walk()):
        return module
    lowered = copy_module(module)
    ctx = make_context()
    for p in build_passes(CompileOptions(target=arch, emit="descriptors", pass_options=pass_options or {})):
        if p.name in HARDWARE_PASSES:
            p.apply(ctx, lowered)
    return lowered


def descriptor_program(module: ModuleOp, arch: str, pass_options: Mapping[str, Mapping[str, Any]] | None = None) -> AnecFile:
    """The descriptor program of `module` as a file holds it: lowered, encoded and decoded again,
    so what runs is what `.anec` files carry."""
    return decode(encode(anec_file(lower_segments(module, arch, pass_options), arch)))


@dataclass
class CompiledModel:
    ir: ModuleOp
    target: Target
    options: CompileOptions
    report: Report
    _program: AnecFile | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def weights(self) -> WeightStore:
        return store_of(self.ir)

    @property
    def program(self) -> AnecFile:
        """The model's descriptor program (decoded), built once: its segments lowered for the target."""
        if self._program is None:
            self._program = descriptor_program(self.ir, self.target.arch, self.options.pass_options)
        return self._program

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name: the descriptor program's ANE segments on the simulator, host ops on the CPU."""
        return run_file(self.program, inputs)

    def save(self, path: str | Path) -> Path:
        """Write the artifact of `options.emit` to `path`; nothing is left behind if it fails."""
        self.write(path)
        return Path(path)

    def write(self, path: str | Path) -> list[Path]:
        """`save`, returning every file or folder written: the artifact and what its emitter puts beside it."""
        path = Path(path)
        if self.options.emit not in EMITTERS:
            raise AnecError(f"--emit {self.options.emit} is not available in this build", hint=f"use one of {', '.join(EMITTERS)}")
        emitter = EMITTERS[self.options.emit]
        product = self.program if emitter.takes == "descriptors" else self.ir
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".anec-", dir=path.parent))
        try:
            emitter.write(product, staging / path.name, EmitOptions(self.target.name, self.options.deployment_target))
            written = []
            for item in sorted(staging.iterdir()):
                dest = path.parent / item.name
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                item.replace(dest)
                written.append(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return written

    def default_output(self, model_path: Path) -> Path:
        return model_path.with_suffix(EMITTERS[self.options.emit].suffix)


def compile(model: Any, *, target: str | Target = "m1", emit: str = "coreml", input_shapes: InputShapes | None = None,
            example_inputs: Any = None, progress: Progress | None = None, **options: Any) -> CompiledModel:
    """Import `model`, lower it for `target`, and return the compiled model (see DESIGN: Public interfaces).
    `input_values={"sr": 16000}` fixes ONNX inputs to constants before shape inference and folding."""
    return compile_targets(model, [target], emit=emit, input_shapes=input_shapes, example_inputs=example_inputs,
                           progress=progress, **options)[0]


def compile_targets(model: Any, targets: Sequence[str | Target], *, emit: str = "coreml", input_shapes: InputShapes | None = None,
                    example_inputs: Any = None, progress: Progress | None = None, **options: Any) -> list[CompiledModel]:
    """`compile` for several chips (`anec compile --target all`): the model is imported once and each
    chip lowers its own copy, with its own weight store (passes prune and add weights)."""
    chips = [get_target(t) for t in targets]
    if emit not in PIPELINES:
        raise AnecError(f"unknown --emit kind {emit!r}", hint=f"use one of {', '.join(PIPELINES)}")
    stage = progress or (lambda name: None)
    stage("import")
    start = time.perf_counter()
    module = import_model(model, input_shapes=input_shapes, example_inputs=example_inputs, input_values=options.get("input_values"))
    if isinstance(model, str | Path):  # the descriptor emitter records it, so `anec run --check` finds the reference
        module.attributes[SOURCE_ATTR] = StringAttr(str(Path(model).resolve()))
    imported = {"import_seconds": time.perf_counter() - start, "import_peak_mb": peak_memory_mb()}
    compiled = []
    for i, tgt in enumerate(chips):
        opts = CompileOptions(target=tgt.arch, emit=emit, input_shapes=input_shapes, example_inputs=example_inputs, **options)
        ir = module if i == len(chips) - 1 else copy_module(module)
        chip_stage = stage if len(chips) == 1 else lambda name, chip=tgt.name: stage(f"{chip}: {name}")
        stats = {**imported, **run_pipeline(ir, opts, progress=chip_stage)}
        chip_stage("report")
        start = time.perf_counter()
        report = build_report(ir, tgt, stats)
        report.stats.update(report_seconds=time.perf_counter() - start, report_peak_mb=peak_memory_mb())
        compiled.append(CompiledModel(ir=ir, target=tgt, options=opts, report=report))
    return compiled

