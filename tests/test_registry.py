"""The one dispatch table: refuses a key twice, finds an op's entry through its class hierarchy,
and is what every op table in anec is."""

from __future__ import annotations

import pytest

from anec import interpreter
from anec.dialects import ane
from anec.emit import mil
from anec.host_kernels import RUNNERS
from anec.importers import aten, onnx_handlers
from anec.lowering import to_anehw
from anec.registry import Registry
from anec.sim import functional


def test_a_key_registered_twice_is_refused() -> None:
    table: Registry[str] = Registry("probe")
    table.add("x", "first")
    with pytest.raises(ValueError, match="already has a probe"):
        table.add("x", "second")


def test_lookup_goes_through_the_class_hierarchy() -> None:
    table: Registry[str] = Registry("probe")
    table.register(ane.UnaryOp)(lambda: None)
    table.add(ane.ReluOp, "relu")
    assert table.lookup(ane.ReluOp) == "relu"
    assert callable(table.lookup(ane.SigmoidOp))          # covered by its base class
    assert table.lookup(ane.MatmulOp) is None
    assert table.lookup("no.such.name") is None


@pytest.mark.parametrize("table", [interpreter.KERNELS, to_anehw.LOWERINGS, mil.LOWERINGS, onnx_handlers.TABLE,
                                   onnx_handlers.HANDLERS, aten.HANDLERS, RUNNERS,
                                   functional.EXECUTORS, functional.MAC_EXECUTORS])
def test_every_op_table_is_a_registry(table: object) -> None:
    assert isinstance(table, Registry)


def test_the_mil_table_finds_leaf_ops_through_their_base_class() -> None:
    leaves = [cls for cls in ane.ANE.operations if issubclass(cls, ane.UnaryOp)]
    assert leaves and all(mil.LOWERINGS.lookup(cls) is not None for cls in leaves)
