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
from typing import TYPE_CHECKING

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from anec.descriptors.program import AnecFile
from anec.dialects import ane, anehw
from anec.interpreter import Run, entry_function, interpret, output_names
from anec.sim.functional import Machine
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
        self.machines: dict[int, Machine] = {}

    def execute(self, op: Operation, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if not isinstance(op, anehw.CallOp):
            return super().execute(op, inputs)
        index = op.program.value.data
        machine = self.machines.get(index) or self.machines.setdefault(index, Machine.for_program(self.file.programs[index]))
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


def module_descriptors(module: ModuleOp, arch: str) -> AnecFile:
    """Encode `module` (its segments lowered first if needed) and decode it again: what a file holds."""
    from anec.descriptors.binary import decode, encode
    from anec.emit.descriptors import anec_file

    return decode(encode(anec_file(lowered(module, arch), arch)))


def lowered(module: ModuleOp, arch: str) -> ModuleOp:
    """`module` with its segments lowered to planned programs (the module itself if it has none)."""
    if not any(isinstance(op, ane.SegmentOp) for op in module.walk()):
        return module
    from anec.context import make_context
    from anec.pipeline import HARDWARE_PASSES, CompileOptions, build_passes
    from anec.weights import clone_module

    module = clone_module(module)
    ctx = make_context()
    for p in build_passes(CompileOptions(target=arch, emit="descriptors")):
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
