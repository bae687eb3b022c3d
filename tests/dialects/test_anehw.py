"""`anehw.task` rejects malformed fields and coefficient streams with one readable message (parsed IR
can hold any attribute there; they were read as integers and strings without a check)."""

from __future__ import annotations

import pytest
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, StringAttr, i64
from xdsl.ir import Attribute, Block, Region
from xdsl.utils.exceptions import VerifyException

from anec.dialects import anehw


def _program_of(task: anehw.TaskOp, group: str, value: Attribute) -> anehw.ProgramOp:
    task.properties[group] = value
    return anehw.ProgramOp([], [], "h13", Region(Block([task])))


def test_a_field_that_is_not_an_integer_fails_verification() -> None:
    program = _program_of(anehw.TaskOp({}), "common", DictionaryAttr({"Cin": StringAttr("x")}))
    with pytest.raises(VerifyException, match=r'anehw.task: field common.Cin is "x", not an integer'):
        program.verify()


def test_a_coefficient_stream_not_named_by_a_string_fails_verification() -> None:
    program = _program_of(anehw.TaskOp({}), "coeffs", DictionaryAttr({"kernel": IntegerAttr(3, i64)}))
    with pytest.raises(VerifyException, match=r"anehw\.task: a coefficient stream names its buffer with a string"):
        program.verify()


def test_well_formed_fields_and_streams_read_back() -> None:
    task = anehw.TaskOp({"common": {"Cin": 3}}, coeffs={"kernel": "w0"})
    anehw.ProgramOp([], [], "h13", Region(Block([anehw.WeightOp("w0", "h", "dense", [4]), task]))).verify()
    assert task.fields("common") == {"Cin": 3} and task.coefficient("kernel") == "w0" and task.coefficient("bias") is None
