"""Small hand-built modules of ANE segments (f16 ops): the simulator's and the cost model's Python
entry point for experiments, calibration and tests (no importer needed).

    module = segment_module([(1, 64, 28, 28)], lambda b, x: [b.add(ane.ReluOp(x[0]))])
    module = stages_module([(1, 8, 6, 6)], [segment(build), host("onnx.Relu"), segment(build2)])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from anec.dialects import ane, host
from anec.dialects.discardable import NAME_ATTR
from anec.weights import WeightStore, attach, make_const


class SegmentBuilder:
    """Appends ops to a segment body; `const` adds an fp16 constant (weight store or inline)."""

    def __init__(self, block: Block, store: WeightStore, seed: int = 0):
        self.block, self.store = block, store
        self.rng = np.random.default_rng(seed)

    def add(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def const(self, array: np.ndarray, name: str = "w") -> SSAValue:
        return self.add(make_const(np.asarray(array, dtype=np.float16), name, self.store, f16))

    def random(self, shape: Sequence[int], scale: float = 1.0, name: str = "w") -> SSAValue:
        return self.const(self.rng.standard_normal(shape) * scale, name)


Build = Callable[[SegmentBuilder, list[SSAValue]], Sequence[SSAValue]]
Stage = Callable[[Block, WeightStore, list[SSAValue], int], list[SSAValue]]


def segment(build: Build) -> Stage:
    """A stage: one `ane.segment` whose f32 inputs are cast to f16, built by `build`, and cast back."""

    def emit(outer: Block, store: WeightStore, values: list[SSAValue], index: int) -> list[SSAValue]:
        types = [v.type for v in values]
        inner = Block(arg_types=types)
        b = SegmentBuilder(inner, store, seed=index)
        args = [b.add(ane.CastOp(a, f16)) if ane.element_type_of(a) == f32 else a for a in inner.args]
        outs = list(build(b, args))
        finals = [b.add(ane.CastOp(v, f32)) if ane.element_type_of(v) == f16 else v for v in outs]
        inner.add_op(ane.YieldOp(*finals))
        op = ane.SegmentOp(values, [v.type for v in finals], Region(inner))
        outer.add_op(op)
        return list(op.results)

    return emit


def host_stage(op_name: str, attrs: Mapping[str, Attribute] | None = None, version: int = 17) -> Stage:
    """A stage: one `host.op` applied to the first value (its result has the same type)."""

    def emit(outer: Block, store: WeightStore, values: list[SSAValue], index: int) -> list[SSAValue]:
        op = host.HostOp(op_name, [values[0]], [values[0].type], attrs, version)
        outer.add_op(op)
        return [op.results[0], *values[1:]]

    return emit


def stages_module(shapes: Sequence[Sequence[int]], stages: Sequence[Stage]) -> ModuleOp:
    """func @main(f32 inputs x0, x1, …) running `stages` in order; returns the last stage's values."""
    store = WeightStore()
    outer = Block(arg_types=[TensorType(f32, list(s)) for s in shapes])
    values: list[SSAValue] = list(outer.args)
    for i, stage in enumerate(stages):
        values = stage(outer, store, values, i)
    outer.add_op(func.ReturnOp(*values))
    fn = func.FuncOp("main", ([a.type for a in outer.args], [v.type for v in values]), Region(outer))
    fn.properties["arg_attrs"] = ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(f"x{i}")}) for i in range(len(shapes))])
    fn.properties["res_attrs"] = ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(f"y{i}")}) for i in range(len(values))])
    module = ModuleOp([fn])
    attach(module, store)
    return module


def segment_module(shapes: Sequence[Sequence[int]], build: Build) -> ModuleOp:
    """func @main(f32 inputs) with one segment built by `build`."""
    return stages_module(shapes, [segment(build)])
