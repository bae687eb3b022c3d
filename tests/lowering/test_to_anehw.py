"""to-anehw on an unrolled recurrence: per-step work that is the same at every step is done once."""

from __future__ import annotations

from typing import Any

import pytest

import anec
from anec.lowering.to_anehw import SegmentLowering, Tensor
from tests.synthetic import speaker_encoder


def test_constants_and_tables_become_weight_entries_once_however_many_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step reads the same recurrence weights, biases and activation tables; converting and
    hashing them again per step made to-anehw grow with the sequence times the weight size."""
    conversions = []
    weight = SegmentLowering.weight

    def counted(self: SegmentLowering, *args: Any, **kwargs: Any) -> Tensor:
        conversions.append(args[1])
        return weight(self, *args, **kwargs)

    monkeypatch.setattr(SegmentLowering, "weight", counted)
    counts = {}
    for frames in (3, 6):
        conversions.clear()
        anec.compile(speaker_encoder(frames=frames, mels=8, hidden=16, layers=1), target="m1", emit="descriptors")
        counts[frames] = len(conversions)
    assert counts[3] == counts[6] > 0
