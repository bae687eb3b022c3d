"""The .anec container: a byte-exact round trip, and a decoder that turns any malformed input into one
AnecError (hypothesis mutates a real file and feeds random bytes; nothing else may escape, nothing hangs).
"""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anec.descriptors.binary import (
    _FILE_HEADER,
    _SECTION,
    MAGIC,
    SECTION_GRAPH,
    SECTION_PROGRAM,
    checksum,
    decode,
    encode,
)
from anec.descriptors.build import anec_file
from anec.descriptors.program import AnecFile
from anec.dialects import ane
from anec.errors import AnecError
from anec.pipeline import lower_segments
from anec.runtime import run_file
from anec.sim.builders import host_stage, segment, stages_module


def _first(b, x):
    y = b.add(ane.ConvOp(x[0], b.random((8, 8, 3, 3), 0.3), b.random((8,), 0.1), pads=[1, 1, 1, 1]))
    return [b.add(ane.SoftmaxOp(b.add(ane.SliceOp(y, [0, 0, 0, 1], [1, 8, 6, 6])), 1)), x[1]]


def _second(b, x):
    return [b.add(ane.TransposeOp(b.add(ane.MatmulOp(x[0], x[1])), [0, 1, 3, 2]))]


def model() -> AnecFile:
    module = stages_module([(1, 8, 6, 6), (1, 8, 5, 6)], [segment(_first), host_stage("onnx.Relu"), segment(_second)])
    return anec_file(lower_segments(module, "h13"), "h13")


BASE = encode(model())
FEEDS = [np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32),
         np.random.default_rng(1).standard_normal((1, 8, 5, 6)).astype(np.float32)]


def test_encode_decode_encode_is_byte_identical() -> None:
    decoded = decode(BASE)
    assert len(decoded.programs) == 2
    assert encode(decoded) == BASE


def test_encoding_is_deterministic() -> None:
    assert encode(model()) == BASE


def test_decoded_file_runs_host_ops_between_programs() -> None:
    out = run_file(decode(BASE), FEEDS)
    assert list(out) == ["y0"] and out["y0"].shape == (1, 8, 6, 6)
    assert np.isfinite(out["y0"]).all()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b[:100], "truncated|file size"),
    (lambda b: b"\0" + b[1:], "bad magic"),
    (lambda b: b[:8] + struct.pack("<H", 9) + b[10:], "format version 9"),
    (lambda b: b[:16] + b"h99".ljust(16, b"\0") + b[32:], "no task-descriptor layout"),
    (lambda b: b + bytes(64), "file size"),
])
def test_malformed_headers_are_one_clear_error(mutate, message: str) -> None:
    with pytest.raises(AnecError, match=message):
        decode(mutate(BASE))


def test_a_stray_register_bit_is_rejected() -> None:
    program = model().programs[0]
    offset = BASE.index(b"ANEP")
    header = struct.unpack_from("<4sHHIIIIIQQ", BASE, offset)
    td_start = offset + header[4]
    # set a bit no field owns in the first TD's header word 0x18 (bits 0-7 are unassigned)
    word = struct.unpack_from("<I", BASE, td_start + 0x18)[0] | 1
    bad = bytearray(BASE[:td_start + 0x18] + struct.pack("<I", word) + BASE[td_start + 0x1C:])
    with pytest.raises(AnecError, match="no h13 field owns"):
        decode(with_checksums(bad))
    assert program.tasks  # the untouched file decodes


def sections(data: bytes | bytearray) -> list[tuple[int, tuple]]:
    """(position of the table entry, (kind, index, offset, size, checksum)) of every section."""
    count = struct.unpack_from("<H", data, 10)[0]
    return [(_FILE_HEADER.size + i * _SECTION.size, _SECTION.unpack_from(data, _FILE_HEADER.size + i * _SECTION.size))
            for i in range(count)]


def with_checksums(data: bytearray) -> bytes:
    """`data` with every section's checksum recomputed, so a mutation reaches the checks behind it."""
    for position, (_, _, offset, size, _) in sections(data):
        struct.pack_into("<Q", data, position + 24, checksum(bytes(data[offset:offset + size])))
    return bytes(data)


def test_a_changed_byte_fails_the_section_checksum() -> None:
    _, (_, _, offset, _, _) = sections(BASE)[0]
    data = bytearray(BASE)
    data[offset + 100] ^= 0xFF
    with pytest.raises(AnecError, match="checksum does not match"):
        decode(bytes(data))


def test_an_unterminated_string_in_the_graph_is_rejected_before_parsing() -> None:
    data = bytearray(BASE)
    at = data.index(b"anehw.call 0(")
    data[at + len("anehw.call 0(%0, %1)")] = ord('"')
    with pytest.raises(AnecError, match="unterminated string"):
        decode(with_checksums(data))


def _must_fail_cleanly(data: bytes) -> None:
    try:
        decoded = decode(data)
    except AnecError:
        return
    with contextlib.suppress(AnecError):  # a mutation the checks accept (weight bytes, names) must still run or fail cleanly
        run_file(decoded, FEEDS)


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_decoder_survives_byte_mutations(edits: list[tuple[int, int]]) -> None:
    data = bytearray(BASE)
    for position, value in edits:
        data[position] = value
    _must_fail_cleanly(bytes(data))


def _section_positions(kind: int) -> list[int]:
    return [p for _, (k, _, offset, size, _) in sections(BASE) if k == kind for p in range(offset, offset + size)]


PROGRAM_BYTES, GRAPH_BYTES = _section_positions(SECTION_PROGRAM), _section_positions(SECTION_GRAPH)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PROGRAM_BYTES), st.integers(0, 255)), min_size=1, max_size=4))
def test_decoder_and_simulator_survive_program_mutations_behind_valid_checksums(edits: list[tuple[int, int]]) -> None:
    data = bytearray(BASE)
    for position, value in edits:
        data[position] = value
    _must_fail_cleanly(with_checksums(data))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(GRAPH_BYTES), st.sampled_from([*list(b'"{}()<>:,%@=\\ \nx0'), 255])), min_size=1, max_size=3))
def test_decoder_survives_graph_mutations_behind_valid_checksums(edits: list[tuple[int, int]]) -> None:
    data = bytearray(BASE)
    for position, value in edits:
        data[position] = value
    _must_fail_cleanly(with_checksums(data))


@FUZZ
@given(st.integers(0, len(BASE)), st.binary(max_size=64))
def test_decoder_survives_truncation_and_insertion(cut: int, extra: bytes) -> None:
    _must_fail_cleanly(BASE[:cut] + extra + BASE[cut:][:len(extra) and None])


@FUZZ
@given(st.binary(max_size=512))
def test_decoder_survives_random_bytes(data: bytes) -> None:
    _must_fail_cleanly(data)
    _must_fail_cleanly(MAGIC + data)
