"""Running compiled models: ANE programs on the simulator, everything else on the CPU.

The runtime executes; it never compiles. `run_file` runs a decoded descriptor program (`.anec`, or
the one the pipeline builds for a compiled model): the host graph on the CPU (`anec.interpreter`
kernels and `anec.host_kernels` runners) and each `anehw.call` on the functional simulator.
`run_interpreted` runs a graph-level module in the IR interpreter (fp16 storage, exact arithmetic),
for checks that compare the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from anec.descriptors.binary import decode
from anec.descriptors.program import AnecFile
from anec.dialects import ane, anehw
from anec.errors import AnecError
from anec.interpreter import Run, entry_function, interpret, output_names
from anec.sim.functional import Machine
from anec.targets import Target
from anec.types import numpy_dtype
from anec.weights import store_of


class SimulatorRun(Run):
    """The interpreter's executor plus `anehw.call`: a program of the file on the simulator."""

    def __init__(self, file: AnecFile):
        assert file.module is not None, "read_file parses the file's graph"
        super().__init__(store_of(file.module), "f32", "f16")
        self.file = file

    def execute(self, op: Operation, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if not isinstance(op, anehw.CallOp):
            return super().execute(op, inputs)
        index = op.program.value.data
        machine = self.file.machines.get(index)
        if machine is None:
            machine = self.file.machines[index] = Machine.for_program(self.file.programs[index])
        outs = machine.run(inputs)
        return [y.reshape(ane.shape_of(r)).astype(numpy_dtype(r.type.element_type)) for y, r in zip(outs, op.outputs)]


def run_file(file: AnecFile, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray], run: SimulatorRun | None = None) -> dict[str, np.ndarray]:
    """Outputs by name of a decoded `.anec` file."""
    module = file.module
    assert isinstance(module, ModuleOp), "run_file needs a decoded file (anec.descriptors.binary.decode)"
    outs = interpret(module, inputs, run=run or SimulatorRun(file))
    return dict(zip(output_names(entry_function(module)), outs))


def run_interpreted(module: ModuleOp, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name from the IR interpreter (ANE segments with fp16 storage, no hardware quirks)."""
    outs = interpret(module, inputs, precision="f32", segments="f16")
    return dict(zip(output_names(entry_function(module)), outs))


def read_file(path: str | Path, target: Target | None = None) -> AnecFile:
    """Decode a `.anec` file from disk (every problem is one AnecError); with `target`, the file
    must have been compiled for that chip."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AnecError(f"cannot read {path}", why=e.strerror or str(e)) from None
    file = decode(data)
    if target is not None and target.arch != file.arch:
        raise AnecError(f"{path} was compiled for {file.arch}, not {target.arch}",
                        hint="recompile it with --target, or drop --target")
    return file
