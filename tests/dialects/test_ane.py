"""The `ane` dialect's Python builders: each infers its result type, and what it builds verifies."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import (
    Float16Type,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    f16,
    f32,
    i1,
    i32,
    i64,
)
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from anec.dialects import ane, host
from anec.dialects.ane import as_tuple, shape_of, tensor
from anec.weights import numpy_to_dense

HERE = Path(__file__).parent


def inputs(*types: tuple[int, ...] | tuple[tuple[int, ...], Attribute]) -> list[SSAValue]:
    """Block arguments of the given shapes (f32 unless an element type is given)."""
    arg_types = [tensor(*t) if isinstance(t[0], tuple) else tensor(t) for t in types]  # type: ignore[arg-type]
    return list(Block(arg_types=arg_types).args)


def built(op: Operation) -> Operation:
    op.verify()
    return op


# ------------------------------------------------------------------------------------------------
# Every op is covered by the FileCheck tests beside this file
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename, form", [("ane_ops.mlir", "{name}[ (]"), ("ane_invalid.mlir", '"{name}"')])
def test_every_registered_op_appears_in_the_filecheck_tests(filename: str, form: str) -> None:
    text = (HERE / filename).read_text()
    missing = [op.name for op in ane.ANE.operations if not re.search(form.format(name=re.escape(op.name)), text)]
    assert not missing, f"{filename} does not exercise {missing}"


# ------------------------------------------------------------------------------------------------
# Result-type inference
# ------------------------------------------------------------------------------------------------

x8, w_grouped, bias6 = inputs((1, 4, 8, 8), (6, 2, 3, 3), (6,))

SHAPES: dict[str, tuple[Callable[[], Operation], tuple[int, ...]]] = {
    "conv strided grouped padded": (lambda: ane.ConvOp(x8, w_grouped, bias6, strides=[2, 2], pads=[1, 1, 1, 1], groups=2), (1, 6, 4, 4)),
    "conv defaults": (lambda: ane.ConvOp(x8, w_grouped, groups=2), (1, 6, 6, 6)),
    "conv dilated asymmetric pads": (lambda: ane.ConvOp(*inputs((1, 3, 10, 12), (4, 3, 3, 3)), pads=[0, 1, 2, 0], dilations=[2, 3]), (1, 4, 8, 7)),
    "conv 1-D": (lambda: ane.ConvOp(*inputs((2, 4, 10), (8, 4, 3)), strides=[2], pads=[2, 1], dilations=[2]), (2, 8, 5)),
    "conv_transpose": (lambda: ane.ConvTransposeOp(*inputs((1, 4, 8, 8), (4, 3, 2, 2)), strides=[2, 2], groups=2, output_padding=[1, 0]), (1, 6, 17, 16)),
    "conv_transpose padded 1-D": (lambda: ane.ConvTransposeOp(*inputs((1, 2, 5), (2, 3, 4)), strides=[3], pads=[1, 2], dilations=[2]), (1, 3, 16)),
    "matmul broadcast batch": (lambda: ane.MatmulOp(*inputs((2, 3, 4), (1, 4, 5))), (2, 3, 5)),
    "matmul transposed": (lambda: ane.MatmulOp(*inputs((4, 3), (5, 4)), transpose_lhs=True, transpose_rhs=True), (3, 5)),
    "matmul bias": (lambda: ane.MatmulOp(*inputs((7, 3), (3, 5), (5,))), (7, 5)),
    "sdpa": (lambda: ane.SdpaOp(*inputs((1, 2, 5, 8), (1, 2, 7, 8), (1, 2, 7, 4))), (1, 2, 5, 4)),
    "sdpa masked": (lambda: ane.SdpaOp(*inputs((1, 2, 5, 8), (1, 2, 7, 8), (1, 2, 7, 4), (1, 1, 5, 7))), (1, 2, 5, 4)),
    "add broadcast": (lambda: ane.AddOp(*inputs((2, 1, 4), (1, 3, 4))), (2, 3, 4)),
    "reduce keepdims": (lambda: ane.ReduceSumOp(*inputs((2, 3, 4)), [2, 0]), (1, 3, 1)),
    "reduce dropdims": (lambda: ane.ReduceMeanOp(*inputs((2, 3, 4)), [1], keepdims=False), (2, 4)),
    "argmax": (lambda: ane.ArgmaxOp(*inputs((2, 3, 4)), 1), (2, 1, 4)),
    "argmin dropdims": (lambda: ane.ArgminOp(*inputs((2, 3, 4)), 2, keepdims=False), (2, 3)),
    "max_pool": (lambda: ane.MaxPoolOp(x8, [3, 3], [2, 2], [1, 1, 1, 1]), (1, 4, 4, 4)),
    "avg_pool 1-D": (lambda: ane.AvgPoolOp(*inputs((1, 3, 9)), [3], [2], [1, 0]), (1, 3, 4)),
    "l2_pool": (lambda: ane.L2PoolOp(x8, [2, 3]), (1, 4, 7, 6)),
    "global_avg_pool": (lambda: ane.GlobalAvgPoolOp(x8), (1, 4, 1, 1)),
    "global_max_pool 1-D": (lambda: ane.GlobalMaxPoolOp(*inputs((2, 3, 9))), (2, 3, 1)),
    "layer_norm": (lambda: ane.LayerNormOp(*inputs((2, 5, 6), (5, 6), (5, 6)), axes=[1, 2]), (2, 5, 6)),
    "group_norm": (lambda: ane.GroupNormOp(x8, *inputs((4,), (4,)), num_groups=2), (1, 4, 8, 8)),
    "l2_norm": (lambda: ane.L2NormOp(x8, axes=[1]), (1, 4, 8, 8)),
    "reshape": (lambda: ane.ReshapeOp(x8, [4, 64]), (4, 64)),
    "transpose": (lambda: ane.TransposeOp(x8, [0, 2, 3, 1]), (1, 8, 8, 4)),
    "slice stepped": (lambda: ane.SliceOp(x8, [0, 1, 0, 2], [1, 4, 8, 8], [1, 2, 3, 1]), (1, 2, 3, 6)),
    "slice end clamped": (lambda: ane.SliceOp(x8, [0, 0, 5, 0], [1, 4, 100, 8]), (1, 4, 3, 8)),
    "pad": (lambda: ane.PadOp(x8, [0, 0, 1, 2, 0, 0, 3, 0], mode="edge"), (1, 4, 12, 10)),
    "tile": (lambda: ane.TileOp(x8, [2, 1, 3, 1]), (2, 4, 24, 8)),
    "broadcast": (lambda: ane.BroadcastOp(*inputs((1, 4, 1)), [3, 4, 5]), (3, 4, 5)),
    "resize": (lambda: ane.ResizeOp(x8, [1, 4, 16, 12], "bilinear", [2.0, 1.5]), (1, 4, 16, 12)),
    "depth_to_space": (lambda: ane.DepthToSpaceOp(x8, 2, "CRD"), (1, 1, 16, 16)),
    "space_to_depth": (lambda: ane.SpaceToDepthOp(x8, 4), (1, 64, 2, 2)),
    "concat": (lambda: ane.ConcatOp(inputs((1, 2, 3), (1, 5, 3)), 1), (1, 7, 3)),
}


@pytest.mark.parametrize("case", SHAPES, ids=list(SHAPES))
def test_builder_infers_the_result_shape_and_verifies(case: str) -> None:
    build, expected = SHAPES[case]
    op = built(build())
    assert shape_of(op.results[0]) == expected
    expected_element = i32 if isinstance(op, ane.ArgReduceOp) else f32
    assert op.results[0].type.element_type == expected_element  # type: ignore[attr-defined]


def test_builders_fill_in_default_properties() -> None:
    conv = built(ane.ConvOp(*inputs((1, 3, 8), (4, 3, 3))))
    assert (as_tuple(conv.strides), as_tuple(conv.pads), as_tuple(conv.dilations), conv.groups.value.data) == ((1,), (0, 0), (1,), 1)
    assert conv.bias is None and conv.activation is None
    pool = built(ane.AvgPoolOp(x8, [2, 2]))
    assert (as_tuple(pool.strides), as_tuple(pool.pads), pool.count_include_pad.value.data) == ((1, 1), (0, 0, 0, 0), 0)
    sdpa = built(ane.SdpaOp(*inputs((1, 5, 16), (1, 7, 16), (1, 7, 4))))
    assert sdpa.scale.value.data == pytest.approx(1 / math.sqrt(16))
    reduce = built(ane.ReduceMaxOp(*inputs((2, 3, 4)), [2, 0]))
    assert as_tuple(reduce.axes) == (0, 2)


def test_element_types_follow_the_operands() -> None:
    a, b = inputs(((2, 3), f16), ((1, 3), f16))
    assert isinstance(built(ane.MulOp(a, b)).result.type.element_type, Float16Type)
    assert built(ane.LessOp(a, b)).result.type.element_type == i1
    cond, = inputs(((2, 1), i1))
    assert shape_of(built(ane.SelectOp(cond, a, b)).result) == (2, 3)
    assert built(ane.ArgmaxOp(a, 1)).result.type.element_type == i32
    assert built(ane.ArgmaxOp(a, 1, index_type=i64)).result.type.element_type == i64
    assert built(ane.CastOp(a, f32)).result.type == tensor((2, 3), f32)
    n, = inputs(((4,), i32))
    assert built(ane.AbsOp(n)).result.type == n.type


def test_split_builds_one_result_per_piece() -> None:
    split = built(ane.SplitOp(x8, 2, [3, 5]))
    assert [shape_of(r) for r in split.outputs] == [(1, 4, 3, 8), (1, 4, 5, 8)]
    assert split.sizes() == (3, 5)


@pytest.mark.parametrize("name", sorted(ane.UNARY_OPS))
def test_every_unary_op_keeps_its_input_type_and_parameters(name: str) -> None:
    cls = ane.UNARY_OPS[name]
    params = {p: 0.25 * (i + 1) for i, p in enumerate(cls.PARAMS)}
    op = built(cls(x8, **params))
    assert op.result.type == x8.type
    assert op.param_values() == tuple(params.values())


def test_gelu_and_softmax_properties() -> None:
    assert built(ane.GeluOp(x8)).approximate.data == "none"
    assert built(ane.GeluOp(x8, "tanh")).approximate.data == "tanh"
    assert built(ane.SoftmaxOp(x8, 3)).axis.value.data == 3


def test_epilogue_activation_is_set_and_cleared() -> None:
    conv = ane.ConvOp(x8, w_grouped, bias6, groups=2)
    conv.set_activation("leaky_relu", [0.1])
    built(conv)
    assert conv.activation.data == "leaky_relu" and as_tuple(conv.activation_params) == pytest.approx((0.1,))
    conv.set_activation("relu")
    assert conv.activation.data == "relu" and conv.activation_params is None
    conv.set_activation(None)
    assert conv.activation is None
    built(conv)


def test_const_holds_a_handle_or_an_inline_value() -> None:
    typ = tensor((2, 2))
    assert built(ane.ConstOp(typ, handle="w")).handle.data == "w"
    inline = built(ane.ConstOp(typ, value=numpy_to_dense(np.eye(2, dtype=np.float32), typ)))
    assert inline.handle is None and inline.result.type == typ


def test_segment_and_yield_build_a_verifying_region() -> None:
    typ = tensor((1, 4))
    func = FuncOp("f", ([typ], [typ]))
    body = Block(arg_types=[typ])
    relu = ane.ReluOp(body.args[0])
    body.add_ops([relu, ane.YieldOp(relu.result)])
    segment = ane.SegmentOp([func.args[0]], [typ], Region(body))
    func.body.block.add_ops([segment, ReturnOp(segment.outputs[0])])
    ModuleOp([func]).verify()


def test_host_op_keeps_source_name_attributes_and_version() -> None:
    x, k = inputs((3, 4), ((1,), i64))
    op = built(host.HostOp("onnx.com.microsoft.FusedMatMul", [x, k], [tensor((3, 2)), tensor((3, 2), i64)],
                           {"alpha": IntegerAttr(2, 64)}, version=1))
    assert (op.source, op.source_op) == ("onnx", "com.microsoft.FusedMatMul")
    assert op.attrs.data["alpha"] == IntegerAttr(2, 64) and op.version.value.data == 1
    assert [shape_of(r) for r in op.outputs] == [(3, 2), (3, 2)]
    assert built(host.HostOp("aten.embedding.default", [x], [x.type])).version is None


# ------------------------------------------------------------------------------------------------
# Errors name the op and say what is wrong
# ------------------------------------------------------------------------------------------------

ERRORS: dict[str, tuple[Callable[[], Operation], str]] = {
    "add shapes": (lambda: ane.AddOp(*inputs((2, 3), (2, 4))), r"ane.add: shapes \[\[2, 3\], \[2, 4\]\] do not broadcast"),
    "matmul contraction": (lambda: ane.MatmulOp(*inputs((2, 3), (4, 5))), r"ane.matmul: contraction sizes differ \(3 vs 4\)"),
    "matmul batch": (lambda: ane.MatmulOp(*inputs((2, 3, 4), (3, 4, 5))), r"ane.matmul batch axes: shapes \[\[2\], \[3\]\] do not broadcast"),
    "conv channels": (lambda: ane.ConvOp(*inputs((1, 4, 8, 8), (6, 3, 3, 3))), r"ane.conv: input has 4 channels, the weight takes 3 per group x 1 groups"),
    "conv kernel too big": (lambda: ane.ConvOp(*inputs((1, 4, 2, 2), (6, 4, 3, 3))), r"ane.conv: the kernel does not fit the padded input \(output \[1, 6, 0, 0\]\)"),
    "pool window": (lambda: ane.MaxPoolOp(*inputs((1, 1, 2, 2)), [3, 3]), r"ane.max_pool: the window does not fit the input"),
    "leaky_relu without alpha": (lambda: ane.LeakyReluOp(x8), r"property 'alpha' expected in operation 'ane.leaky_relu'"),
    "activation parameters": (lambda: _conv_with_activation("clamp", [0.0]), r"ane.conv: activation clamp takes 2 parameters, got 1"),
    "depth_to_space channels": (lambda: ane.DepthToSpaceOp(*inputs((1, 6, 2, 2)), 2), r"ane.depth_to_space: needs NCHW with C divisible by 4"),
    "segment yield types": (lambda: _segment_yielding(tensor((1, 4), f16)), r"ane.segment: yielded types \['tensor<1x4xf16>'\] differ from the result types \['tensor<1x4xf32>'\]"),
    "host op name": (lambda: host.HostOp("TopK", [x8], [x8.type]), r"host.op name 'TopK' must be <source>.<op>"),
}


def _conv_with_activation(name: str, params: list[float]) -> Operation:
    conv = ane.ConvOp(x8, w_grouped, groups=2)
    conv.set_activation(name, params)
    return conv


def _segment_yielding(yielded: Attribute) -> Operation:
    typ = tensor((1, 4))
    body = Block(arg_types=[typ])
    cast = ane.CastOp(body.args[0], yielded.element_type)  # type: ignore[attr-defined]
    body.add_ops([cast, ane.YieldOp(cast.result)])
    return ane.SegmentOp(inputs((1, 4)), [typ], Region(body))


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_invalid_ops_fail_with_a_readable_message(case: str) -> None:
    build, message = ERRORS[case]
    with pytest.raises(VerifyException, match=message):
        built(build())


def test_integer_element_types_are_refused_where_the_math_is_float() -> None:
    n, = inputs(((4,), IntegerType(32)))
    with pytest.raises(VerifyException, match=r"ane.exp needs float tensors, got tensor<4xi32>"):
        built(ane.ExpOp(n))
