"""The one op builder: its helpers fold the same way whichever way a builder places ops."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, f16, f32
from xdsl.ir import Attribute, Block, Region, SSAValue

from anec.builder import AppendingBuilder, OpBuilder, RewriteBuilder
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of, tensor
from anec.dialects.discardable import name_of
from anec.weights import WeightStore, attach, const_value, make_const


class Collecting(AppendingBuilder):
    """An importer-style builder: ops collected in `ops`, constants too."""

    def constant(self, array: np.ndarray, like: SSAValue | Attribute | None = None, name: str | None = None) -> SSAValue:
        return self.add(make_const(np.asarray(array), name or "const", self.store, element_type_of(like) if like is not None else None))


def _function(shape: tuple[int, ...]) -> tuple[ModuleOp, SSAValue, func.ReturnOp]:
    block = Block(arg_types=[tensor(shape, f32)])
    ret = func.ReturnOp()
    block.add_op(ret)
    module = ModuleOp([func.FuncOp("main", ([tensor(shape, f32)], []), Region(block))])
    attach(module, WeightStore())
    return module, block.args[0], ret


def _builders() -> list[tuple[OpBuilder, SSAValue]]:
    _, x, ret = _function((2, 3, 4))
    return [(RewriteBuilder(ret, name="n"), x), (Collecting(WeightStore()), x)]


@pytest.mark.parametrize("style", ["rewrite", "appending"])
def test_a_reshape_of_a_reshape_reshapes_the_source_and_a_reshape_to_the_same_shape_is_the_value(style: str) -> None:
    b, x = _builders()[style == "appending"]
    flat = b.reshape(x, (6, 4))
    again = b.reshape(flat, (4, 6))
    assert isinstance(again.owner, ane.ReshapeOp) and again.owner.input is x
    assert b.reshape(flat, (2, 3, 4)) is x
    assert b.reshape(x, (2, 3, 4)) is x
    assert b.transpose(x, (0, 1, 2)) is x


@pytest.mark.parametrize("style", ["rewrite", "appending"])
def test_movements_of_a_constant_are_constants(style: str) -> None:
    b, _ = _builders()[style == "appending"]
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    c = b.constant(array)
    moved = b.transpose(b.reshape(c, (6, 4)), (1, 0))
    assert isinstance(moved.owner, ane.ConstOp)
    assert np.array_equal(const_value(moved.owner, b.store), array.reshape(6, 4).T)


def test_a_constant_derived_the_same_way_twice_is_computed_once_and_shares_its_handle() -> None:
    b, _ = _builders()[0]
    c = b.constant(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    calls = []

    def flip(a: np.ndarray) -> np.ndarray:
        calls.append(1)
        return a[::-1].copy()

    first, second = (b.derive(c, flip, ("flip",)) for _ in range(2))
    other = b.derive(c, lambda a: a * 2, ("double",))
    assert len(calls) == 1 and first is not second
    assert isinstance(first.owner, ane.ConstOp) and isinstance(second.owner, ane.ConstOp) and isinstance(other.owner, ane.ConstOp)
    assert first.owner.handle == second.owner.handle != other.owner.handle
    assert first.type == second.type and np.array_equal(const_value(second.owner, b.store), np.arange(24.0).reshape(2, 3, 4)[::-1])


def test_scalar_has_the_rank_and_element_type_of_its_partner() -> None:
    b = Collecting(WeightStore())
    like = b.add(ane.CastOp(b.constant(np.zeros((2, 3, 4, 5), np.float32)), f16))
    s = b.scalar(0.5, like)
    assert shape_of(s) == (1, 1, 1, 1) and element_type_of(s) == f16
    assert b.cast(like, f16) is like and isinstance(b.cast(like, f32).owner, ane.CastOp)


def test_same_rank_prepends_unit_axes() -> None:
    b, x = _builders()[0]
    v = b.constant(np.ones(4, np.float32))
    assert [shape_of(r) for r in b.same_rank(x, v)] == [(2, 3, 4), (1, 1, 4)]


def test_a_pass_builder_names_ops_and_constants_after_its_op() -> None:
    _, x, ret = _function((2, 3, 4))
    b = RewriteBuilder(ret, name="conv1")
    r = b.reshape(x, (6, 4))
    c = b.reshape(b.constant(np.arange(32, dtype=np.float32)), (2, 16))
    assert name_of(r.owner) == "conv1#reshape"
    assert isinstance(c.owner, ane.ConstOp) and c.owner.handle is not None and c.owner.handle.data == "conv1_c#1"  # handles spell "#" as "_"; the second constant is "#1"
    assert list(ret.parent_block().ops)[-1] is ret  # inserted before the op it serves


def test_an_importer_builder_collects_ops_in_order_without_placing_them() -> None:
    b = Collecting(WeightStore())
    c = b.constant(np.zeros((2, 3), np.float32))
    r = b.reshape(b.add(ane.ReluOp(c)), (3, 2))
    assert [op.name for op in b.ops] == ["ane.const", "ane.relu", "ane.reshape"]
    assert all(op.parent is None for op in b.ops) and r is b.ops[-1].results[0]
