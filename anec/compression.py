"""Compressed weights: what a weight holds when it is stored smaller than its fp16 expansion.

The forms Core ML writes and the kernel DMA reads (the hardware notes, "Weight compression"):

- `AffineWeight`: int8 or uint8 values with a scale and zero point, per tensor or per channel along one
  axis; the value is `(q - zero_point) * scale`, computed in fp32 and rounded once to fp16.
- `BlockAffineWeight`: the same with a scale and zero point per block (a grid of the weight's rank whose
  every extent divides the weight's: per output channel and 32 input channels, say).
- `PaletteWeight`: n-bit indices (1, 2, 4, 6 or 8 bits) into one fp16 codebook of 2**n entries; the
  indices are packed least significant bit first (for 4 bits: the low nibble is the first index).
- `SparseWeight`: a 1-bit mask (least significant bit first) and the fp16 values where it is set.

Passes see a compressed weight's logical shape and its fp16 value (`fp16()`, computed once); legality,
timing and the report see its stored bytes (`stored_nbytes`). Both forms decompress here only, so the
interpreter, the simulator and the IR agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from anec.errors import AnecError


def _dims(shape: tuple[int | tuple[int, ...], ...]) -> tuple[int, ...]:
    """`reshape`'s arguments as one shape, written as numpy takes them: (2, 3) or ((2, 3),)."""
    if len(shape) == 1 and isinstance(shape[0], tuple):
        return shape[0]
    return tuple(d for d in shape if isinstance(d, int))

class KeptOnlyExpanded(Exception):
    """A transformation the stored form cannot follow (a reshape that splits the scaled axis)."""


PALETTE_BITS = (1, 2, 4, 6, 8)
"""Index widths Core ML's `constexpr_lut_to_dense` takes."""


def pack_bits(indices: np.ndarray, bits: int) -> np.ndarray:
    """`indices` (each < 2**bits) as a byte stream, least significant bit first (Core ML's and the
    kernel DMA's order: two 4-bit indices a byte, the first in the low nibble)."""
    flat = np.asarray(indices, dtype=np.uint8).reshape(-1)
    planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(planes, bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first `count` indices of a stream `pack_bits` wrote."""
    planes = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[:count * bits].reshape(count, bits)
    return (planes.astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(axis=1).astype(np.uint8)


def _dequantize(quantized: np.ndarray, zero_point: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """`fp16((q - zero_point) * scale)` in fp32, rounded once, read-only (zero point and scale broadcast)."""
    centered = quantized.astype(np.float32) - zero_point.astype(np.float32)
    with np.errstate(over="ignore"):
        value = (centered * scale).astype(np.float16)
    value.flags.writeable = False
    return value


def _readonly(value: np.ndarray) -> np.ndarray:
    value.flags.writeable = False
    return value


@dataclass(frozen=True, eq=False)
class AffineWeight:
    """int8/uint8 affine weight: `fp16((q - zero_point) * scale)`, per tensor (`axis` None) or per channel."""

    KIND: ClassVar[str] = "affine"
    quantized: np.ndarray
    scale: np.ndarray           # float32: one value, or one per index of `axis`
    zero_point: np.ndarray      # the dtype of `quantized`, shaped like `scale`
    axis: int | None = None

    def __post_init__(self) -> None:
        q = self.quantized
        if q.dtype not in (np.int8, np.uint8):
            raise AnecError(f"an affine weight holds int8 or uint8 values, not {q.dtype}")
        count = 1 if self.axis is None else q.shape[self.axis]
        if self.scale.size != count or self.zero_point.size != count:
            raise AnecError(f"an affine weight of shape {list(q.shape)} needs {count} scale(s) and zero point(s) "
                            f"along axis {self.axis}, got {self.scale.size} and {self.zero_point.size}")
        object.__setattr__(self, "scale", np.asarray(self.scale, np.float32).reshape(-1))
        object.__setattr__(self, "zero_point", np.asarray(self.zero_point, q.dtype).reshape(-1))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.quantized.shape)

    @property
    def form(self) -> str:
        """The name the IR prints: `int8`, `uint8`, with `/channel` when scaled per channel."""
        return f"{self.quantized.dtype}{'' if self.axis is None else '/channel'}"

    @property
    def stored_nbytes(self) -> int:
        """The values, plus a float32 scale and a zero point per channel."""
        return self.quantized.size + 5 * self.scale.size

    def _broadcast(self, per_channel: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return per_channel.reshape(())
        shape = [1] * self.quantized.ndim
        shape[self.axis] = -1
        return per_channel.reshape(shape)

    @cached_property
    def _fp16(self) -> np.ndarray:
        return _dequantize(self.quantized, self._broadcast(self.zero_point), self._broadcast(self.scale))

    def fp16(self) -> np.ndarray:
        return self._fp16

    def reshape(self, *shape: int | tuple[int, ...]) -> AffineWeight:
        """The same weight reshaped; a per-channel axis must survive whole (its extent and what precedes it)."""
        new = tuple(np.empty(self.shape, np.bool_).reshape(_dims(shape)).shape)
        if self.axis is None:
            return AffineWeight(self.quantized.reshape(new), self.scale, self.zero_point)
        before, extent = math.prod(self.shape[:self.axis]), self.shape[self.axis]
        axis = next((i for i in range(len(new)) if math.prod(new[:i]) == before and new[i] == extent), None)
        if axis is None:
            raise KeptOnlyExpanded(f"a reshape from {list(self.shape)} to {list(new)} splits the scaled axis {self.axis}")
        return AffineWeight(self.quantized.reshape(new), self.scale, self.zero_point, axis)

    def __getitem__(self, index: tuple[slice, ...]) -> AffineWeight:
        """A window of the weight (basic slices only), with the scales of the channels it keeps."""
        if self.axis is None:
            return AffineWeight(self.quantized[index], self.scale, self.zero_point)
        along = index[self.axis] if self.axis < len(index) else slice(None)
        return AffineWeight(self.quantized[index], self.scale[along], self.zero_point[along], self.axis)

    def transpose(self, perm: tuple[int, ...]) -> AffineWeight:
        axis = None if self.axis is None else list(perm).index(self.axis)
        return AffineWeight(self.quantized.transpose(perm), self.scale, self.zero_point, axis)

    def parts(self) -> dict[str, np.ndarray]:
        return {"q": self.quantized, "scale": self.scale, "zero_point": self.zero_point,
                "axis": np.asarray(-1 if self.axis is None else self.axis, np.int64)}

    @classmethod
    def from_parts(cls, parts: dict[str, np.ndarray]) -> AffineWeight:
        axis = int(parts["axis"])
        return cls(parts["q"], parts["scale"], parts["zero_point"], None if axis < 0 else axis)


def _blocks(shape: tuple[int, ...], grid: tuple[int, ...]) -> tuple[int, ...]:
    """The block extents of a grid over `shape` (each grid extent divides the weight's)."""
    return tuple(d // g for d, g in zip(shape, grid, strict=True))


def _expand(grid: np.ndarray, blocks: tuple[int, ...]) -> np.ndarray:
    """A per-block array repeated over its blocks (to the weight's shape)."""
    for axis, extent in enumerate(blocks):
        if extent > 1:
            grid = np.repeat(grid, extent, axis=axis)
    return grid


def _unit_free_reshape(old: tuple[int, ...], new: tuple[int, ...], grid: tuple[int, ...]) -> tuple[int, ...]:
    """The grid of a reshape that only adds or drops unit axes; any other reshape mixes blocks."""
    kept = [(d, g) for d, g in zip(old, grid, strict=True) if d != 1]
    if [d for d in new if d != 1] != [d for d, _ in kept]:
        raise KeptOnlyExpanded(f"a reshape from {list(old)} to {list(new)} moves values across scale blocks")
    grids = iter(g for _, g in kept)
    return tuple(1 if d == 1 else next(grids) for d in new)


def _block_window(index: tuple[slice, ...], shape: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[slice, ...]:
    """The grid window of a window of the weight (basic slices that keep whole blocks)."""
    out = []
    for axis, extent in enumerate(shape):
        start, stop, step = (index[axis] if axis < len(index) else slice(None)).indices(extent)
        block = blocks[axis]
        if block == extent:
            out.append(slice(None))
        elif step == 1 and start % block == 0 and stop % block == 0:
            out.append(slice(start // block, stop // block))
        else:
            raise KeptOnlyExpanded(f"a window [{start}:{stop}:{step}] of axis {axis} cuts its blocks of {block}")
    return tuple(out)


@dataclass(frozen=True, eq=False)
class BlockAffineWeight:
    """int8/uint8 blockwise affine weight: `fp16((q - zero_point) * scale)` with a scale and zero point
    per block; `scale` and `zero_point` are grids of the weight's rank (Core ML's
    `constexpr_blockwise_shift_scale`)."""

    KIND: ClassVar[str] = "block-affine"
    quantized: np.ndarray
    scale: np.ndarray           # float32, the grid
    zero_point: np.ndarray      # the dtype of `quantized`, the grid

    def __post_init__(self) -> None:
        q = self.quantized
        if q.dtype not in (np.int8, np.uint8):
            raise AnecError(f"a blockwise affine weight holds int8 or uint8 values, not {q.dtype}")
        if (self.scale.shape != self.zero_point.shape or self.scale.ndim != q.ndim
                or any(g < 1 or d % g for d, g in zip(q.shape, self.scale.shape, strict=True))):
            raise AnecError(f"a blockwise weight of shape {list(q.shape)} needs scales and zero points on a grid of its rank "
                            f"whose extents divide its own, got {list(self.scale.shape)} and {list(self.zero_point.shape)}")
        object.__setattr__(self, "scale", np.asarray(self.scale, np.float32))
        object.__setattr__(self, "zero_point", np.asarray(self.zero_point, q.dtype))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.quantized.shape)

    @property
    def blocks(self) -> tuple[int, ...]:
        return _blocks(self.shape, self.scale.shape)

    @property
    def form(self) -> str:
        """`int8/block1x32x1x1`: the values' type and the block extents per axis."""
        return f"{self.quantized.dtype}/block{'x'.join(map(str, self.blocks))}"

    @property
    def stored_nbytes(self) -> int:
        """The values, plus a float32 scale and a zero point per block."""
        return self.quantized.size + 5 * self.scale.size

    @cached_property
    def _fp16(self) -> np.ndarray:
        return _dequantize(self.quantized, _expand(self.zero_point, self.blocks), _expand(self.scale, self.blocks))

    def fp16(self) -> np.ndarray:
        return self._fp16

    def reshape(self, *shape: int | tuple[int, ...]) -> BlockAffineWeight:
        new = tuple(np.empty(self.shape, np.bool_).reshape(_dims(shape)).shape)
        grid = _unit_free_reshape(self.shape, new, self.scale.shape)
        return BlockAffineWeight(self.quantized.reshape(new), self.scale.reshape(grid), self.zero_point.reshape(grid))

    def __getitem__(self, index: tuple[slice, ...]) -> BlockAffineWeight:
        window = _block_window(index, self.shape, self.blocks)
        return BlockAffineWeight(self.quantized[index], self.scale[window], self.zero_point[window])

    def transpose(self, perm: tuple[int, ...]) -> BlockAffineWeight:
        return BlockAffineWeight(self.quantized.transpose(perm), self.scale.transpose(perm), self.zero_point.transpose(perm))

    def parts(self) -> dict[str, np.ndarray]:
        return {"q": self.quantized, "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_parts(cls, parts: dict[str, np.ndarray]) -> BlockAffineWeight:
        return cls(parts["q"], parts["scale"], parts["zero_point"])


@dataclass(frozen=True, eq=False)
class PaletteWeight:
    """A palettized weight: `lut[indices]`, one fp16 codebook of 2**bits entries for the whole tensor."""

    KIND: ClassVar[str] = "palette"
    indices: np.ndarray         # uint8, the logical shape, each < 2**bits
    lut: np.ndarray             # float16, 2**bits entries
    bits: int

    def __post_init__(self) -> None:
        if self.bits not in PALETTE_BITS:
            raise AnecError(f"a palette takes {', '.join(map(str, PALETTE_BITS))}-bit indices, not {self.bits}")
        if self.lut.size != 1 << self.bits:
            raise AnecError(f"a {self.bits}-bit palette has {1 << self.bits} entries, got {self.lut.size}")
        if self.indices.size and int(self.indices.max()) >= 1 << self.bits:
            raise AnecError(f"palette index {int(self.indices.max())} does not fit in {self.bits} bits")
        object.__setattr__(self, "indices", np.asarray(self.indices, np.uint8))
        object.__setattr__(self, "lut", np.asarray(self.lut, np.float16).reshape(-1))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.indices.shape)

    @property
    def form(self) -> str:
        return f"palette{self.bits}"

    @property
    def stored_nbytes(self) -> int:
        """The packed indices plus the codebook."""
        return math.ceil(self.indices.size * self.bits / 8) + self.lut.nbytes

    def packed(self) -> np.ndarray:
        return pack_bits(self.indices, self.bits)

    @cached_property
    def _fp16(self) -> np.ndarray:
        return _readonly(self.lut[self.indices])

    def fp16(self) -> np.ndarray:
        return self._fp16

    def reshape(self, *shape: int | tuple[int, ...]) -> PaletteWeight:
        return PaletteWeight(self.indices.reshape(_dims(shape)), self.lut, self.bits)

    def __getitem__(self, index: tuple[slice, ...]) -> PaletteWeight:
        return PaletteWeight(self.indices[index], self.lut, self.bits)

    def transpose(self, perm: tuple[int, ...]) -> PaletteWeight:
        return PaletteWeight(self.indices.transpose(perm), self.lut, self.bits)

    def parts(self) -> dict[str, np.ndarray]:
        return {"packed": self.packed(), "lut": self.lut, "shape": np.asarray(self.shape, np.int64)}

    @classmethod
    def from_parts(cls, parts: dict[str, np.ndarray]) -> PaletteWeight:
        shape = tuple(int(d) for d in parts["shape"])
        bits = int(parts["lut"].size).bit_length() - 1
        return cls(unpack_bits(parts["packed"], bits, math.prod(shape)).reshape(shape), parts["lut"], bits)


@dataclass(frozen=True, eq=False)
class SparseWeight:
    """A sparse weight: the fp16 `values` where `mask` is set (in C order), zero elsewhere (Core ML's
    `constexpr_sparse_to_dense`: the mask is stored one bit an element, least significant bit first)."""

    KIND: ClassVar[str] = "sparse"
    mask: np.ndarray            # bool, the logical shape
    values: np.ndarray          # float16, one per set bit

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", np.asarray(self.mask, np.bool_))
        object.__setattr__(self, "values", np.asarray(self.values, np.float16).reshape(-1))
        if self.values.size != int(self.mask.sum()):
            raise AnecError(f"a sparse weight with {int(self.mask.sum())} set mask bits needs as many values, got {self.values.size}")

    @classmethod
    def of(cls, dense: np.ndarray, mask: np.ndarray) -> SparseWeight:
        return cls(mask, np.asarray(dense)[mask])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def form(self) -> str:
        return "sparse"

    @property
    def stored_nbytes(self) -> int:
        """The mask's bits plus the fp16 values."""
        return math.ceil(self.mask.size / 8) + self.values.nbytes

    @cached_property
    def _fp16(self) -> np.ndarray:
        value = np.zeros(self.shape, np.float16)
        value[self.mask] = self.values
        return _readonly(value)

    def fp16(self) -> np.ndarray:
        return self._fp16

    def reshape(self, *shape: int | tuple[int, ...]) -> SparseWeight:
        return SparseWeight(self.mask.reshape(_dims(shape)), self.values)

    def __getitem__(self, index: tuple[slice, ...]) -> SparseWeight:
        return SparseWeight.of(self.fp16()[index], self.mask[index])

    def transpose(self, perm: tuple[int, ...]) -> SparseWeight:
        return SparseWeight.of(self.fp16().transpose(perm), self.mask.transpose(perm))

    def parts(self) -> dict[str, np.ndarray]:
        return {"mask": pack_bits(self.mask, 1), "values": self.values, "shape": np.asarray(self.shape, np.int64)}

    @classmethod
    def from_parts(cls, parts: dict[str, np.ndarray]) -> SparseWeight:
        shape = tuple(int(d) for d in parts["shape"])
        return cls(unpack_bits(parts["mask"], 1, math.prod(shape)).reshape(shape).astype(np.bool_), parts["values"])


CompressedWeight = AffineWeight | BlockAffineWeight | PaletteWeight | SparseWeight


# ------------------------------------------------------------------------------------------------
# The kernel DMA's compressed kernel streams (anec's layout; the guide gives the forms, not the bytes)
# ------------------------------------------------------------------------------------------------

KERNEL_FORMATS: dict[str, int] = {"int8": 1, "uint8": 2}
"""`KernelFmt` of an affine kernel stream; 0 is fp16. A palette sets `PalettizedEn` and `PalettizedBits`,
a sparse kernel `SparseFmt`."""
STREAM_FORMS = ("palette4", "int8", "uint8", "sparse")


def stream_form(weight: CompressedWeight) -> str | None:
    """The kernel-stream form of a conv kernel [Cout, …] stored as `weight`, or None when it has none
    (palettes other than 4-bit; scales along another axis than the output channels; blockwise
    scales, which the notes say stream from A15 but anec's descriptors do not write yet)."""
    if isinstance(weight, PaletteWeight):
        return "palette4" if weight.bits == 4 else None
    if isinstance(weight, AffineWeight):
        return str(weight.quantized.dtype) if weight.axis in (None, 0) else None
    return "sparse" if isinstance(weight, SparseWeight) else None


def kernel_stream_nbytes(form: str, shape: tuple[int, ...], values: int = 0) -> int:
    """Bytes of a kernel stream: a palette is its 16 fp16 entries then the packed indices; an affine
    kernel is one fp32 scale and one zero-point byte per output channel, then the values; a sparse
    kernel is its mask (a bit a weight, least significant first) then its `values` fp16 values."""
    count = math.prod(shape)
    if form == "sparse":
        return (count + 7) // 8 + 2 * values
    return 32 + (count + 1) // 2 if form == "palette4" else 5 * shape[0] + count


def weight_stream_nbytes(weight: CompressedWeight, form: str) -> int:
    """Bytes of `weight`'s kernel stream in `form` (`stream_form`)."""
    return kernel_stream_nbytes(form, weight.shape, weight.values.size if isinstance(weight, SparseWeight) else 0)


def kernel_stream(weight: CompressedWeight) -> bytes:
    if isinstance(weight, PaletteWeight):
        return weight.lut.astype("<f2").tobytes() + weight.packed().tobytes()
    if isinstance(weight, SparseWeight):
        return pack_bits(weight.mask, 1).tobytes() + weight.values.astype("<f2").tobytes()
    assert isinstance(weight, AffineWeight), f"{weight.form} has no kernel stream"
    channels = weight.shape[0]
    scale = np.broadcast_to(weight.scale, (channels,)).astype("<f4")
    zero = np.broadcast_to(weight.zero_point, (channels,))
    return scale.tobytes() + zero.tobytes() + weight.quantized.tobytes()


def decode_kernel_stream(raw: np.ndarray, form: str, count: int, channels: int) -> np.ndarray:
    """The fp16 kernel (flat, `count` values over `channels` output channels) a stream holds, exactly
    as `CompressedWeight.fp16()` computes it."""
    raw = np.asarray(raw, dtype=np.uint8)
    if form == "palette4":
        lut = raw[:32].view("<f2")
        return lut[unpack_bits(raw[32:], 4, count)].astype(np.float16)
    if form == "sparse":
        mask_bytes = (count + 7) // 8
        mask = unpack_bits(raw[:mask_bytes], 1, count).astype(np.bool_)
        values = raw[mask_bytes:mask_bytes + 2 * int(mask.sum())].view("<f2")
        return SparseWeight(mask, values).fp16()
    scale = raw[:4 * channels].view("<f4")
    zero = raw[4 * channels:5 * channels].view(np.dtype(form))
    q = raw[5 * channels:5 * channels + count].view(np.dtype(form)).reshape(channels, -1)
    return AffineWeight(q, scale, zero, 0).fp16().reshape(-1)


KINDS: dict[str, type[CompressedWeight]] = {kind.KIND: kind for kind in (AffineWeight, BlockAffineWeight, PaletteWeight, SparseWeight)}
"""The stored forms by the name the weights file gives them."""


# ------------------------------------------------------------------------------------------------
# Compressing float weights (`anec compile --compress`), data-free
# ------------------------------------------------------------------------------------------------


def quantize_int8(array: np.ndarray, axis: int) -> AffineWeight:
    """Symmetric int8 per channel along `axis` (zero point 0, the form M1 takes): scale = max|w| / 127."""
    w = np.asarray(array, np.float32)
    others = tuple(i for i in range(w.ndim) if i != axis)
    peak = np.max(np.abs(w), axis=others) if others else np.abs(w)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return AffineWeight(q, scale, np.zeros(scale.shape, np.int8), axis)


FIT_SAMPLE = 1 << 16
"""Values a palette is fitted on (a seeded sample of larger weights); every value is then assigned."""


def _fit_sample(array: np.ndarray) -> np.ndarray:
    values = np.asarray(array, np.float32).reshape(-1)
    return values if values.size <= FIT_SAMPLE else np.random.default_rng(0).choice(values, FIT_SAMPLE, replace=False)


def fit_palette(sample: np.ndarray, bits: int, iterations: int = 1000) -> np.ndarray:
    """A 2**bits-entry fp16 codebook by k-means over `sample` (`fit_palettes`)."""
    return fit_palettes(sample, (bits,), iterations)[bits]


def fit_palettes(sample: np.ndarray, widths: tuple[int, ...], iterations: int = 1000) -> dict[int, np.ndarray]:
    """Per width of `widths`, a 2**bits-entry fp16 codebook by k-means over `sample` (Lloyd's algorithm
    in one dimension: clusters are intervals of the sorted values, so an iteration is a search of the
    midpoints among them and a difference of prefix sums), started at quantiles. The widths iterate
    together, their centers side by side in one array, each stopping when its own centers settle: one
    search and one update an iteration for all of them, the same codebooks as fitting each alone."""
    values = np.sort(np.asarray(sample, np.float64).reshape(-1))
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    settled = 1e-7 * max(float(np.abs(values[[0, -1]]).max()) if values.size else 0.0, 1e-30)  # sorted: the ends hold the peak
    active = list(dict.fromkeys(widths))
    centers = np.concatenate([np.quantile(values, (np.arange(1 << b) + 0.5) / (1 << b)) for b in active])
    fitted: dict[int, np.ndarray] = {}
    for _ in range(iterations):
        sizes = np.array([1 << b for b in active])
        ends = np.cumsum(sizes)
        starts = ends - sizes
        found = np.searchsorted(values, (centers[1:] + centers[:-1]) / 2)  # a width's last midpoint is unused
        lo = np.concatenate([[0], found])
        lo[starts] = 0
        hi = np.concatenate([found, [values.size]])
        hi[ends - 1] = values.size
        counts = hi - lo
        updated = np.where(counts > 0, (prefix[hi] - prefix[lo]) / np.maximum(counts, 1), centers)
        done = np.maximum.reduceat(np.abs(updated - centers), starts) <= settled
        segment = np.repeat(np.arange(len(active)), sizes)
        updated = updated[np.lexsort((updated, segment))]  # each width's centers sorted
        if done.any():
            fitted.update((b, centers[s:e]) for b, s, e, d in zip(active, starts, ends, done, strict=True) if d)
            keep = ~done[segment]
            active = [b for b, d in zip(active, done, strict=True) if not d]
            updated = updated[keep]
            if not active:
                break
        centers = updated
    else:  # out of iterations: the last update
        fitted.update(zip(active, np.split(centers, np.cumsum([1 << b for b in active])[:-1]), strict=True))
    return {b: fitted[b].astype(np.float16) for b in widths}


def _nearest(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return np.searchsorted((lut[1:].astype(np.float32) + lut[:-1].astype(np.float32)) / 2, values)


def assign_palette(array: np.ndarray, lut: np.ndarray) -> PaletteWeight:
    """`array` as indices of its nearest entries in `lut` (sorted, 2**bits entries)."""
    index = _nearest(np.asarray(array, np.float32), lut)
    return PaletteWeight(index.astype(np.uint8), lut, int(lut.size).bit_length() - 1)


def palettize(array: np.ndarray, bits: int = 4) -> PaletteWeight:
    """A 2**bits-entry fp16 palette fitted by k-means (`fit_palette`) on a sample of the values, every
    value then assigned its nearest entry."""
    return assign_palette(array, fit_palette(_fit_sample(array), bits))


MIXED_BITS = (4, 6, 8, 16)
"""What `palettize4` gives a weight: a 4-bit palette, or, for the layers that lose the most for the bytes
they would take, a 6- or 8-bit palette or fp16 (16: left uncompressed)."""
MORE_BITS = "more bits: among the layers whose 4-bit palette loses the most per byte saved"
"""The note `ane-compress` leaves on a layer `palettize4` gives a wider palette or fp16 (the report lists them)."""
MIXED_RATIO = 0.29
"""`palettize4`'s budget: all weights stored in at most this share of their fp16 bytes (uniform 4-bit
palettes take about 0.25)."""


def palette_luts(array: np.ndarray) -> dict[int, tuple[np.ndarray, float]]:
    """Per palette width of `MIXED_BITS`, the fitted codebook and the squared relative error it leaves on
    the fit sample (fp16: the rounding's)."""
    sample = _fit_sample(array)
    energy = max(float(sample @ sample), 1e-30)
    luts = fit_palettes(sample, tuple(b for b in MIXED_BITS if b < 16))
    found = {}
    for bits in MIXED_BITS:
        lut = luts[bits] if bits < 16 else np.empty(0, np.float16)
        approx = lut[_nearest(sample, lut)] if bits < 16 else sample.astype(np.float16)
        error = sample - approx.astype(np.float32)
        found[bits] = (lut, float(error @ error) / energy)
    return found


def mixed_nbytes(size: int, bits: int) -> int:
    """Stored bytes of a weight of `size` values at `bits` (`MIXED_BITS`): packed indices and codebook, or fp16."""
    return 2 * size if bits == 16 else math.ceil(size * bits / 8) + 2 * (1 << bits)


def allocate_bits(sizes: list[int], errors: list[dict[int, float]], budget: int) -> list[int]:
    """The width of `MIXED_BITS` for each weight (`sizes` values; the output error each width leaves,
    in any common unit), in at most `budget` bytes, that lowers the sum of the errors most: every
    weight starts at 4 bits, then the step (to the next width) that removes most error per byte it
    adds is taken while it fits."""
    bits = [MIXED_BITS[0]] * len(sizes)
    spent = sum(mixed_nbytes(n, b) for n, b in zip(sizes, bits, strict=True))

    def step(i: int) -> tuple[float, int, int] | None:
        at = MIXED_BITS.index(bits[i])
        if at + 1 == len(MIXED_BITS):
            return None
        wider = MIXED_BITS[at + 1]
        cost = mixed_nbytes(sizes[i], wider) - mixed_nbytes(sizes[i], bits[i])
        return (errors[i][bits[i]] - errors[i][wider]) / cost, cost, wider

    steps = {i: s for i in range(len(sizes)) if (s := step(i)) is not None}
    while steps:
        i = max(steps, key=lambda k: steps[k][0])
        _, cost, wider = steps.pop(i)
        if spent + cost > budget:
            continue  # a cheaper step of another weight may still fit
        bits[i], spent = wider, spent + cost
        if (s := step(i)) is not None:
            steps[i] = s
    return bits


BLOCK = 32
"""Input channels a blockwise scale covers (`--compress int8-block`; coremltools' default block size)."""


def quantize_int8_block(array: np.ndarray, axis: int, block_axis: int, block: int = BLOCK) -> BlockAffineWeight:
    """Symmetric int8 with a scale per output channel (`axis`) and `block` input channels
    (`block_axis`); an input extent `block` does not divide is one block (per channel)."""
    w = np.asarray(array, np.float32)
    extent = w.shape[block_axis]
    size = block if extent % block == 0 else extent
    grid = [1] * w.ndim
    grid[axis], grid[block_axis] = w.shape[axis], extent // size
    split = []  # each grid axis as (blocks, extent per block)
    for d, g in zip(w.shape, grid, strict=True):
        split += [g, d // g]
    peak = np.max(np.abs(w.reshape(split)), axis=tuple(range(1, 2 * w.ndim, 2)))
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(w / _expand(scale, _blocks(w.shape, scale.shape))), -127, 127).astype(np.int8)
    return BlockAffineWeight(q, scale, np.zeros(scale.shape, np.int8))


def prune(array: np.ndarray, sparsity: float = 0.5) -> SparseWeight:
    """Magnitude pruning per tensor: the `sparsity` share of the values smallest in magnitude become zero
    (ties broken by position), the rest are kept in fp16."""
    w = np.asarray(array, np.float32)
    return SparseWeight.of(w.astype(np.float16), smallest_dropped(np.abs(w).reshape(-1), round(sparsity * w.size)).reshape(w.shape))


def smallest_dropped(magnitude: np.ndarray, drop: int) -> np.ndarray:
    """A mask keeping all of `magnitude` but its `drop` smallest values, ties dropped first by position:
    a stable argsort's first `drop` indices, found by one selection (linear time, not a sort)."""
    mask = np.ones(magnitude.size, np.bool_)
    if drop <= 0:
        return mask
    kth = np.partition(magnitude, drop - 1)[drop - 1]
    below = magnitude < kth
    mask[below] = False
    mask[np.flatnonzero(magnitude == kth)[:drop - int(below.sum())]] = False
    return mask


COMPRESSORS = {"int8": "symmetric int8 per output channel",
               "int8-block": f"symmetric int8 per output channel and {BLOCK} input channels (Core ML: iOS 18)",
               "palettize4": f"a 16-entry fp16 palette per tensor (k-means); the layers that lose the most get 6 or 8 bits or stay "
                             f"fp16, within {MIXED_RATIO}x the fp16 bytes",
               "palettize6": "a 64-entry fp16 palette per tensor (k-means)",
               "prune50": "half the values, the smallest in magnitude, pruned (a bit mask and fp16 values)"}
"""The `--compress` modes."""
