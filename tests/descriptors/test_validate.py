"""The buffer-reuse check of descriptor validation: intermediates share bytes only at disjoint times."""

from __future__ import annotations

import pytest

from anec.descriptors.program import Buffer
from anec.descriptors.validate import _check_reuse
from anec.errors import AnecError

PAGE = 16384


def intermediate(offset_pages: int, pages: int, first: int, last: int, slot: int = 2) -> Buffer:
    return Buffer(slot, "intermediate", 0, offset_pages * PAGE, pages * PAGE, (1, 1, 1, 8), (16, 16, 16, 2), first, last)


def test_buffers_sharing_bytes_at_disjoint_times_pass() -> None:
    _check_reuse([intermediate(0, 2, 0, 3), intermediate(0, 1, 4, 9), intermediate(1, 1, 4, 5), intermediate(0, 4, 10, 10)])


def test_buffers_in_other_slots_or_bytes_pass() -> None:
    _check_reuse([intermediate(0, 2, 0, 9), intermediate(0, 2, 0, 9, slot=3), intermediate(2, 1, 0, 9)])


@pytest.mark.parametrize("second", [
    intermediate(1, 1, 3, 4),    # inside the first's bytes, overlapping its last task
    intermediate(0, 1, 0, 0),    # the same offset at the same first task
    intermediate(2, 2, 5, 7),    # overlapping its upper bytes
])
def test_buffers_sharing_bytes_while_both_live_fail(second: Buffer) -> None:
    with pytest.raises(AnecError, match="share bytes while both are live"):
        _check_reuse([intermediate(0, 3, 0, 5), intermediate(4, 1, 0, 9), second])


def test_an_overlap_hidden_behind_a_nearer_neighbour_is_found() -> None:
    """The wide buffer at 0 overlaps the one at 5 though a buffer at 2 lies between them in offset order
    (it ends before the one at 5 starts being live, so the sweep has removed it)."""
    with pytest.raises(AnecError, match="share bytes"):
        _check_reuse([intermediate(0, 8, 0, 9), intermediate(2, 1, 20, 30), intermediate(5, 1, 4, 4)])
