"""What every lowering pass needs to edit IR: named op construction, constants, segment scopes.

Passes build replacement ops through an `Emitter`, which inserts them before the op being rewritten
and names them after it (`ane.name = "<old name>#<suffix>"`), so every op keeps a traceable source
name. Constants come from and go to the module's weight store (`anec.weights`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter
from xdsl.rewriter import InsertPoint, Rewriter

from anec.compression import KeptOnlyExpanded
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of
from anec.dialects.discardable import NAME_ATTR, derived_name, name_of, set_name
from anec.weights import (
    WeightStore,
    compressed_of,
    const_value,
    make_compressed_const,
    make_const,
    store_of,
)

OpT = TypeVar("OpT", bound=Operation)


def constant_of(value: SSAValue) -> np.ndarray | None:
    """The array a value holds when an `ane.const` defines it, else None."""
    owner = value.owner
    return const_value(owner) if isinstance(owner, ane.ConstOp) else None


def scalar_of(value: SSAValue) -> float | None:
    """The one number a constant holds when all its elements are equal, else None."""
    array = constant_of(value)
    if array is None or array.size == 0 or array.dtype.kind not in "fiu":
        return None
    first = array.flat[0]
    return float(first) if np.all(array == first) else None


class Emitter:
    """Inserts new ops before `anchor`, named after it; makes constants in the module's store."""

    def __init__(self, anchor: Operation, rewriter: PatternRewriter | None = None, name: str | None = None):
        self.anchor = anchor
        self.rewriter = rewriter
        self.name = name if name is not None else (name_of(anchor) if NAME_ATTR in anchor.attributes else None)
        self.store: WeightStore = store_of(anchor)

    def op(self, op: OpT, suffix: str = "") -> OpT:
        if self.name is not None and NAME_ATTR not in op.attributes and not isinstance(op, ane.ConstOp):
            set_name(op, derived_name(self.name, suffix))
        if self.rewriter is not None:
            self.rewriter.insert(op, InsertPoint.before(self.anchor))
        else:
            Rewriter.insert_op(op, InsertPoint.before(self.anchor))
        return op

    def __call__(self, op: Operation, suffix: str = "") -> SSAValue:
        return self.op(op, suffix).results[0]

    def replace(self, *results: SSAValue | Operation) -> None:
        """Replace the anchor op by `results` (ops not yet inserted are inserted and named first)."""
        new = [self(r) if isinstance(r, Operation) else r for r in results]
        if self.rewriter is not None:
            self.rewriter.replace(self.anchor, [], new)
        else:
            Rewriter.replace_op(self.anchor, [], new)

    def const(self, array: np.ndarray, like: SSAValue | Attribute | None = None, suffix: str = "c") -> SSAValue:
        """A constant holding `array`, with the element type of `like` (default: the array's)."""
        element_type = element_type_of(like) if like is not None else None
        return self(make_const(np.asarray(array), derived_name(self.name or 'const', suffix), self.store, element_type))

    def derive(self, value: SSAValue, transform: Callable[[Any], Any], suffix: str = "c") -> SSAValue:
        """The constant `transform(value)` for a reshape or transpose of the constant `value` (written
        with `.reshape`/`.transpose`, which compressed weights have too: they stay compressed)."""
        owner = value.owner
        weight = compressed_of(owner, self.store) if isinstance(owner, ane.ConstOp) else None
        if weight is not None:
            try:
                moved = transform(weight)
            except KeptOnlyExpanded:
                pass
            else:
                name = derived_name(self.name or "const", suffix)
                return self(make_compressed_const(moved, name, self.store, element_type_of(value)))
        array = constant_of(value)
        assert array is not None, "derive() takes a constant"
        return self.const(transform(array), value, suffix)

    def scalar(self, value: float, like: SSAValue) -> SSAValue:
        """A one-element constant of `like`'s rank and element type, broadcastable against it."""
        return self.const(np.full((1,) * len(shape_of(like)), value), like)

    def reshape(self, value: SSAValue, shape: Sequence[int], suffix: str = "reshape") -> SSAValue:
        if tuple(shape) == shape_of(value):
            return value
        if isinstance(value.owner, ane.ConstOp):
            return self.derive(value, lambda a: a.reshape(tuple(shape)))
        return self(ane.ReshapeOp(value, shape), suffix)

    def transpose(self, value: SSAValue, perm: Sequence[int], suffix: str = "transpose") -> SSAValue:
        if tuple(perm) == tuple(range(len(perm))):
            return value
        if isinstance(value.owner, ane.ConstOp):
            return self.derive(value, lambda a: a.transpose(tuple(perm)))
        return self(ane.TransposeOp(value, perm), suffix)


# ------------------------------------------------------------------------------------------------
# Walking the IR
# ------------------------------------------------------------------------------------------------


def functions(module: ModuleOp) -> Iterator[func.FuncOp]:
    yield from (op for op in module.ops if isinstance(op, func.FuncOp))


def segments(module: ModuleOp) -> Iterator[ane.SegmentOp]:
    for fn in functions(module):
        yield from (op for op in fn.body.block.ops if isinstance(op, ane.SegmentOp))


def ane_blocks(module: ModuleOp) -> list[Block]:
    """The blocks whose ops run on the ANE: segment bodies, or whole functions before partitioning."""
    bodies = [s.body.block for s in segments(module)]
    return bodies or [fn.body.block for fn in functions(module)]


def users(value: SSAValue) -> list[Operation]:
    return [use.operation for use in value.uses]


def single_user(value: SSAValue) -> Operation | None:
    return value.get_user_of_unique_use() if value.has_one_use() else None


def prune_weights(module: ModuleOp) -> None:
    """Drop store arrays no `ane.const` refers to any more (after passes replaced constants)."""
    keep = {op.handle.data for op in module.walk() if isinstance(op, ane.ConstOp) and op.handle is not None}
    store_of(module).prune(keep)


def nbytes(value: SSAValue) -> int:
    return 2 * math.prod(shape_of(value))
