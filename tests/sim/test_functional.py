"""The simulator runs every op family through a real descriptor file and agrees with the interpreter.

Each case is a hand-built segment of f16 ops; it is lowered (to-anehw, plan-memory), encoded, decoded
and simulated, and compared with the IR interpreter in fp16 storage. The two differ only by where the
hardware rounds (after the MAC, after the bias, after the activation), so the tolerance is a few fp16
ulps of the output's scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from anec.dialects import ane
from anec.interpreter import interpret
from anec.pipeline import descriptor_program
from anec.runtime import run_file
from anec.sim.builders import SegmentBuilder, segment_module

Build = Callable[[SegmentBuilder, list], Sequence]


def unary(cls: type, **params: float) -> Build:
    return lambda b, x: [b.add(cls(x[0], **params))]


def positive(cls: type) -> Build:
    return lambda b, x: [b.add(cls(b.add(ane.AddOp(b.add(ane.AbsOp(x[0])), b.const(np.full((1, 1, 1, 1), 0.25))))))]


def conv(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), groups=1, cout=8, bias=True, activation=None) -> Build:
    def build(b: SegmentBuilder, x: list) -> list:
        cin = ane.shape_of(x[0])[1]
        w = b.random((cout, cin // groups, *kernel), 0.3)
        op = ane.ConvOp(x[0], w, b.random((cout,), 0.1) if bias else None, strides=strides, pads=pads, dilations=dilations, groups=groups)
        op.set_activation(activation)
        return [b.add(op)]
    return build


def reshape_keep_w(b: SegmentBuilder, x: list) -> list:
    return [b.add(ane.ReluOp(b.add(ane.ReshapeOp(x[0], (1, 2, 16, 12)))))]


CASES: dict[str, tuple[list[tuple[int, ...]], Build]] = {
    "add-broadcast": ([(1, 8, 4, 12), (1, 8, 1, 1)], lambda b, x: [b.add(ane.AddOp(x[0], x[1]))]),
    "sub-broadcast-w": ([(1, 8, 4, 12), (1, 1, 1, 12)], lambda b, x: [b.add(ane.SubOp(x[0], x[1]))]),
    "mul": ([(1, 8, 4, 12), (1, 8, 4, 12)], lambda b, x: [b.add(ane.MulOp(x[0], x[1]))]),
    "div": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.DivOp(x[0], b.const(np.full((1, 8, 1, 1), 3.0))))]),
    "max-min": ([(1, 8, 4, 12), (1, 8, 4, 12)], lambda b, x: [b.add(ane.MaxOp(x[0], x[1])), b.add(ane.MinOp(x[0], x[1]))]),
    "select": ([(1, 8, 4, 12), (1, 8, 4, 12)], lambda b, x: [b.add(ane.SelectOp(b.add(ane.GreaterOp(x[0], x[1])), x[0], x[1]))]),
    "relu": ([(1, 8, 4, 12)], unary(ane.ReluOp)),
    "sigmoid": ([(1, 8, 4, 12)], unary(ane.SigmoidOp)),
    "tanh": ([(1, 8, 4, 12)], unary(ane.TanhOp)),
    "gelu": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.GeluOp(x[0])), b.add(ane.GeluOp(x[0], "tanh"))]),
    "silu-softplus-erf": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.SiluOp(x[0])), b.add(ane.SoftplusOp(x[0])), b.add(ane.ErfOp(x[0]))]),
    "exp": ([(1, 8, 4, 12)], unary(ane.ExpOp)),
    "log": ([(1, 8, 4, 12)], positive(ane.LogOp)),
    "sqrt-rsqrt": ([(1, 8, 4, 12)], lambda b, x: [*positive(ane.SqrtOp)(b, x), *positive(ane.RsqrtOp)(b, x)]),
    "reciprocal": ([(1, 8, 4, 12)], positive(ane.ReciprocalOp)),
    "neg-abs-hardswish": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.NegOp(x[0])), b.add(ane.AbsOp(x[0])), b.add(ane.HardswishOp(x[0]))]),
    "leaky-elu": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.LeakyReluOp(x[0], alpha=0.1)), b.add(ane.EluOp(x[0], alpha=1.0))]),
    "clamp-hardsigmoid": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.ClampOp(x[0], min=-1.0, max=2.0)),
                                                          b.add(ane.HardsigmoidOp(x[0], alpha=0.2, beta=0.5))]),
    "softmax-c": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.SoftmaxOp(x[0], 1))]),
    "softmax-w": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.SoftmaxOp(x[0], 3))]),
    "conv3x3-bias-relu": ([(1, 4, 9, 9)], conv(activation="relu")),
    "conv-stride2-odd": ([(1, 4, 9, 11)], conv(strides=(2, 2))),
    "conv-depthwise": ([(1, 8, 8, 8)], conv(groups=8, cout=8)),
    "conv-grouped-dilated": ([(1, 4, 10, 10)], conv(groups=2, dilations=(2, 2), pads=(2, 2, 2, 2))),
    "conv-1x1": ([(1, 16, 5, 7)], conv(kernel=(1, 1), pads=(0, 0, 0, 0), cout=32, activation="gelu")),
    "conv-1d": ([(1, 4, 20)], lambda b, x: [b.add(ane.ConvOp(x[0], b.random((6, 4, 5), 0.3), strides=[2], pads=[2, 2]))]),
    "conv-dynamic-weight": ([(1, 4, 6, 6), (8, 4, 3, 3)], lambda b, x: [b.add(ane.ConvOp(x[0], x[1], pads=[1, 1, 1, 1]))]),
    "conv-transpose": ([(1, 4, 5, 5)], lambda b, x: [b.add(ane.ConvTransposeOp(x[0], b.random((4, 3, 3, 3), 0.3), strides=[2, 2],
                                                                                  pads=[1, 1, 1, 1], output_padding=[1, 1]))]),
    "matmul-dynamic": ([(1, 4, 16, 32), (1, 4, 32, 8)], lambda b, x: [b.add(ane.MatmulOp(x[0], x[1]))]),
    "matmul-transposes": ([(1, 4, 32, 16), (1, 4, 8, 32)], lambda b, x: [b.add(ane.MatmulOp(x[0], x[1], transpose_lhs=True, transpose_rhs=True))]),
    "matmul-broadcast-batch": ([(1, 1, 16, 32), (1, 4, 32, 8)], lambda b, x: [b.add(ane.MatmulOp(x[0], x[1]))]),
    "linear-bias-gelu": ([(1, 1, 16, 32)], lambda b, x: [b.add(_epilogue(ane.MatmulOp(x[0], b.random((1, 1, 32, 24), 0.2),
                                                                                           b.random((24,), 0.1)), "gelu"))]),
    "sdpa": ([(1, 2, 8, 16), (1, 2, 8, 16), (1, 2, 8, 16)], lambda b, x: [b.add(ane.SdpaOp(x[0], x[1], x[2]))]),
    "reduce": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.ReduceSumOp(x[0], [1], False)), b.add(ane.ReduceMeanOp(x[0], [2, 3])),
                                             b.add(ane.ReduceMaxOp(x[0], [3], False)), b.add(ane.ReduceMinOp(x[0], [1, 2])),
                                             b.add(ane.ReduceL2Op(x[0], [3])), b.add(ane.ReduceLogSumExpOp(x[0], [1]))]),
    "argmax": ([(1, 8, 4, 12)], lambda b, x: [b.add(ane.ArgmaxOp(x[0], 1, keepdims=False)), b.add(ane.ArgminOp(x[0], 3))]),
    "pools": ([(1, 4, 9, 9)], lambda b, x: [b.add(ane.MaxPoolOp(x[0], [3, 3], [2, 2], [1, 1, 1, 1])),
                                           b.add(ane.AvgPoolOp(x[0], [2, 2], [2, 2])),
                                           b.add(ane.AvgPoolOp(x[0], [3, 3], [1, 1], [1, 1, 1, 1], count_include_pad=True)),
                                           b.add(ane.L2PoolOp(x[0], [2, 2], [1, 1]))]),
    "global-pools": ([(1, 4, 9, 9)], lambda b, x: [b.add(ane.GlobalAvgPoolOp(x[0])), b.add(ane.GlobalMaxPoolOp(x[0]))]),
    "layer-norm-w": ([(1, 1, 8, 32)], lambda b, x: [b.add(ane.LayerNormOp(x[0], b.random((32,)), b.random((32,)), axes=[3]))]),
    "layer-norm-c": ([(1, 32, 1, 8)], lambda b, x: [b.add(ane.LayerNormOp(x[0], b.random((32,)), b.random((32,)), axes=[1]))]),
    "instance-group-l2-norm": ([(1, 8, 5, 6)], lambda b, x: [b.add(ane.InstanceNormOp(x[0], b.random((8,)), b.random((8,)), epsilon=1e-5)),
                                                             b.add(ane.GroupNormOp(x[0], b.random((8,)), b.random((8,)), num_groups=4)),
                                                             b.add(ane.L2NormOp(x[0], axes=[1]))]),
    # issue 17: rank-5 per-channel norms put the channel on D, and their scale and bias on the wrong axis
    "instance-group-norm-rank5": ([(1, 8, 3, 2, 5)], lambda b, x: [b.add(ane.InstanceNormOp(x[0], b.random((8,)), b.random((8,)), epsilon=1e-5)),
                                                                   b.add(ane.GroupNormOp(x[0], b.random((8,)), b.random((8,)), num_groups=4))]),
    "reshape-alias": ([(1, 4, 8, 12)], reshape_keep_w),
    "reshape-copy": ([(1, 4, 8, 12)], lambda b, x: [b.add(ane.ReluOp(b.add(ane.ReshapeOp(x[0], (1, 4, 96)))))]),
    "transpose": ([(1, 4, 8, 12)], lambda b, x: [b.add(ane.TransposeOp(x[0], [0, 2, 1, 3])), b.add(ane.TransposeOp(x[0], [0, 3, 2, 1]))]),
    "slice": ([(1, 8, 9, 12)], lambda b, x: [b.add(ane.SliceOp(x[0], [0, 1, 2, 3], [1, 8, 9, 12], [1, 2, 3, 2]))]),
    "pad": ([(1, 4, 5, 6)], lambda b, x: [b.add(ane.PadOp(x[0], [0, 0, 1, 2, 0, 0, 3, 1], value=-2.0)),
                                         b.add(ane.PadOp(x[0], [0, 0, 2, 2, 0, 0, 2, 2], mode="edge"))]),
    "tile-broadcast": ([(1, 4, 1, 6)], lambda b, x: [b.add(ane.TileOp(x[0], [1, 2, 3, 2])), b.add(ane.BroadcastOp(x[0], (2, 4, 5, 6)))]),
    "resize": ([(1, 4, 5, 6)], lambda b, x: [b.add(ane.ResizeOp(x[0], (1, 4, 10, 12), "nearest", [2.0, 2.0])),
                                            b.add(ane.ResizeOp(x[0], (1, 4, 10, 12), "bilinear", [2.0, 2.0], "align_corners"))]),
    "depth-space": ([(1, 8, 4, 6)], lambda b, x: [b.add(ane.DepthToSpaceOp(x[0], 2, "CRD")),
                                                 b.add(ane.SpaceToDepthOp(b.add(ane.DepthToSpaceOp(x[0], 2)), 2))]),
    "concat-split": ([(1, 4, 5, 6), (1, 2, 5, 6)], lambda b, x: [b.add(ane.ConcatOp([x[0], x[1]], 1)), b.add(ane.ConcatOp([x[0], x[0]], 3)),
                                                                *ane_split(b, x[0])]),
    "concat-in-place-nested": ([(1, 4, 5, 6), (1, 2, 5, 6)], lambda b, x: [b.add(ane.ConcatOp([
        b.add(ane.ConcatOp([b.add(ane.ReluOp(x[0])), b.add(ane.SigmoidOp(x[1]))], 1)), b.add(ane.TanhOp(x[0]))], 1))]),
    # issue 17: a nested concatenation used twice by the outer one is planned in a buffer of its own and
    # must be copied into both windows (it was taken for a piece already written in place)
    "concat-nested-used-twice": ([(1, 4, 5, 6)], lambda b, x: [b.add(ane.ConcatOp([c := b.add(ane.ConcatOp([x[0], x[0]], 2)), c], 0))]),
    # issue 17: W steps past the 4-bit WStep field (a slice's own, or two slices' composed: 5 x 5) are
    # copied out through rows instead of overflowing the field
    "slice-w-step-21": ([(1, 2, 3, 200)], lambda b, x: [b.add(ane.ReluOp(b.add(ane.SliceOp(x[0], [0, 0, 0, 3], [1, 2, 3, 200], [1, 1, 2, 21]))))]),
    "slice-of-slice-w-step-25": ([(2, 130)], lambda b, x: [b.add(ane.AddOp(
        b.add(ane.SliceOp(b.add(ane.SliceOp(x[0], [0, 1], [2, 130], [1, 5])), [0, 0], [2, 26], [1, 5])), b.const(np.ones((1, 6)))))]),
    "slice-rank5-w-step-40": ([(2, 3, 2, 4, 90)], lambda b, x: [b.add(ane.SliceOp(x[0], [0, 0, 0, 1, 5], [2, 3, 2, 4, 90], [1, 2, 1, 2, 40]))]),
    "slice-rank1-w-step-17": ([(100,)], lambda b, x: [b.add(ane.SliceOp(x[0], [2], [100], [17]))]),
    # issue 17: pieces written at W origins past the 16-bit pixel offset (a row wider than 65536)
    "concat-w-past-65536": ([(1, 1, 1, 40000), (1, 1, 1, 30000), (1, 1, 1, 20000)], lambda b, x: [b.add(ane.ConcatOp(
        [b.add(ane.ReluOp(x[0])), b.add(ane.SigmoidOp(x[1])), b.add(ane.TanhOp(x[2]))], 3))]),
    "slice-window-into-conv": ([(1, 4, 9, 12)], lambda b, x: [b.add(ane.ConvOp(
        b.add(ane.SliceOp(x[0], [0, 0, 1, 2], [1, 4, 9, 12], [1, 1, 2, 3])), b.random((4, 4, 1, 1), 0.3)))]),
    "conv-output-channel-tiles": ([(1, 4, 6, 6)], lambda b, x: [b.add(ane.ConcatOp([b.add(_epilogue(ane.ConvOp(
        x[0], b.random((n, 4, 3, 3), 0.3), b.random((n,), 0.1), pads=[1, 1, 1, 1]), "relu")) for n in (3, 3, 2)], 1))]),
    "conv-output-channel-tiles-one-last": ([(1, 4, 6, 6)], lambda b, x: [b.add(ane.ConcatOp([b.add(ane.ConvOp(
        x[0], b.random((n, 4, 3, 3), 0.3), b.random((n,), 0.1), pads=[1, 1, 1, 1])) for n in (3, 3, 1)], 1))]),
    "topk": ([(1, 3, 4, 12)], lambda b, x: topk(b, x[0], 5, True) + topk(b, x[0], 12, False) + topk(b, x[0], 1, True)),
    # a top-k feeding another op: the values and indices are windows of one buffer, read in place
    "topk-into-add": ([(2, 40)], lambda b, x: [b.add(ane.AddOp(topk(b, x[0], 7, True)[0], b.const(np.ones((1, 7)))))]),
    "yield-input-twice-and-const": ([(1, 4, 5, 6)], lambda b, x: [x[0], x[0], b.const(np.arange(24.0).reshape(1, 4, 1, 6))]),
}


def _epilogue(op: ane.EpilogueOp, activation: str) -> ane.EpilogueOp:
    op.set_activation(activation)
    return op


def topk(b: SegmentBuilder, x, k: int, largest: bool) -> list:
    op = ane.TopkOp(x, k, len(ane.shape_of(x)) - 1, largest)
    b.block.add_op(op)
    return list(op.results)


def ane_split(b: SegmentBuilder, x) -> list:
    op = ane.SplitOp(x, 3, [2, 4])
    b.block.add_op(op)
    return list(op.results)


ARCH = {"pad": "h16", "concat-w-past-65536": "h16", "topk": "h14", "topk-into-add": "h16"}
"""Cases using a feature the M1 lacks (edge padding needs the M2's texture engine, top-k its A14 code
generator) run on the M2 or M4."""


def inputs_for(shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("case", list(CASES))
def test_simulator_matches_the_interpreter(case: str) -> None:
    shapes, build = CASES[case]
    module = segment_module(shapes, build)
    feeds = inputs_for(shapes)
    expected = interpret(module, feeds)
    got = list(run_file(descriptor_program(module, ARCH.get(case, "h13")), feeds).values())
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        e32, g32 = e.astype(np.float32), g.astype(np.float32)
        scale = max(float(np.abs(e32).max()), 1.0)
        np.testing.assert_allclose(g32, e32, atol=4e-3 * scale, rtol=4e-3, err_msg=case)


def test_windows_cost_no_tasks() -> None:
    """Pieces of a concatenation are written in place, and slices are read in place: no copy tasks."""
    from anec.isa.tasks import Kind

    for case in ("concat-in-place-nested", "slice-window-into-conv"):
        shapes, build = CASES[case]
        program = descriptor_program(segment_module(shapes, build), "h13").programs[0]
        assert Kind.COPY not in [t.kind for t in program.tasks], case


@pytest.mark.parametrize(("case", "channels"), [("conv-output-channel-tiles", 8), ("conv-output-channel-tiles-one-last", 7)])
def test_output_channel_tiles_run_as_one_gemm(case: str, channels: int) -> None:
    """Adjacent tiles merge, including a last tile of one channel (which leaves its plane stride unset)."""
    from anec.sim.functional import Machine

    shapes, build = CASES[case]
    program = descriptor_program(segment_module(shapes, build), "h13").programs[0]
    machine = Machine.for_program(program)
    assert len(program.tasks) == 3 and len(machine.plan) == 1 and machine.plan[0].out_extents[2] == channels


def test_blockwise_computes_every_element_as_the_whole_array_call() -> None:
    from anec.sim.fp16_kernels import BLOCK_ELEMENTS, blockwise

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 37, 61, 131)).astype(np.float32)  # several blocks, the last one short
    assert x.size > 3 * BLOCK_ELEMENTS

    def fn(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return (a * np.float32(3.1) + b).astype(np.float16)

    for operand in (rng.standard_normal((1, 1, 37, 1, 1)).astype(np.float32),   # sliced with x
                    rng.standard_normal((131,)).astype(np.float32),              # lower rank, not sliced
                    rng.standard_normal((1, 1, 37, 61, 131)).astype(np.float32)):
        assert blockwise(fn, x, operand).tobytes() == fn(x, operand).tobytes()
    small = x[:, :, :1, :1]  # broadcasts against its operand: computed in one block
    assert blockwise(fn, small, x).shape == x.shape


TOPK_ROWS = np.array([[3.0, -1.0, 3.0, 0.0, -0.0, -7.5, 3.0, 0.0],        # ties, signed zeros
                      [-2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0],   # all equal
                      [-1e4, 65504.0, -65504.0, 1e-7, -1e-7, 2.5, 2.5, -3.0]], dtype=np.float32)  # extremes, fp16 subnormals


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("arch", ["h14", "h16"])
def test_topk_on_the_simulator_is_exactly_the_interpreter(k: int, largest: bool, arch: str) -> None:
    """Values and indices bit for bit, ties by lower index first (ONNX's order), k = 1 and k = N."""
    module = segment_module([TOPK_ROWS.shape], lambda b, x: topk(b, x[0], k, largest))
    expected = interpret(module, [TOPK_ROWS])
    values, indices = run_file(descriptor_program(module, arch), [TOPK_ROWS]).values()
    assert indices.dtype == expected[1].dtype and indices.tolist() == expected[1].tolist()
    assert values.dtype == expected[0].dtype and values.tobytes() == expected[0].tobytes()


def test_a_top_k_descriptor_for_the_m1_is_refused() -> None:
    """The M1's code generator fails top-k, so a file that asks an M1 for it does not decode."""
    from anec.descriptors.binary import decode, encode
    from anec.errors import AnecError

    module = segment_module([TOPK_ROWS.shape], lambda b, x: topk(b, x[0], 2, True))
    anec_file = descriptor_program(module, "h14")
    anec_file.arch = "h13"
    for program in anec_file.programs:
        program.arch = "h13"
    with pytest.raises(AnecError, match="TOPK needs the topk_sort capability"):
        decode(encode(anec_file))


def test_the_steps_of_an_unrolled_recurrence_share_their_converted_weights_and_tables() -> None:
    """Each step of an unrolled LSTM streams the same recurrence weights, biases and activation tables:
    the simulator decodes each once, so what it holds converted does not grow with the sequence."""
    import anec
    from tests.synthetic import speaker_encoder

    held = {}
    for frames in (3, 6):
        compiled = anec.compile(speaker_encoder(frames=frames, mels=8, hidden=16, layers=1), target="m1", emit="descriptors")
        x = np.random.default_rng(0).standard_normal((frames, 1, 8)).astype(np.float32)
        compiled.run({"mels": x})
        (machine,) = compiled.program.machines.values()
        held[frames] = machine.converted
        assert len(machine.plan) > 10 * frames
    assert held[3] == held[6] > 0
