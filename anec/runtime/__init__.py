"""Running compiled models: ANE programs on the simulator, everything else on the CPU.

`run_compiled` takes a model through its descriptor program (lowering its segments first when it was
compiled for another `--emit` kind), encodes and decodes it, and runs the decoded file: the host graph
on the CPU (`anec.interpreter` kernels and `anec.runtime.host` runners) and each `anehw.call` on the
functional simulator. `run_interpreted` keeps the IR interpreter's path (fp16 storage, exact
arithmetic) for tests that compare the two.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from anec.descriptors.program import AnecFile
from anec.dialects import ane, anehw
from anec.errors import AnecError
from anec.interpreter import Run, entry_function, interpret, output_names
from anec.sim.functional import Machine
from anec.targets import get_target
from anec.types import numpy_dtype
from anec.weights import store_of

if TYPE_CHECKING:
    from anec.pipeline import CompiledModel

_FILES: weakref.WeakKeyDictionary[ModuleOp, AnecFile] = weakref.WeakKeyDictionary()


class SimulatorRun(Run):
    """The interpreter's executor plus `anehw.call`: a program of the file on the simulator."""

    def __init__(self, file: AnecFile):
        super().__init__(store_of(file.module), "f32", "f16")  # type: ignore[arg-type]
        self.file = file

    def execute(self, op: Operation, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if not isinstance(op, anehw.CallOp):
            return super().execute(op, inputs)
        index = op.program.value.data
        machine = self.file.machines.get(index)
        if machine is None:
            machine = self.file.machines[index] = Machine.for_program(self.file.programs[index])
        outs = machine.run(inputs)
        return [y.reshape(ane.shape_of(r)).astype(numpy_dtype(r.type.element_type)) for y, r in zip(outs, op.outputs)]  # type: ignore[attr-defined]


def run_file(file: AnecFile, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray], run: SimulatorRun | None = None) -> dict[str, np.ndarray]:
    """Outputs by name of a decoded `.anec` file."""
    module = file.module
    assert isinstance(module, ModuleOp), "run_file needs a decoded file (anec.descriptors.binary.decode)"
    outs = interpret(module, inputs, run=run or SimulatorRun(file))
    return dict(zip(output_names(entry_function(module)), outs))


def descriptor_file(model: CompiledModel) -> AnecFile:
    """The model's decoded descriptor program (built once per compiled module)."""
    if model.ir not in _FILES:
        _FILES[model.ir] = module_descriptors(model.ir, model.target.arch)
    return _FILES[model.ir]


def module_descriptors(module: ModuleOp, arch: str, pass_options: Mapping[str, Mapping[str, object]] | None = None) -> AnecFile:
    """Encode `module` (its segments lowered first if needed) and decode it again: what a file holds."""
    from anec.descriptors.binary import decode, encode
    from anec.emit.descriptors import anec_file

    return decode(encode(anec_file(lowered(module, arch, pass_options), arch)))


def lowered(module: ModuleOp, arch: str, pass_options: Mapping[str, Mapping[str, object]] | None = None) -> ModuleOp:
    """`module` with its segments lowered to planned programs (the module itself if it has none)."""
    if not any(isinstance(op, ane.SegmentOp) for op in module.walk()):
        return module
    from anec.context import make_context
    from anec.pipeline import HARDWARE_PASSES, CompileOptions, build_passes
    from anec.weights import copy_module

    module = copy_module(module)
    ctx = make_context()
    for p in build_passes(CompileOptions(target=arch, emit="descriptors", pass_options=pass_options or {})):
        if p.name in HARDWARE_PASSES:
            p.apply(ctx, module)
    return module


def run_compiled(model: CompiledModel, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name: ANE programs on the simulator, host ops on the CPU."""
    return run_file(descriptor_file(model), inputs)


def run_interpreted(model: CompiledModel, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name from the IR interpreter (ANE segments with fp16 storage, no hardware quirks)."""
    outs = interpret(model.ir, inputs, precision="f32", segments="f16")
    return dict(zip(output_names(entry_function(model.ir)), outs))


def read_file(path: str | Path) -> AnecFile:
    """Decode a `.anec` file from disk (every problem is one AnecError)."""
    from anec.descriptors.binary import decode

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AnecError(f"cannot read {path}", why=e.strerror or str(e)) from None
    return decode(data)


def load_program(path: str | Path, target: str | None = None) -> AnecFile:
    """A decoded descriptor program: read from a `.anec` file, or compiled from a model for `target`."""
    path = Path(path)
    if path.suffix == ".anec":
        file = read_file(path)
        if target is not None and get_target(target).arch != file.arch:
            raise AnecError(f"{path} was compiled for {file.arch}, not {get_target(target).arch}",
                            hint="recompile it with --target, or drop --target")
        return file
    from anec.pipeline import compile as compile_model

    return descriptor_file(compile_model(path, target=target or "m1", emit="descriptors"))
