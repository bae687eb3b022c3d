"""ane-compress: store a float model's large MAC weights compressed (`anec compile --compress`).

Data-free, per weight: `int8` quantizes symmetrically per output channel (zero point 0, the form M1
takes), `int8-block` per output channel and block of 32 input channels, `palettize4` and `palettize6`
cluster the values into a 16- or 64-entry fp16 palette (k-means), `prune50` zeroes the half of the
values smallest in magnitude (a sparse weight: a bit mask and the kept fp16 values). Constant weights of
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
    CompressedWeight,
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
    """`array` compressed in `mode` (`anec.compression.COMPRESSORS`)."""
    if mode == "int8":
        return quantize_int8(array, axis)
    if mode == "int8-block":
        return quantize_int8_block(array, axis, input_axis)
    if mode == "prune50":
        return prune(array, 0.5)
    return palettize(array, 6 if mode == "palettize6" else 4)


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
        done: dict[tuple[str, int], tuple[SSAValue, str]] = {}
        replaced: list[ane.ConstOp] = []
        for mac in list(op.walk()):
            found = weight_and_axes(mac)
            if found is None or name_of(mac) in self.compress_skip:
                continue
            weight, axis, input_axis = found
            const = weight.owner
            if (not isinstance(const, ane.ConstOp) or const.handle is None or const.stored is not None
                    or not is_float(element_type_of(weight)) or np.prod(shape_of(weight)) < MIN_ELEMENTS):
                continue
            key = (const.handle.data, axis)
            if key not in done:
                array = store[const.handle.data].astype(np.float32)
                compressed = compress(array, self.compress, axis, input_axis)
                error = float(np.linalg.norm(compressed.fp16().astype(np.float32) - array)) / max(float(np.linalg.norm(array)), 1e-30)
                new = make_compressed_const(compressed, const.handle.data, store, element_type_of(weight))
                new.attributes.update(const.attributes)
                Rewriter.insert_op(new, InsertPoint.before(const))
                done[key] = (new.result, f"compressed by ane-compress: relative weight error {error:.2e}")
                replaced.append(const)
            value, note = done[key]
            mac.operands = [value if v is weight else v for v in mac.operands]
            append_note(mac, COMPRESSION_ATTR, note)
        for const in replaced:
            if not const.result.uses:
                const.detach()
                const.erase()
        prune_weights(op)
