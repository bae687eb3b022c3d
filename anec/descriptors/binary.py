"""The `.anec` file: encode an `AnecFile` to bytes and decode bytes back, checking everything.

Layout (docs/descriptor-format.md has the full description):

    file header (64 B)  magic, format version, section count, architecture, TD layout version
    section table       32 B per section: kind, index, offset, size, checksum (sections are 64-byte aligned)
    PROGRAM sections    program header (64 B), buffer table (64 B per buffer), task names,
                        TD stream (10-word header + sparse register runs per TD), weight section
    GRAPH section       the host graph as textual IR (func.func calling programs with anehw.call)
    HOST_WEIGHTS        named arrays used by host-side constants
    SOURCE              the model file the program was compiled from (informational)

The decoder never trusts a count or an offset before checking it against the bytes that remain, and
reads no section whose checksum (the first 8 bytes of its SHA-256) does not match, so arbitrary input
ends in one `AnecError` (never an exception of another type, never a hang).
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

import ml_dtypes
import numpy as np

from anec.descriptors.graph import check_graph
from anec.descriptors.program import ROLES, AnecFile, Buffer, Program, Task
from anec.descriptors.validate import validate_program
from anec.errors import AnecError
from anec.isa.fields import GROUPS, HEADER, FieldTable, table_for
from anec.targets import get_target

MAGIC = b"\x89ANEC\r\n\x1a"
PROGRAM_MAGIC = b"ANEP"
FORMAT_VERSION = 1
ALIGN = 64
MAX_RUN_WORDS = 64          # a run header holds (word count - 1) in 6 bits

_FILE_HEADER = struct.Struct("<8sHHI16sHHIQ16x")
_SECTION = struct.Struct("<IIQQQ")
_PROGRAM_HEADER = struct.Struct("<4sHHIIIIIQQ20x")
_BUFFER = struct.Struct("<BBBBHHHHII5I5I4x")
_HOST_WEIGHT = struct.Struct("<HBB")

SECTION_PROGRAM, SECTION_GRAPH, SECTION_HOST_WEIGHTS, SECTION_SOURCE = 1, 2, 3, 4
SECTION_NAMES = {SECTION_PROGRAM: "program", SECTION_GRAPH: "graph", SECTION_HOST_WEIGHTS: "host weights", SECTION_SOURCE: "source"}

HOST_DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in (
    np.float16, np.float32, np.float64, np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz,
    ml_dtypes.float8_e8m0fnu, ml_dtypes.float4_e2m1fn, ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2))
"""Element types of host weights, by their code in the file (values are little-endian)."""

T = TypeVar("T")


def checksum(blob: bytes | memoryview) -> int:
    """The first 8 bytes of the section's SHA-256, little-endian."""
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")


def _pad(n: int, align: int = ALIGN) -> int:
    return -n % align


def _aligned(n: int, align: int = ALIGN) -> int:
    return n + _pad(n, align)


# ------------------------------------------------------------------------------------------------
# Task descriptors
# ------------------------------------------------------------------------------------------------


def encode_runs(table: FieldTable, task: Task) -> list[int]:
    """The sparse register runs of one TD: per group, each stretch of nonzero words after a header
    word `(count - 1) << 26 | register address`."""
    out: list[int] = []
    for group in GROUPS:
        words = table.pack(group.name, task.regs.get(group.name, {}))
        i = 0
        while i < group.words:
            if words[i] == 0:
                i += 1
                continue
            j = i
            while j < group.words and words[j] != 0 and j - i < MAX_RUN_WORDS:
                j += 1
            out.append((j - i - 1) << 26 | group.address(i))
            out.extend(words[i:j])
            i = j
    return out


def encode_tds(table: FieldTable, tasks: list[Task]) -> tuple[bytes, int]:
    """The TD stream (a linked list: each header names the next TD's size and offset) and the first TD's size."""
    bodies = [encode_runs(table, t) for t in tasks]
    sizes = [HEADER.words + len(b) for b in bodies]
    stream = bytearray()
    offset = 0
    for i, (task, body) in enumerate(zip(tasks, bodies)):
        last = i == len(tasks) - 1
        header = dict(task.regs.get("header", {}))
        header.update(TID=i, EON=int(last), NextSize=0 if last else sizes[i + 1],
                      NextPointer=0 if last else offset + 4 * sizes[i])
        header = {k: v for k, v in header.items() if v}
        words = table.pack("header", header) + body
        stream += struct.pack(f"<{len(words)}I", *words)
        offset += 4 * sizes[i]
    return bytes(stream), sizes[0] if sizes else 0


class _Reader:
    """Bounds-checked little-endian reads from a byte range; every failure is an AnecError."""

    def __init__(self, data: bytes | memoryview, where: str):
        self.data = memoryview(data)
        self.where = where

    def fail(self, what: str) -> AnecError:
        return AnecError(what, where=self.where, why="the file is malformed or not an anec program",
                         hint="recompile the model with `anec compile --emit descriptors`")

    def unpack(self, fmt: struct.Struct, offset: int) -> tuple:
        if offset < 0 or offset + fmt.size > len(self.data):
            raise self.fail(f"truncated: needs {fmt.size} bytes at offset {offset}, {max(len(self.data) - offset, 0)} remain")
        return fmt.unpack_from(self.data, offset)

    def words(self, offset: int, count: int) -> tuple[int, ...]:
        if count < 0 or offset < 0 or offset + 4 * count > len(self.data):
            raise self.fail(f"truncated: {count} words at offset {offset} run past the end")
        return struct.unpack_from(f"<{count}I", self.data, offset)

    def bytes(self, offset: int, size: int) -> memoryview:
        if size < 0 or offset < 0 or offset + size > len(self.data):
            raise self.fail(f"range {offset}+{size} runs past the end ({len(self.data)} bytes)")
        return self.data[offset:offset + size]

    def text(self, offset: int, size: int, what: str) -> str:
        try:
            return bytes(self.bytes(offset, size)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"the {what} is not UTF-8") from None


def _guard(read: _Reader, what: str, fn: Callable[[], T]) -> T:
    """Run a field-table operation, re-raising its error with the file position."""
    try:
        return fn()
    except AnecError as e:
        raise read.fail(f"{what}: {e.what}") from None


def _unpack(read: _Reader, table: FieldTable, group: str, index: int, word: int, where: str) -> Mapping[str, int]:
    try:
        return table.unpack(group, index, word)
    except AnecError as e:
        raise read.fail(f"{where}: {e.what}") from None


def decode_tds(read: _Reader, table: FieldTable, count: int, first_words: int) -> list[Task]:
    tasks: list[Task] = []
    offset, words = 0, first_words
    for i in range(count):
        where = f"TD {i}"
        if words < HEADER.words or offset + 4 * words > len(read.data):
            raise read.fail(f"{where}: size {words} words at offset {offset} does not fit the TD stream")
        raw = read.words(offset, words)
        regs: dict[str, dict[str, int]] = {"header": {}}
        for w in range(HEADER.words):
            regs["header"].update(_unpack(read, table, "header", w, raw[w], where))
        header = regs["header"]
        last = i == count - 1
        if header.get("TID", 0) != i:
            raise read.fail(f"{where}: task id {header.get('TID', 0)} is out of sequence")
        if header.get("EON", 0) != int(last):
            raise read.fail(f"{where}: the end-of-network bit must be set on the last TD only")
        next_size, next_pointer = header.get("NextSize", 0), header.get("NextPointer", 0)
        if last and (next_size or next_pointer):
            raise read.fail(f"{where}: the last TD links to a next one")
        if not last and next_pointer != offset + 4 * words:
            raise read.fail(f"{where}: next TD at {next_pointer}, expected {offset + 4 * words}")
        pos, previous_end = HEADER.words, (-1, -1)
        while pos < words:
            run = raw[pos]
            n, address = (run >> 26) + 1, run & ((1 << 26) - 1)
            group = next((g for g in GROUPS if g.reg_base <= address < g.address(g.words)), None)
            if group is None or address % 4:
                raise read.fail(f"{where}: run at register {address:#x} is in no register group")
            first = (address - group.reg_base) // 4
            if first + n > group.words or pos + 1 + n > words:
                raise read.fail(f"{where}: a {n}-word run at register {address:#x} overruns its group or the TD")
            order = (GROUPS.index(group), first)
            if order <= previous_end:
                raise read.fail(f"{where}: register runs overlap or are out of TD order at {address:#x}")
            previous_end = (order[0], first + n - 1)
            regs.setdefault(group.name, {})
            for k in range(n):
                regs[group.name].update(_unpack(read, table, group.name, first + k, raw[pos + 1 + k], where))
            pos += 1 + n
        tasks.append(Task(regs))
        offset += 4 * words
        words = next_size
    if offset != len(read.data):
        raise read.fail(f"the TD stream holds {len(read.data) - offset} bytes after the last TD")
    return tasks


# ------------------------------------------------------------------------------------------------
# Programs
# ------------------------------------------------------------------------------------------------


def encode_program(program: Program) -> bytes:
    validate_program(program)
    table = program.table
    tds, first_words = encode_tds(table, program.tasks)
    names = "\n".join([program.name, *(t.name for t in program.tasks)]).encode()
    buffers = b"".join(_encode_buffer(b) for b in program.buffers)
    names_offset = _PROGRAM_HEADER.size + len(buffers)
    td_offset = _aligned(names_offset + len(names))
    weights_offset = _aligned(td_offset + len(tds))
    header = _PROGRAM_HEADER.pack(PROGRAM_MAGIC, len(program.tasks), len(program.buffers), first_words, td_offset, len(tds),
                                  names_offset, len(names), weights_offset, len(program.weights))
    head = header + buffers + names
    # one join: the weight section is most of a program, and each `+` would copy it again
    return b"".join((head, bytes(td_offset - len(head)), tds, bytes(weights_offset - td_offset - len(tds)), program.weights))


def _encode_buffer(b: Buffer) -> bytes:
    dims = list(b.shape) + [0] * (5 - len(b.shape))
    strides = list(b.strides) + [0] * (5 - len(b.strides))
    return _BUFFER.pack(b.slot, ROLES.index(b.role), len(b.shape), 0, b.port, 0, b.first_task, b.last_task, b.offset, b.size, *dims, *strides)


def decode_program(data: memoryview, arch: str, index: int, validate: bool = True) -> Program:
    read = _Reader(data, f"program {index}")
    magic, td_count, buffer_count, first_words, td_offset, td_size, names_offset, names_size, weights_offset, weights_size = \
        read.unpack(_PROGRAM_HEADER, 0)
    if magic != PROGRAM_MAGIC:
        raise read.fail("bad program magic")
    if td_count == 0:
        raise read.fail("a program needs at least one task descriptor")
    if names_offset != _PROGRAM_HEADER.size + _BUFFER.size * buffer_count:
        raise read.fail("the task-name table does not follow the buffer table")
    if td_offset % ALIGN or weights_offset % ALIGN:
        raise read.fail("the TD stream and the weight section must be 64-byte aligned")
    if not names_offset + names_size <= td_offset <= td_offset + td_size <= weights_offset:
        raise read.fail("sections overlap or are out of order")
    if weights_offset + weights_size != len(data):
        raise read.fail(f"the weight section ends at {weights_offset + weights_size}, the program at {len(data)}")
    buffers = [_decode_buffer(read, _PROGRAM_HEADER.size + i * _BUFFER.size) for i in range(buffer_count)]
    lines = read.text(names_offset, names_size, "task-name table").split("\n")
    if len(lines) != td_count + 1:
        raise read.fail(f"the task-name table has {len(lines) - 1} names for {td_count} TDs")
    table = table_for(arch)
    tasks = decode_tds(_Reader(read.bytes(td_offset, td_size), f"program {index} TD stream"), table, td_count, first_words)
    for task, name in zip(tasks, lines[1:]):
        task.name = name
    program = Program(arch, buffers, tasks, read.bytes(weights_offset, weights_size), lines[0])
    if validate:
        _guard(read, "invalid program", lambda: validate_program(program))
    return program


def _decode_buffer(read: _Reader, offset: int) -> Buffer:
    slot, role, rank, reserved, port, reserved2, first, last, where, size, *rest = read.unpack(_BUFFER, offset)
    dims, strides = rest[:5], rest[5:]
    if role >= len(ROLES) or not 1 <= rank <= 5 or reserved or reserved2:
        raise read.fail(f"buffer record at {offset}: bad role {role} or rank {rank}")
    if any(dims[rank:]) or any(strides[rank:]):
        raise read.fail(f"buffer record at {offset}: values beyond its rank {rank}")
    return Buffer(slot, ROLES[role], port, where, size, tuple(dims[:rank]), tuple(strides[:rank]), first, last)


# ------------------------------------------------------------------------------------------------
# Host weights
# ------------------------------------------------------------------------------------------------


def encode_host_weights(weights: dict[str, np.ndarray]) -> bytes:
    out = bytearray(struct.pack("<I", len(weights)))
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        if array.dtype not in HOST_DTYPES:
            raise AnecError(f"host weight {name!r} has element type {array.dtype}, which a .anec file cannot hold")
        raw_name = name.encode()
        out += _HOST_WEIGHT.pack(len(raw_name), HOST_DTYPES.index(array.dtype), array.ndim) + raw_name
        out += struct.pack(f"<{array.ndim}Q", *array.shape)
        out += _little_endian(array).tobytes()
    return bytes(out)


def _little_endian(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.byteorder in ("<", "|", "=") and sys.byteorder == "little" else array.byteswap()


def decode_host_weights(data: memoryview) -> dict[str, np.ndarray]:
    read = _Reader(data, "host weights")
    (count,) = read.unpack(struct.Struct("<I"), 0)
    pos, out = 4, {}
    for _ in range(count):
        name_len, code, rank = read.unpack(_HOST_WEIGHT, pos)
        pos += _HOST_WEIGHT.size
        name = read.text(pos, name_len, "weight name")
        pos += name_len
        if code >= len(HOST_DTYPES) or rank > 8 or name in out:
            raise read.fail(f"host weight {name!r}: bad type code {code}, rank {rank} or a duplicate name")
        dims = read.unpack(struct.Struct(f"<{rank}Q"), pos)
        pos += 8 * rank
        dtype = HOST_DTYPES[code]
        nbytes = math.prod(dims) * dtype.itemsize
        raw = read.bytes(pos, nbytes)
        pos += nbytes
        out[name] = _little_endian(np.frombuffer(raw, dtype=dtype).copy()).reshape(dims)
    if pos != len(data):
        raise read.fail(f"{len(data) - pos} bytes follow the last host weight")
    return out


# ------------------------------------------------------------------------------------------------
# The file
# ------------------------------------------------------------------------------------------------


def encode(model: AnecFile) -> bytes:
    """The `.anec` bytes of `model` (deterministic: equal models give equal bytes)."""
    sections: list[tuple[int, int, bytes]] = [(SECTION_PROGRAM, i, encode_program(p)) for i, p in enumerate(model.programs)]
    sections.append((SECTION_GRAPH, 0, model.graph.encode()))
    sections.append((SECTION_HOST_WEIGHTS, 0, encode_host_weights(model.host_weights)))
    if model.source:
        sections.append((SECTION_SOURCE, 0, model.source.encode()))
    table = table_for(model.arch)
    offset = _aligned(_FILE_HEADER.size + _SECTION.size * len(sections))
    entries, blobs = [], []
    for kind, index, blob in sections:
        entries.append(_SECTION.pack(kind, index, offset, len(blob), checksum(blob)))
        blobs += [blob, bytes(_pad(len(blob)))]
        offset += len(blob) + _pad(len(blob))
    header = _FILE_HEADER.pack(MAGIC, FORMAT_VERSION, len(sections), 0, model.arch.encode(), table.version,
                               get_target(model.arch).codegen_revision.value, 0, offset)
    head = header + b"".join(entries)
    return b"".join([head, bytes(_pad(len(head))), *blobs])


def decode(data: bytes | memoryview, validate: bool = True) -> AnecFile:
    """Read and check a `.anec` file; raises one AnecError for anything malformed. `validate=False`
    skips re-checking each program's tasks and buffers and each section's checksum: for bytes `encode`
    wrote (it validated them) and that are known intact (just made, or a compile-cache entry, written
    atomically)."""
    read = _Reader(data, "anec file")
    magic, version, count, flags, arch_raw, layout, revision, reserved, size = read.unpack(_FILE_HEADER, 0)
    if magic != MAGIC:
        raise read.fail("not an anec program (bad magic)")
    if version != FORMAT_VERSION:
        raise AnecError(f"anec file format version {version} is not supported", hint=f"this anec reads version {FORMAT_VERSION}; recompile")
    if flags or reserved or size != len(read.data):
        raise read.fail(f"header: file size {size} (actual {len(read.data)}) or reserved fields")
    arch = arch_raw.rstrip(b"\0").decode("ascii", "replace")
    table = _guard(read, "header", lambda: table_for(arch))
    target = _guard(read, "header", lambda: get_target(arch))
    if layout != table.version or revision != target.codegen_revision.value:
        raise read.fail(f"header: TD layout {layout} / codegen {revision} do not match {arch} ({table.version} / {target.codegen_revision.value})")
    sections = [read.unpack(_SECTION, _FILE_HEADER.size + i * _SECTION.size) for i in range(count)]
    expected = _aligned(_FILE_HEADER.size + _SECTION.size * count)
    if any(read.data[_FILE_HEADER.size + _SECTION.size * count:expected]):
        raise read.fail("nonzero padding after the section table")
    programs: list[Program] = []
    found: dict[int, memoryview] = {}
    for kind, index, offset, length, digest in sections:
        if offset != expected:
            raise read.fail(f"section {SECTION_NAMES.get(kind, kind)} at {offset}, expected {expected}")
        blob = read.bytes(offset, length)
        if validate and checksum(blob) != digest:
            raise read.fail(f"the {SECTION_NAMES.get(kind, f'kind-{kind}')} section's checksum does not match its bytes")
        if any(read.bytes(offset + length, _pad(length))):
            raise read.fail("nonzero padding after a section")
        expected = _aligned(offset + length)
        if kind == SECTION_PROGRAM and index == len(programs) and not found:
            programs.append(decode_program(blob, arch, index, validate))
        elif kind in (SECTION_GRAPH, SECTION_HOST_WEIGHTS, SECTION_SOURCE) and index == 0 and kind not in found and \
                all(k < kind for k in found):
            found[kind] = blob
        else:
            raise read.fail(f"unexpected section kind {kind} (index {index}) here")
    if expected != len(read.data):
        raise read.fail("bytes after the last section")
    if SECTION_GRAPH not in found or SECTION_HOST_WEIGHTS not in found:
        raise read.fail("the graph or host-weight section is missing")
    graph = _Reader(found[SECTION_GRAPH], "graph").text(0, len(found[SECTION_GRAPH]), "graph")
    source = _Reader(found[SECTION_SOURCE], "source").text(0, len(found[SECTION_SOURCE]), "source") if SECTION_SOURCE in found else ""
    model = AnecFile(arch, programs, graph, decode_host_weights(found[SECTION_HOST_WEIGHTS]), source)
    model.module = check_graph(model)
    return model
