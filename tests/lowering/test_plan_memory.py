"""plan-memory: programs whose slots cannot be addressed are refused in one line, before any run."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.parser import Parser

from anec.context import make_context
from anec.errors import AnecError
from anec.lowering.plan_memory import PlanMemoryPass, pack_arena

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


def first_fit(sizes: dict[str, int], spans: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The packing `pack_arena` must give, by scanning every placed buffer for each new one."""
    placed: list[tuple[int, int, int, int]] = []
    offsets: dict[str, int] = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], spans.get(n, (0, 0)), n)):
        first, last = spans.get(name, (0, 0))
        offset = 0
        for lo, hi in sorted((o, o + s) for o, s, f, l in placed if f <= last and first <= l):
            if offset + sizes[name] <= lo:
                break
            offset = max(offset, hi)
        offsets[name] = offset
        placed.append((offset, sizes[name], first, last))
    return offsets


@pytest.mark.parametrize("seed", range(20))
def test_packing_by_time_windows_is_the_first_fit_over_all_buffers(seed: int) -> None:
    """Short and long lifetimes, across and within `PACKING_WINDOW` boundaries, some never used."""
    rng = np.random.default_rng(seed)
    sizes, spans = {}, {}
    for i in range(int(rng.integers(1, 300))):
        sizes[f"t{i}"] = int(rng.integers(1, 6)) * 16384
        if rng.random() < 0.95:
            first = int(rng.integers(0, 1000))
            spans[f"t{i}"] = (first, first + int(rng.choice([0, 1, 3, 40, 200, 900])))
    offsets = pack_arena(sizes, spans)
    assert offsets == first_fit(sizes, spans)
    for a in sizes:
        for b in sizes:
            fa, la = spans.get(a, (0, 0))
            fb, lb = spans.get(b, (0, 0))
            if a < b and fa <= lb and fb <= la:
                assert offsets[a] + sizes[a] <= offsets[b] or offsets[b] + sizes[b] <= offsets[a]
