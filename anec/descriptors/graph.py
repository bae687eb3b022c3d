"""The host graph of a `.anec` file: textual IR that calls the ANE programs and runs the rest on the CPU.

The decoder parses it, binds the host weights to it and checks that every `anehw.call` names an
existing program with the right number and shapes of operands and results.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.parser import Parser

from anec.context import make_context
from anec.descriptors.program import AnecFile
from anec.dialects import ane, anehw
from anec.errors import AnecError, first_line
from anec.weights import WeightStore, attach


def _fail(what: str, why: str = "") -> AnecError:
    return AnecError(what, where="anec file graph", why=why, hint="recompile the model with `anec compile --emit descriptors`")


def dims(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape or (1,)


def strings_closed(text: str) -> bool:
    """Every string literal ends on its own line (xDSL prints no raw newline inside one). The check
    comes first because xDSL 0.74's parser can loop forever on an unterminated string."""
    for line in text.splitlines():
        inside = escaped = False
        for ch in line:
            if escaped:
                escaped = False
            elif ch == "\\" and inside:
                escaped = True
            elif ch == '"':
                inside = not inside
        if inside:
            return False
    return True


def check_graph(model: AnecFile) -> ModuleOp:
    if not strings_closed(model.graph):
        raise _fail("the graph section has an unterminated string")
    try:
        module = Parser(make_context(), model.graph, "graph").parse_module()
        module.verify()
    except Exception as e:  # the parser and verifier raise many types; all mean "malformed"
        raise _fail("the graph section is not valid anec IR", first_line(e, typed=False)) from None
    if not any(isinstance(op, func.FuncOp) for op in module.ops):
        raise _fail("the graph has no function to run")
    weights = dict(model.host_weights)
    for op in module.walk():
        if isinstance(op, anehw.CallOp):
            index = op.program.value.data
            if not 0 <= index < len(model.programs):
                raise _fail(f"anehw.call names program {index}; the file has {len(model.programs)}")
            program = model.programs[index]
            for what, values, ports in (("operands", op.args, program.inputs), ("results", op.outputs, program.outputs)):
                shapes = [dims(ane.shape_of(v)) for v in values]
                if shapes != [b.shape for b in ports]:
                    raise _fail(f"anehw.call {index} {what} {shapes} do not match the program's ports {[b.shape for b in ports]}")
        elif isinstance(op, anehw.ProgramOp | ane.SegmentOp):
            raise _fail(f"{op.name} belongs in a program section, not in the graph")
        elif isinstance(op, ane.ConstOp) and op.handle is not None:
            array = model.host_weights.get(op.handle.data)
            if array is None or tuple(array.shape) != ane.shape_of(op.result):
                raise _fail(f"host weight {op.handle.data!r} is missing or has another shape")
            if array.dtype == np.float16 and isinstance(ane.element_type_of(op.result), Float32Type):
                weights[op.handle.data] = array.astype(np.float32)  # stored in fp16 because only ANE programs read it
    attach(module, WeightStore.from_arrays(weights))
    return module
