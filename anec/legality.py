"""The one place that decides whether a chip's Neural Engine can run an op, and why not.

`legality(op, target)` walks the op's rules in order and answers with the first one that fails.
Partitioning, the torch.compile partitioner, the report and `anec explain` all ask it, so every
entry point agrees. A rule marked `tileable` is a limit the tile pass removes by splitting the op:
by default such rules do not make an op a host op; with `strict=True` (the verifier after tiling)
every limit applies as it stands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from xdsl.dialects.builtin import Float16Type, Float32Type, IntegerType, TensorType
from xdsl.ir import Operation, SSAValue

from anec.analysis import dense_bytes, engine_tensors, largest_operand_bytes, weight_bytes
from anec.compression import CompressedWeight, stream_form, weight_stream_nbytes
from anec.dialects import ane, host
from anec.dialects.ane import as_tuple, shape_of
from anec.targets import Fact, Target
from anec.weights import compressed_of


@dataclass(frozen=True)
class Legality:
    ok: bool
    reason: str = ""
    rule: str = ""
    hint: str = ""
    tileable: bool = False
    violated: Rule | None = None
    """The rule that failed (the tile pass looks its tiler up by it)."""

    def __bool__(self) -> bool:
        return self.ok

    def __iter__(self) -> Iterator:
        """Unpacks as `ok, reason`."""
        return iter((self.ok, self.reason))


@dataclass(frozen=True)
class Rule:
    """A named check: returns why `op` cannot run on `target`, or None when it can."""

    name: str
    check: Callable[[Operation, Target], str | None]
    hint: str = ""
    tileable: bool = False
    source: str = ""
    """The evidence for the rule: where the limit or gap it checks is documented or was measured."""
    basis: tuple[str, ...] = ()
    """The chip facts it reads (`limits.max_pad`, `capability:texture_engine`): their values and sources
    differ per chip (`anec targets CHIP`)."""


LEGAL = Legality(True)


def legality(op: Operation, target: Target, *, strict: bool = False) -> Legality:
    """Can `target`'s ANE run `op`? With `strict`, limits the tile pass would remove also count."""
    for rule in rules_for(op):
        if rule.tileable and not strict:
            continue
        if (why := rule.check(op, target)) is not None:
            return Legality(False, why, rule.name, rule.hint, rule.tileable, rule)
    return LEGAL


def rules_for(op: Operation) -> tuple[Rule, ...]:
    if isinstance(op, host.HostOp):
        return (NO_ANE_EQUIVALENT,)
    if isinstance(op, ane.ConstOp):
        return ()
    for cls in type(op).__mro__:
        if cls in RULES:
            return COMMON + RULES[cls]
    if ane.is_ane(op):
        return COMMON + DEFAULT_RULES
    return (NOT_AN_ANE_OP,)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

_FP = (Float16Type, Float32Type)


def _tensors(op: Operation) -> list[SSAValue]:
    return [v for v in (*op.operands, *op.results) if isinstance(v.type, TensorType)]


def _ane_type_ok(op: Operation, value: SSAValue) -> bool:
    et = ane.element_type_of(value)
    if isinstance(et, _FP):
        return True
    if isinstance(et, IntegerType) and et.width.data == 1:
        # masks are fp16 0/1 in hardware: compared, selected between and moved like any tensor
        return isinstance(op, ane.CompareOp | ane.SelectOp | ane.MovementOp | ane.ConcatOp | ane.SplitOp)
    if isinstance(et, IntegerType) and et.width.data in (32, 64):
        # indices <= 2048 are exact in fp16 (an arg-reduction's i32, a top-k's in the model's own index
        # type); the tile pass concatenates the pieces of an indexing op
        if isinstance(op, ane.ConcatOp):
            return all(_indices(v) for v in op.inputs)
        return value in op.results and _indices(value)
    return False


def _indices(value: SSAValue) -> bool:
    """Whether `value` holds indices an arg-reduction (i32) or a top-k computed, pieces concatenated included."""
    owner = value.owner
    if isinstance(owner, ane.ConcatOp):
        return all(_indices(v) for v in owner.inputs)
    if isinstance(owner, ane.ArgReduceOp):
        et = ane.element_type_of(value)
        return isinstance(et, IntegerType) and et.width.data == 32
    return isinstance(owner, ane.TopkOp) and value is owner.indices


_AXIS_NAMES = ("N", "D", "C", "H", "W")


def _axis_roles(rank: int) -> tuple[str, ...]:
    """Right-aligned mapping of tensor axes onto the hardware's [N, D, C, H, W]."""
    return _AXIS_NAMES[5 - rank:] if rank <= 5 else ()


def _dim_limit(role: str, target: Target) -> int:
    lim = target.limits
    return {"N": lim.max_batch, "C": lim.max_channels}.get(role, lim.max_spatial).value


def axis_limit(rank: int, axis: int, target: Target) -> int:
    """The largest extent `target` allows on `axis` of a rank-`rank` tensor."""
    return _dim_limit(_axis_roles(rank)[axis], target)


def _dims_over(op: Operation, target: Target, axes: Callable[[Operation, SSAValue], set[int]]) -> str | None:
    smallest = min(_dim_limit(role, target) for role in "NCW")
    for v in _tensors(op):
        shape = shape_of(v)
        if max(shape, default=0) <= smallest:  # within every axis's limit: no need to ask which axes count
            continue
        for axis in axes(op, v):
            if axis < len(shape):
                role = _axis_roles(len(shape))[axis]
                if shape[axis] > _dim_limit(role, target):
                    return f"{role} extent {shape[axis]} of {list(shape)} exceeds the {_dim_limit(role, target)} the {target.name} allows"
    return None


def _engine_axes(op: Operation, v: SSAValue) -> set[int]:
    """Every axis of a tensor the engine holds (slices and concats only hold their windows)."""
    return set(range(len(shape_of(v)))) if any(v is t for t in engine_tensors(op)) else set()


def _conv_kernel(op: ane.ConvBase) -> tuple[int, int]:
    k = op.kernel()
    return (1, k[0]) if len(k) == 1 else (k[0], k[1])


# ------------------------------------------------------------------------------------------------
# Rules
# ------------------------------------------------------------------------------------------------

def _no_ane_equivalent(op: Operation, t: Target) -> str:
    assert isinstance(op, host.HostOp), "rules_for gives this rule to host ops only"
    return f"{op.op_name.data} has no ANE equivalent, so it runs on the CPU"


NO_ANE_EQUIVALENT = Rule(
    "no-ane-op",
    _no_ane_equivalent,
    hint="rewrite the model to avoid it, or accept a CPU segment",
    source="guide §4 (ane-hardware.md, operation support): ops with no path on any generation, and ops anec maps to no ane op",
)
NOT_AN_ANE_OP = Rule("not-ane", lambda op, t: f"{op.name} is not an ANE op", source="anec: only ane ops are placed on the ANE")

FP16_TENSORS = Rule(
    "fp16-tensors",
    lambda op, t: next((f"{v.type} tensors do not reach the ANE, which computes in fp16" for v in _tensors(op) if not _ane_type_ok(op, v)), None),
    hint="keep integer and double arithmetic out of the hot path, or cast to float32 before it",
    source="guide §3 (ane-hardware.md, tensor layout and constraints): the engines compute and store fp16; integer tensors reach them only as masks and indices",
)
RANK = Rule(
    "rank",
    lambda op, t: next((f"rank-{len(shape_of(v))} tensor exceeds the ANE's rank {t.limits.max_rank.value} [N,D,C,H,W]"
                        for v in _tensors(op) if len(shape_of(v)) > t.limits.max_rank.value), None),
    hint="reshape to at most 4 axes (the layout pass does this where it can)",
    source="guide §3 (ane-hardware.md, tensor layout and constraints): the logical layout is [N,D,C,H,W]",
    basis=("limits.max_rank",),
)
REDUCED_DIMS = Rule(
    "reduced-dims",
    lambda op, t: _dims_over(op, t, lambda o, v: set(ane.reduced_axes(o)) if o.operands and v is o.operands[0] else set()),
    hint="reduce over a shorter axis (split the reduction into chunks in the model)",
    source="guide §3 (ane-hardware.md, tensor layout and constraints): dimension limits; a reduced axis is computed whole, so it cannot be split",
    basis=("limits.max_spatial", "limits.max_channels", "limits.max_batch"),
)
DIMS = Rule(
    "dims",
    lambda op, t: _dims_over(op, t, _engine_axes),
    hint="the tile pass splits oversized axes",
    tileable=True,
    source="guide §3 (ane-hardware.md, tensor layout and constraints): dimension limits (W, H, D <= 16384, 65536 from A16; C <= 65536)",
    basis=("limits.max_spatial", "limits.max_channels", "limits.max_batch"),
)
WORKING_SET = Rule(
    "working-set",
    lambda op, t: (f"its largest operand holds {largest_operand_bytes(op)} bytes, more than the {t.memory.l2_bytes.value}-byte L2"
                   if largest_operand_bytes(op) > t.memory.l2_bytes.value else None),
    hint="the tile pass splits it along H or channels",
    tileable=True,
    source="guide §2 (ane-hardware.md, datapath): past the L2 working set every operand streams from DRAM",
    basis=("memory.l2_bytes",),
)


def _over_kernel_memory(op: Operation, target: Target) -> str | None:
    size, budget = kernel_bytes(op, target), target.memory.kernel_memory_bytes.value
    if size <= budget:
        return None
    streamed = streamed_kernel(op, target)
    return f"its {size}-byte {streamed[1] if streamed else 'fp16'} kernel exceeds the {budget}-byte kernel memory"


KERNEL_MEMORY = Rule(
    "kernel-memory",
    _over_kernel_memory,
    hint="the tile pass splits output channels",
    tileable=True,
    source="guide §3 (ane-hardware.md, tensor layout and constraints): a task's kernel sits in kernel memory "
           "(compressed where the kernel DMA streams its form: each unit holds its palette LUT and packed weights)",
    basis=("memory.kernel_memory_bytes", "capability:palette4_weight_stream", "capability:int8_weight_stream",
           "capability:sparse_weight_stream"),
)

COMMON: tuple[Rule, ...] = (FP16_TENSORS, RANK, REDUCED_DIMS, DIMS)


def _rule(name: str, hint: str = "", tileable: bool = False, *, source: str, basis: tuple[str, ...] = ()):
    def make(check: Callable[[Operation, Target], str | None]) -> Rule:
        return Rule(name, check, hint, tileable, source, basis)
    return make


@_rule("conv-kernel-width", "the tile pass splits a wide kernel into a sum of narrower ones", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): kernel width <= 13 in fp16", basis=('limits.max_kernel_width_fp16',))
def conv_kernel_width(op: ane.ConvOp, t: Target) -> str | None:
    kw, lim = _conv_kernel(op)[1], t.limits.max_kernel_width_fp16.value
    return f"kernel width {kw} exceeds the fp16 limit of {lim}" if kw > lim else None


@_rule("conv-kernel-height", "the tile pass splits a tall kernel into a sum of shorter ones", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): kernel height <= 29", basis=('limits.max_kernel_height',))
def conv_kernel_height(op: ane.ConvOp, t: Target) -> str | None:
    kh, lim = _conv_kernel(op)[0], t.limits.max_kernel_height.value
    return f"kernel height {kh} exceeds the limit of {lim}" if kh > lim else None


@_rule("conv-stride", "the tile pass runs stride 1 and subsamples", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): at most stride 2 per axis", basis=('limits.max_stride',))
def conv_stride(op: ane.ConvOp, t: Target) -> str | None:
    s, lim = max(as_tuple(op.strides)), t.limits.max_stride.value
    return f"stride {s} exceeds the ANE's maximum of {lim} per axis" if s > lim else None


@_rule("conv-dilation", "use a smaller dilation",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): dilation <= 8 through space-to-batch", basis=('limits.max_dilation',))
def conv_dilation(op: ane.ConvBase, t: Target) -> str | None:
    d, lim = max(as_tuple(op.dilations)), t.limits.max_dilation.value
    return f"dilation {d} exceeds the maximum of {lim}" if d > lim else None


@_rule("conv-pad", "the tile pass moves large pads into an explicit pad", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): pads <= 16, H and W only", basis=('limits.max_pad',))
def conv_pad(op: ane.ConvBase, t: Target) -> str | None:
    p, lim = max(as_tuple(op.pads), default=0), t.limits.max_pad.value
    return f"padding {p} exceeds the maximum of {lim}" if p > lim else None


@_rule("conv-groups", "use fewer groups",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): the group-count field", basis=('limits.max_groups',))
def conv_groups(op: ane.ConvBase, t: Target) -> str | None:
    g, lim = op.groups.value.data, t.limits.max_groups.value
    return f"{g} groups exceed the {t.limits.max_groups.value}-group field" if g > lim else None


@_rule("group-conv-taps", "the tile pass splits the groups", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): taps per group of a grouped conv", basis=('limits.max_group_conv_taps',))
def group_conv_taps(op: ane.ConvOp, t: Target) -> str | None:
    w, g = shape_of(op.weight), op.groups.value.data
    if g == 1 or w[1] == 1:
        return None
    taps, lim = w[1] * math.prod(w[2:]), t.limits.max_group_conv_taps.value
    return f"grouped conv with {taps} taps per group exceeds {lim}" if taps > lim else None


@_rule("dynamic-weight-batch", "the tile pass runs one batch element at a time", tileable=True,
       source="guide §4 (ane-hardware.md, operation support): a dynamic-weight conv works only at batch 1 (batch >= 2 crashes the compiler service)")
def dynamic_weight_batch(op: ane.ConvOp, t: Target) -> str | None:
    n = shape_of(op.input)[0]
    if isinstance(op.weight.owner, ane.ConstOp) or n == 1:
        return None
    return f"a conv whose weight is computed at run time works only at batch 1 (batch {n})"


@_rule("deconv-stride", "use stride 1 or 2, or an upsample followed by a conv",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): deconvolution stride in {1, 2}", basis=('limits.max_deconv_stride',))
def deconv_stride(op: ane.ConvTransposeOp, t: Target) -> str | None:
    s, lim = max(as_tuple(op.strides)), t.limits.max_deconv_stride.value
    return f"transposed-conv stride {s} exceeds {lim}" if s > lim else None


@_rule("deconv-kernel", "use a kernel within the fp16 limits",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): the fp16 kernel limits apply to transposed convs", basis=('limits.max_kernel_width_fp16', 'limits.max_kernel_height'))
def deconv_kernel(op: ane.ConvTransposeOp, t: Target) -> str | None:
    kh, kw = _conv_kernel(op)
    if kw > t.limits.max_kernel_width_fp16.value or kh > t.limits.max_kernel_height.value:
        return f"transposed-conv kernel {kh}x{kw} exceeds the fp16 kernel limits"
    return None


@_rule("matmul-depth", "fold the extra batch axis into N",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): matmul operands carry D = 1")
def matmul_depth(op: ane.MatmulOp, t: Target) -> str | None:
    for v in (op.lhs, op.rhs):
        s = shape_of(v)
        if len(s) == 5 and s[1] != 1:
            return f"matmul needs D = 1 on both operands, got {list(s)}"
    return None


@_rule("sdpa-mask", "anec's legalize pass splits it into matmul, mask + softmax, matmul",
       source="guide §4 (ane-hardware.md, operation support): fused SDPA with a mask input is dropped silently (SubtractMax path); anec splits it")
def sdpa_mask(op: ane.SdpaOp, t: Target) -> str | None:
    return "fused attention silently ignores its mask on the ANE" if op.mask is not None else None


@_rule("reduce-axes", "reduce in two steps",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): reductions over a bounded number of axes per task", basis=('limits.max_reduce_axes',))
def reduce_axes(op: ane.ReduceOp, t: Target) -> str | None:
    n, lim = len(as_tuple(op.axes)), t.limits.max_reduce_axes.value
    return f"reduction over {n} axes exceeds {lim}" if n > lim else None


@_rule("argmax-axis", "reduce a shorter axis, or split it and combine on the CPU",
       source="guide §4 (ane-hardware.md, operation support): argmax over a bounded axis; global argmax from A15", basis=('limits.max_argmax_axis',))
def argmax_axis(op: ane.ArgReduceOp, t: Target) -> str | None:
    n, lim = shape_of(op.input)[op.axis.value.data], t.limits.max_argmax_axis.value
    return f"{ane.kind(op)} over {n} elements exceeds {lim}" if n > lim else None


@_rule("topk-chip", "target M2 or later",
       source="guide §4 (ane-hardware.md, gated by generation): top-k and sort pass the M1 validator but fail M1 codegen; "
              "from A14 (M2) they compile; eco: TopK on M1 fails for a band of K", basis=('capability:topk_sort',))
def topk_chip(op: ane.TopkOp, t: Target) -> str | None:
    return None if t.has("topk_sort") else "top-k fails the M1's code generator (it passes only its validator); M2 and later run it"


@_rule("topk-axis", "select over the last axis (transpose it there first)",
       source="anec: the top-k task (Kind.TOPK) compares along W, the innermost axis of its view")
def topk_axis(op: ane.TopkOp, t: Target) -> str | None:
    rank, axis = len(shape_of(op.input)), op.axis.value.data
    return None if axis == rank - 1 else f"top-k over axis {axis} of a rank-{rank} tensor; the ANE selects along the last axis"


@_rule("topk-extent", "select from at most 2048 elements, or split the axis and merge on the CPU",
       source="anec: indices travel in fp16, exact integers only up to 2048 (the argmin/argmax bound of guide §3)",
       basis=('limits.max_argmax_axis',))
def topk_extent(op: ane.TopkOp, t: Target) -> str | None:
    n, lim = shape_of(op.input)[op.axis.value.data], t.limits.max_argmax_axis.value
    return f"top-k over {n} elements exceeds {lim}: fp16 indices are exact only up to {lim}" if n > lim else None


@_rule("pool-window", "the tile pass cascades smaller pools", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): pool window <= 31 on M2+ (smaller on M1)", basis=('limits.max_pool_window',))
def pool_window(op: ane.PoolOp, t: Target) -> str | None:
    k, lim = max(as_tuple(op.kernel)), t.limits.max_pool_window.value
    return f"pool window {k} exceeds {lim}" if k > lim else None


@_rule("pool-stride", "the tile pass pools at stride 1 and subsamples", tileable=True,
       source="eco (a) hollance: pooling with stride > 2 leaves the ANE", basis=('limits.max_pool_stride',))
def pool_stride(op: ane.PoolOp, t: Target) -> str | None:
    s, lim = max(as_tuple(op.strides)), t.limits.max_pool_stride.value
    return f"pool stride {s} exceeds {lim}" if s > lim else None


@_rule("pool-pad", "pad explicitly before the pool",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): pads <= 16", basis=('limits.max_pad',))
def pool_pad(op: ane.PoolOp, t: Target) -> str | None:
    p, lim = max(as_tuple(op.pads), default=0), t.limits.max_pad.value
    return f"pool padding {p} exceeds {lim}" if p > lim else None


@_rule("pad-axes", "pad only H and W; move channel padding into the weights",
       source="guide §4 (ane-hardware.md, operation support): constant pad of H and W only")
def pad_axes(op: ane.PadOp, t: Target) -> str | None:
    pads, n = as_tuple(op.pads), len(shape_of(op.input))
    padded = [i for i in range(n) if pads[i] or pads[n + i]]
    if any(i < n - 2 for i in padded):
        return "the ANE pads only the H and W axes"
    return None


@_rule("pad-mode", "use constant padding on an M1",
       source="guide §4 (ane-hardware.md, operation support): reflect and symmetric pads need the A14 texture engine", basis=('capability:texture_engine',))
def pad_mode(op: ane.PadOp, t: Target) -> str | None:
    if op.mode.data != "constant" and not t.has("texture_engine"):
        return f"{op.mode.data} padding needs the texture engine (M2 and later)"
    return None


@_rule("reflect-pad-size", "reflect pads within the limit run on the ANE; a larger one does not split into smaller ones",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): pads <= 16; a reflect pad does not compose from smaller ones", basis=('limits.max_pad',))
def reflect_pad_size(op: ane.PadOp, t: Target) -> str | None:
    p, lim = max(as_tuple(op.pads), default=0), t.limits.max_pad.value
    return f"reflect padding {p} exceeds {lim}" if op.mode.data == "reflect" and p > lim else None


@_rule("pad-size", "the tile pass chains smaller pads", tileable=True,
       source="guide §3 (ane-hardware.md, tensor layout and constraints): pads <= 16", basis=('limits.max_pad',))
def pad_size(op: ane.PadOp, t: Target) -> str | None:
    p, lim = max(as_tuple(op.pads), default=0), t.limits.max_pad.value
    return f"padding {p} exceeds {lim}" if p > lim else None


@_rule("resize-scale", "upsample by 2 at a time, or target M2 and later",
       source="guide §4 (ane-hardware.md, operation support): resize as a sampler needs the A14 texture engine; M1 upsamples by whole factors", basis=('capability:texture_engine', 'limits.max_upsample_scale'))
def resize_scale(op: ane.ResizeOp, t: Target) -> str | None:
    if t.has("texture_engine"):
        return None
    scales, lim = as_tuple(op.scales), t.limits.max_upsample_scale.value
    if any(s != int(s) or not 1 <= s <= lim for s in scales):
        return f"resize by {list(scales)} needs the texture engine; {t.name} upsamples only by whole factors up to {lim}"
    return None


@_rule("transpose-extent", "transpose smaller blocks",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): transpose block extents", basis=('limits.max_transpose_extent',))
def transpose_extent(op: ane.TransposeOp, t: Target) -> str | None:
    lim = t.limits.max_transpose_extent.value
    big = [d for d in shape_of(op.input) if d > lim]
    return f"transpose extent {big[0]} exceeds {lim}" if big else None


@_rule("slice-w-span", "the tile pass cuts the slice along W", tileable=True,
       source="eco (c): WStep is a 4-bit DMA field; a window stepping further along W is read densely through a transpose of its span",
       basis=('limits.w_step_field_bits', 'limits.max_transpose_extent'))
def slice_w_span(op: ane.SliceOp, t: Target) -> str | None:
    step, count = as_tuple(op.steps)[-1], shape_of(op.result)[-1]
    span, lim = (count - 1) * step + 1, t.limits.max_transpose_extent.value
    if step < 1 << t.limits.w_step_field_bits.value or span <= lim:
        return None
    return f"its W step {step} exceeds the DMA's step field, and the {span}-element span it is read through exceeds the {lim}-element transpose"


@_rule("cast-types", "keep integer casts on the CPU",
       source="guide §3 (ane-hardware.md, tensor layout and constraints): the engines convert only between fp16 and fp32 at the DMA")
def cast_types(op: ane.CastOp, t: Target) -> str | None:
    return None if all(isinstance(ane.element_type_of(v), _FP) for v in (op.input, op.result)) else "the ANE casts only between fp16 and fp32"


@_rule("sin-cos", "target M3 or later, or precompute the table",
       source="guide §4 (ane-hardware.md, operation support): sin/cos from A15", basis=('capability:sin_cos',))
def sin_cos(op: Operation, t: Target) -> str | None:
    return None if t.has("sin_cos") else f"{ane.kind(op)} needs an A15-family ANE (M3 and later)"


_CONV_RULES = (conv_dilation, conv_groups, conv_kernel_width, conv_kernel_height, conv_stride, conv_pad,
               group_conv_taps, dynamic_weight_batch, KERNEL_MEMORY, WORKING_SET)

RULES: dict[type[Operation], tuple[Rule, ...]] = {
    ane.ConvOp: _CONV_RULES,
    ane.ConvTransposeOp: (deconv_stride, deconv_kernel, conv_dilation, conv_groups, conv_pad, KERNEL_MEMORY, WORKING_SET),
    ane.MatmulOp: (matmul_depth, KERNEL_MEMORY, WORKING_SET),
    ane.SdpaOp: (sdpa_mask, WORKING_SET),
    ane.ReduceOp: (reduce_axes, WORKING_SET),
    ane.ArgReduceOp: (argmax_axis, WORKING_SET),
    ane.TopkOp: (topk_chip, topk_axis, topk_extent, WORKING_SET),
    ane.PoolOp: (pool_pad, pool_window, pool_stride, WORKING_SET),
    ane.PadOp: (pad_axes, pad_mode, reflect_pad_size, pad_size, WORKING_SET),
    ane.ResizeOp: (resize_scale, WORKING_SET),
    ane.TransposeOp: (transpose_extent, WORKING_SET),
    ane.CastOp: (cast_types,),
    ane.SliceOp: (slice_w_span, WORKING_SET),
    ane.SinOp: (sin_cos, WORKING_SET),
    ane.CosOp: (sin_cos, WORKING_SET),
    # Pieces of a concatenation or split are windows of one buffer that producers write and consumers
    # read in place; what remains is a DMA copy that streams, so no operand has to fit the L2.
    ane.ConcatOp: (),
    ane.SplitOp: (),
}
"""Op-specific rules, checked after the common ones; ops not listed only need `COMMON` + working set."""

DEFAULT_RULES: tuple[Rule, ...] = (WORKING_SET,)


def basis_values(rule: Rule, target: Target) -> dict[str, object]:
    """The values on `target` of the facts and capabilities a rule reads."""
    out: dict[str, object] = {}
    for name in rule.basis:
        kind, _, capability = name.partition(":")
        if kind == "capability":
            out[name] = target.has(capability)
            continue
        fact: object = target
        for part in name.split("."):
            fact = getattr(fact, part)
        assert isinstance(fact, Fact), f"{rule.name}: basis {name} names no fact of the target"
        out[name] = fact.value
    return out


def all_rules() -> list[Rule]:
    """Every rule legality may apply, once each."""
    found = [NO_ANE_EQUIVALENT, NOT_AN_ANE_OP, *COMMON, *(r for rules in RULES.values() for r in rules), *DEFAULT_RULES]
    return list(dict.fromkeys(found))


STREAMED_FORMS: dict[str, str] = {"palette4": "palette4_weight_stream", "int8": "int8_weight_stream", "uint8": "int8_weight_stream",
                                  "sparse": "sparse_weight_stream"}
"""The capability a chip needs to stream each kernel-stream form compressed (else it is expanded to fp16)."""


def streamed_form(op: Operation, weight: CompressedWeight, target: Target) -> str | None:
    """The compressed form in which `target` streams `weight` as the kernel of `op`, or None when the
    weight is expanded to fp16 first (the hardware notes: "int8 and blockwise are expanded to fp16 in
    DRAM on M1"; int8 streams from A14, the int4 palette and sparse kernels everywhere)."""
    form = stream_form(weight) if isinstance(op, ane.ConvOp) else None
    return form if form is not None and target.has(STREAMED_FORMS[form]) else None


def streamed_kernel(op: Operation, target: Target) -> tuple[CompressedWeight, str] | None:
    """The compressed kernel of a conv and the form `target` streams it in, or None (an fp16 kernel,
    or a compressed one the chip expands to fp16 first)."""
    const = op.weight.owner if isinstance(op, ane.ConvOp) else None
    weight = compressed_of(const) if isinstance(const, ane.ConstOp) else None
    form = streamed_form(op, weight, target) if weight is not None else None
    return (weight, form) if weight is not None and form is not None else None


def kernel_bytes(op: Operation, target: Target) -> int:
    """The bytes `op`'s weights occupy in kernel memory on `target` and carry on the weight stream: a
    kernel the chip streams compressed at its stream size (the kernel DMA expands it on the way to
    the MACs), every other weight in fp16."""
    streamed = streamed_kernel(op, target)
    if streamed is None:
        return weight_bytes(op)
    weight, form = streamed
    return weight_bytes(op) - dense_bytes(weight.shape) + weight_stream_nbytes(weight, form)
