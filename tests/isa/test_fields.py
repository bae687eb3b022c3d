"""The field tables: eco (c)'s H13 widths, non-overlapping fields, and room for every target's limits."""

from __future__ import annotations

import pytest

from anec.errors import AnecError
from anec.isa.fields import ANEC, ECO, GROUP_BY_NAME, TABLES, table_for
from anec.targets import TARGETS, get_target

H13 = TABLES["h13"]


@pytest.mark.parametrize("arch", sorted(TABLES))
def test_fields_fit_their_word_and_never_overlap(arch: str) -> None:
    table = TABLES[arch]
    for (group, word), fields in table.by_word.items():
        assert 0 <= word < GROUP_BY_NAME[group].words
        taken = 0
        for f in fields:
            assert f.lo + f.width <= 32, f
            assert not taken & f.mask, f"{f.name} overlaps another field of {group} word {word}"
            taken |= f.mask


@pytest.mark.parametrize(("group", "name", "lo", "width"), [
    ("common", "Win", 0, 15), ("common", "Hin", 16, 15), ("common", "Cin", 0, 17), ("common", "Cout", 0, 17),
    ("common", "Kw", 0, 5), ("common", "Kh", 5, 5), ("common", "OCGSize", 10, 3), ("common", "NumGroups", 0, 13),
    ("common", "ActiveNE", 19, 3), ("tile_src", "RowStride", 6, 26), ("tile_dst", "PlaneStride", 6, 26),
    ("l2", "SourceRowStride", 4, 17), ("planar", "ScaleScalar", 16, 16), ("neural", "PostScale", 0, 16),
    ("kernel_dma", "CoeffBaseAddr15", 6, 26), ("header", "EON", 25, 1), ("header", "WBase", 12, 5),
])
def test_h13_widths_are_eco_c(group: str, name: str, lo: int, width: int) -> None:
    f = H13.field(group, name)
    assert (f.lo, f.width, f.origin) == (lo, width, ECO)


def test_units_and_signs_are_explicit() -> None:
    assert H13.field("tile_src", "RowStride").unit == 64 and H13.field("tile_src", "RowStride").signed
    assert H13.field("tile_src", "BaseAddr").unit == 64 and not H13.field("tile_src", "BaseAddr").signed
    assert H13.field("l2", "SourceChannelStride").unit == 16
    assert H13.field("planar", "BiasScalar").encoding == "fp16"


def test_h13_widths_agree_with_the_target_record() -> None:
    limits = get_target("m1").limits
    assert H13.field("common", "Win").width == limits.spatial_field_bits.value
    assert H13.field("common", "Cout").width == limits.channel_field_bits.value
    assert H13.field("common", "Kw").width == limits.kernel_field_bits.value
    assert H13.field("tile_src", "WStep").width == limits.w_step_field_bits.value
    assert H13.field("common", "NumGroups").max == limits.max_groups.value


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.arch)
def test_every_legal_extent_fits_its_chip_table(target) -> None:
    table, lim = table_for(target.arch), target.limits
    for name in ("Win", "Hin", "Wout", "Hout", "InputDepth", "OutDepth"):
        assert table.field("common", name).fits(lim.max_spatial.value), (target.arch, name)
    assert table.field("common", "Cin").fits(lim.max_channels.value)
    assert table.field("kernel_dma", "InBatch").fits(lim.max_batch.value)
    assert table.field("common", "Kh").fits(lim.max_kernel_height.value)
    assert table.field("common", "Px").fits(lim.max_pad.value)


def test_a16_and_later_widen_the_spatial_fields_under_their_own_version() -> None:
    assert not H13.field("common", "Win").fits(65536)
    assert TABLES["h16"].field("common", "Win").fits(65536)
    assert len({t.version for t in TABLES.values()}) >= 5
    assert TABLES["h16"].field("common", "Hin").origin != ECO


def test_extensions_only_use_words_no_documented_field_uses() -> None:
    for (group, word), fields in H13.by_word.items():
        origins = {f.origin for f in fields}
        assert not (ANEC in origins and ECO in origins), f"{group} word {word} mixes documented and anec fields"


def test_insert_extract_round_trip_including_negative_strides() -> None:
    f = H13.field("tile_src", "RowStride")
    assert f.extract(f.insert(0, -3)) == -3
    assert f.extract(f.insert(0, f.max)) == f.max and f.extract(f.insert(0, f.min)) == f.min


def test_values_out_of_range_and_unknown_fields_are_errors() -> None:
    with pytest.raises(AnecError, match="does not fit its 15-bit field"):
        H13.check("common", "Win", 1 << 15)
    with pytest.raises(AnecError, match="not a field of the common group"):
        H13.check("common", "Bogus", 1)
    with pytest.raises(AnecError, match="no task-descriptor layout"):
        table_for("h99")
