"""The IR interpreter against onnx's ReferenceEvaluator (one-node models) or numpy, op by op.

Each test builds a function holding one `ane` op, runs it with `anec.interpreter.interpret`, and
compares with what ONNX's reference implementation computes for the equivalent node. Where ONNX has
no equivalent (rsqrt, not_equal, attention with a transposed layout …) the oracle is numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, f16, f32, i64
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Operation, Region, SSAValue

from anec.dialects import ane, host
from anec.dialects.ane import tensor
from anec.errors import AnecError
from anec.interpreter import input_names, interpret, output_names
from anec.types import xdsl_element_type
from anec.weights import WeightStore, attach, make_const

RNG = np.random.default_rng(0)

Build = Callable[..., Operation | Sequence[Operation]]


def random_cases(max_examples: int) -> Callable:
    """Hypothesis settings: derandomized, so every run checks the same cases."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def random(*shape: int, low: float = -2.0, high: float = 2.0, dtype=np.float32) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(dtype)


def module_for(build: Build, *arrays: np.ndarray) -> ModuleOp:
    """A module whose entry function takes `arrays` and returns the results of the last built op."""
    types = [tensor(a.shape, xdsl_element_type(a.dtype)) for a in arrays]
    block = Block(arg_types=types)
    built = build(*block.args)
    ops = list(built) if isinstance(built, Sequence) else [built]
    results = ops[-1].results
    block.add_ops([*ops, ReturnOp(*results)])
    return ModuleOp([FuncOp("main", (types, [r.type for r in results]), Region(block))])


def run_ane(build: Build, *arrays: np.ndarray, precision: str = "f32") -> list[np.ndarray]:
    return interpret(module_for(build, *arrays), list(arrays), precision=precision)  # type: ignore[arg-type]


def run_onnx(op_type: str, inputs: Sequence[np.ndarray | None], n_outputs: int = 1, opset: int = 23, **attrs) -> list[np.ndarray]:
    """Run one ONNX node in the reference evaluator; a `None` input is an omitted optional input."""
    names = ["" if a is None else f"in{i}" for i, a in enumerate(inputs)]
    outputs = [f"out{i}" for i in range(n_outputs)]
    feeds = {n: a for n, a in zip(names, inputs) if a is not None}
    graph = helper.make_graph(
        [helper.make_node(op_type, names, outputs, **attrs)], "one_node",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(model).run(None, feeds))


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------------
# Elementwise
# ------------------------------------------------------------------------------------------------

X = random(2, 3, 4, 5)
POSITIVE = random(2, 3, 4, 5, low=0.05, high=4.0)

UNARY_VS_ONNX: dict[str, tuple[dict[str, float], np.ndarray, Callable[[np.ndarray], list[np.ndarray]]]] = {
    "relu": ({}, X, lambda x: run_onnx("Relu", [x])),
    "sigmoid": ({}, X * 4, lambda x: run_onnx("Sigmoid", [x])),
    "tanh": ({}, X, lambda x: run_onnx("Tanh", [x])),
    "silu": ({}, X * 4, lambda x: run_onnx("Swish", [x], opset=24, alpha=1.0)),
    "exp": ({}, X, lambda x: run_onnx("Exp", [x])),
    "log": ({}, POSITIVE, lambda x: run_onnx("Log", [x])),
    "sqrt": ({}, POSITIVE, lambda x: run_onnx("Sqrt", [x])),
    "reciprocal": ({}, POSITIVE, lambda x: run_onnx("Reciprocal", [x])),
    "abs": ({}, X, lambda x: run_onnx("Abs", [x])),
    "neg": ({}, X, lambda x: run_onnx("Neg", [x])),
    "softplus": ({}, X * 10, lambda x: run_onnx("Softplus", [x])),
    "hardswish": ({}, X * 3, lambda x: run_onnx("HardSwish", [x])),
    "erf": ({}, X, lambda x: run_onnx("Erf", [x])),
    "sin": ({}, X * 3, lambda x: run_onnx("Sin", [x])),
    "cos": ({}, X * 3, lambda x: run_onnx("Cos", [x])),
    "sign": ({}, np.concatenate([X.ravel()[:-2], [0.0, -0.0]]).astype(np.float32).reshape(X.shape), lambda x: run_onnx("Sign", [x])),
    "leaky_relu": ({"alpha": 0.3}, X, lambda x: run_onnx("LeakyRelu", [x], alpha=0.3)),
    "elu": ({"alpha": 0.7}, X, lambda x: run_onnx("Elu", [x], alpha=0.7)),
    "clamp": ({"min": -0.5, "max": 1.25}, X, lambda x: run_onnx("Clip", [x, np.float32(-0.5), np.float32(1.25)])),
    "hardsigmoid": ({"alpha": 0.25, "beta": 0.4}, X * 3, lambda x: run_onnx("HardSigmoid", [x], alpha=0.25, beta=0.4)),
}


@pytest.mark.parametrize("name", list(UNARY_VS_ONNX))
def test_unary_op_matches_onnx(name: str) -> None:
    params, x, reference = UNARY_VS_ONNX[name]
    (actual,) = run_ane(lambda a: ane.UNARY_OPS[name](a, **params), x)
    assert_close(actual, reference(x)[0], rtol=2e-6, atol=2e-7)


def test_every_unary_op_has_an_oracle() -> None:
    assert set(ane.UNARY_OPS) == set(UNARY_VS_ONNX) | {"gelu", "rsqrt"}


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_onnx(approximate: str) -> None:
    x = X * 3
    (actual,) = run_ane(lambda a: ane.GeluOp(a, approximate), x)
    assert_close(actual, run_onnx("Gelu", [x], opset=20, approximate=approximate)[0], rtol=2e-6, atol=2e-7)


def test_rsqrt_matches_numpy() -> None:
    (actual,) = run_ane(ane.RsqrtOp, POSITIVE)
    assert_close(actual, 1 / np.sqrt(POSITIVE))


def test_integer_abs_and_neg_stay_integer() -> None:
    n = np.array([[-3, 0, 7]], dtype=np.int32)
    assert run_ane(ane.AbsOp, n)[0].tolist() == [[3, 0, 7]]
    (neg,) = run_ane(ane.NegOp, n)
    assert neg.dtype == np.int32 and neg.tolist() == [[3, 0, -7]]


@pytest.mark.parametrize("axis", [0, 1, 3])
def test_softmax_matches_onnx(axis: int) -> None:
    x = X * 5
    (actual,) = run_ane(lambda a: ane.SoftmaxOp(a, axis), x)
    assert_close(actual, run_onnx("Softmax", [x], axis=axis)[0], rtol=1e-6, atol=1e-7)


BINARY_VS_ONNX = {
    ane.AddOp: "Add", ane.SubOp: "Sub", ane.MulOp: "Mul", ane.DivOp: "Div", ane.MaxOp: "Max", ane.MinOp: "Min",
    ane.PowOp: "Pow", ane.EqualOp: "Equal", ane.GreaterOp: "Greater", ane.GreaterEqualOp: "GreaterOrEqual",
    ane.LessOp: "Less", ane.LessEqualOp: "LessOrEqual",
}


@pytest.mark.parametrize("op_class", list(BINARY_VS_ONNX), ids=[c.name for c in BINARY_VS_ONNX])
def test_binary_op_broadcasts_like_onnx(op_class: type[ane.BinaryOp]) -> None:
    a, b = random(2, 1, 4), random(1, 3, 4)
    if op_class is ane.PowOp:
        a = np.abs(a) + 0.1
    b[0, 0, 0] = a[0, 0, 0]  # one tie, so equal/greater_equal/less_equal see both outcomes
    (actual,) = run_ane(op_class, a, b)
    expected = run_onnx(BINARY_VS_ONNX[op_class], [a, b])[0]
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, rtol=1e-6, atol=0)


def test_not_equal_is_the_negation_of_equal() -> None:
    a, b = np.array([[1, 2, 3]], dtype=np.int32), np.array([[1, 0, 3]], dtype=np.int32)
    (actual,) = run_ane(ane.NotEqualOp, a, b)
    assert actual.dtype == np.bool_ and actual.tolist() == [[False, True, False]]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_division_truncates_toward_zero_like_onnx(dtype: type) -> None:
    a = np.array([[7, -7, 7, -7, 0, 6]], dtype=dtype)
    b = np.array([[2, 2, -2, -2, 3, -4]], dtype=dtype)
    (actual,) = run_ane(ane.DivOp, a, b)
    expected = run_onnx("Div", [a, b])[0]
    assert actual.dtype == dtype and actual.tolist() == expected.tolist() == [[3, -3, -3, 3, 0, -1]]


def test_select_broadcasts_like_onnx_where() -> None:
    cond = RNG.random((2, 1, 4)) > 0.5
    a, b = random(1, 3, 4), random(2, 3, 1)
    (actual,) = run_ane(ane.SelectOp, cond, a, b)
    assert_close(actual, run_onnx("Where", [cond, a, b])[0], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# Convolution, matmul, attention
# ------------------------------------------------------------------------------------------------


def conv_case(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: list[int], pads: list[int], dilations: list[int],
              groups: int) -> None:
    args = [x, w] if bias is None else [x, w, bias]
    (actual,) = run_ane(lambda *v: ane.ConvOp(*v, strides=strides, pads=pads, dilations=dilations, groups=groups), *args)
    expected = run_onnx("Conv", args, strides=strides, pads=pads, dilations=dilations, group=groups)[0]
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strides, pads, dilations, groups", [
    ([1, 1], [0, 0, 0, 0], [1, 1], 1),
    ([2, 1], [1, 2, 0, 1], [1, 1], 2),
    ([1, 2], [2, 2, 2, 2], [2, 3], 1),
    ([2, 2], [1, 1, 1, 1], [1, 1], 6),  # depthwise
    ([3, 1], [0, 1, 2, 0], [2, 1], 3),
])
def test_conv_matches_onnx(strides: list[int], pads: list[int], dilations: list[int], groups: int) -> None:
    conv_case(random(2, 6, 9, 11), random(12, 6 // groups, 3, 2), random(12), strides, pads, dilations, groups)


@pytest.mark.parametrize("strides, pads, dilations, groups", [([1], [0, 0], [1], 1), ([2], [3, 1], [2], 2), ([1], [1, 1], [1], 4)])
def test_conv_1d_matches_onnx(strides: list[int], pads: list[int], dilations: list[int], groups: int) -> None:
    conv_case(random(1, 4, 13), random(8, 4 // groups, 3), None, strides, pads, dilations, groups)


@random_cases(max_examples=30)
@given(data=st.data())
def test_random_convolutions_match_onnx(data: st.DataObject) -> None:
    rank = data.draw(st.sampled_from([1, 2]), "spatial rank")
    groups = data.draw(st.sampled_from([1, 2, 3]), "groups")
    cin, cout = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 3))
    kernel = [data.draw(st.integers(1, 4)) for _ in range(rank)]
    dilations = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    pads = [data.draw(st.integers(0, 2)) for _ in range(2 * rank)]
    spatial = [data.draw(st.integers(d * (k - 1) + 1, 12)) for k, d in zip(kernel, dilations)]
    bias = random(cout) if data.draw(st.booleans(), "bias") else None
    conv_case(random(1, cin, *spatial), random(cout, cin // groups, *kernel), bias, strides, pads, dilations, groups)


def conv_transpose_case(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: list[int], pads: list[int],
                        dilations: list[int], groups: int, output_padding: list[int]) -> None:
    args = [x, w] if bias is None else [x, w, bias]
    (actual,) = run_ane(lambda *v: ane.ConvTransposeOp(*v, strides=strides, pads=pads, dilations=dilations, groups=groups,
                                                       output_padding=output_padding), *args)
    expected = np.concatenate([  # onnx's reference ConvTranspose mis-slices group > 1, so run one group at a time
        run_onnx("ConvTranspose", [xg, wg] + ([] if bias is None else [bg]), strides=strides, pads=pads, dilations=dilations,
                 output_padding=output_padding)[0]
        for xg, wg, bg in zip(np.split(x, groups, axis=1), np.split(w, groups, axis=0),
                              np.split(bias if bias is not None else np.zeros(w.shape[1] * groups, np.float32), groups))
    ], axis=1)
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strides, pads, dilations, groups, output_padding", [
    ([1, 1], [0, 0, 0, 0], [1, 1], 1, [0, 0]),
    ([2, 2], [0, 0, 0, 0], [1, 1], 2, [1, 1]),
    ([2, 3], [1, 0, 0, 2], [1, 2], 1, [1, 2]),
    ([2, 2], [1, 1, 1, 1], [2, 1], 4, [0, 1]),
])
def test_conv_transpose_matches_onnx(strides: list[int], pads: list[int], dilations: list[int], groups: int,
                                     output_padding: list[int]) -> None:
    conv_transpose_case(random(2, 4, 5, 6), random(4, 3, 3, 2), random(3 * groups), strides, pads, dilations, groups, output_padding)


def test_conv_transpose_1d_matches_onnx() -> None:
    conv_transpose_case(random(1, 4, 7), random(4, 3, 3), None, [3], [1, 0], [2], 2, [2])


@random_cases(max_examples=25)
@given(data=st.data())
def test_random_transposed_convolutions_match_onnx(data: st.DataObject) -> None:
    rank = data.draw(st.sampled_from([1, 2]), "spatial rank")
    groups = data.draw(st.sampled_from([1, 2]), "groups")
    cin, cout_per_group = groups * data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(rank)]
    output_padding = [data.draw(st.integers(0, s - 1)) for s in strides]
    pads = [data.draw(st.integers(0, 1)) for _ in range(2 * rank)]
    x = random(1, cin, *[data.draw(st.integers(2, 5)) for _ in range(rank)])
    conv_transpose_case(x, random(cin, cout_per_group, *kernel), None, strides, pads, dilations, groups, output_padding)


def test_conv_epilogue_applies_bias_then_activation() -> None:
    x, w, b = random(1, 3, 6, 6), random(4, 3, 3, 3), random(4)

    def build(*v: SSAValue) -> Operation:
        conv = ane.ConvOp(*v, pads=[1, 1, 1, 1])
        conv.set_activation("clamp", [-0.5, 0.75])
        return conv

    (actual,) = run_ane(build, x, w, b)
    expected = np.clip(run_onnx("Conv", [x, w, b], pads=[1, 1, 1, 1])[0], -0.5, 0.75)
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert (actual == 0.75).any() and (actual == -0.5).any()  # the clamp actually bit


@pytest.mark.parametrize("transpose_lhs, transpose_rhs", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_with_transposes_and_bias_matches_onnx_gemm(transpose_lhs: bool, transpose_rhs: bool) -> None:
    a = random(*((4, 3) if transpose_lhs else (3, 4)))
    b = random(*((5, 4) if transpose_rhs else (4, 5)))
    bias = random(5)
    (actual,) = run_ane(lambda *v: ane.MatmulOp(*v, transpose_lhs=transpose_lhs, transpose_rhs=transpose_rhs), a, b, bias)
    expected = run_onnx("Gemm", [a, b, bias], transA=int(transpose_lhs), transB=int(transpose_rhs))[0]
    assert_close(actual, expected)


def test_batched_matmul_broadcasts_like_onnx_and_applies_its_activation() -> None:
    a, b = random(2, 1, 3, 4), random(1, 5, 4, 6)

    def build(*v: SSAValue) -> Operation:
        mm = ane.MatmulOp(*v)
        mm.set_activation("gelu")
        return mm

    (actual,) = run_ane(build, a, b)
    expected = run_onnx("Gelu", [run_onnx("MatMul", [a, b])[0]], opset=20)[0]
    assert_close(actual, expected)


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_onnx_attention(masked: bool) -> None:
    q, k, v = random(2, 3, 5, 8), random(2, 3, 7, 8), random(2, 3, 7, 4)
    mask = np.where(RNG.random((1, 1, 5, 7)) < 0.3, -1e4, 0.0).astype(np.float32) if masked else None
    args = [q, k, v] + ([mask] if masked else [])
    (actual,) = run_ane(lambda *vals: ane.SdpaOp(*vals, scale=0.3), *args)
    expected = run_onnx("Attention", args, scale=0.3)[0]
    assert_close(actual, expected)
    if masked:
        unmasked = run_ane(lambda *vals: ane.SdpaOp(*vals, scale=0.3), q, k, v)[0]
        assert not np.allclose(actual, unmasked)  # the mask changed the result


def test_sdpa_default_scale_is_one_over_root_depth() -> None:
    q, k, v = random(1, 4, 16), random(1, 6, 16), random(1, 6, 2)
    (actual,) = run_ane(ane.SdpaOp, q, k, v)
    scores = q @ k.transpose(0, 2, 1) / 4.0
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    assert_close(actual, weights / weights.sum(-1, keepdims=True) @ v)


# ------------------------------------------------------------------------------------------------
# Reductions, pooling, normalization
# ------------------------------------------------------------------------------------------------

REDUCE_VS_ONNX = {
    ane.ReduceSumOp: "ReduceSum", ane.ReduceMeanOp: "ReduceMean", ane.ReduceMaxOp: "ReduceMax",
    ane.ReduceMinOp: "ReduceMin", ane.ReduceL2Op: "ReduceL2", ane.ReduceLogSumExpOp: "ReduceLogSumExp",
}


@pytest.mark.parametrize("axes, keepdims", [([1], True), ([0, 2], False), ([0, 1, 2, 3], True), ([3], False)])
@pytest.mark.parametrize("op_class", list(REDUCE_VS_ONNX), ids=[c.name for c in REDUCE_VS_ONNX])
def test_reduction_matches_onnx(op_class: type[ane.ReduceOp], axes: list[int], keepdims: bool) -> None:
    (actual,) = run_ane(lambda a: op_class(a, axes, keepdims), X)
    expected = run_onnx(REDUCE_VS_ONNX[op_class], [X, ints(*axes)], keepdims=int(keepdims))[0]
    assert_close(actual, expected)


def test_integer_sum_stays_exact() -> None:
    n = np.array([[2**24, 1, 1]], dtype=np.int32)
    (actual,) = run_ane(lambda a: ane.ReduceSumOp(a, [1]), n)
    assert actual.dtype == np.int32 and actual.tolist() == [[2**24 + 2]]


@pytest.mark.parametrize("op_class, onnx_op", [(ane.ArgmaxOp, "ArgMax"), (ane.ArgminOp, "ArgMin")])
@pytest.mark.parametrize("axis, keepdims, select_last_index", [(1, True, False), (1, True, True), (2, False, True), (0, False, False)])
def test_arg_reduction_matches_onnx_including_ties(op_class: type[ane.ArgReduceOp], onnx_op: str, axis: int, keepdims: bool,
                                                  select_last_index: bool) -> None:
    x = RNG.integers(0, 3, (3, 4, 5)).astype(np.float32)  # small range: many ties
    (actual,) = run_ane(lambda a: op_class(a, axis, keepdims, select_last_index), x)
    expected = run_onnx(onnx_op, [x], axis=axis, keepdims=int(keepdims), select_last_index=int(select_last_index))[0]
    assert actual.dtype == np.int32
    assert actual.shape == expected.shape and actual.tolist() == expected.tolist()


def test_select_last_index_changes_the_answer_on_ties() -> None:
    x = np.array([[1.0, 3.0, 3.0, 0.0]], dtype=np.float32)
    first = run_ane(lambda a: ane.ArgmaxOp(a, 1, keepdims=False), x)[0]
    last = run_ane(lambda a: ane.ArgmaxOp(a, 1, keepdims=False, select_last_index=True), x)[0]
    assert (first.tolist(), last.tolist()) == ([1], [2])


@pytest.mark.parametrize("k, axis, largest", [(3, 2, True), (3, 2, False), (1, 2, True), (5, 2, False), (2, 0, True), (4, 1, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_topk_matches_onnx_including_ties(k: int, axis: int, largest: bool, dtype: type) -> None:
    """Values and indices as ONNX TopK gives them: sorted, equal values by lower index first, over
    negative values and signed zeros; k = 1 and k = N (a sort) included."""
    x = (RNG.integers(-3, 3, (3, 4, 5)) * 0.5).astype(dtype)  # small range: many ties
    x[0, 0, :2] = (-0.0, 0.0)
    values, indices = run_ane(lambda a: ane.TopkOp(a, k, axis, largest), x)
    expected_values, expected_indices = run_onnx("TopK", [x, ints(k)], n_outputs=2, axis=axis, largest=int(largest))
    assert indices.dtype == np.int32 and values.dtype == dtype
    assert indices.tolist() == expected_indices.tolist()
    assert values.tolist() == expected_values.tolist()


POOL_VS_ONNX: dict[type[ane.PoolOp], tuple[str, dict]] = {
    ane.MaxPoolOp: ("MaxPool", {}),
    ane.AvgPoolOp: ("AveragePool", {}),
    ane.L2PoolOp: ("LpPool", {"p": 2}),
}


def pool_case(op_class: type[ane.PoolOp], x: np.ndarray, kernel: list[int], strides: list[int], pads: list[int],
              count_include_pad: bool = False) -> None:
    extra = {"count_include_pad": count_include_pad} if op_class is ane.AvgPoolOp else {}
    (actual,) = run_ane(lambda a: op_class(a, kernel, strides, pads, **extra), x)
    onnx_op, attrs = POOL_VS_ONNX[op_class]
    if op_class is ane.AvgPoolOp:
        attrs = {"count_include_pad": int(count_include_pad)}
    if op_class is ane.MaxPoolOp:  # onnx's reference MaxPool miscounts windows with asymmetric pads: pad with -inf first
        k = len(kernel)
        x = np.pad(x, [(0, 0), (0, 0), *zip(pads[:k], pads[k:])], constant_values=-np.inf)
        pads = [0] * 2 * k
    expected = run_onnx(onnx_op, [x], kernel_shape=kernel, strides=strides, pads=pads, **attrs)[0]
    assert_close(actual, expected)


@pytest.mark.parametrize("kernel, strides, pads", [([2, 2], [2, 2], [0, 0, 0, 0]), ([3, 2], [1, 2], [1, 0, 2, 1]), ([3], [2], [1, 2])])
@pytest.mark.parametrize("op_class", list(POOL_VS_ONNX), ids=[c.name for c in POOL_VS_ONNX])
def test_pool_matches_onnx(op_class: type[ane.PoolOp], kernel: list[int], strides: list[int], pads: list[int]) -> None:
    x = random(2, 3, 7, 8) if len(kernel) == 2 else random(2, 3, 9)
    pool_case(op_class, x, kernel, strides, pads)


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("shape, kernel, pads", [((1, 2, 5, 5), [3, 3], [1, 1, 2, 2]), ((1, 2, 6), [3], [2, 1])])
def test_avg_pool_divisor_follows_count_include_pad(shape: tuple[int, ...], kernel: list[int], pads: list[int],
                                                    count_include_pad: bool) -> None:
    pool_case(ane.AvgPoolOp, random(*shape, low=1.0, high=2.0), kernel, [1] * len(kernel), pads, count_include_pad)


@random_cases(max_examples=30)
@given(data=st.data())
def test_random_pools_match_onnx(data: st.DataObject) -> None:
    op_class = data.draw(st.sampled_from(list(POOL_VS_ONNX)), "op")
    rank = data.draw(st.sampled_from([1, 2]), "spatial rank")
    kernel = [data.draw(st.integers(1, 4)) for _ in range(rank)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]
    x = random(1, 2, *[data.draw(st.integers(k, 9)) for k in kernel])
    pool_case(op_class, x, kernel, strides, pads, data.draw(st.booleans(), "count_include_pad"))


def test_global_pools_match_onnx() -> None:
    x = random(2, 3, 4, 5)
    assert_close(run_ane(ane.GlobalAvgPoolOp, x)[0], run_onnx("GlobalAveragePool", [x])[0])
    assert_close(run_ane(ane.GlobalMaxPoolOp, x)[0], run_onnx("GlobalMaxPool", [x])[0])


def test_global_pools_1d_match_numpy() -> None:  # onnx's reference GlobalMaxPool mishandles NCW
    x = random(2, 3, 7)
    assert_close(run_ane(ane.GlobalAvgPoolOp, x)[0], x.mean(axis=2, keepdims=True))
    assert_close(run_ane(ane.GlobalMaxPoolOp, x)[0], x.max(axis=2, keepdims=True))


@pytest.mark.parametrize("axes", [[2], [1, 2]])
def test_layer_norm_matches_onnx(axes: list[int]) -> None:
    x, scale, bias = random(2, 5, 6) * 3 + 1, random(*[(2, 5, 6)[a] for a in axes]), random(*[(2, 5, 6)[a] for a in axes])
    (actual,) = run_ane(lambda *v: ane.LayerNormOp(*v, axes=axes, epsilon=1e-3), x, scale, bias)
    expected = run_onnx("LayerNormalization", [x, scale, bias], axis=axes[0], epsilon=1e-3)[0]
    assert_close(actual, expected)


@pytest.mark.parametrize("shape", [(2, 4, 3, 5), (2, 4, 6)])
def test_instance_norm_matches_onnx(shape: tuple[int, ...]) -> None:
    x, scale, bias = random(*shape) * 2 + 1, random(4), random(4)
    (actual,) = run_ane(lambda *v: ane.InstanceNormOp(*v, epsilon=1e-4), x, scale, bias)
    assert_close(actual, run_onnx("InstanceNormalization", [x, scale, bias], epsilon=1e-4)[0])


@pytest.mark.parametrize("num_groups", [1, 2, 6])
def test_group_norm_matches_onnx(num_groups: int) -> None:
    x, scale, bias = random(2, 6, 3, 4) * 2 + 1, random(6), random(6)
    (actual,) = run_ane(lambda *v: ane.GroupNormOp(*v, num_groups=num_groups, epsilon=1e-4), x, scale, bias)
    assert_close(actual, run_onnx("GroupNormalization", [x, scale, bias], opset=21, num_groups=num_groups, epsilon=1e-4)[0])


@pytest.mark.parametrize("axis", [1, 3])
def test_l2_norm_matches_onnx(axis: int) -> None:
    (actual,) = run_ane(lambda a: ane.L2NormOp(a, axes=[axis]), X)
    assert_close(actual, run_onnx("LpNormalization", [X], axis=axis, p=2)[0])


def test_l2_norm_of_zeros_is_zero_not_nan() -> None:
    x = np.zeros((1, 4), np.float32)
    (actual,) = run_ane(lambda a: ane.L2NormOp(a, axes=[1]), x)
    assert actual.tolist() == [[0.0] * 4]


# ------------------------------------------------------------------------------------------------
# Data movement
# ------------------------------------------------------------------------------------------------


def test_reshape_transpose_tile_broadcast_match_onnx() -> None:
    x = random(2, 3, 4)
    assert_close(run_ane(lambda a: ane.ReshapeOp(a, [4, 6]), x)[0], run_onnx("Reshape", [x, ints(4, 6)])[0], rtol=0, atol=0)
    assert_close(run_ane(lambda a: ane.TransposeOp(a, [2, 0, 1]), x)[0], run_onnx("Transpose", [x], perm=[2, 0, 1])[0], rtol=0, atol=0)
    assert_close(run_ane(lambda a: ane.TileOp(a, [2, 1, 3]), x)[0], run_onnx("Tile", [x, ints(2, 1, 3)])[0], rtol=0, atol=0)
    y = random(1, 3, 1)
    assert_close(run_ane(lambda a: ane.BroadcastOp(a, [2, 3, 5]), y)[0], run_onnx("Expand", [y, ints(2, 3, 5)])[0], rtol=0, atol=0)


@pytest.mark.parametrize("starts, ends, steps", [([0, 1, 0], [2, 3, 4], [1, 1, 1]), ([1, 0, 1], [2, 3, 100], [1, 2, 2]), ([0, 2, 3], [1, 3, 4], [2, 5, 1])])
def test_slice_matches_onnx(starts: list[int], ends: list[int], steps: list[int]) -> None:
    x = random(2, 3, 4)
    (actual,) = run_ane(lambda a: ane.SliceOp(a, starts, ends, steps), x)
    expected = run_onnx("Slice", [x, ints(*starts), ints(*ends), ints(0, 1, 2), ints(*steps)])[0]
    assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("mode, value", [("constant", 0.0), ("constant", -1.5), ("reflect", 0.0), ("edge", 0.0)])
def test_pad_matches_onnx(mode: str, value: float) -> None:
    x, pads = random(1, 2, 4, 5), [0, 1, 2, 3, 0, 0, 3, 1]
    (actual,) = run_ane(lambda a: ane.PadOp(a, pads, mode, value), x)
    expected = run_onnx("Pad", [x, ints(*pads), np.float32(value)], mode=mode)[0]
    assert_close(actual, expected, rtol=0, atol=0)


# Output extents are whole (in x scale): for fractional ones onnx's reference evaluator divides by the
# fractional extent in align_corners mode, unlike onnxruntime and PyTorch (see the corner test below).
RESIZE_CASES = [
    ((1, 2, 4, 5), [2.0, 3.0]),  # integer upsampling
    ((1, 2, 6, 6), [0.5, 1.5]),  # downsampling and a fractional factor
    ((2, 3, 8), [1.75]),  # 1-D
    ((1, 2, 4, 3), [0.25, 2.0]),  # down to a single row, where the coordinate modes special-case length 1
]
RESIZE_IDS = ["up", "down-and-fractional", "1d", "to-one"]


@pytest.mark.parametrize("shape, scales", RESIZE_CASES, ids=RESIZE_IDS)
@pytest.mark.parametrize("coordinate_mode", ane.ResizeOp.COORDINATE_MODES)
@pytest.mark.parametrize("nearest_mode", ane.ResizeOp.NEAREST_MODES)
def test_nearest_resize_matches_onnx(shape: tuple[int, ...], scales: list[float], coordinate_mode: str, nearest_mode: str) -> None:
    resize_case(shape, scales, "nearest", coordinate_mode, nearest_mode)


@pytest.mark.parametrize("shape, scales", RESIZE_CASES, ids=RESIZE_IDS)
@pytest.mark.parametrize("coordinate_mode", ane.ResizeOp.COORDINATE_MODES)
def test_bilinear_resize_matches_onnx(shape: tuple[int, ...], scales: list[float], coordinate_mode: str) -> None:
    resize_case(shape, scales, "bilinear", coordinate_mode, "round_prefer_floor")


def resize_case(shape: tuple[int, ...], scales: list[float], mode: str, coordinate_mode: str, nearest_mode: str) -> None:
    x = random(*shape)
    k = len(scales)
    out_shape = [*shape[:-k], *(int(np.floor(d * s)) for d, s in zip(shape[-k:], scales))]
    (actual,) = run_ane(lambda a: ane.ResizeOp(a, out_shape, mode, scales, coordinate_mode, nearest_mode), x)
    all_scales = np.array([1.0] * (len(shape) - k) + scales, dtype=np.float32)
    expected = run_onnx("Resize", [x, None, all_scales], mode="linear" if mode == "bilinear" else "nearest",
                        coordinate_transformation_mode=coordinate_mode, nearest_mode=nearest_mode)[0]
    assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode, nearest_mode", [("nearest", "floor"), ("nearest", "ceil"), ("bilinear", "floor")])
def test_align_corners_hits_both_corners_for_a_fractional_scale(mode: str, nearest_mode: str) -> None:
    x = random(1, 1, 7)
    (actual,) = run_ane(lambda a: ane.ResizeOp(a, [1, 1, 12], mode, [1.75], "align_corners", nearest_mode), x)
    assert (actual[0, 0, 0], actual[0, 0, -1]) == (x[0, 0, 0], x[0, 0, -1])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_matches_onnx(mode: str) -> None:
    x = random(2, 12, 3, 4)
    (actual,) = run_ane(lambda a: ane.DepthToSpaceOp(a, 2, mode), x)
    assert_close(actual, run_onnx("DepthToSpace", [x], blocksize=2, mode=mode)[0], rtol=0, atol=0)


def test_depth_to_space_modes_differ_and_space_to_depth_inverts_dcr() -> None:
    x = random(1, 8, 2, 3)
    dcr, crd = (run_ane(lambda a, m=m: ane.DepthToSpaceOp(a, 2, m), x)[0] for m in ("DCR", "CRD"))
    assert not np.array_equal(dcr, crd)
    assert_close(run_ane(lambda a: ane.SpaceToDepthOp(a, 2), dcr)[0], x, rtol=0, atol=0)


def test_space_to_depth_matches_onnx() -> None:
    x = random(2, 3, 6, 9)
    (actual,) = run_ane(lambda a: ane.SpaceToDepthOp(a, 3), x)
    assert_close(actual, run_onnx("SpaceToDepth", [x], blocksize=3)[0], rtol=0, atol=0)


@pytest.mark.parametrize("source, target, onnx_to", [
    (np.float32, f16, TensorProto.FLOAT16), (np.float32, i64, TensorProto.INT64), (np.bool_, f32, TensorProto.FLOAT),
])
def test_cast_matches_onnx(source: type, target, onnx_to: int) -> None:
    x = (random(3, 4) * 100).astype(source) if source is not np.bool_ else RNG.random((3, 4)) > 0.5
    (actual,) = run_ane(lambda a: ane.CastOp(a, target), x)
    expected = run_onnx("Cast", [x], to=onnx_to)[0]
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, rtol=0, atol=0)


def test_concat_and_split_match_onnx() -> None:
    a, b, c = random(2, 1, 3), random(2, 4, 3), random(2, 2, 3)
    (joined,) = run_ane(lambda *v: ane.ConcatOp(v, 1), a, b, c)
    assert_close(joined, run_onnx("Concat", [a, b, c], axis=1)[0], rtol=0, atol=0)
    pieces = run_ane(lambda v: ane.SplitOp(v, 1, [1, 4, 2]), joined)
    expected = run_onnx("Split", [joined, ints(1, 4, 2)], n_outputs=3, axis=1)
    for actual, piece in zip(pieces, expected, strict=True):
        assert_close(actual, piece, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# Constants, host ops, segments, function boundaries
# ------------------------------------------------------------------------------------------------


def test_constants_come_inline_or_from_the_attached_weight_store() -> None:
    store = WeightStore()
    big, small = random(4, 5), np.array([1.0, -2.0, 3.0, 0.5, 0.0], np.float32)
    big_const, small_const = make_const(big, "big", store), make_const(small, "small", store)
    assert big_const.handle is not None and small_const.value is not None
    x = random(3, 4)

    def build(a: SSAValue) -> list[Operation]:
        mm = ane.MatmulOp(a, big_const.result, small_const.result)
        return [big_const, small_const, mm]

    module = module_for(build, x)
    attach(module, store)
    (actual,) = interpret(module, [x])
    assert_close(actual, x @ big + small)


def test_host_op_runs_through_onnx() -> None:
    x, k = random(3, 6), ints(2)

    def build(a: SSAValue, kk: SSAValue) -> Operation:
        attrs = {"axis": IntegerAttr(1, 64), "largest": IntegerAttr(0, 64)}
        return host.HostOp("onnx.TopK", [a, kk], [tensor((3, 2)), tensor((3, 2), i64)], attrs, version=11)

    values, indices = run_ane(build, x, k)
    expected_values, expected_indices = run_onnx("TopK", [x, k], n_outputs=2, axis=1, largest=0)
    assert_close(values, expected_values, rtol=0, atol=0)
    assert indices.dtype == np.int64 and indices.tolist() == expected_indices.tolist()
    assert values.tolist() == np.sort(x, axis=1)[:, :2].tolist()


def test_unknown_host_source_is_an_anec_error() -> None:
    x = random(2)
    with pytest.raises(AnecError, match=r"no CPU runner for mxnet\.Foo"):
        run_ane(lambda a: host.HostOp("mxnet.Foo", [a], [a.type]), x)


def segment_module(x_type, ops_inside: Callable[[SSAValue], list[Operation]]) -> ModuleOp:
    """main(x) = segment(x) { cast to f16; ops; cast back to f32 }, as the partition and fp16 passes build it."""
    func = FuncOp("main", ([x_type], [x_type]))
    body = Block(arg_types=[x_type])
    to_half = ane.CastOp(body.args[0], f16)
    inner = ops_inside(to_half.result)
    to_full = ane.CastOp(inner[-1].results[0], f32)
    body.add_ops([to_half, *inner, to_full, ane.YieldOp(to_full.result)])
    segment = ane.SegmentOp([func.args[0]], [x_type], Region(body))
    func.body.block.add_ops([segment, ReturnOp(segment.outputs[0])])
    return ModuleOp([func])


def test_segment_runs_its_body_in_fp16() -> None:
    x = random(2, 8, low=0.0, high=3.0)
    module = segment_module(tensor(x.shape), lambda v: [ane.ExpOp(v)])
    (actual,) = interpret(module, [x])
    assert actual.dtype == np.float32
    assert_close(actual, np.exp(x.astype(np.float16).astype(np.float32)).astype(np.float16).astype(np.float32), rtol=0, atol=0)
    assert not np.array_equal(actual, np.exp(x))  # fp16 storage shows


def test_several_ops_chain_through_values() -> None:
    a, b = random(2, 3), random(2, 3)
    (actual,) = run_ane(lambda x, y: [s := ane.SubOp(x, y), m := ane.MulOp(s.result, s.result), ane.ReduceSumOp(m.result, [1])], a, b)
    assert_close(actual, ((a - b) ** 2).sum(axis=1, keepdims=True))


def test_inputs_bind_by_name_and_shapes_are_checked() -> None:
    module = module_for(ane.SubOp, random(2), random(2))
    fn = next(iter(module.ops))
    assert isinstance(fn, FuncOp)
    fn.arg_attrs = onnx_names_attr(["first", "second"])
    assert input_names(fn) == ["first", "second"] and output_names(fn) == ["out0"]
    (actual,) = interpret(module, {"second": np.ones(2, np.float32), "first": np.full(2, 3.0, np.float32)})
    assert actual.tolist() == [2.0, 2.0]
    with pytest.raises(AnecError, match="missing input 'second'"):
        interpret(module, {"first": np.ones(2, np.float32)})
    with pytest.raises(AnecError, match=r"input 'first' has shape \[3\], the model expects \[2\]"):
        interpret(module, [np.ones(3, np.float32), np.ones(2, np.float32)])
    with pytest.raises(AnecError, match="expected 2 inputs, got 1"):
        interpret(module, [np.ones(2, np.float32)])


def onnx_names_attr(names: list[str]):
    from xdsl.dialects.builtin import ArrayAttr, StringAttr

    return ArrayAttr([DictionaryAttr({"ane.name": StringAttr(n)}) for n in names])


# ------------------------------------------------------------------------------------------------
# fp16 mode
# ------------------------------------------------------------------------------------------------


def fp16_round(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("op_class", [ane.ExpOp, ane.SigmoidOp, ane.TanhOp, ane.SqrtOp])
def test_fp16_of_one_elementwise_op_is_the_fp16_rounding_of_its_f32_result(op_class: type[ane.UnaryOp]) -> None:
    x = fp16_round(random(4, 64, low=0.0, high=4.0))  # inputs exactly representable in fp16
    (full,) = run_ane(op_class, x)
    (half,) = run_ane(op_class, x, precision="f16")
    assert half.dtype == np.float32  # results keep the declared type at the function boundary
    assert np.array_equal(half, fp16_round(full))
    assert not np.array_equal(half, full)


def test_fp16_of_a_binary_op_rounds_the_inputs_then_the_result() -> None:
    a, b = random(3, 50), random(3, 50)
    (half,) = run_ane(ane.AddOp, a, b, precision="f16")
    assert np.array_equal(half, fp16_round(fp16_round(a) + fp16_round(b)))


def test_fp16_of_a_graph_differs_from_f32_by_fp16_rounding_only() -> None:
    x, w = random(1, 8, 10, 10), random(16, 8, 3, 3) * 0.2

    def build(a: SSAValue, b: SSAValue) -> list[Operation]:
        conv = ane.ConvOp(a, b, pads=[1, 1, 1, 1])
        act = ane.GeluOp(conv.result)
        return [conv, act, ane.SoftmaxOp(act.result, 1)]

    (full,) = run_ane(build, x, w)
    (half,) = run_ane(build, x, w, precision="f16")
    eps16 = float(np.finfo(np.float16).eps)
    np.testing.assert_allclose(half, full, rtol=8 * eps16, atol=1e-3)
    assert not np.array_equal(half, full)


def test_fp16_mode_leaves_integer_tensors_alone() -> None:
    n = np.array([[70000, -3]], dtype=np.int32)  # 70000 overflows fp16
    assert run_ane(ane.AbsOp, n, precision="f16")[0].tolist() == [[70000, 3]]
