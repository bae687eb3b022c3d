"""Small hand-built modules with one ANE segment of f16 ops: the simulator's and the cost model's
Python entry point for experiments, calibration and tests (no importer needed).

    module = segment_module([(1, 64, 28, 28)], lambda b, x: [b.add(ane.ReluOp(x[0]))])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f16,
    f32,
)
from xdsl.ir import Block, Operation, Region, SSAValue

from anec.dialects import ane
from anec.weights import WeightStore, attach, make_const


class SegmentBuilder:
    """Appends ops to a segment body; `const` adds an fp16 constant (weight store or inline)."""

    def __init__(self, block: Block, store: WeightStore):
        self.block, self.store = block, store
        self.rng = np.random.default_rng(0)

    def add(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def const(self, array: np.ndarray, name: str = "w") -> SSAValue:
        return self.add(make_const(np.asarray(array, dtype=np.float16), name, self.store, f16))

    def random(self, shape: Sequence[int], scale: float = 1.0, name: str = "w") -> SSAValue:
        return self.const(self.rng.standard_normal(shape) * scale, name)


def segment_module(shapes: Sequence[Sequence[int]], build: Callable[[SegmentBuilder, list[SSAValue]], Sequence[SSAValue]],
                   io_type=f32) -> ModuleOp:
    """func @main(inputs of `io_type`) with one segment: casts to f16, `build`, casts back."""
    store = WeightStore()
    outer = Block(arg_types=[TensorType(io_type, list(s)) for s in shapes])
    inner = Block(arg_types=[TensorType(io_type, list(s)) for s in shapes])
    b = SegmentBuilder(inner, store)
    args = [b.add(ane.CastOp(a, f16)) if io_type != f16 else a for a in inner.args]
    outs = list(build(b, args))
    finals = [b.add(ane.CastOp(v, io_type)) if io_type != f16 and ane.is_float(ane.element_type_of(v)) else v for v in outs]
    inner.add_op(ane.YieldOp(*finals))
    segment = ane.SegmentOp(list(outer.args), [v.type for v in finals], Region(inner))
    outer.add_op(segment)
    outer.add_op(func.ReturnOp(*segment.results))
    fn = func.FuncOp("main", ([a.type for a in outer.args], [v.type for v in finals]), Region(outer))
    fn.properties["arg_attrs"] = ArrayAttr([DictionaryAttr({"ane.name": StringAttr(f"x{i}")}) for i in range(len(shapes))])
    module = ModuleOp([fn])
    attach(module, store)
    return module
