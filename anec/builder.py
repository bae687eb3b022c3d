"""The one op builder: every importer and pass makes `ane` ops through an `OpBuilder`.

The base writes the helpers once — reshapes and transposes that fold what they can (a movement to
the same shape is the value itself, a reshape of a reshape is one reshape, a movement of a constant
is a constant), one-element constants broadcastable against a value, rank equalization and casts.
A subclass says where ops go and what they are called:

- `RewriteBuilder` (passes) inserts before the op being rewritten, through the pattern's rewriter
  when there is one, and names each op after it (`"<old name>#<suffix>"`);
- `AppendingBuilder` (importers) collects a node's ops in `ops`, which the importer places in its
  block when the node is done, or drops when the node falls back to the CPU. The ONNX graph builder
  and the ATen node builder name them after the source node.

Constants go to the module's weight store (`anec.weights`); how a builder names and places them is
its own (`constant`).

Quantized models share one emulation of quantize/dequantize pairs on activations (`quantize`,
`dequantize`): the ANE has no integer activations on M1 (int8 is weight-only there), so the
integers are carried as floats, which the ONNX and ATen importers both build through these helpers.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np
from xdsl.dialects.builtin import f32
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter
from xdsl.rewriter import InsertPoint, Rewriter

from anec.compression import CompressedWeight, KeptOnlyExpanded
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of
from anec.dialects.discardable import NAME_ATTR, derived_name, name_of, set_name
from anec.types import numpy_dtype
from anec.weights import WeightStore, compressed_of, const_value, make_const, store_of

OpT = TypeVar("OpT", bound=Operation)

HELPER_CONSTANTS = frozenset({"reshaped", "transposed", "scalar"})
"""The names the helpers give the constants they make (`constant(..., name)`); builders may rename them."""


class OpBuilder(ABC):
    """Makes ops and constants; subclasses place and name them (`insert`, `constant`)."""

    store: WeightStore

    @abstractmethod
    def insert(self, op: OpT, suffix: str = "") -> OpT:
        """Place `op` (not yet in any block) and name it; `suffix` says what it is to the op it serves."""

    @abstractmethod
    def constant(self, array: np.ndarray | CompressedWeight, like: SSAValue | Attribute | None = None, name: str | None = None) -> SSAValue:
        """A constant holding `array` (or a compressed weight, kept compressed), with the element type of
        `like` (default: the array's)."""

    def add(self, op: Operation, suffix: str = "") -> SSAValue:
        """Place `op`; returns its (first) result."""
        return self.insert(op, suffix).results[0]

    def constant_array(self, value: SSAValue) -> np.ndarray | None:
        """The array `value` holds when an `ane.const` defines it, else None."""
        owner = value.owner
        return const_value(owner, self.store) if isinstance(owner, ane.ConstOp) else None

    def reshape(self, value: SSAValue, shape: Sequence[int], suffix: str = "reshape") -> SSAValue:
        """`value` with `shape`: itself when it has it, a constant when it is one, else an `ane.reshape`
        (of what a reshape it comes from reshapes)."""
        if isinstance(value.owner, ane.ReshapeOp):
            value = value.owner.input
        if tuple(shape) == shape_of(value):
            return value
        if isinstance(value.owner, ane.ConstOp):
            return self.derive(value, lambda a: a.reshape(tuple(shape)), ("reshape", tuple(shape)), "reshaped")
        return self.add(ane.ReshapeOp(value, shape), suffix)

    def transpose(self, value: SSAValue, perm: Sequence[int], suffix: str = "transpose") -> SSAValue:
        """`value` with its axes permuted by `perm`: itself for the identity, a constant when it is one."""
        if tuple(perm) == tuple(range(len(perm))):
            return value
        if isinstance(value.owner, ane.ConstOp):
            return self.derive(value, lambda a: a.transpose(tuple(perm)), ("transpose", tuple(perm)), "transposed")
        return self.add(ane.TransposeOp(value, perm), suffix)

    def derive(self, value: SSAValue, transform: Callable[[Any], Any], key: Hashable, name: str | None = None) -> SSAValue:
        """The constant `transform(value)` of a constant `value`, written with `.reshape`, `.transpose`
        or indexing, which a compressed weight has too: it stays compressed where its form allows.
        `key` names the transform: a stored weight derived the same way again (the steps of an unrolled
        recurrence, the tiles of equal ops) reuses the first result instead of computing it again."""
        owner = value.owner
        assert isinstance(owner, ane.ConstOp), "derive() takes a constant"
        source = owner.handle.data if owner.handle is not None else None
        if source is not None and (known := self.store.derivation(source, key)) is not None:
            handle, stored, shape = known
            return self.add(ane.ConstOp(ane.tensor(shape, element_type_of(value)), handle=handle, stored=stored))
        result = self._derive(owner, transform, value, name)
        made = result.owner
        if source is not None and isinstance(made, ane.ConstOp) and made.handle is not None:
            self.store.remember_derivation(source, key, made.handle.data, made.stored.data if made.stored is not None else None,
                                           shape_of(result))
        return result

    def _derive(self, owner: ane.ConstOp, transform: Callable[[Any], Any], value: SSAValue, name: str | None) -> SSAValue:
        if (weight := compressed_of(owner, self.store)) is not None:
            with contextlib.suppress(KeptOnlyExpanded):
                return self.constant(transform(weight), value, name)
        return self.constant(transform(const_value(owner, self.store)), value, name)

    def with_rank(self, value: SSAValue, rank: int) -> SSAValue:
        """`value` with leading size-1 axes added up to `rank` (the IR's equal-rank broadcasting)."""
        shape = shape_of(value)
        return self.reshape(value, (1,) * (rank - len(shape)) + shape) if len(shape) < rank else value

    def same_rank(self, *values: SSAValue) -> list[SSAValue]:
        """`values` brought to the rank of the highest-ranked one."""
        rank = max(len(shape_of(v)) for v in values)
        return [self.with_rank(v, rank) for v in values]

    def scalar(self, value: float, like: SSAValue) -> SSAValue:
        """A one-element constant of `like`'s rank and element type, broadcastable against it."""
        dtype = numpy_dtype(element_type_of(like))
        return self.constant(np.full((1,) * len(shape_of(like)), value, dtype=dtype), like, "scalar")

    def cast(self, value: SSAValue, element_type: Attribute) -> SSAValue:
        """`value` converted to `element_type` (itself when it has it)."""
        return value if element_type_of(value) == element_type else self.add(ane.CastOp(value, element_type), "cast")

    def quantization_constant(self, values: np.ndarray | float, axis: int | None, like: SSAValue) -> SSAValue:
        """`values` (one, or one per index of `axis`) as a float32 constant broadcastable against `like`."""
        shape = [1] * len(shape_of(like))
        if axis is not None:
            shape[axis] = -1
        return self.constant(np.asarray(values, np.float32).reshape(shape), name="quantization")

    def quantize(self, t: SSAValue, zero: np.ndarray | float, low: int, high: int, axis: int | None = None) -> SSAValue:
        """`clamp(round(t) + zero, low, high)`, rounding half to even, as float32 integers. `t` is the
        input already scaled, in its source's own float32 arithmetic (ONNX's `x / s`, torch's
        `x * (1 / s)`), so the whole is its source's bit for bit. The clamp goes first, to the widest
        bounds any zero point allows (exact: rounding commutes with a clamp to integers; and it keeps
        `ane.round`'s input within ±512, which ane-fp16 rounds in one fp16 shift), and again after the
        zero point only when that differs along `axis`."""
        z = np.asarray(zero, np.float32)
        q = self.add(ane.RoundOp(self.add(ane.ClampOp(t, min=float(low - z.max()), max=float(high - z.min())))))
        if np.any(z):
            q = self.add(ane.AddOp(q, self.quantization_constant(z, axis, q)))
        return self.add(ane.ClampOp(q, min=float(low), max=float(high))) if np.ptp(z) else q

    def dequantize(self, q: SSAValue, scale: np.ndarray | float, zero: np.ndarray | float, axis: int | None = None) -> SSAValue:
        """`(q - zero) * scale` in float32, of an integer tensor (cast first) or integers carried as
        floats (`quantize`'s): ONNX's DequantizeLinear and torch's `dequantize_per_tensor` both compute
        exactly this."""
        x = self.cast(q, f32) if numpy_dtype(element_type_of(q)).kind in "iu" else q
        if np.any(zero):
            x = self.add(ane.SubOp(x, self.quantization_constant(zero, axis, x)))
        return self.add(ane.MulOp(x, self.quantization_constant(scale, axis, x)))


class RewriteBuilder(OpBuilder):
    """For passes: inserts new ops before `anchor` (through `rewriter` inside a pattern), named after it;
    constants go to the anchor's module store, named `"<name>#<what>"`."""

    def __init__(self, anchor: Operation, rewriter: PatternRewriter | None = None, name: str | None = None):
        self.anchor = anchor
        self.rewriter = rewriter
        self.name = name if name is not None else (name_of(anchor) if NAME_ATTR in anchor.attributes else None)
        self.store = store_of(anchor)

    def insert(self, op: OpT, suffix: str = "") -> OpT:
        if self.name is not None and NAME_ATTR not in op.attributes and not isinstance(op, ane.ConstOp):
            set_name(op, derived_name(self.name, suffix))
        if self.rewriter is not None:
            self.rewriter.insert(op, InsertPoint.before(self.anchor))
        else:
            Rewriter.insert_op(op, InsertPoint.before(self.anchor))
        return op

    def constant(self, array: np.ndarray | CompressedWeight, like: SSAValue | Attribute | None = None, name: str | None = None) -> SSAValue:
        element_type = element_type_of(like) if like is not None else None
        what = "c" if name is None or name in HELPER_CONSTANTS else name  # weight names reach the artifacts: kept as they were
        return self.add(make_const(array, derived_name(self.name or "const", what), self.store, element_type))

    def replace(self, *results: SSAValue | Operation) -> None:
        """Replace the anchor op by `results` (ops not yet inserted are inserted and named first)."""
        new = [self.add(r) if isinstance(r, Operation) else r for r in results]
        if self.rewriter is not None:
            self.rewriter.replace(self.anchor, [], new)
        else:
            Rewriter.replace_op(self.anchor, [], new)


class AppendingBuilder(OpBuilder, ABC):
    """For importers: collects the ops of one source node in `ops`, in order; the importer adds them
    to its block when the node is done (or drops them when the node runs on the CPU instead)."""

    def __init__(self, store: WeightStore):
        self.store = store
        self.ops: list[Operation] = []

    def insert(self, op: OpT, suffix: str = "") -> OpT:
        self.ops.append(op)
        return op
