"""ane-legalize rewrites frontend shapes into ANE primitives without changing results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anec.dialects import ane
from anec.legality import legality
from anec.lowering.legalize import LegalizePass
from anec.targets import get_target
from tests.lowering.graphs import assert_same_results, graph, ops_named, run_pass


def _gelu_erf(e, x):
    inner = e.add(ane.ErfOp(e.add(ane.DivOp(x, e.scalar(math.sqrt(2), x)))))
    return e.add(ane.MulOp(e.add(ane.MulOp(e.scalar(0.5, x), x)), e.add(ane.AddOp(inner, e.scalar(1.0, x)))))


def _gelu_tanh(e, x):
    cube = e.add(ane.MulOp(x, e.add(ane.MulOp(x, x))))
    inner = e.add(ane.AddOp(x, e.add(ane.MulOp(cube, e.scalar(0.044715, x)))))
    t = e.add(ane.TanhOp(e.add(ane.MulOp(e.scalar(math.sqrt(2 / math.pi), x), inner))))
    return e.add(ane.MulOp(e.add(ane.MulOp(x, e.add(ane.AddOp(e.scalar(1.0, x), t)))), e.scalar(0.5, x)))


def _softmax(e, x):
    m = e.add(ane.ReduceMaxOp(x, [2]))
    ex = e.add(ane.ExpOp(e.add(ane.SubOp(x, m))))
    return e.add(ane.DivOp(ex, e.add(ane.ReduceSumOp(ex, [2]))))


def _layer_norm(e, x):
    rng = np.random.default_rng(1)
    m = e.add(ane.ReduceMeanOp(x, [2]))
    d = e.add(ane.SubOp(x, m))
    v = e.add(ane.ReduceMeanOp(e.add(ane.PowOp(d, e.scalar(2.0, d))), [2]))
    n = e.add(ane.DivOp(d, e.add(ane.SqrtOp(e.add(ane.AddOp(v, e.scalar(1e-5, v)))))))
    scaled = e.add(ane.MulOp(n, e.constant(rng.standard_normal((1, 1, 16)).astype(np.float32))))
    return e.add(ane.AddOp(scaled, e.constant(rng.standard_normal((1, 1, 16)).astype(np.float32))))


def _masked_sdpa(e, q, k, v):
    mask = np.triu(np.full((8, 8), -1e4, np.float32), 1).reshape(1, 1, 8, 8)
    return e.add(ane.SdpaOp(q, k, v, e.constant(mask), scale=0.25))


CASES = {
    "gelu-erf": ([(2, 3, 16)], _gelu_erf, ane.GeluOp),
    "gelu-tanh": ([(2, 3, 16)], _gelu_tanh, ane.GeluOp),
    "softmax": ([(2, 3, 16)], _softmax, ane.SoftmaxOp),
    "layer-norm": ([(2, 3, 16)], _layer_norm, ane.LayerNormOp),
    "masked-sdpa": ([(1, 2, 8, 4)] * 3, _masked_sdpa, ane.SoftmaxOp),
    "reduce-keepdims": ([(2, 3, 4)], lambda e, x: e.add(ane.ReduceMeanOp(x, [1], keepdims=False)), ane.ReshapeOp),
    "reduce-5-axes": ([(2, 2, 3, 2, 3)], lambda e, x: e.add(ane.ReduceSumOp(x, [0, 1, 2, 3, 4])), ane.ReduceSumOp),
    "matmul-depth": ([(1, 3, 2, 4, 5), (1, 3, 2, 5, 6)], lambda e, a, b: e.add(ane.MatmulOp(a, b)), ane.ReshapeOp),
    "pad-channels": ([(1, 2, 3, 3)], lambda e, x: e.add(ane.PadOp(x, [0, 2, 1, 0, 1, 1, 0, 2], value=0.5)), ane.ConcatOp),
    "pool-pad": ([(1, 2, 20, 40)], lambda e, x: e.add(ane.MaxPoolOp(x, [1, 25], [1, 1], [0, 18, 0, 18])), ane.PadOp),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_legalize_preserves_results_and_leaves_only_legal_ops(case: str) -> None:
    shapes, body, expected_op = CASES[case]
    before = graph(shapes, body)
    after = run_pass(before, LegalizePass())
    assert ops_named(after, expected_op.name), f"{case}: no {expected_op.name} after legalize"
    m1 = get_target("m1")
    for op in after.walk():
        if op.name.startswith("ane.") and op.name not in ("ane.const",):
            assert legality(op, m1), f"{case}: {op.name} is still illegal: {legality(op, m1).reason}"
    assert_same_results(before, after, rtol=2e-5, atol=2e-5)


def test_gelu_tanh_is_recognized_whatever_the_factor_order() -> None:
    def body(e, x):
        cube = e.add(ane.PowOp(x, e.scalar(3.0, x)))
        inner = e.add(ane.AddOp(e.add(ane.MulOp(e.scalar(0.044715, x), cube)), x))
        t = e.add(ane.TanhOp(e.add(ane.MulOp(inner, e.scalar(math.sqrt(2 / math.pi), x)))))
        return e.add(ane.MulOp(e.scalar(0.5, x), e.add(ane.MulOp(e.add(ane.AddOp(t, e.scalar(1.0, x))), x))))

    after = run_pass(graph([(4, 8)], body), LegalizePass())
    (gelu,) = ops_named(after, "ane.gelu")
    assert gelu.approximate.data == "tanh"
    assert not ops_named(after, "ane.tanh")


def test_gelu_is_not_formed_when_an_intermediate_has_another_use() -> None:
    def body(e, x):
        bracket = e.add(ane.AddOp(e.add(ane.ErfOp(e.add(ane.DivOp(x, e.scalar(math.sqrt(2), x))))), e.scalar(1.0, x)))
        return e.add(ane.MulOp(e.add(ane.MulOp(x, e.scalar(0.5, x))), bracket)), bracket

    before = graph([(4, 8)], body)
    after = run_pass(before, LegalizePass())
    assert ops_named(after, "ane.gelu") and ops_named(after, "ane.erf")  # the bracket is still computed
    assert_same_results(before, after)
