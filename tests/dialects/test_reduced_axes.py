"""Which axes an op reduces is answered by the op (`ane.reduced_axes`), and legality asks it: an
axis too long for the chip is refused as a reduction exactly when the op reduces over it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from xdsl.dialects.builtin import f32
from xdsl.ir import Operation, SSAValue

from anec.dialects import ane
from anec.dialects.ane import Reduces, reduced_axes, tensor
from anec.legality import legality
from anec.targets import get_target

M1 = get_target("m1")
LONG = {1: M1.limits.max_channels.value + 1, 2: M1.limits.max_spatial.value + 1, 3: M1.limits.max_spatial.value + 1}
"""Per axis, an extent one past what the M1 allows there."""
SHAPE = (1, 8, 4, 16)


def value(shape: tuple[int, ...]) -> SSAValue:
    return ane.ConstOp.create(result_types=[tensor(shape, f32)]).results[0]


def affine(cls: type[ane.AffineNormOp], **kw: object) -> Callable[[SSAValue], Operation]:
    def build(x: SSAValue) -> Operation:
        n = ane.shape_of(x)[1]
        return cls(x, value((n,)), value((n,)), **kw)  # type: ignore[arg-type]
    return build


REDUCING: dict[str, tuple[Callable[[SSAValue], Operation], tuple[int, ...]]] = {
    "softmax": (lambda x: ane.SoftmaxOp(x, 3), (3,)),
    "reduce_sum": (lambda x: ane.ReduceSumOp(x, [2, 3]), (2, 3)),
    "argmax": (lambda x: ane.ArgmaxOp(x, 1), (1,)),
    "topk": (lambda x: ane.TopkOp(x, 1, 2), (2,)),
    "layer_norm": (lambda x: ane.LayerNormOp(x, value((ane.shape_of(x)[3],)), value((ane.shape_of(x)[3],)), axes=[3]), (3,)),
    "l2_norm": (lambda x: ane.L2NormOp(x, axes=[1]), (1,)),
    "instance_norm": (affine(ane.InstanceNormOp), (2, 3)),
    "group_norm": (affine(ane.GroupNormOp, num_groups=2), (1, 2, 3)),
}


@pytest.mark.parametrize("name", REDUCING)
def test_each_reducing_op_names_its_axes(name: str) -> None:
    build, axes = REDUCING[name]
    assert reduced_axes(build(value(SHAPE))) == axes


def test_every_op_that_computes_a_statistic_says_so() -> None:
    reducing = {cls.name for cls in ane.ANE.operations if issubclass(cls, Reduces)}
    statistic = {cls.name for cls in ane.ANE.operations
                 if any(word in cls.name for word in ("reduce_", "norm", "softmax", "argmax", "argmin", "topk"))}
    assert reducing == statistic
    assert reduced_axes(ane.ReluOp(value(SHAPE))) == ()


@pytest.mark.parametrize("name", REDUCING)
@pytest.mark.parametrize("axis", [1, 2, 3])
def test_legality_refuses_a_long_axis_as_a_reduction_exactly_when_the_op_reduces_it(name: str, axis: int) -> None:
    build, axes = REDUCING[name]
    shape = list(SHAPE)
    shape[axis] = LONG[axis]
    verdict = legality(build(value(tuple(shape))), M1)
    refused_as_reduction = not verdict and verdict.rule == "reduced-dims"
    assert refused_as_reduction == (axis in axes)
