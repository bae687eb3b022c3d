"""plan-memory: programs whose slots cannot be addressed are refused in one line, before any run."""

from __future__ import annotations

import pytest
from xdsl.parser import Parser

from anec.context import make_context
from anec.errors import AnecError
from anec.lowering.plan_memory import PlanMemoryPass

PROGRAM = """
func.func @main(%x: tensor<1x{c}x1x{w}xf16>) -> tensor<1x{c}x1x{w}xf16> {{
  %r = anehw.program(%x) {{arch = "h13"}} : (tensor<1x{c}x1x{w}xf16>) -> tensor<1x{c}x1x{w}xf16> {{
    anehw.buffer @in0 {{role = "input", shape = array<i64: 1, {c}, 1, {w}>, port = 0 : i64}}
    anehw.buffer @a {{role = "intermediate", shape = array<i64: 1, {c}, 1, {w}>}}
    anehw.buffer @b {{role = "intermediate", shape = array<i64: 1, {c}, 1, {w}>}}
    anehw.buffer @out0 {{role = "output", shape = array<i64: 1, {c}, 1, {w}>, port = 0 : i64}}
    anehw.task {{src1 = #anehw.view<@in0, rows [0, 0, 1, 0], offset 0, w 0 step 1>, dst = #anehw.view<@a, rows [0, 0, 1, 0], offset 0, w 0 step 1>, kernel_dma = {{Kind = 5 : i64, Neuron = 1 : i64}}}}
    anehw.task {{src1 = #anehw.view<@in0, rows [0, 0, 1, 0], offset 0, w 0 step 1>, dst = #anehw.view<@b, rows [0, 0, 1, 0], offset 0, w 0 step 1>, kernel_dma = {{Kind = 5 : i64, Neuron = 1 : i64}}}}
    anehw.task {{src1 = #anehw.view<@a, rows [0, 0, 1, 0], offset 0, w 0 step 1>, src2 = #anehw.view<@b, rows [0, 0, 1, 0], offset 0, w 0 step 1>, dst = #anehw.view<@out0, rows [0, 0, 1, 0], offset 0, w 0 step 1>, kernel_dma = {{Kind = 4 : i64}}}}
  }}
  func.return %r : tensor<1x{c}x1x{w}xf16>
}}
"""


def _plan(channels: int, width: int) -> None:
    module = Parser(make_context(), PROGRAM.format(c=channels, w=width)).parse_module()
    PlanMemoryPass().apply(make_context(), module)


@pytest.mark.parametrize(("channels", "why"), [(40000, r"largest buffer, \w+ \(1x40000x1x65536 fp16\), needs 4.88 GiB"),
                                               (20000, r"intermediates need 4.88 GiB at once")])
def test_a_slot_past_the_addressable_4_gib_is_refused_in_one_line(channels: int, why: str) -> None:
    """Issue 17: such a program failed the verifier (a field overflow, printing the whole module) or
    made the simulator allocate the whole slot."""
    with pytest.raises(AnecError, match=why) as info:
        _plan(channels, 65536)
    assert "\n" not in str(info.value) and "4 GiB a task can address" in str(info.value)


def test_a_program_within_4_gib_is_planned() -> None:
    _plan(4, 64)


def test_a_field_that_overflows_is_one_line_naming_the_task() -> None:
    """A W step past the 4-bit WStep field (to-anehw copies such windows out; a hand-written program
    may not) was a VerifyException printing the whole module."""
    text = PROGRAM.format(c=4, w=640).replace("offset 0, w 0 step 1>, dst = #anehw.view<@a", "offset 0, w 0 step 21>, dst = #anehw.view<@a", 1)
    text = text.replace("anehw.task {src1", 'anehw.task {ane.name = "strided", src1', 1)
    module = Parser(make_context(), text).parse_module()
    with pytest.raises(AnecError, match=r"strided: cannot place the buffers of task 0 for h13: tile_src.WStep = 21 does not fit its 4-bit field"):
        PlanMemoryPass().apply(make_context(), module)
