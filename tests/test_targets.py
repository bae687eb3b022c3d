"""The seven chips: names resolve, every figure carries its provenance, capabilities grow by generation."""

from __future__ import annotations

import dataclasses
import itertools
import typing

import pytest

from anec.errors import AnecError
from anec.targets import (
    CAPABILITY_SOURCES,
    TARGETS,
    Capability,
    Fact,
    Kind,
    Limits,
    Memory,
    Numerics,
    Performance,
    Target,
    facts,
    get_target,
    resolve_targets,
    target_names,
)

CHIPS = {  # name -> (arch, accepted chip names)
    "M1": ("h13", ["m1"]),
    "M1 Pro/Max": ("h13g", ["m1-pro", "m1-max"]),
    "M2": ("h14", ["m2"]),
    "M3": ("h15", ["m3"]),
    "M4": ("h16", ["m4"]),
    "M5": ("h17", ["m5"]),
    "M5 Pro/Max": ("h17s", ["m5-pro", "m5-max"]),
}


def test_there_are_seven_chips_in_generation_order() -> None:
    assert [t.name for t in TARGETS] == list(CHIPS)
    assert [t.arch for t in TARGETS] == [arch for arch, _ in CHIPS.values()]
    assert [t.generation for t in TARGETS] == sorted(t.generation for t in TARGETS)
    assert len({t.arch for t in TARGETS}) == 7


@pytest.mark.parametrize("name", list(CHIPS))
def test_chip_and_arch_names_resolve(name: str) -> None:
    arch, aliases = CHIPS[name]
    for spelling in (arch, arch.upper(), name, name.lower(), *aliases, *(a.upper().replace("-", " ") for a in aliases),
                     *(a.replace("-", "_") for a in aliases)):
        assert get_target(spelling).name == name, spelling
    target = get_target(arch)
    assert get_target(target) is target
    assert str(target) == f"{name} ({arch})"


def test_every_accepted_name_is_listed_once() -> None:
    names = target_names()
    assert names == sorted(set(names))
    assert {get_target(n).name for n in names} == set(CHIPS)


def test_unknown_chip_is_an_anec_error_with_a_hint() -> None:
    with pytest.raises(AnecError) as caught:
        get_target("m9")
    error = caught.value
    assert error.what == "unknown target 'm9'"
    assert "m1" in error.hint and "h17s" in error.hint and "m5-max" in error.hint
    assert "\n" not in error.one_line()


def test_all_resolves_to_every_chip_once() -> None:
    assert resolve_targets("all") == list(TARGETS)
    assert resolve_targets(" ALL ") == list(TARGETS)
    assert resolve_targets("m4") == [get_target("h16")]


@pytest.mark.parametrize("record", [Limits, Memory, Numerics, Performance])
def test_every_field_of_the_records_is_a_fact(record: type) -> None:
    hints = typing.get_type_hints(record)
    not_facts = [f.name for f in dataclasses.fields(record) if typing.get_origin(hints[f.name]) is not Fact]
    assert not not_facts, f"{record.__name__} fields without provenance: {not_facts}"


@pytest.mark.parametrize("target", TARGETS, ids=[t.arch for t in TARGETS])
def test_every_fact_has_a_kind_and_a_source(target: Target) -> None:
    found = facts(target)
    names = [n for n, _ in found]
    assert len(names) == len(set(names)) and len(found) >= 50
    assert {"family", "codegen_revision", "perf.cores", "limits.max_kernel_width_fp16", "memory.l2_bytes",
            "numerics.fp16_max"} <= set(names)
    for name, fact in found:
        assert fact.kind in typing.get_args(Kind), f"{target}.{name}"
        assert fact.source.strip(), f"{target}.{name} has no source"


def test_disagreeing_sources_are_recorded_in_notes() -> None:
    m1 = get_target("m1")
    assert m1.limits.max_kernel_width_fp16.value == 13 and "15" in m1.limits.max_kernel_width_fp16.note
    assert "16" in m1.perf.cores.note


def test_capabilities_grow_by_generation() -> None:
    assert set(typing.get_args(Capability)) == set(CAPABILITY_SOURCES)
    for earlier, later in itertools.pairwise(TARGETS):
        assert earlier.capabilities <= later.capabilities
    m1 = {"palette4_weight_stream", "sparse_weight_stream"}
    expected = {
        "h13": m1, "h13g": m1,
        "h14": m1 | {"texture_engine", "topk_sort", "int8_weight_stream", "shared_kernel_memory"},
        "h15": m1 | {"texture_engine", "topk_sort", "int8_weight_stream", "shared_kernel_memory", "sin_cos", "global_argmax"},
    }
    for arch, caps in expected.items():
        assert get_target(arch).capabilities == caps
    for arch in ("h16", "h17", "h17s"):
        assert get_target(arch).capabilities == set(CAPABILITY_SOURCES)
    assert get_target("m3").has("sin_cos") and not get_target("m2").has("sin_cos")


@pytest.mark.parametrize("target", TARGETS, ids=[t.arch for t in TARGETS])
def test_limits_agree_with_capabilities(target: Target) -> None:
    assert (target.limits.max_spatial.value == 65536) == target.has("wide_dims")
    assert target.memory.weights_per_core.value != target.has("shared_kernel_memory")
    assert target.limits.max_pool_window.value == (29 if target.generation == 13 else 31)
    assert target.memory.l2_bytes.value == 2 * 2**20 and target.memory.kernel_memory_bytes.value == 64 * 2**10
    assert target.memory.streamed_kernel_cap_bytes.value == 16 * 2**20


def test_performance_figures_are_plausible_and_ordered() -> None:
    for t in TARGETS:
        p = t.perf
        assert p.cores.value in (4, 8, 16) and 1e9 <= p.clock_hz.value <= 3e9
        assert 0 < p.sustained_fp16_flops.value <= p.peak_fp16_flops.value
        assert 0 < p.activation_bytes_per_s.value <= p.weight_stream_bytes_per_s.value <= p.dram_bytes_per_s.value * 1.0001
        assert 50e-6 <= p.dispatch_floor_s.value <= 0.5e-3
    m1, m1_max, m5, m5_max = (get_target(n) for n in ("m1", "m1-max", "m5", "m5-max"))
    assert m1_max.perf.cores.value == 2 * m1.perf.cores.value
    assert m5_max.perf.cores.value == 16 and m5.perf.cores.value == 4
    assert m5.perf.dispatch_floor_s.value < m1.perf.dispatch_floor_s.value


def test_targets_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_target("m1").generation = 20  # type: ignore[misc]
