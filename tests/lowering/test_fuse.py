"""ane-fuse: epilogue folding preserves results and leaves the affine work inside the MAC op."""

from __future__ import annotations

import numpy as np
import pytest

from anec.dialects import ane
from anec.lowering.fp16 import Fp16Pass
from anec.lowering.fuse import FusePass
from anec.lowering.layout import LayoutPass
from tests.lowering.graphs import (
    assert_same_results,
    ops_named,
    run_pass,
    segment_graph,
    transformer_block,
)


def _rand(shape, seed=0, scale=1.0, offset=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + offset).astype(np.float32)


def _conv_bn(act):
    def body(e, x):
        y = e.add(ane.ConvOp(x, e.constant(_rand((6, 4, 3, 3), 1, 0.3)), pads=[1, 1, 1, 1]))
        y = e.add(ane.SubOp(y, e.constant(_rand((1, 6, 1, 1), 2))))
        y = e.add(ane.DivOp(y, e.constant(_rand((1, 6, 1, 1), 3, 0.2, 1.5))))
        y = e.add(ane.MulOp(e.constant(_rand((1, 6, 1, 1), 4)), y))
        y = e.add(ane.AddOp(y, e.constant(_rand((1, 6, 1, 1), 5))))
        return e.add(act(y))
    return body


def _linear_scale(e, x):
    y = e.add(ane.MatmulOp(x, e.constant(_rand((1, 16, 8), 1, 0.25)), e.constant(_rand((8,), 2))))
    y = e.add(ane.MulOp(y, e.constant(_rand((1, 1, 8), 3))))
    return e.add(ane.LeakyReluOp(e.add(ane.AddOp(y, e.scalar(0.5, y))), alpha=0.1))


def _deconv_scale(e, x):
    y = e.add(ane.ConvTransposeOp(x, e.constant(_rand((4, 3, 2, 2), 1, 0.3)), strides=[2, 2]))
    return e.add(ane.SigmoidOp(e.add(ane.MulOp(y, e.constant(_rand((1, 3, 1, 1), 2))))))


CASES = {
    "conv-bn-relu": ([(1, 4, 8, 8)], _conv_bn(ane.ReluOp)),
    "conv-bn-gelu": ([(1, 4, 8, 8)], _conv_bn(ane.GeluOp)),
    "conv-bn-relu6": ([(1, 4, 8, 8)], _conv_bn(lambda y: ane.ClampOp(y, min=0.0, max=6.0))),
    "matmul-bias-scale-leaky": ([(1, 5, 16)], _linear_scale),
    "deconv-scale-sigmoid": ([(1, 4, 5, 5)], _deconv_scale),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_affine_and_activation_fold_into_the_mac_op(case: str) -> None:
    shapes, body = CASES[case]
    before = segment_graph(shapes, body)
    after = run_pass(before, FusePass())
    (segment,) = ops_named(after, "ane.segment")
    ops = [op for op in segment.body.block.ops if not isinstance(op, ane.ConstOp | ane.YieldOp)]
    assert len(ops) == 1, [op.name for op in ops]
    assert ops[0].activation is not None
    assert_same_results(before, after, rtol=1e-4, atol=1e-4)


def test_transformer_biases_fold_into_the_1x1_convs_and_gelu_into_the_ffn() -> None:
    module = segment_graph([(1, 16, 32), (1, 1, 1, 16)], lambda e, x, m: transformer_block(e, x, m, heads=4, ffn=64))
    laid_out = run_pass(module, LayoutPass())
    after = run_pass(laid_out, FusePass())
    convs = ops_named(after, "ane.conv")
    assert len(convs) == 6 and all(c.bias is not None for c in convs)
    assert sum(c.activation is not None and c.activation.data == "gelu" for c in convs) == 1
    assert len(ops_named(after, "ane.add")) == len(ops_named(laid_out, "ane.add")) - 6
    inputs = [_rand((1, 16, 32)), np.zeros((1, 1, 1, 16), np.float32)]
    assert_same_results(module, after, inputs=inputs, rtol=1e-4, atol=1e-4)


def test_fuse_after_fp16_stays_within_fp16_tolerance() -> None:
    before = segment_graph([(1, 4, 8, 8)], _conv_bn(ane.ReluOp))
    after = run_pass(before, Fp16Pass(), FusePass())
    assert_same_results(before, after, precision="f16", rtol=1e-2)


@pytest.mark.parametrize(("multiplier", "target", "folds"), [(0.5, "m1", True), (1e-4, "m1", False), (1e-4, "m5", True)])
def test_a_scale_that_would_make_the_fp16_weights_subnormal_stays_a_separate_op(multiplier: float, target: str, folds: bool) -> None:
    """A batch norm multiplier of ~1e-4 (PP-OCR's DB head) folded into normal weights makes most of them
    fp16 subnormals, which the M1 … M4 MAC flushes: the scale stays a mul after the conv, with a note.
    The M5 keeps subnormals inside the MAC, so there the fold is safe."""
    def body(e, x):
        y = e.add(ane.ConvOp(x, e.constant(_rand((6, 4, 3, 3), 1, 0.3)), pads=[1, 1, 1, 1]))
        return e.add(ane.MulOp(y, e.constant(np.full((1, 6, 1, 1), multiplier, np.float32))))

    after = run_pass(segment_graph([(1, 4, 8, 8)], body), Fp16Pass(target=target), FusePass(target=target))
    muls = ops_named(after, "ane.mul")
    assert (not muls) == folds
    if not folds:
        assert "fp16 subnormals" in muls[0].attributes["ane.fp16_fixes"].data[0].data
