"""`legality(op, target)`: a verdict with a reason for every op class on every chip, and the rules
that differ between chips or between the partitioner's and the post-tiling verifier's view."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from xdsl.dialects.builtin import f16, f32, i1, i64
from xdsl.ir import Block, Operation, Region, SSAValue

from anec.dialects import ane, host
from anec.dialects.ane import tensor
from anec.legality import Legality, legality
from anec.targets import TARGETS, Target, get_target
from anec.types import xdsl_element_type
from anec.weights import WeightStore, make_const

STORE = WeightStore()


def values_of(*shapes: tuple[int, ...] | tuple[tuple[int, ...], object]) -> list[SSAValue]:
    types = [tensor(*s) if isinstance(s[0], tuple) else tensor(s) for s in shapes]  # type: ignore[arg-type]
    return list(Block(arg_types=types).args)


def weight(*shape: int, dtype=np.float32) -> SSAValue:
    return make_const(np.ones(shape, dtype), "w", STORE, xdsl_element_type(dtype)).result


x4, x3 = values_of((1, 8, 16, 16), (1, 8, 32))
vec8, mask = values_of((8,), ((1, 8, 16, 16), i1))


def segment() -> Operation:
    body = Block(arg_types=[x4.type])
    relu = ane.ReluOp(body.args[0])
    body.add_ops([relu, ane.YieldOp(relu.result)])
    return ane.SegmentOp([x4], [x4.type], Region(body))


REPRESENTATIVES: dict[type[Operation], Callable[[], Operation]] = {
    ane.ConstOp: lambda: ane.ConstOp(tensor((4, 4)), handle="w"),
    **{cls: (lambda cls=cls: cls(x4, **{p: 0.5 for p in cls.PARAMS})) for cls in ane.UNARY_OPS.values()},
    ane.GeluOp: lambda: ane.GeluOp(x4, "tanh"),
    **{cls: (lambda cls=cls: cls(x4)) for cls in (ane.RoundOp, ane.FloorOp, ane.CeilOp)},
    ane.SoftmaxOp: lambda: ane.SoftmaxOp(x4, 1),
    **{cls: (lambda cls=cls: cls(x4, x4)) for cls in (ane.AddOp, ane.SubOp, ane.MulOp, ane.DivOp, ane.MaxOp, ane.MinOp, ane.PowOp,
                                                        ane.EqualOp, ane.NotEqualOp, ane.GreaterOp, ane.GreaterEqualOp, ane.LessOp,
                                                        ane.LessEqualOp)},
    ane.SelectOp: lambda: ane.SelectOp(mask, x4, x4),
    ane.ConvOp: lambda: ane.ConvOp(x4, weight(16, 8, 3, 3), weight(16), pads=[1, 1, 1, 1]),
    ane.ConvTransposeOp: lambda: ane.ConvTransposeOp(x4, weight(8, 4, 2, 2), strides=[2, 2]),
    ane.MatmulOp: lambda: ane.MatmulOp(*values_of((1, 64, 32)), weight(1, 32, 48)),
    ane.SdpaOp: lambda: ane.SdpaOp(*values_of((1, 4, 16, 32), (1, 4, 16, 32), (1, 4, 16, 32))),
    **{cls: (lambda cls=cls: cls(x4, [1])) for cls in (ane.ReduceSumOp, ane.ReduceMeanOp, ane.ReduceMaxOp, ane.ReduceMinOp,
                                                         ane.ReduceL2Op, ane.ReduceLogSumExpOp)},
    ane.ArgmaxOp: lambda: ane.ArgmaxOp(x4, 1),
    ane.ArgminOp: lambda: ane.ArgminOp(x3, 2),
    ane.TopkOp: lambda: ane.TopkOp(x3, 5, 2),
    ane.MaxPoolOp: lambda: ane.MaxPoolOp(x4, [3, 3], [2, 2], [1, 1, 1, 1]),
    ane.AvgPoolOp: lambda: ane.AvgPoolOp(x4, [2, 2], [2, 2]),
    ane.L2PoolOp: lambda: ane.L2PoolOp(x3, [3], [1], [1, 1]),
    ane.GlobalAvgPoolOp: lambda: ane.GlobalAvgPoolOp(x4),
    ane.GlobalMaxPoolOp: lambda: ane.GlobalMaxPoolOp(x4),
    ane.LayerNormOp: lambda: ane.LayerNormOp(x4, vec8, vec8, axes=[1]),
    ane.InstanceNormOp: lambda: ane.InstanceNormOp(x4, vec8, vec8),
    ane.GroupNormOp: lambda: ane.GroupNormOp(x4, vec8, vec8, num_groups=2),
    ane.L2NormOp: lambda: ane.L2NormOp(x4, axes=[1]),
    ane.ReshapeOp: lambda: ane.ReshapeOp(x4, [1, 8, 256]),
    ane.TransposeOp: lambda: ane.TransposeOp(x4, [0, 1, 3, 2]),
    ane.SliceOp: lambda: ane.SliceOp(x4, [0, 0, 2, 0], [1, 8, 10, 16]),
    ane.PadOp: lambda: ane.PadOp(x4, [0, 0, 1, 1, 0, 0, 1, 1]),
    ane.TileOp: lambda: ane.TileOp(x4, [1, 2, 1, 1]),
    ane.BroadcastOp: lambda: ane.BroadcastOp(*values_of((1, 8, 1, 16)), [1, 8, 16, 16]),
    ane.ResizeOp: lambda: ane.ResizeOp(x4, [1, 8, 32, 32], "nearest", [2.0, 2.0]),
    ane.DepthToSpaceOp: lambda: ane.DepthToSpaceOp(x4, 2),
    ane.SpaceToDepthOp: lambda: ane.SpaceToDepthOp(x4, 2),
    ane.CastOp: lambda: ane.CastOp(x4, f16),
    ane.ConcatOp: lambda: ane.ConcatOp([x4, x4], 1),
    ane.SplitOp: lambda: ane.SplitOp(x4, 1, [3, 5]),
    ane.SegmentOp: segment,
    ane.YieldOp: lambda: ane.YieldOp(x4),
    host.HostOp: lambda: host.HostOp("onnx.TopK", values_of((3, 4), ((1,), i64)), [tensor((3, 2)), tensor((3, 2), i64)]),
}


def test_every_op_class_has_a_representative() -> None:
    assert set(ane.ANE.operations) | {host.HostOp} == set(REPRESENTATIVES)


@pytest.mark.parametrize("target", TARGETS, ids=[t.arch for t in TARGETS])
@pytest.mark.parametrize("op_class", list(REPRESENTATIVES), ids=[c.name for c in REPRESENTATIVES])
def test_legality_answers_for_every_op_on_every_chip(op_class: type[Operation], target: Target) -> None:
    op = REPRESENTATIVES[op_class]()
    op.verify()
    for strict in (False, True):
        verdict = legality(op, target, strict=strict)
        assert isinstance(verdict, Legality)
        if verdict.ok:
            assert verdict == Legality(True)
        else:
            assert verdict.reason and verdict.rule, f"{op.name} refused without a reason"
    ok, reason = legality(op, target)
    expected_host = (op_class is host.HostOp or (op_class in (ane.SinOp, ane.CosOp) and not target.has("sin_cos"))
                     or (op_class is ane.TopkOp and not target.has("topk_sort")))
    assert ok != expected_host, f"{op.name} on {target}: {reason}"


def verdict(op: Operation, chip: str, strict: bool = False) -> Legality:
    op.verify()
    return legality(op, get_target(chip), strict=strict)


def test_a_15x15_kernel_is_illegal_only_in_strict_mode() -> None:
    conv = ane.ConvOp(x4, weight(8, 8, 15, 15), pads=[7, 7, 7, 7])
    for chip in ("m1", "m4", "m5-max"):
        assert verdict(conv, chip)
        strict = verdict(conv, chip, strict=True)
        assert not strict and strict.rule == "conv-kernel-width" and strict.tileable
        assert strict.reason == "kernel width 15 exceeds the fp16 limit of 13"
    assert verdict(ane.ConvOp(x4, weight(8, 8, 13, 13), pads=[6, 6, 6, 6]), "m1", strict=True)


def test_sin_runs_on_m3_but_not_m1() -> None:
    sin = ane.SinOp(x4)
    assert verdict(sin, "m3") and verdict(sin, "h15")
    m1 = verdict(sin, "m1")
    assert not m1 and m1.rule == "sin-cos" and "M3 and later" in m1.reason and not m1.tileable


def test_topk_runs_on_m2_and_later_but_not_m1() -> None:
    topk = ane.TopkOp(x3, 5, 2)
    for chip in ("m2", "m3", "m4", "m5-max"):
        assert verdict(topk, chip, strict=True)
    m1 = verdict(topk, "m1")
    assert not m1 and m1.rule == "topk-chip" and "M1's code generator" in m1.reason and not m1.tileable


def test_topk_refuses_an_inner_axis_and_an_axis_past_exact_fp16_indices() -> None:
    inner = verdict(ane.TopkOp(x3, 2, 1), "m4")
    assert not inner and inner.rule == "topk-axis" and "last axis" in inner.reason
    (wide,) = values_of((2, 2049))
    long = verdict(ane.TopkOp(wide, 4, 1), "m4")
    assert not long and long.rule == "topk-extent" and "exact only up to 2048" in long.reason
    (edge,) = values_of((2, 2048))
    assert verdict(ane.TopkOp(edge, 4, 1), "m4", strict=True)


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_reflect_and_edge_pads_need_the_m2_texture_engine(mode: str) -> None:
    pad = ane.PadOp(x4, [0, 0, 2, 2, 0, 0, 2, 2], mode)
    m1 = verdict(pad, "m1")
    assert not m1 and m1.rule == "pad-mode" and m1.reason == f"{mode} padding needs the texture engine (M2 and later)"
    assert all(verdict(pad, chip) for chip in ("m2", "m3", "m4", "m5"))
    assert verdict(ane.PadOp(x4, [0, 0, 2, 2, 0, 0, 2, 2]), "m1")


def test_channel_padding_stays_on_the_cpu() -> None:
    pad = verdict(ane.PadOp(x4, [0, 1, 0, 0, 0, 1, 0, 0]), "m4")
    assert not pad and pad.rule == "pad-axes"


def test_masked_attention_is_illegal_everywhere() -> None:
    q, k, v, m = values_of((1, 4, 16, 32), (1, 4, 16, 32), (1, 4, 16, 32), (1, 1, 16, 16))
    for target in TARGETS:
        masked = legality(ane.SdpaOp(q, k, v, m), target)
        assert not masked and masked.rule == "sdpa-mask" and "mask" in masked.reason
        assert legality(ane.SdpaOp(q, k, v), target)


def test_int64_tensors_go_to_the_host() -> None:
    a, b = values_of(((4, 4), i64), ((4, 4), i64))
    add = verdict(ane.AddOp(a, b), "m4")
    assert not add and add.rule == "fp16-tensors" and "tensor<4x4xi64>" in add.reason
    argmax64 = verdict(ane.ArgmaxOp(x4, 1, index_type=i64), "m4")
    assert not argmax64 and argmax64.rule == "fp16-tensors"
    assert verdict(ane.ArgmaxOp(x4, 1), "m4")  # i32 indices are fine


def test_masks_are_legal_only_where_comparisons_make_them_and_select_reads_them() -> None:
    assert verdict(ane.LessOp(x4, x4), "m1") and verdict(ane.SelectOp(mask, x4, x4), "m1")
    m1 = verdict(ane.CastOp(mask, f32), "m1")
    assert not m1 and m1.rule == "fp16-tensors"


def test_host_op_is_always_the_cpu() -> None:
    op = REPRESENTATIVES[host.HostOp]()
    for target in TARGETS:
        for strict in (False, True):
            answer = legality(op, target, strict=strict)
            assert not answer and answer.rule == "no-ane-op" and answer.reason == "onnx.TopK has no ANE equivalent, so it runs on the CPU"


def test_resize_by_four_needs_m2() -> None:
    x4_up = ane.ResizeOp(x4, [1, 8, 64, 64], "nearest", [4.0, 4.0])
    m1 = verdict(x4_up, "m1")
    assert not m1 and m1.rule == "resize-scale" and "4.0" in m1.reason
    assert verdict(x4_up, "m2")
    assert verdict(ane.ResizeOp(x4, [1, 8, 32, 32], "bilinear", [2.0, 2.0]), "m1")


def test_pool_window_30_fits_m2_but_must_be_tiled_on_m1() -> None:
    pool = ane.MaxPoolOp(values_of((1, 4, 40, 40))[0], [30, 30])
    assert verdict(pool, "m1") and not verdict(pool, "m1", strict=True)
    assert verdict(pool, "m1", strict=True).rule == "pool-window"
    assert verdict(pool, "m2", strict=True)


def test_limits_the_tile_pass_removes_count_only_in_strict_mode() -> None:
    big = ane.ReluOp(values_of((1, 65, 128, 128))[0])  # just over 2 MB in fp16, beyond the L2
    assert verdict(big, "m1")
    strict = verdict(big, "m1", strict=True)
    assert not strict and strict.rule == "working-set" and strict.tileable
    wide = ane.ReluOp(values_of((1, 1, 1, 20000))[0])
    assert verdict(wide, "m1", strict=True).rule == "dims" and verdict(wide, "m4", strict=True)  # 65536-wide from M4


def test_rank_six_and_long_reductions_are_refused() -> None:
    six = verdict(ane.ReluOp(values_of((1, 1, 2, 2, 2, 2))[0]), "m4")
    assert not six and six.rule == "rank"
    long_softmax = verdict(ane.SoftmaxOp(values_of((1, 1, 1, 70000))[0], 3), "m5")
    assert not long_softmax and long_softmax.rule == "reduced-dims"


def test_legality_unpacks_as_ok_and_reason() -> None:
    ok, reason = verdict(ane.SinOp(x4), "m1")
    assert (ok, reason) == (False, "sin needs an A15-family ANE (M3 and later)")


def test_a_segment_without_inputs_gets_an_answer() -> None:
    body = Block()
    const = ane.ConstOp(tensor((2,)), handle="w")
    body.add_ops([const, ane.YieldOp(const.result)])
    assert legality(ane.SegmentOp([], [tensor((2,))], Region(body)), get_target("m1"))


def test_a_large_reflect_pad_stays_on_the_cpu_and_a_large_constant_pad_is_tiled() -> None:
    x = values_of((1, 8, 100, 100))[0]
    reflect = verdict(ane.PadOp(x, [0, 0, 64, 64, 0, 0, 64, 64], "reflect", 0.0), "m4")
    constant = verdict(ane.PadOp(x, [0, 0, 64, 64, 0, 0, 64, 64], "constant", 0.0), "m4")
    assert not reflect and reflect.rule == "reflect-pad-size" and not reflect.tileable
    assert constant and not verdict(ane.PadOp(x, [0, 0, 64, 64, 0, 0, 64, 64], "constant", 0.0), "m4", strict=True).ok


def test_every_rule_carries_its_source_and_reads_facts_every_chip_has() -> None:
    from anec.legality import all_rules, basis_values

    for rule in all_rules():
        assert rule.source, rule.name
        for target in TARGETS:
            assert set(basis_values(rule, target)) == set(rule.basis)


def test_the_targets_command_lists_what_changed_since_the_m1() -> None:
    from anec.commands.targets import rule_rows

    m1 = {row["rule"]: row for row in rule_rows(get_target("m1"))}
    m4 = {row["rule"]: row for row in rule_rows(get_target("m4"))}
    assert all(row["since M1"] == "-" for row in m1.values())
    assert "texture_engine False -> True" in m4["pad-mode"]["since M1"]
    assert "max_spatial 16384 -> 65536" in m4["dims"]["since M1"]
