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

Bias correction (Nagel et al., "Data-free quantization", 2019): a compressed weight W_q shifts each
output channel's mean by (W_q − W)·E[x]; the pass measures E[x] per input channel of every conv and
matmul it compresses by running the float32 graph once on seeded inputs from the model's input
ranges (declared with `--input-range`, else what the fp16 range analysis assumes) — no user data —
and subtracts the shift from the op's bias, which the engine adds for free. After a ReLU or GELU the
inputs' mean is far from zero, and a pooled or normalized output keeps the shift: on random-init
ResNet-50 at 0.29x palettize4 went from a cosine of 0.988 to 0.998 against float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from anec.builder import RewriteBuilder
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
from anec.interpreter import entry_function, interpret
from anec.lowering.fp16_ranges import InputRanges, input_ranges, witness_inputs
from anec.lowering.fuse import MacOp, bias_values, channel_axis, rebuild
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


def _activation(mac: Operation) -> tuple[SSAValue, int] | None:
    """The activation a conv or a constant-weight matmul multiplies its weight by, and its input-channel
    axis (what bias correction needs the mean of); None for other readers (embedding tables)."""
    if isinstance(mac, ane.ConvOp):
        return mac.input, 1
    if isinstance(mac, ane.MatmulOp) and math.prod(shape_of(mac.rhs)[:-2]) == 1:
        return mac.lhs, -2 if mac.flags()[0] else -1
    return None


def input_channel_means(module: ModuleOp, macs: list[Operation], declared: InputRanges | None) -> dict[Operation, np.ndarray]:
    """Per MAC op of `macs` (`_activation`), the mean of each input channel of its activation when the
    float32 graph runs once on seeded inputs drawn from the model's input ranges (declared, or what
    the fp16 range analysis assumes: `witness_inputs`' uniform draw). Data-free: no user data."""
    watched: dict[SSAValue, list[tuple[Operation, int]]] = {}
    for mac in macs:
        if (found := _activation(mac)) is not None:
            watched.setdefault(found[0], []).append((mac, found[1]))
    means: dict[Operation, np.ndarray] = {}
    if not watched:
        return means

    def record(value: SSAValue, array: np.ndarray) -> None:
        for mac, axis in watched.get(value, ()):
            channels = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
            means[mac] = channels.sum(axis=1, dtype=np.float64) / channels.shape[1]  # float64 sums, no float64 copy

    def observe(op: Operation, outs: list[np.ndarray]) -> None:
        for result, array in zip(op.results, outs):
            record(result, array)

    fn = entry_function(module)
    _, inputs = next(witness_inputs(module, input_ranges(fn, declared)))
    for arg, array in zip(fn.args, inputs):
        record(arg, array)
    with np.errstate(all="ignore"):
        interpret(module, inputs, precision="f32", segments="f32", observe=observe)
    return means


def output_shift(mac: Operation, delta: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Each output channel's expected change when `mac`'s weight changes by `delta` and its input
    channels average `means`: (W_q − W)·E[x] (for a conv, summed over the kernel's taps)."""
    if isinstance(mac, ane.ConvOp):
        groups = mac.groups.value.data
        per_channel = delta.reshape(delta.shape[0], delta.shape[1], -1).sum(axis=2)  # [Cout, Cin/groups]
        group_of = np.arange(delta.shape[0]) // (delta.shape[0] // groups)
        return (per_channel * means.reshape(groups, -1)[group_of]).sum(axis=1)
    assert isinstance(mac, ane.MatmulOp)
    matrix = delta.reshape(delta.shape[-2:])
    return means @ (matrix.T if mac.flags()[1] else matrix)


def correct_bias(mac: MacOp, weight: SSAValue, shift: np.ndarray) -> None:
    """Replace `mac` by the same op reading `weight` whose bias is lower by `shift` per output channel
    (the epilogue adds it for free); a bias computed at run time is left as it is."""
    bias = bias_values(mac)
    if bias is None:
        return
    build = RewriteBuilder(mac)
    new = rebuild(mac, build, weight, build.constant((bias - shift).astype(np.float32), mac.results[0], "bias"))
    mac.results[0].replace_all_uses_with(new.results[0])
    mac.detach()
    mac.erase()


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
    corrected_biases = sum(2 * shape_of(mac.results[0])[channel_axis(mac)] for c in candidates for mac, _ in c.readers
                           if isinstance(mac, ane.ConvOp | ane.MatmulOp) and _activation(mac) is not None)
    budget = int(MIXED_RATIO * (other_fp16 + 2 * sum(sizes))) - other_stored - corrected_biases
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
    input_ranges: Any = None
    """The inputs' declared ranges (`--input-range`), which the bias correction's seeded inputs are drawn from."""

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
        means = input_channel_means(op, [mac for c, (compressed, _) in zip(candidates, forms, strict=True) if compressed is not None
                                         for mac, _ in c.readers], self.input_ranges)
        replaced: list[ane.ConstOp] = []
        for c, (compressed, why) in zip(candidates, forms, strict=True):
            if compressed is None:
                for mac, _ in c.readers:
                    append_note(mac, COMPRESSION_ATTR, why)
                continue
            delta = compressed.fp16().astype(np.float32) - c.array
            error = float(np.linalg.norm(delta)) / max(float(np.linalg.norm(c.array)), 1e-30)
            assert c.const.handle is not None  # candidates are stored weights (`_candidates`)
            new = make_compressed_const(compressed, c.const.handle.data, store, element_type_of(c.const.result))
            new.attributes.update(c.const.attributes)
            Rewriter.insert_op(new, InsertPoint.before(c.const))
            replaced.append(c.const)
            for mac, weight in c.readers:
                mac.operands = [new.result if v is weight else v for v in mac.operands]
                append_note(mac, COMPRESSION_ATTR, f"compressed by ane-compress: relative weight error {error:.2e}{why}")
                if isinstance(mac, ane.ConvOp | ane.MatmulOp) and mac in means:
                    correct_bias(mac, new.result, output_shift(mac, delta, means[mac]))
        for const in replaced:
            if not const.result.uses:
                const.detach()
                const.erase()
        prune_weights(op)
