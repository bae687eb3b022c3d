"""`anec.runtime.coreml`: Core ML prediction is refused clearly off macOS; the name and type
handling around it works on any package anec writes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Block, Region

from anec.dialects import ane
from anec.dialects.discardable import NAME_ATTR
from anec.errors import AnecError
from anec.runtime.coreml import core_ml_feeds, named_outputs, predict
from anec.weights import WeightStore, attach
from tests.emit.support import compiled_model


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """A package with an int64 input and names that are not MIL identifiers."""
    types = [TensorType(f32, [2, 3]), TensorType(i64, [2, 3])]
    block = Block(arg_types=types)
    cast = ane.CastOp(block.args[1], f32)
    add = ane.AddOp(block.args[0], cast.result)
    block.add_ops([cast, add, func.ReturnOp(add.result)])
    names = lambda *n: ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(x)}) for x in n])  # noqa: E731
    fn = func.FuncOp("main", (types, [add.result.type]), Region(block), arg_attrs=names("x.0", "ids"), res_attrs=names("sum:0"))
    module = ModuleOp([fn])
    attach(module, WeightStore())
    path = tmp_path_factory.mktemp("pkg") / "m.mlpackage"
    compiled_model(module).save(path)
    return path


def _spec(path: Path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML predicts instead of refusing")
def test_prediction_off_macos_is_a_clear_error(package: Path):
    with pytest.raises(AnecError, match="Core ML prediction needs macOS"):
        predict(package, {"x.0": np.zeros((2, 3), np.float32), "ids": np.zeros((2, 3), np.int64)})


def test_bad_arguments_are_errors_on_every_platform(package: Path, tmp_path: Path):
    with pytest.raises(AnecError, match="unknown compute units 'NPU'"):
        predict(package, {}, compute_units="NPU")
    with pytest.raises(AnecError, match="no such Core ML package"):
        predict(tmp_path / "missing.mlpackage", {})


def test_inputs_are_fed_under_core_ml_names_at_its_types(package: Path):
    feeds = core_ml_feeds(_spec(package), {"x.0": np.ones((2, 3), np.float64), "ids": np.arange(6).reshape(2, 3)})
    assert set(feeds) == {"x_0", "ids"}
    assert feeds["x_0"].dtype == np.float32 and feeds["ids"].dtype == np.int32
    np.testing.assert_array_equal(feeds["ids"], np.arange(6).reshape(2, 3))
    with pytest.raises(AnecError, match="missing input 'ids'"):
        core_ml_feeds(_spec(package), {"x.0": np.ones((2, 3))})


def test_outputs_come_back_under_the_model_names(package: Path):
    assert list(named_outputs(_spec(package), {"sum_0": np.zeros((2, 3))})) == ["sum:0"]
