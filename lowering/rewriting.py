"""What every lowering pass needs to read and walk IR: constants, users, segment scopes.

Passes build replacement ops through `anec.builder.RewriteBuilder`, which inserts them before the op
being rewritten and names them after it (`ane.name = "<old name>#<suffix>"`), so every op keeps a
traceable source name. Constants come from and go to the module's weight store (`anec.weights`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue

from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.weights import const_value, store_of


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
