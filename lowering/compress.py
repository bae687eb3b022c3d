"""ane-compress: store a float model's large MAC weights compressed (`anec compile --compress`).

Data-free, per weight: `int8` quantizes symmetrically per output channel (zero point 0, the form M1
takes), `int8-block` per output channel and block of 32 input channels, `palettize4` and `palettize6`
cluster the values into a 16- or 64-entry fp16 palette (k-means), `prune50` zeroes the half of the
values smallest in magnitude (a sparse weight: a bit mask and the kept fp16 values). `palettize4` spends
what is left of `MIXED_RATIO` (0.29x of every weight's fp16 bytes) over uniform 4-bit palettes on 6- or
8-bit palettes, or fp16, for the weights whose error per byte saved is largest (`allocate_bits`,
errors fitted on the palettes' sample); the report names them. Constant weights of
convolutions and matmuls, and embedding tables (which the package then stores compressed), are
compressed when they hold at least `MIN_ELEMENTS` values (coremltools' default threshold: small
layers cost little and lose the most); ops named in `compress_skip` keep theirs.
Each compressed op records the weight's relative error (`ane.compression`), so the user sees which
layers lose the most. Runs first, so the later passes move the weights compressed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from anec.compression import (
    COMPRESSORS,
    MIXED_BITS,
    MIXED_RATIO,
    MORE_BITS,
    CompressedWeight,
    allocate_bits,
    assign_palette,
    palette_luts,
    palettize,
    prune,
    quantize_int8,
    quantize_int8_block,
)
from anec.dialects import ane, host
from anec.dialects.ane import element_type_of, is_float, shape_of
from anec.dialects.discardable import COMPRESSION_ATTR, append_note, name_of
from anec.errors import AnecError
from anec.host_kernels import python_value
from anec.lowering.rewriting import prune_weights
from anec.weights import make_compressed_const, store_of

MIN_ELEMENTS = 2048


def weight_and_axes(op: Operation) -> tuple[SSAValue, int, int] | None:
    """The weight of a MAC op, its output-channel axis and its input-channel axis; an embedding table
    (the data of an ONNX Gather along axis 0, on the CPU), its rows and its columns."""
    if isinstance(op, host.HostOp) and op.op_name.data == "onnx.Gather" and op.operands:
        axis = op.attrs.data.get("axis") if op.attrs is not None else None
        return (op.operands[0], 0, 1) if (axis is None or python_value(axis) == 0) and len(shape_of(op.operands[0])) == 2 else None
    if isinstance(op, ane.ConvOp):
        return op.weight, 0, 1
    if isinstance(op, ane.ConvTransposeOp):
        return op.weight, 1, 0
    if isinstance(op, ane.MatmulOp):
        rank = len(shape_of(op.rhs))
        return (op.rhs, rank - 2, rank - 1) if op.flags()[1] else (op.rhs, rank - 1, rank - 2)
    return None


def compress(array: np.ndarray, mode: str, axis: int, input_axis: int) -> CompressedWeight:
    """`array` compressed in `mode` (`anec.compression.COMPRESSORS`; `palettize4` as uniform 4-bit palettes)."""
    if mode == "int8":
        return quantize_int8(array, axis)
    if mode == "int8-block":
        return quantize_int8_block(array, axis, input_axis)
    if mode == "prune50":
        return prune(array, 0.5)
    return palettize(array, 6 if mode == "palettize6" else 4)


@dataclass(frozen=True)
class _Candidate:
    """A weight `ane-compress` may compress, and the ops that read it."""

    const: ane.ConstOp
    array: np.ndarray
    axis: int
    input_axis: int
    readers: list[tuple[Operation, SSAValue]]


def _candidates(module: ModuleOp, skip: tuple[str, ...]) -> dict[tuple[str, int], _Candidate]:
    """The large float constant weights of MAC ops (and embedding tables), once per stored array and axis."""
    store = store_of(module)
    found: dict[tuple[str, int], _Candidate] = {}
    for mac in list(module.walk()):
        weight_axes = weight_and_axes(mac)
        if weight_axes is None or name_of(mac) in skip:
            continue
        weight, axis, input_axis = weight_axes
        const = weight.owner
        if (not isinstance(const, ane.ConstOp) or const.handle is None or const.stored is not None
                or not is_float(element_type_of(weight)) or np.prod(shape_of(weight)) < MIN_ELEMENTS):
            continue
        key = (const.handle.data, axis)
        if key not in found:
            found[key] = _Candidate(const, store[const.handle.data].astype(np.float32), axis, input_axis, [])
        found[key].readers.append((mac, weight))
    return found


def _mixed_palettes(module: ModuleOp, candidates: list[_Candidate]) -> list[tuple[CompressedWeight | None, str]]:
    """`palettize4`: per candidate, its 4-bit palette or, for the layers `allocate_bits` picks, a wider
    one or fp16 (None), within `MIXED_RATIO` of every weight's fp16 bytes; and the note saying which.
    Each layer's squared relative error counts alike, whatever its size (with a normalization after
    most layers, a layer's relative error reaches the output about undiminished): on random-init
    ResNet-50 at 0.29x / 0.33x that kept a cosine of 0.988 / 0.993 against float32, counting each
    weight alike (a layer's error times its size) 0.987 / 0.992."""
    store = store_of(module)
    chosen = {id(c.const) for c in candidates}
    others = {op.handle.data: op for op in module.walk() if isinstance(op, ane.ConstOp) and op.handle is not None and id(op) not in chosen}
    other_fp16 = sum(2 * int(np.prod(shape_of(op.result))) for op in others.values())
    other_stored = sum(store.stored_nbytes(h) if op.stored is not None else 2 * int(np.prod(shape_of(op.result))) for h, op in others.items())
    sizes = [c.array.size for c in candidates]
    luts = [palette_luts(c.array) for c in candidates]
    budget = int(MIXED_RATIO * (other_fp16 + 2 * sum(sizes))) - other_stored
    bits = allocate_bits(sizes, [{b: e for b, (_, e) in found.items()} for found in luts], budget)
    out: list[tuple[CompressedWeight | None, str]] = []
    for c, width, found in zip(candidates, bits, luts, strict=True):
        if width == 16:
            out.append((None, f"left in fp16 by ane-compress (palettize4); {MORE_BITS}"))
        else:
            why = "" if width == MIXED_BITS[0] else f"; {MORE_BITS}"
            out.append((assign_palette(c.array, found[width][0]), why))
    return out


@dataclass(frozen=True)
class CompressPass(ModulePass):
    name = "ane-compress"

    compress: str = ""
    """The mode (`anec.compression.COMPRESSORS`); empty: leave the weights as they are."""
    compress_skip: tuple[str, ...] = ()
    """Names of ops (as the report shows them) whose weights stay uncompressed."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if not self.compress:
            return
        if self.compress not in COMPRESSORS:
            raise AnecError(f"--compress {self.compress}: no such mode", hint=f"use one of {', '.join(COMPRESSORS)}")
        store = store_of(op)
        candidates = list(_candidates(op, self.compress_skip).values())
        if self.compress == "palettize4":
            forms = _mixed_palettes(op, candidates)
        else:
            forms = [(compress(c.array, self.compress, c.axis, c.input_axis), "") for c in candidates]
        replaced: list[ane.ConstOp] = []
        for c, (compressed, why) in zip(candidates, forms, strict=True):
            if compressed is None:
                for mac, _ in c.readers:
                    append_note(mac, COMPRESSION_ATTR, why)
                continue
            error = float(np.linalg.norm(compressed.fp16().astype(np.float32) - c.array)) / max(float(np.linalg.norm(c.array)), 1e-30)
            assert c.const.handle is not None  # candidates are stored weights (`_candidates`)
            new = make_compressed_const(compressed, c.const.handle.data, store, element_type_of(c.const.result))
            new.attributes.update(c.const.attributes)
            Rewriter.insert_op(new, InsertPoint.before(c.const))
            replaced.append(c.const)
            for mac, weight in c.readers:
                mac.operands = [new.result if v is weight else v for v in mac.operands]
                append_note(mac, COMPRESSION_ATTR, f"compressed by ane-compress: relative weight error {error:.2e}{why}")
        for const in replaced:
            if not const.result.uses:
                const.detach()
                const.erase()
        prune_weights(op)
