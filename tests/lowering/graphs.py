"""Build small `ane` graphs in Python and check that a pass preserves what they compute.

`graph(shapes, body)` makes a module whose `@main` takes tensors of `shapes` and returns what
`body(b, *args)` returns; `b` is the passes' own `RewriteBuilder`, so constants go to the module's
weight store. `assert_same_results` runs a pass on a copy and interprets both on seeded inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, f32
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from anec.builder import RewriteBuilder
from anec.context import make_context
from anec.dialects import ane
from anec.dialects.ane import shape_of, tensor
from anec.interpreter import Precision, interpret
from anec.weights import WeightStore, attach, clone_module, store_of

Body = Callable[..., SSAValue | Sequence[SSAValue]]


def graph(shapes: Sequence[Sequence[int]], body: Body, element_type=f32) -> ModuleOp:
    block = Block(arg_types=[tensor(s, element_type) for s in shapes])
    ret = func.ReturnOp()
    block.add_op(ret)
    fn = func.FuncOp("main", ([a.type for a in block.args], []), Region(block))
    module = ModuleOp([fn])
    attach(module, WeightStore())
    outs = body(RewriteBuilder(ret, name="n"), *block.args)
    outs = [outs] if isinstance(outs, SSAValue) else list(outs)
    ret.operands = outs
    fn.update_function_type()
    module.verify()
    return module


def segment_graph(shapes: Sequence[Sequence[int]], body: Body) -> ModuleOp:
    """Like `graph`, with the body inside one `ane.segment` (as the partition pass outlines it)."""
    inner = Block(arg_types=[tensor(s, f32) for s in shapes])
    yield_op = ane.YieldOp()
    inner.add_op(yield_op)

    def outer(e: RewriteBuilder, *args: SSAValue) -> Sequence[SSAValue]:
        placeholder = e.insert(ane.SegmentOp(list(args), [], Region(inner)))
        outs = body(RewriteBuilder(yield_op, name="n"), *inner.args)
        outs = [outs] if isinstance(outs, SSAValue) else list(outs)
        yield_op.operands = outs
        region = Rewriter.move_region_contents_to_new_regions(placeholder.body)
        segment = e.insert(ane.SegmentOp(list(args), [v.type for v in outs], region))
        placeholder.detach()
        placeholder.erase()
        return list(segment.outputs)

    return graph(shapes, outer)


def random_inputs(module: ModuleOp, seed: int = 0, scale: float = 1.0) -> list[np.ndarray]:
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape_of(a)) * scale).astype(np.float32) for a in fn.args]


def run_pass(module: ModuleOp, *passes: ModulePass) -> ModuleOp:
    """A copy of `module` (sharing its weights) after `passes`, verified."""
    copy = clone_module(module)
    attach(copy, store_of(module).copy())  # passes prune their store: the copy gets its own
    for p in passes:
        p.apply(make_context(), copy)
        copy.verify()
    return copy


def assert_same_results(before: ModuleOp, after: ModuleOp, *, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-5,
                        inputs: Sequence[np.ndarray] | None = None, precision: Precision = "f32") -> None:
    """Interpret both modules on the same seeded inputs; fp16 comparisons use a relative L2 bound."""
    inputs = random_inputs(before, seed) if inputs is None else inputs
    expected = interpret(before, inputs, precision="f32", segments="f32")
    actual = interpret(after, inputs, precision=precision, segments="f16" if precision == "f16" else "f32")
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        if precision == "f16":
            rel = np.linalg.norm(a.astype(np.float64) - e) / max(np.linalg.norm(e), 1e-30)
            assert rel <= rtol, f"relative L2 error {rel:.2e} > {rtol:.0e}"
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def ops_named(module: ModuleOp, name: str) -> list:
    return [op for op in module.walk() if op.name == name]


def ctx():
    return make_context()


def transformer_block(e: RewriteBuilder, x: SSAValue, mask: SSAValue, *, heads: int, ffn: int, seed: int = 0) -> SSAValue:
    """A vanilla post-norm transformer layer as PyTorch's ONNX exporter writes BERT's: rank-3
    (B, S, C) activations, MatMul + Add linears, reshape/transpose heads, an additive mask."""
    rng = np.random.default_rng(seed)
    _, seq, hidden = shape_of(x)
    depth = hidden // heads

    def linear(v: SSAValue, cout: int) -> SSAValue:
        cin = shape_of(v)[-1]
        w = e.constant((rng.standard_normal((1, cin, cout)) / np.sqrt(cin)).astype(np.float32))
        return e.add(ane.AddOp(e.add(ane.MatmulOp(v, w)), e.constant((0.1 * rng.standard_normal((1, 1, cout))).astype(np.float32))))

    def norm(v: SSAValue) -> SSAValue:
        scale = e.constant((1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
        return e.add(ane.LayerNormOp(v, scale, e.constant((0.1 * rng.standard_normal(hidden)).astype(np.float32)), axes=[2], epsilon=1e-12))

    def split(v: SSAValue) -> SSAValue:
        return e.add(ane.TransposeOp(e.add(ane.ReshapeOp(v, (1, seq, heads, depth))), (0, 2, 1, 3)))

    q, k, v = split(linear(x, hidden)), split(linear(x, hidden)), split(linear(x, hidden))
    scores = e.add(ane.MatmulOp(q, e.add(ane.TransposeOp(k, (0, 1, 3, 2)))))
    scores = e.add(ane.AddOp(e.add(ane.DivOp(scores, e.scalar(float(np.sqrt(depth)), scores))), mask))
    context = e.add(ane.MatmulOp(e.add(ane.SoftmaxOp(scores, 3)), v))
    context = e.add(ane.ReshapeOp(e.add(ane.TransposeOp(context, (0, 2, 1, 3))), (1, seq, hidden)))
    h = norm(e.add(ane.AddOp(linear(context, hidden), x)))
    up = e.add(ane.GeluOp(linear(h, ffn)))
    return norm(e.add(ane.AddOp(linear(up, hidden), h)))
