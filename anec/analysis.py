"""Static facts about ops that legality, tiling, the timing model and the report all need.

Sizes are what the ANE stores: fp16 elements, each row (the innermost axis, W) padded to 64 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from xdsl.dialects.builtin import Float16Type, TensorType
from xdsl.ir import Operation, SSAValue

from anec.dialects import ane, anehw
from anec.dialects.ane import shape_of
from anec.dialects.host import HostOp

FP16_BYTES = 2
ROW_ALIGN = 64


def ane_bytes(shape: tuple[int, ...], row_align: int = ROW_ALIGN) -> int:
    """Bytes of a tensor in the ANE's layout: fp16, W-contiguous, rows padded to `row_align`."""
    if not shape:
        return row_align
    row = -(-shape[-1] * FP16_BYTES // row_align) * row_align
    return row * math.prod(shape[:-1])


def dense_bytes(shape: tuple[int, ...]) -> int:
    return FP16_BYTES * math.prod(shape)


def padding_bytes(value: SSAValue) -> int:
    """Bytes the 64-byte row padding adds to one tensor (what the layout pass tries to remove)."""
    shape = shape_of(value)
    return ane_bytes(shape) - dense_bytes(shape)


def total_padding_bytes(module: Operation) -> int:
    """Row padding over every tensor the ANE ops of `module` produce (the layout pass's figure)."""
    return sum(padding_bytes(r) for op in module.walk() if ane.is_ane(op) and not isinstance(op, ane.ConstOp)
               for r in op.results if isinstance(r.type, ane.TensorType))


def is_constant(value: SSAValue) -> bool:
    return isinstance(value.owner, ane.ConstOp)


SELECTIONS = ("onnx.Gather", "aten.embedding.default")
"""Host ops whose result holds values of their data operand (operand 0) unchanged: an embedding lookup."""


def read_as_fp16_only(value: SSAValue) -> bool:
    """Whether every value read from `value` is rounded to fp16 before any arithmetic uses it: it is only
    the data of selections (`SELECTIONS`) whose results reach nothing but casts to fp16, across segment
    edges and into ANE programs (whose ports are fp16). Such a float32 constant (an embedding table an
    ANE segment reads) can be stored in fp16: selecting from the rounded table gives the same values
    as rounding the selected rows."""
    if not value.uses:
        return False
    for use in value.uses:
        op = use.operation
        if isinstance(op, HostOp) and op.op_name.data in SELECTIONS and use.index == 0:
            if not all(read_as_fp16_only(result) for result in op.results):
                return False
        elif isinstance(op, ane.SegmentOp):
            if not read_as_fp16_only(op.body.block.args[use.index]):
                return False
        elif isinstance(op, anehw.ProgramOp | anehw.CallOp):
            continue  # a program's buffers hold fp16: the runtime rounds what it feeds them
        elif not (isinstance(op, ane.CastOp) and isinstance(op.result.type, TensorType)
                  and isinstance(op.result.type.element_type, Float16Type)):
            return False
    return True


def weight_operands(op: Operation) -> list[SSAValue]:
    """Operands a MAC op reads as its kernel (constant weights and bias)."""
    if isinstance(op, ane.ConvBase | ane.MatmulOp):
        names = ("weight", "bias") if isinstance(op, ane.ConvBase) else ("rhs", "bias")
        return [v for n in names if (v := getattr(op, n)) is not None and is_constant(v)]
    return []


def weight_bytes(op: Operation) -> int:
    return sum(dense_bytes(shape_of(v)) for v in weight_operands(op))


def activation_operands(op: Operation) -> list[SSAValue]:
    weights = weight_operands(op)
    return [v for v in op.operands if v not in weights and not is_constant(v)]


def engine_tensors(op: Operation) -> list[SSAValue]:
    """The tensors that pass through the engine for `op`. A slice or split reads only its windows
    and a concat writes its pieces into place (DMA windows onto memory), so their large side is
    never held whole: the tile pass relies on this to cut an oversized tensor into legal pieces."""
    if isinstance(op, ane.SliceOp | ane.SplitOp):
        return list(op.results)
    if isinstance(op, ane.ConcatOp):
        return list(op.inputs)
    return [*op.operands, *op.results]


def largest_operand_bytes(op: Operation) -> int:
    """The largest single tensor an op streams (the guide's 2 MB-cliff criterion)."""
    engine = {id(v) for v in engine_tensors(op)}
    tensors = [v for v in (*activation_operands(op), *op.results) if id(v) in engine]
    return max((ane_bytes(shape_of(v)) for v in tensors), default=0)


def flops(op: Operation) -> int:
    """Floating-point operations (a multiply-add counts 2)."""
    match op:
        case ane.ConvOp():
            w = shape_of(op.weight)
            return 2 * math.prod(shape_of(op.result)) * math.prod(w[1:])
        case ane.ConvTransposeOp():
            w = shape_of(op.weight)
            return 2 * math.prod(shape_of(op.input)) * math.prod(w[1:])
        case ane.MatmulOp():
            a = shape_of(op.lhs)
            contraction = a[-2] if op.flags()[0] else a[-1]
            return 2 * math.prod(shape_of(op.result)) * contraction
        case ane.SdpaOp():
            return _attention_flops(shape_of(op.query), shape_of(op.key), shape_of(op.value))
        case ane.PoolOp():
            return math.prod(shape_of(op.result)) * math.prod(ane.as_tuple(op.kernel))
        case ane.ConstOp() | ane.ReshapeOp() | ane.TransposeOp() | ane.SliceOp() | ane.ConcatOp() | ane.SplitOp() | ane.CastOp():
            return 0
        case HostOp() if (count := HOST_FLOPS.get(op.source_op)) is not None:
            return count(op)
    if op.results and all(isinstance(r.type, ane.TensorType) for r in op.results):
        # one operation per streamed element; a constant table (an embedding) is looked up, not computed on
        inputs = max((math.prod(shape_of(v)) for v in op.operands if not is_constant(v)), default=0)
        return max(inputs, math.prod(shape_of(op.results[0])))
    return 0


def _attention_flops(q: Sequence[int], k: Sequence[int], v: Sequence[int]) -> int:
    """softmax(q·kᵀ)·v: both products, plus about five operations per score (scale, mask, softmax)."""
    return math.prod(q[:-2]) * (2 * q[-2] * k[-2] * q[-1] + 2 * q[-2] * k[-2] * v[-1] + 5 * q[-2] * k[-2])


def _recurrent_flops(weights: Callable[[HostOp], Sequence[SSAValue]]) -> Callable[[HostOp], int]:
    """An LSTM/GRU/RNN: every weight matrix multiplies one vector per step, batch row and direction,
    so 2·steps·batch·Σ|W| — 2·gates·(input + hidden)·hidden per step and direction for one layer
    (`weights` picks the matrices among the operands). The gates' elementwise math, a few operations
    per hidden unit, is left out: under 5% from a hidden size of 64."""
    def count(op: HostOp) -> int:
        x = shape_of(op.args[0])
        rows = math.prod(x) // x[-1] if x and x[-1] else 0
        return 2 * rows * sum(math.prod(shape_of(w)) for w in weights(op))
    return count


def _matmul_flops(lhs: int) -> Callable[[HostOp], int]:
    """A matrix product whose left operand is operand `lhs`: 2·|result|·K."""
    return lambda op: 2 * math.prod(shape_of(op.outputs[0])) * shape_of(op.args[lhs])[-1]


def _conv_flops(op: HostOp) -> int:
    return 2 * math.prod(shape_of(op.outputs[0])) * math.prod(shape_of(op.args[1])[1:])


def _matrices_after(first: int) -> Callable[[HostOp], list[SSAValue]]:
    """The 2-D operands from `first` on: an ATen RNN's weight matrices after its input and states."""
    return lambda op: [v for v in op.args[first:] if len(shape_of(v)) == 2]


_TWO_WEIGHTS = _recurrent_flops(lambda op: op.args[1:3])  # ONNX (W, R), oneDNN's layer (w_ih, w_hh)

HOST_FLOPS: dict[str, Callable[[HostOp], int]] = {
    "LSTM": _TWO_WEIGHTS, "GRU": _TWO_WEIGHTS, "RNN": _TWO_WEIGHTS, "mkldnn_rnn_layer.default": _TWO_WEIGHTS,
    "lstm.input": _recurrent_flops(_matrices_after(3)),  # input, h0, c0, then the parameters
    **dict.fromkeys(("gru.input", "rnn_tanh.input", "rnn_relu.input"), _recurrent_flops(_matrices_after(2))),
    **dict.fromkeys(("MatMul", "MatMulInteger", "mm.default", "bmm.default", "matmul.default", "linear.default"), _matmul_flops(0)),
    **dict.fromkeys(("addmm.default", "baddbmm.default"), _matmul_flops(1)),
    **dict.fromkeys(("Conv", "convolution.default"), _conv_flops),
    **dict.fromkeys(("scaled_dot_product_attention.default", "_scaled_dot_product_flash_attention_for_cpu.default"),
                    lambda op: _attention_flops(*(shape_of(v) for v in op.args[:3]))),
}
"""Host ops (by their name within their framework: `LSTM`, `mm.default`) counted by their real work
rather than one operation per element, so a report's FLOP shares weigh a CPU-side LSTM or matmul
like its ANE counterpart."""
