"""A compiled module as the descriptor format's model: its planned `anehw.program`s become
`Program`s (buffer table, task descriptors, weight section) and the rest of the function the
file's host graph, each program replaced by an `anehw.call` of its index.

The pipeline builds a model's `AnecFile` here; the emitter encodes it and the runtime runs it. The
report costs each task from the same `Program` (without its weight bytes).
"""

from __future__ import annotations

import io

import numpy as np
from xdsl.dialects.builtin import AnyFloat, DenseIntOrFPElementsAttr, ModuleOp, StringAttr
from xdsl.ir import Attribute
from xdsl.printer import Printer
from xdsl.rewriter import Rewriter

from anec.analysis import read_as_fp16_only
from anec.compression import kernel_stream
from anec.descriptors.program import (
    WEIGHT_SLOT,
    AnecFile,
    Buffer,
    Program,
    Task,
    buffer_strides,
    role_named,
    round_up,
)
from anec.dialects import ane, anehw
from anec.dialects.discardable import NAME_ATTR, OP_ATTR, SOURCE_ATTR, WEIGHTS_FILE_ATTR
from anec.errors import AnecError
from anec.targets import get_target
from anec.weights import WeightStore, const_value, dense_to_numpy, store_of


def weight_section(program: anehw.ProgramOp, store: WeightStore) -> bytes:
    memory = get_target(program.arch.data).memory
    weights = program.weights()
    data = bytearray(weight_section_size(program))
    for w in weights:
        offset, _ = w.placement()
        if w.encoding is not None:  # a kernel stream the chip reads compressed
            weight = store.compressed(w.handle.data)
            assert weight is not None, f"{w.handle.data} is encoded, so its weight is stored compressed"
            stream = kernel_stream(weight)
            data[offset:offset + len(stream)] = stream
            continue
        array = np.asarray(store[w.handle.data], dtype=np.float16).reshape(w.dims)
        if w.layout.data == "tensor":
            row = round_up(2 * w.dims[-1], memory.row_alignment_bytes.value) // 2
            rows = array.reshape(-1, w.dims[-1])
            padded = np.zeros((rows.shape[0], row), dtype=np.float16)
            padded[:, :w.dims[-1]] = rows
            array = padded
        raw = array.astype("<f2").tobytes()
        data[offset:offset + len(raw)] = raw
    return bytes(data)


def weight_section_size(program: anehw.ProgramOp) -> int:
    return max((sum(w.placement()) for w in program.weights()), default=0)


def program_of(op: anehw.ProgramOp, store: WeightStore, name: str, with_weights: bool = True) -> Program:
    """The descriptor program of one planned `anehw.program` (without weight bytes for costing only)."""
    memory = get_target(op.arch.data).memory
    align, page = memory.row_alignment_bytes.value, memory.buffer_page_bytes.value
    buffers = []
    for b in op.buffers():
        if b.slot is None or b.offset is None or b.size is None:
            raise AnecError("anehw.program has unplaced buffers", hint="run plan-memory before emitting descriptors")
        first, last = b.live.get_values() if b.live is not None else (0, 0)
        buffers.append(Buffer(b.slot.value.data, role_named(b.role.data), b.port.value.data if b.port is not None else 0,
                              b.offset.value.data, b.size.value.data, b.dims, buffer_strides(b.dims, align), first, last))
    weights = weight_section(op, store) if with_weights else b""
    size = weight_section_size(op)
    if size:
        last_task = max(len(op.tasks()) - 1, 0)
        buffers.insert(0, Buffer(WEIGHT_SLOT, "weights", 0, 0, round_up(size, page), (max(size // 2, 1),), (2,), 0, last_task))
    tasks = []
    for t in op.tasks():
        label = t.attributes.get(NAME_ATTR) or t.attributes.get(OP_ATTR)
        tasks.append(Task(t.all_fields(), label.data.replace("\n", " ") if isinstance(label, StringAttr) else ""))
    return Program(op.arch.data, buffers, tasks, weights, name)


def anec_file(module: ModuleOp, arch: str) -> AnecFile:
    """Programs, host graph and host weights of a module whose segments were lowered and planned."""
    store = store_of(module)
    graph = module.clone()
    graph.attributes.pop(WEIGHTS_FILE_ATTR, None)
    source = graph.attributes.pop(SOURCE_ATTR, None)
    programs: list[Program] = []
    for op in list(graph.walk()):
        if isinstance(op, ane.SegmentOp):
            raise AnecError("the module still has ANE segments", hint="compile with --emit descriptors (runs to-anehw and plan-memory)")
        if isinstance(op, anehw.ProgramOp):
            if op.arch.data != arch:
                raise AnecError(f"a program for {op.arch.data} in a module compiled for {arch}")
            programs.append(program_of(op, store, f"program{len(programs)}"))
            Rewriter.replace_op(op, anehw.CallOp(len(programs) - 1, list(op.inputs), [r.type for r in op.outputs]))
    host = {}
    for c in graph.walk():
        if isinstance(c, ane.ConstOp) and c.handle is not None:
            array = np.asarray(const_value(c, store))
            if array.dtype == np.float32 and read_as_fp16_only(c.result):
                array = array.astype(np.float16)  # an embedding table only ANE programs read: `check_graph` widens it back
            host[c.handle.data] = array
            c.properties.pop("stored", None)  # the CPU reads the expansion, in the type the IR declares
    text = _print(graph)
    return AnecFile(arch, programs, text, host, source.data if isinstance(source, StringAttr) else "")


class ExactPrinter(Printer):
    """xDSL's printer, except that a float tensor holding NaN or inf is printed as raw hex data
    (`dense<"0x…">`): xDSL 0.74 prints such values as hex floats it cannot parse back."""

    def print_attribute(self, attribute: Attribute) -> None:
        if isinstance(attribute, DenseIntOrFPElementsAttr) and isinstance(attribute.get_element_type(), AnyFloat) \
                and not np.isfinite(dense_to_numpy(attribute).astype(np.float64)).all():
            self.print_string(f'dense<"0x{attribute.data.data.hex().upper()}"> : ')
            self.print_attribute(attribute.type)
            return
        super().print_attribute(attribute)


def _print(module: ModuleOp) -> str:
    out = io.StringIO()
    ExactPrinter(stream=out).print_op(module)
    return out.getvalue() + "\n"
