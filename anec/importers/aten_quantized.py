"""Quantized weights in ATen graphs: a dequantization of constant integers stays compressed.

`torch.export` leaves a quantized model's weights as integer tensors and the dequantization as ops on
them, which the importer folds into float constants (no run-time input reaches them). The forms, with
torch 2.13 and torchao 0.14:

- torchao `IntxWeightOnlyConfig` (int8 or int4 in int8 storage, per channel or per group) exports
  `torchao.dequantize_affine`, which the decompositions write as `_to_copy(q) - _to_copy(z)`, times
  the scale, through views;
- torchao `Int8WeightOnlyConfig` exports `mm(x, _to_copy(t(q)))` times the per-channel scale after
  the matmul (the scale is a run-time `mul`; ane-fp16's `ScaleIntoMac` moves it into the weight);
- `quantized_decomposed.dequantize_per_channel` / `dequantize_per_tensor` (torch's reference
  quantized modules, PT2E's converted graphs) stay whole through the decompositions.

An embedding table (`IntxWeightOnlyConfig` on an `nn.Embedding`: `dequantize_affine` read by
`aten.embedding`, a gather on the CPU) stays compressed too when it is per tensor or per row
(`TABLE_READERS`).

While folding, `track` records for each such float tensor the integers, scale and zero point it is
`(q - z) * s` of, laid out as the tensor is, so views of it (permute, t, view) read theirs by strides;
`compressed` turns that into an `AffineWeight` (per tensor or channel) or a `BlockAffineWeight`
(per group) once the folded value is checked to equal it bit for bit, else the weight is plain floats.

PT2E's activations are `quantize_per_tensor` → `dequantize_per_tensor` pairs on run-time tensors
(all three overloads: numbers, one-element tensors, and tensor bounds too). They import as the ONNX
route's QDQ pairs do (`OpBuilder.quantize` / `dequantize`: integers carried as float32), so they run
on the ANE rather than on the CPU between ANE partitions; a quantize whose integers any other op reads
(or that reads run-time parameters) stays a host op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from xdsl.dialects.builtin import f32
from xdsl.ir import SSAValue

from anec.compression import AffineWeight, BlockAffineWeight
from anec.dialects import ane
from anec.importers.aten import NodeBuilder, Value, decline, handles, op_key

INTEGER_TYPES = (torch.int8, torch.uint8)

COMPRESSED_READERS = frozenset({"aten.mm.default", "aten.bmm.default", "aten.matmul.default", "aten.addmm.default",
                                "aten.linear.default", "aten.convolution.default", "aten.conv1d.default", "aten.conv2d.default"})
"""The ops whose constant operands stay compressed (MAC weights, as ONNX's `DequantizeLinear`)."""

TABLE_READERS = frozenset({"aten.embedding.default"})
"""The ops whose constant table stays compressed when it is per tensor or per row (`AffineWeight`), as
an ONNX Gather's: Core ML stores it so at any deployment target (a blockwise table would need iOS 18),
and the CPU's gather reads its expansion (torchao's `IntxWeightOnlyConfig` on an `nn.Embedding`)."""


@dataclass(frozen=True)
class Dequantized:
    """`value == (quantized - zero) * scale`, the three laid out with `value`'s strides."""

    value: torch.Tensor
    quantized: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor

    def viewed_as(self, view: torch.Tensor) -> Dequantized:
        """The same for a view of `value` (its sizes, strides and offset in `value`'s storage)."""
        offset = view.storage_offset() - self.value.storage_offset()
        parts = (x.as_strided(view.size(), view.stride(), offset) for x in (self.quantized, self.scale, self.zero))
        return Dequantized(view, *parts)

    def compressed(self) -> AffineWeight | BlockAffineWeight | None:
        """The compressed weight `value` is, or None when it is not exactly one (an integer zero point
        in the integers' range; the value equal to the dequantization in its own dtype)."""
        q, s, z = (x.contiguous().numpy() for x in (self.quantized, self.scale, self.zero))
        low, high = torch.iinfo(self.quantized.dtype).min, torch.iinfo(self.quantized.dtype).max
        if q.ndim == 0 or not (np.all(z == np.round(z)) and z.min() >= low and z.max() <= high):
            return None
        expected = ((torch.from_numpy(q).float() - torch.from_numpy(z)) * torch.from_numpy(s)).to(self.value.dtype)
        if not torch.equal(expected, self.value):
            return None
        blocks = tuple(_block(s, z, axis) for axis in range(q.ndim))
        grid = tuple(slice(None, None, b) for b in blocks)
        scale, zero = s[grid], z[grid].astype(q.dtype)
        varying = [axis for axis, extent in enumerate(scale.shape) if extent > 1]
        if not varying:
            return AffineWeight(q, scale.reshape(1), zero.reshape(1))
        if len(varying) == 1 and blocks[varying[0]] == 1:
            return AffineWeight(q, scale.reshape(-1), zero.reshape(-1), varying[0])
        return BlockAffineWeight(q, scale, zero)


def _block(scale: np.ndarray, zero: np.ndarray, axis: int) -> int:
    """The longest run along `axis` (a divisor of its extent) over which scale and zero point stay the same."""
    extent = scale.shape[axis]
    for block in sorted((d for d in range(1, extent + 1) if extent % d == 0), reverse=True):
        if all(np.array_equal(x, np.repeat(np.take(x, range(0, extent, block), axis), block, axis)) for x in (scale, zero)):
            return block
    return 1


def _owner(t: torch.Tensor) -> torch.Tensor:
    return t if t._base is None else t._base


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The first and last storage positions `t`'s elements occupy."""
    low = int(t.storage_offset()) + sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if s < 0)
    return low, low + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))


def _within(view: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether `view`'s elements lie in the span of `value`, which fills it (so `viewed_as` reads in bounds;
    `Dequantized.compressed` checks the values)."""
    (low, high), (first, last) = _span(view), _span(value)
    return view.numel() > 0 and last - first + 1 == value.numel() and first <= low and high <= last


def _laid_out_like(value: torch.Tensor, x: torch.Tensor | float, dtype: torch.dtype) -> torch.Tensor:
    """`x` broadcast to `value`'s shape, in `value`'s memory layout."""
    return torch.empty_like(value, dtype=dtype).copy_(torch.as_tensor(x, dtype=dtype).expand(value.shape))


def _of(value: torch.Tensor, quantized: torch.Tensor, scale: torch.Tensor | float, zero: torch.Tensor | float) -> Dequantized:
    return Dequantized(value, _laid_out_like(value, quantized, quantized.dtype), _laid_out_like(value, scale, torch.float32),
                       _laid_out_like(value, zero, torch.float32))


Lookup = Callable[[Any], Dequantized | None]
Rule = Callable[[Sequence[Any], Mapping[str, Any], torch.Tensor, Lookup], Dequantized | None]
RULES: dict[str, Rule] = {}
"""ATen op -> how its folded result is a dequantization of integers (given its arguments and what
is known of them), or None."""


def rule(*keys: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for key in keys:
            RULES[key] = fn
        return fn
    return register


@rule("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten._to_dtype.default",
      "aten.clone.default", "aten.contiguous.default")
def _cast(args: Sequence[Any], kwargs: Mapping[str, Any], value: torch.Tensor, known: Lookup) -> Dequantized | None:
    source = args[0]
    if (found := known(source)) is not None:
        return _of(value, found.quantized, found.scale, found.zero)
    if source.dtype in INTEGER_TYPES:
        return _of(value, source, 1.0, 0.0)
    return None


@rule("aten.sub.Tensor")
def _sub(args: Sequence[Any], kwargs: Mapping[str, Any], value: torch.Tensor, known: Lookup) -> Dequantized | None:
    """Integers minus a zero point, before any scale."""
    found = known(args[0])
    if found is None or kwargs.get("alpha", 1) != 1 or not bool(torch.all(found.scale == 1)):
        return None
    return _of(value, found.quantized, 1.0, found.zero + torch.as_tensor(args[1], dtype=torch.float32))


@rule("aten.mul.Tensor")
def _mul(args: Sequence[Any], kwargs: Mapping[str, Any], value: torch.Tensor, known: Lookup) -> Dequantized | None:
    for this, other in ((args[0], args[1]), (args[1], args[0])):
        if (found := known(this)) is not None and known(other) is None:
            return _of(value, found.quantized, found.scale * torch.as_tensor(other, dtype=torch.float32), found.zero)
    return None


def _along(x: torch.Tensor, axis: int, rank: int) -> torch.Tensor:
    shape = [1] * rank
    shape[axis] = -1
    return x.to(torch.float32).reshape(shape)


@rule("quantized_decomposed.dequantize_per_channel.default")
def _per_channel(args: Sequence[Any], kwargs: Mapping[str, Any], value: torch.Tensor, known: Lookup) -> Dequantized | None:
    q, scales, zeros, axis = args[:4]
    if q.dtype not in INTEGER_TYPES:
        return None
    zeros = zeros if zeros is not None else torch.zeros_like(scales)
    return _of(value, q, _along(scales, axis % q.dim(), q.dim()), _along(zeros, axis % q.dim(), q.dim()))


@rule("quantized_decomposed.dequantize_per_tensor.default", "quantized_decomposed.dequantize_per_tensor.tensor")
def _per_tensor(args: Sequence[Any], kwargs: Mapping[str, Any], value: torch.Tensor, known: Lookup) -> Dequantized | None:
    q, scale, zero = args[:3]
    if q.dtype not in INTEGER_TYPES:
        return None
    return _of(value, q, torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(zero, dtype=torch.float32))


class Tracker:
    """The folded tensors known to be dequantized integers (by identity; views through their base, also
    when the dequantization's result is itself a view: `dequantize_per_channel` permutes back at its end)."""

    def __init__(self) -> None:
        self._known: dict[int, Dequantized] = {}
        """By the id of the value's storage owner (its `_base`, else the value)."""

    def of(self, t: Any) -> Dequantized | None:
        if not isinstance(t, torch.Tensor):
            return None
        found = self._known.get(id(_owner(t)))
        if found is None or _owner(found.value) is not _owner(t):
            return None
        return found if found.value is t else found.viewed_as(t) if _within(t, found.value) else None

    def fold(self, key: str, args: Sequence[Any], kwargs: Mapping[str, Any], value: Any) -> None:
        """Record what the folded `value` of op `key` on `args` is a dequantization of, if anything."""
        found = RULES[key](args, kwargs, value, self.of) if key in RULES and isinstance(value, torch.Tensor) and value.is_floating_point() else None
        if found is not None:
            self._known[id(_owner(value))] = found

    def include(self, other: Tracker) -> None:
        """Know what `other` knows (tensors folded before this import)."""
        self._known.update(other._known)

    def compressed(self, t: torch.Tensor, reader: str) -> AffineWeight | BlockAffineWeight | None:
        """`t` as a compressed weight, when `reader` takes MAC weights (or tables) and `t` is exactly one."""
        found = self.of(t) if reader in COMPRESSED_READERS | TABLE_READERS else None
        weight = found.compressed() if found is not None else None
        return weight if reader in COMPRESSED_READERS or isinstance(weight, AffineWeight) else None


# ------------------------------------------------------------------------------------------------
# Activation pairs: quantize_per_tensor -> dequantize_per_tensor on run-time tensors
# ------------------------------------------------------------------------------------------------

QUANTIZE = tuple(f"quantized_decomposed.quantize_per_tensor.{o}" for o in ("default", "tensor", "tensor2"))
DEQUANTIZE = tuple(f"quantized_decomposed.dequantize_per_tensor.{o}" for o in ("default", "tensor", "tensor2"))

CARRIED_AS_FLOATS = frozenset(QUANTIZE)
"""ATen ops whose integer result their handler may give as float32 integers (torch says int8 or uint8):
only handlers that take them so read them (`_dequantizes`)."""


@dataclass(frozen=True)
class PerTensor:
    """A per-tensor quantization's parameters, as the reference kernels use them (Python numbers)."""

    scale: float
    zero: int
    low: int
    high: int


def _number(x: Any) -> float | int:
    if isinstance(x, SSAValue):
        decline("a quantization parameter computed at run time")
    return x.item() if isinstance(x, torch.Tensor) else x


def _per_tensor_parameters(e: NodeBuilder) -> PerTensor:
    if e["dtype"] not in INTEGER_TYPES:
        decline(f"it quantizes to {e['dtype']}; the ANE emulates int8 and uint8 only")
    scale, zero, low, high = (_number(e[n]) for n in ("scale", "zero_point", "quant_min", "quant_max"))
    return PerTensor(float(scale), int(zero), int(low), int(high))


def _dequantizes(reader: torch.fx.Node, quantize: torch.fx.Node) -> bool:
    """Whether `reader` is a dequantize_per_tensor to float32 whose handler maps it: its parameters are
    numbers or those `quantize` reads (constant, or the quantize would not map)."""
    out_dtype = reader.kwargs.get("out_dtype")
    parameters = [a for a in (*reader.args[1:], *reader.kwargs.values()) if isinstance(a, torch.fx.Node)]
    return (op_key(reader.target) in DEQUANTIZE and out_dtype in (None, torch.float32)
            and all(a in quantize.all_input_nodes for a in parameters))


@handles(*QUANTIZE, emits=(ane.MulOp, ane.ClampOp, ane.RoundOp, ane.AddOp))
def _quantize_per_tensor(e: NodeBuilder) -> Value:
    """torch's reference `clamp(round(x * (1 / scale)) + zero_point, quant_min, quant_max)`, with
    `1 / scale` in double rounded to float32 and the product in float32 (what torch's CPU kernel does
    with a Python scalar), so the float32 IR is torch's bit for bit; a float16 input is widened first,
    as torch does. The integers stay float32 (`CARRIED_AS_FLOATS`): every reader must dequantize."""
    p = _per_tensor_parameters(e)
    if not e.node.users or not all(_dequantizes(r, e.node) for r in e.node.users):
        decline("an op other than dequantize_per_tensor reads its integers")
    x = e.value(e["input"], torch.float32)
    t = e.add(ane.MulOp(x, e.quantization_constant(1.0 / p.scale, None, x)))
    return e.quantize(t, p.zero, p.low, p.high)


@handles(*DEQUANTIZE, emits=(ane.SubOp, ane.MulOp))
def _dequantize_per_tensor(e: NodeBuilder) -> Value:
    """torch's reference `(q.to(float32) - zero_point) * scale` (float32, the scale rounded to it), of
    integers carried as floats or of an integer tensor."""
    p = _per_tensor_parameters(e)
    if e.args.get("out_dtype") not in (None, torch.float32):
        decline(f"it dequantizes to {e['out_dtype']}")
    return e.dequantize(e.value(e["input"]), p.scale, p.zero)


def carried_as_floats(key: str, value: SSAValue, shape: tuple[int, ...]) -> bool:
    """Whether `value` is the float32 integers `key`'s handler may make instead of torch's integer tensor."""
    return key in CARRIED_AS_FLOATS and value.type == ane.tensor(shape, f32)
