"""The compile driver and the named pass pipelines — the one place pipelines are assembled.

`compile(model, …)` imports the model, runs the pipeline of its `emit` kind for the chosen target,
and returns a `CompiledModel` that can run, report and save itself. Data flows one way:
import → passes → artifacts → run. The pipeline builds every product a compiled model needs — the
graph-level IR, and on demand its lowered module and descriptor program (`HARDWARE_PASSES`, run
only here) — and hands them to the emitters and the runtime, which never run passes themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.printer import Printer

from anec.agreement import REL_L2_MAX
from anec.analysis import total_padding_bytes
from anec.context import make_context
from anec.descriptors.binary import decode, encode
from anec.descriptors.build import anec_file
from anec.descriptors.program import AnecFile
from anec.dialects import ane
from anec.dialects.discardable import SOURCE_ATTR
from anec.emit import EMITTERS, EmitOptions
from anec.errors import AnecError
from anec.importers import InputShapes, import_model, source_op_types
from anec.lowering.fp16 import sample_inputs
from anec.precision import PrecisionChoice, choose_fp32_ops
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
    input_ranges: Mapping[str, tuple[float, float]] | None = None
    """Input name -> (lo, hi) for the fp16 range analysis (`--input-range NAME=LO,HI`)."""
    min_segment_ops: int = 1
    deployment_target: str = "ios17"
    """Oldest OS a Core ML package must run on (ios16/17/18, macos13/14/15): the MIL opset."""
    print_ir_after_all: bool = False
    stop_after: str | None = None
    pass_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Extra options per pass name, e.g. {"ane-fp16": {"calibrate": True}}."""
    keep_fp32: Sequence[str] = ()
    """Ops kept on the CPU in float32, by name or op type (`--keep-fp32`; matching: `ane-partition`)."""
    precision: str = "fp16"
    """"fp16": the ANE's ops compute in fp16; "auto": also keep in float32 the fewest ops that bring
    the calibrated outputs within `tolerance` (`anec.precision`)."""
    tolerance: float = REL_L2_MAX
    """`precision="auto"`: the relative L2 error each output may have against float32."""
    auto_fp32: tuple[str, ...] = ()
    """What `precision="auto"` chose to keep in float32 (set by `compile`)."""
    source_op_types: Mapping[str, str] = field(default_factory=dict)
    """Node name -> op type in the source model, so `keep_fp32` can name ONNX op types (set by `compile`)."""
    compress: str = ""
    """Store large MAC weights compressed: a mode of `anec.compression.COMPRESSORS` ("int8", "palettize4", …; `ane-compress`); empty: as imported."""
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
                 ("input_ranges", options.input_ranges), ("keep_fp32", tuple(options.keep_fp32)), ("auto_fp32", options.auto_fp32),
                 ("source_op_types", options.source_op_types), ("compress", options.compress), ("compress_skip", tuple(options.compress_skip)))
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
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # this process's CPU time: what a benchmark on a shared machine compares
    peak_mb: dict[str, float] = {}
    stats: dict[str, object] = {"pass_seconds": seconds, "pass_cpu_seconds": cpu_seconds, "pass_peak_mb": peak_mb}
    if options.stop_after and options.stop_after not in PIPELINES.get(options.emit, ()):
        raise AnecError(f"--stop-after {options.stop_after}: no such pass in the {options.emit} pipeline",
                        hint=f"passes: {', '.join(PIPELINES.get(options.emit, ())) or '(none)'}")
    verify_each = options.print_ir_after_all or os.environ.get(VERIFY_EACH_ENV) == "1"
    for p in build_passes(options):
        if progress:
            progress(p.name)
        if p.name == "ane-layout":
            stats["padding_bytes_before_layout"] = total_padding_bytes(module)
        start, cpu_start = time.perf_counter(), time.process_time()
        p.apply(ctx, module)
        seconds[p.name] = time.perf_counter() - start
        cpu_seconds[p.name] = time.process_time() - cpu_start
        peak_mb[p.name] = peak_memory_mb()
        if p.name == "ane-layout":
            stats["padding_bytes_after_layout"] = total_padding_bytes(module)
        if verify_each:
            module.verify()
        if options.print_ir_after_all:
            print(f"// -----// IR after {p.name} //----- //", file=out)
            Printer(stream=out).print_op(module)
            print(file=out)
        if p.name == options.stop_after:
            break
    module.verify()
    return stats


def peak_memory_mb() -> float:
    """The process's peak resident memory so far, in MiB (what `--timings` reports after each stage).

    On Linux this is VmHWM, not `ru_maxrss`: a process started by a large one (a benchmark that loaded
    torch) inherits its parent's resident size at the fork into `ru_maxrss`, and would report it as its own."""
    if sys.platform == "darwin":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 2**10  # KiB


VERIFY_EACH_ENV = "ANEC_VERIFY_EACH"
"""Set to 1, the pipeline verifies the module after every pass (the test suite does), naming the pass that
broke it; otherwise once, at the end: verifying a large module costs about as much as a pass, every time."""


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


COLLECTION_THRESHOLDS = (10_000, 20, 20)
"""The garbage collector's thresholds while compiling (Python's default is 700, 10, 10): the IR of a
large model is millions of objects, which the default scans again and again (a fifth of the compile
time of an unrolled LSTM). A larger first threshold than this keeps young garbage, such as weight
copies, alive longer: BERT-base's peak memory grew by a tenth at 50,000; at 10,000 it is unchanged."""


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage less often for the duration (a decorator too); the thresholds are restored after."""
    previous = gc.get_threshold()
    gc.set_threshold(*COLLECTION_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@fewer_collections()
def descriptor_bytes(module: ModuleOp, arch: str, pass_options: Mapping[str, Mapping[str, Any]] | None = None) -> bytes:
    """The `.anec` file of `module`: its segments lowered, the program encoded (and validated)."""
    return encode(anec_file(lower_segments(module, arch, pass_options), arch))


def descriptor_program(module: ModuleOp, arch: str, pass_options: Mapping[str, Mapping[str, Any]] | None = None) -> AnecFile:
    """The descriptor program of `module` as a file holds it: lowered, encoded and decoded again,
    so what runs is what `.anec` files carry."""
    return decode(descriptor_bytes(module, arch, pass_options), validate=False)


@dataclass
class CompiledModel:
    ir: ModuleOp
    target: Target
    options: CompileOptions
    report: Report
    _program: AnecFile | None = field(default=None, init=False, repr=False, compare=False)
    _program_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def weights(self) -> WeightStore:
        return store_of(self.ir)

    @property
    def program_bytes(self) -> bytes:
        """The model's `.anec` file, built once: its segments lowered for the target."""
        if self._program_bytes is None:
            self._program_bytes = descriptor_bytes(self.ir, self.target.arch, self.options.pass_options)
        return self._program_bytes

    @property
    def program(self) -> AnecFile:
        """The model's descriptor program, decoded from `program_bytes` (what runs is what the file holds)."""
        if self._program is None:
            self._program = decode(self.program_bytes, validate=False)
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
        product = self.program_bytes if emitter.takes == "descriptors" else self.ir
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


PRECISIONS = ("fp16", "auto")


def auto_precision(module: ModuleOp, options: CompileOptions) -> tuple[CompileOptions, PrecisionChoice]:
    """`precision="auto"`: the options with the ops `anec.precision` chose kept in float32, calibrated on
    the samples it measured (the example inputs, else seeded random ones), and the choice."""
    inputs = sample_inputs(module, options.example_inputs, synthesize=True)
    assert inputs is not None
    samples = "the example inputs" if options.example_inputs is not None else "seeded random inputs (no example inputs given)"
    calibrated = dataclasses.replace(options, example_inputs=inputs, emit="ir", stop_after=None, print_ir_after_all=False)

    def trial(kept: tuple[str, ...]) -> ModuleOp:
        copy = copy_module(module)
        run_pipeline(copy, dataclasses.replace(calibrated, auto_fp32=kept))
        return copy

    choice = choose_fp32_ops(trial, module, inputs, samples, get_target(options.target), options.tolerance)
    return dataclasses.replace(options, example_inputs=inputs, auto_fp32=choice.moved), choice


def compile(model: Any, *, target: str | Target = "m1", emit: str = "coreml", input_shapes: InputShapes | None = None,
            example_inputs: Any = None, progress: Progress | None = None, **options: Any) -> CompiledModel:
    """Import `model`, lower it for `target`, and return the compiled model (see DESIGN: Public interfaces).
    `input_values={"sr": 16000}` fixes ONNX inputs to constants before shape inference and folding;
    `input_ranges={"x": (0, 1)}` gives the fp16 range analysis the values inputs take."""
    return compile_targets(model, [target], emit=emit, input_shapes=input_shapes, example_inputs=example_inputs,
                           progress=progress, **options)[0]


@fewer_collections()
def compile_targets(model: Any, targets: Sequence[str | Target], *, emit: str = "coreml", input_shapes: InputShapes | None = None,
                    example_inputs: Any = None, progress: Progress | None = None, **options: Any) -> list[CompiledModel]:
    """`compile` for several chips (`anec compile --target all`): the model is imported once and each
    chip lowers its own copy, with its own weight store (passes prune and add weights)."""
    chips = [get_target(t) for t in targets]
    if emit not in PIPELINES:
        raise AnecError(f"unknown --emit kind {emit!r}", hint=f"use one of {', '.join(PIPELINES)}")
    precision, tolerance = options.get("precision", "fp16"), options.get("tolerance", REL_L2_MAX)
    if precision not in PRECISIONS:
        raise AnecError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if not (isinstance(tolerance, int | float) and tolerance > 0):
        raise AnecError(f"tolerance must be a positive relative L2 error, got {tolerance!r}", hint="e.g. --tolerance 1e-2")
    stage = progress or (lambda name: None)
    stage("import")
    start = time.perf_counter()
    module = import_model(model, input_shapes=input_shapes, example_inputs=example_inputs, input_values=options.get("input_values"),
                          input_ranges=options.get("input_ranges"))
    if isinstance(model, str | Path):  # the descriptor emitter records it, so `anec run --check` finds the reference
        module.attributes[SOURCE_ATTR] = StringAttr(str(Path(model).resolve()))
    imported = {"import_seconds": time.perf_counter() - start, "import_peak_mb": peak_memory_mb()}
    if (options.get("keep_fp32") or precision == "auto") and "source_op_types" not in options:
        options["source_op_types"] = source_op_types(model)
    compiled = []
    for i, tgt in enumerate(chips):
        opts = CompileOptions(target=tgt.arch, emit=emit, input_shapes=input_shapes, example_inputs=example_inputs, **options)
        chip_stage = stage if len(chips) == 1 else lambda name, chip=tgt.name: stage(f"{chip}: {name}")
        choice = None
        if precision == "auto":
            chip_stage("precision auto")
            opts, choice = auto_precision(module, opts)
        ir = module if i == len(chips) - 1 else copy_module(module)
        stats = {**imported, **run_pipeline(ir, opts, progress=chip_stage)}
        if choice is not None:
            stats["precision_auto"] = choice.to_json()
        chip_stage("report")
        start = time.perf_counter()
        report = build_report(ir, tgt, stats)
        report.stats.update(report_seconds=time.perf_counter() - start, report_peak_mb=peak_memory_mb())
        compiled.append(CompiledModel(ir=ir, target=tgt, options=opts, report=report))
    return compiled

