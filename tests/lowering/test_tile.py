"""ane-tile: ops beyond the target's limits become legal tiles that compute the same results."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import anec
from anec.analysis import flops, largest_operand_bytes, weight_bytes
from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.dialects.discardable import TILE_OF_ATTR
from anec.legality import legality
from anec.lowering.tile import TilePass
from anec.report import build_report
from anec.targets import TARGETS, get_target
from tests.lowering.graphs import assert_same_results, ops_named, run_pass, segment_graph


def _w(shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def _named(value, name):
    value.owner.attributes["ane.name"] = ane.StringAttr(name)
    return value


CASES = {
    # name: (input shapes, body, the limit it breaks on m1)
    "kernel-31x31": ([(1, 4, 40, 40)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((4, 4, 31, 31))), pads=[15, 15, 15, 15])), "big_kernel"), "conv-kernel-width"),
    "width-20000": ([(1, 4, 2, 20000)], lambda e, x: _named(e.add(ane.ConvOp(e.add(ane.ReluOp(x)), e.constant(_w((8, 4, 1, 3))), pads=[0, 1, 0, 1])), "wide"), "dims"),
    "activation-4mb": ([(1, 64, 128, 256)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((32, 64, 3, 3))), pads=[1, 1, 1, 1])), "big_act"), "working-set"),
    "weight-3mb": ([(1, 1024, 1, 16)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((1536, 1024, 1, 1))), e.constant(_w((1536,), 1)))), "big_weight"), "kernel-memory"),
    "stride-4": ([(1, 3, 35, 35)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((8, 3, 7, 7))), strides=[4, 4], pads=[3, 3, 3, 3])), "strided"), "conv-stride"),
    "stride-17x5-dilated": ([(1, 3, 60, 40)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((8, 3, 3, 4))), strides=[17, 5], dilations=[2, 3],
                                                                             pads=[1, 2, 1, 2])), "strided_dilated"), "conv-stride"),
    "stride-5-grouped": ([(1, 6, 31, 29)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((6, 2, 4, 3))), strides=[5, 4], groups=3)),
                                                                "strided_grouped"), "conv-stride"),
    # equal strides but a dilation: not a space-to-depth (fuzz seed 514)
    "stride-5-dilated-2x1": ([(1, 4, 64, 16)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((8, 4, 3, 3))), strides=[5, 5], dilations=[2, 1],
                                                                                   pads=[2, 1, 1, 0])), "strided_dilated_equal"), "conv-stride"),
    "stride-4-runtime-weight": ([(1, 3, 1, 50), (4, 3, 1, 7)], lambda e, x, w: _named(e.add(ane.ConvOp(x, w, strides=[1, 4])), "strided_runtime"),
                                "conv-stride"),
    # 160 channels in 2 phases are past PHASE_CHANNELS: the phase convs (taps 0, 2, 4 and 1, 3) are summed
    "stride-4-dilated-2-wide": ([(1, 160, 1, 40)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((8, 160, 1, 5))), strides=[1, 4], dilations=[1, 2])),
                                                                       "strided_wide"), "conv-stride"),
    "patchify-16": ([(1, 3, 64, 64)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((32, 3, 16, 16))), strides=[16, 16])), "patchify"), "conv-kernel-width"),
    "pool-stride-3": ([(1, 2, 17, 17)], lambda e, x: _named(e.add(ane.AvgPoolOp(x, [3, 3], [3, 3], [1, 1, 1, 1])), "pooled"), "pool-stride"),
    "resize-4mb": ([(1, 64, 64, 128)], lambda e, x: _named(e.add(ane.ResizeOp(x, (1, 64, 128, 256), "bilinear", [2.0, 2.0])), "big_resize"),
                   "working-set"),
    "tile-4mb": ([(1, 64, 64, 16)], lambda e, x: _named(e.add(ane.TileOp(x, [1, 2, 2, 8])), "big_tile"), "working-set"),
    "pad-3mb": ([(1, 96, 112, 112)], lambda e, x: _named(e.add(ane.PadOp(x, [0, 0, 0, 0, 0, 0, 1, 1])), "padded_big"), "working-set"),
    "max-pool-35": ([(1, 2, 40, 40)], lambda e, x: _named(e.add(ane.MaxPoolOp(x, [35, 35], [1, 1], [2, 2, 2, 2])), "wide_max"), "pool-window"),
    "avg-pool-33": ([(1, 2, 40, 40)], lambda e, x: _named(e.add(ane.AvgPoolOp(x, [33, 3], [3, 1])), "wide_avg"), "pool-window"),
    "pad-20": ([(1, 2, 8, 8)], lambda e, x: _named(e.add(ane.PadOp(x, [0, 0, 20, 3, 0, 0, 1, 20], value=0.5)), "padded"), "pad-size"),
    "matmul-4mb": ([(1, 8, 512, 512), (1, 8, 512, 64)], lambda e, a, b: _named(e.add(ane.MatmulOp(a, b)), "big_matmul"), "working-set"),
    "deep-input-5mb": ([(1, 40000, 1, 32)], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((4, 40000, 1, 1))))), "deep"), "kernel-memory"),
    # a recogniser's CTC head over 18,385 classes, reshaped from the ANE layout to rank 3
    "reshape-w-18385": ([(1, 40, 1, 18385)], lambda e, x: _named(e.add(ane.ReshapeOp(e.add(ane.ReluOp(x)), (1, 40, 18385))), "ctc"), "dims"),
    # the head of a DB text detector at 640: 24x320x320 in, 2x upsampled by a stride-2 transposed conv
    "deconv-input-4mb": ([(1, 24, 320, 320)], lambda e, x: _named(e.add(ane.ConvTransposeOp(x, e.constant(_w((24, 1, 2, 2))), strides=[2, 2])), "db_head"),
                         "working-set"),
    # basic-pitch's stride-256 conv as concatenated taps: each steps along W past the DMA's step field
    "slice-step-256": ([(1, 1, 1, 44100)], lambda e, x: _named(e.add(ane.SliceOp(e.add(ane.ReluOp(x)), [0, 0, 0, 5], [1, 1, 1, 43782], [1, 1, 1, 256])),
                                                                "taps"), "slice-w-span"),
    "deconv-k3-pad": ([(1, 16, 300, 300)], lambda e, x: _named(e.add(ane.ConvTransposeOp(x, e.constant(_w((16, 4, 3, 3))), strides=[2, 2], pads=[1, 1, 1, 1],
                                                                                     output_padding=[1, 1])), "deconv_k3"), "working-set"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_over_limit_op_compiles_to_legal_tiles_that_compute_the_same(case: str) -> None:
    shapes, body, rule = CASES[case]
    m1 = get_target("m1")
    before = segment_graph(shapes, body)
    (original,) = [op for op in before.walk() if legality(op, m1, strict=True).rule == rule and op.name != "ane.segment"
                   and op.attributes.get("ane.name", ane.StringAttr("n")).data != "n"]
    after = run_pass(before, TilePass(target="m1"))
    (segment,) = ops_named(after, "ane.segment")
    body_ops = [op for op in segment.body.block.ops if not isinstance(op, ane.ConstOp | ane.YieldOp)]
    for op in body_ops:
        assert legality(op, m1, strict=True), f"{op.name}: {legality(op, m1, strict=True).reason}"
    name = original.attributes["ane.name"].data
    tiles = [op for op in body_ops if TILE_OF_ATTR in op.attributes and op.attributes[TILE_OF_ATTR].data == name]
    assert len(tiles) >= 2
    report = build_report(after, m1)
    assert next(r for r in report.ops if r.name == name).tiles == len(tiles)
    assert_same_results(before, after, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("case", ["stride-17x5-dilated", "stride-5-grouped", "stride-4-dilated-2-wide", "stride-5-dilated-2x1"])
def test_large_strides_compute_only_the_outputs_kept(case: str) -> None:
    """Issue 17: strides past 2 that space-to-depth cannot take (unequal, dilated, grouped) were run at
    stride 1 and subsampled: s_h·s_w times the MACs (a thousand times for 23×23) and as large a tensor."""
    shapes, body, _ = CASES[case]
    before = segment_graph(shapes, body)
    after = run_pass(before, TilePass(target="m1"))
    macs = [sum(flops(op) for op in module.walk() if isinstance(op, ane.ConvOp)) for module in (before, after)]
    assert macs[1] <= macs[0]
    assert max(math.prod(shape_of(r)) for op in after.walk() if isinstance(op, ane.ConvOp) for r in op.results) \
        <= max(math.prod(shape_of(r)) for op in before.walk() if isinstance(op, ane.ConvOp) for r in op.results)


def _pitch_conv(time_on_height: bool, frames: int = 1024, taps: int = 512, stride: int = 4, out: int = 16):
    """A pitch tracker's first layer: 1 channel, a `taps`-tap kernel at `stride`, "same" padding, written
    as (K, 1) on (N, C, T, 1) or (1, K) on (N, C, 1, T)."""
    def oriented(v: int, other: int = 1) -> list[int]:
        return [v, other] if time_on_height else [other, v]

    pad = (taps - stride) // 2
    return [(1, 1, *oriented(frames))], lambda e, x: _named(e.add(ane.ConvOp(x, e.constant(_w((out, 1, *oriented(taps)))), strides=oriented(stride),
                                                                             pads=oriented(pad, 0) * 2)), "pitch_conv1")


@pytest.mark.parametrize("time_on_height", [False, True], ids=["1xK", "Kx1"])
def test_a_few_channel_wide_kernel_strided_conv_is_one_conv_over_its_stride_phases(time_on_height: bool) -> None:
    """Issue 23: a 1-channel 512-tap stride-4 conv was 512 one-tap strided windows, summed (a thousand
    tiles). Its 4 stride phases, concatenated, are 4 channels of a 128-tap stride-1 conv; the kernel limit
    cuts that into blocks whose shifted windows, concatenated again, are the channels of one conv: the
    gathered windows as one matrix product, whichever axis the time runs along."""
    m1 = get_target("m1")
    before = segment_graph(*_pitch_conv(time_on_height))
    after = run_pass(before, TilePass(target="m1"))
    limit = m1.limits.max_kernel_height.value if time_on_height else m1.limits.max_kernel_width_fp16.value
    blocks = math.ceil(512 / 4 / limit)
    (conv,) = ops_named(after, "ane.conv")
    assert shape_of(conv.input)[1] == 4 * blocks and max(conv.kernel()) == math.ceil(512 / 4 / blocks)
    assert len(ops_named(after, "ane.slice")) == 4 + blocks  # a window per phase, then one per kernel block
    assert not ops_named(after, "ane.add")
    assert_same_results(before, after, rtol=2e-4, atol=2e-4)
    assert_same_results(before, after, rtol=1e-2, precision="f16")


def test_a_few_channel_wide_kernel_strided_conv_compiles_to_few_tiles_that_match_onnxruntime() -> None:
    """The same conv through the whole pipeline: few tiles, and the simulated ANE agrees with onnxruntime."""
    import onnxruntime

    rng = np.random.default_rng(0)
    weight = _w((16, 1, 1, 512))
    node = helper.make_node("Conv", ["frame", "w"], ["y"], name="conv1", kernel_shape=[1, 512], strides=[1, 4], pads=[0, 254, 0, 254])
    graph = helper.make_graph([node], "pitch", [helper.make_tensor_value_info("frame", TensorProto.FLOAT, [1, 1, 1, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 1, 256])], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    compiled = anec.compile(model, target="m1", emit="descriptors")
    assert next(r for r in compiled.report.ops if r.name == "conv1").tiles <= 48
    feeds = {"frame": rng.standard_normal((1, 1, 1, 1024)).astype(np.float32)}
    (want,) = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = compiled.run(feeds)["y"]
    assert np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want) <= 2e-3


def test_limits_of_the_target_decide_what_is_tiled() -> None:
    # 20000 wide is legal on an M4 (65536-wide dimensions), not on an M1
    shapes, body, _ = CASES["width-20000"]
    module = segment_graph(shapes, body)
    m4 = run_pass(module, TilePass(target="m4"))
    assert not [op for op in m4.walk() if TILE_OF_ATTR in op.attributes]
    m1 = run_pass(module, TilePass(target="m1"))
    assert [op for op in m1.walk() if TILE_OF_ATTR in op.attributes]


def test_weight_tiles_fill_the_kernel_memory_in_whole_lanes() -> None:
    shapes, body, _ = CASES["weight-3mb"]
    after = run_pass(segment_graph(shapes, body), TilePass())
    convs = ops_named(after, "ane.conv")
    assert len(convs) == 55  # 28 channels of 2 KB weights + 2 B bias each: 7 whole 4-channel lanes per tile
    assert all(weight_bytes(c) <= 64 * 1024 and shape_of(c.result)[1] % 4 == 0 for c in convs)


def test_working_set_tiles_split_rows_first() -> None:
    shapes, body, _ = CASES["activation-4mb"]
    after = run_pass(segment_graph(shapes, body), TilePass())
    convs = ops_named(after, "ane.conv")
    assert all(shape_of(c.result)[1] == 32 and shape_of(c.result)[3] == 256 for c in convs)
    assert all(largest_operand_bytes(c) <= 2 * 1024 * 1024 for c in convs)


def _over_limit_onnx_model():
    def conv(name, x, w, **attrs):
        return helper.make_node("Conv", [x, w], [name], name=name, **attrs)

    weights = {"w1": _w((4, 4, 31, 31)), "w2": _w((8, 4, 1, 3), 1), "w3": _w((32, 64, 3, 3), 2), "w4": _w((1024, 1536), 3) * 8,
               "w5": _w((8, 3, 7, 7), 4)}
    nodes = [conv("kernel_31x31", "x1", "w1", pads=[15, 15, 15, 15]),
             helper.make_node("Relu", ["x2"], ["r2"], name="relu_wide"), conv("width_20000", "r2", "w2", pads=[0, 1, 0, 1]),
             conv("activation_4mb", "x3", "w3", pads=[1, 1, 1, 1]),
             helper.make_node("MatMul", ["x4", "w4"], ["weight_3mb"], name="weight_3mb"),
             conv("stride_4", "x5", "w5", strides=[4, 4], pads=[3, 3, 3, 3])]
    shapes = {"x1": [1, 4, 40, 40], "x2": [1, 4, 2, 20000], "x3": [1, 64, 128, 256], "x4": [1, 16, 1024], "x5": [1, 3, 35, 35]}
    outs = {"kernel_31x31": [1, 4, 40, 40], "width_20000": [1, 8, 2, 20000], "activation_4mb": [1, 32, 128, 256],
            "weight_3mb": [1, 16, 1536], "stride_4": [1, 8, 9, 9]}
    graph = helper.make_graph(nodes, "over_limits", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in shapes.items()],
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outs.items()],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # onnxruntime reads IR <= 13
    rng = np.random.default_rng(0)
    return model, {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}


@pytest.mark.parametrize("target", ["m1", "m4"])
def test_over_limit_onnx_model_compiles_to_legal_tiles_through_the_whole_pipeline(target: str) -> None:
    import onnxruntime

    model, feeds = _over_limit_onnx_model()
    compiled = anec.compile(model, target=target, emit="descriptors", stop_after="ane-tile")
    segments = ops_named(compiled.ir, "ane.segment")
    assert segments and not compiled.report.host_ops
    for segment in segments:
        for op in segment.body.block.ops:
            if not isinstance(op, ane.ConstOp | ane.YieldOp):
                assert legality(op, compiled.target, strict=True), f"{op.name}: {legality(op, compiled.target, strict=True).reason}"
    tiled = {r.name for r in compiled.report.ops if r.tiles > 1}
    assert {"kernel_31x31", "activation_4mb", "weight_3mb", "stride_4"} <= tiled
    assert ("width_20000" in tiled) == (target == "m1")  # M4 allows 65536-wide tensors
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = compiled.run(feeds)
    for name, want in zip([o.name for o in session.get_outputs()], session.run(None, feeds)):
        rel = np.linalg.norm(got[name].astype(np.float64) - want) / np.linalg.norm(want)
        assert rel <= 1e-2, f"{name}: relative L2 error {rel:.2e}"


def test_every_tileable_rule_has_a_tiler_and_every_tiler_removes_a_tileable_rule() -> None:
    from anec.legality import all_rules
    from anec.lowering.tile import TILERS

    tileable = {rule for rule in all_rules() if rule.tileable}
    assert tileable and set(TILERS) == tileable


def _streamed_matmul_onnx_model():
    """x[512,1024] @ W[1024,4096]: 8 MB of fp16 weights (128× the kernel memory) and a 4 MB output."""
    w = _w((4096, 1024), 5).T.copy()  # unit-scale outputs: no fp16 denormals for M1 to flush
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="streamed")], "streamed_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 4096])], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), w


@pytest.mark.parametrize("target", [t.aliases[0] for t in TARGETS])
def test_a_matmul_with_weights_beyond_the_kernel_memory_streams_by_output_channel_groups(target: str) -> None:
    """Runs on hardware, so it must compile for every chip: output-channel groups whose weights fit
    the kernel memory, streamed one after another, and the (1, C, 1, W) -> (C, W) reshape of the
    4 MB result cut along C as well."""
    model, w = _streamed_matmul_onnx_model()
    compiled = anec.compile(model, target=target, emit="descriptors")
    assert not compiled.report.host_ops
    record = next(r for r in compiled.report.ops if r.name == "streamed")
    assert record.tiles * get_target(target).memory.kernel_memory_bytes.value >= 1024 * 4096 * 2
    x = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)
    got = compiled.run([x])["y"].astype(np.float64)
    want = x.astype(np.float16).astype(np.float64) @ w.astype(np.float16).astype(np.float64)
    assert np.abs(got - want).max() <= 1e-2 * np.abs(want).max()


@pytest.mark.parametrize(("kernel", "stride", "dilation", "pads", "output_padding"),
                         [(2, 2, 1, (0, 0), 0), (3, 2, 1, (1, 1), 1), (4, 3, 1, (2, 0), 2), (3, 1, 2, (0, 3), 0), (1, 3, 1, (0, 0), 2)])
def test_a_transposed_conv_split_along_rows_computes_the_same(kernel: int, stride: int, dilation: int, pads: tuple[int, int],
                                                              output_padding: int) -> None:
    from anec.lowering.tile import even_bounds, split_along

    def body(e, x):
        op = ane.ConvTransposeOp(x, e.constant(_w((3, 2, kernel, 1))), strides=[stride, 1], dilations=[dilation, 1],
                                 pads=[pads[0], 0, pads[1], 0], output_padding=[output_padding, 0])
        return _named(e.add(op), "deconv")

    before = segment_graph([(1, 3, 11, 5)], body)
    after = run_pass(before)
    (op,) = ops_named(after, "ane.conv_transpose")
    rows = shape_of(op.result)[2]
    assert split_along(op, 2, even_bounds(rows, 4)) is not None
    assert len(ops_named(after, "ane.conv_transpose")) == 4
    assert_same_results(before, after)


@pytest.mark.parametrize("mode", ["nearest-floor", "nearest-round_prefer_floor", "nearest-ceil", "bilinear"])
@pytest.mark.parametrize("coordinates", ["asymmetric", "half_pixel", "pytorch_half_pixel"])
@pytest.mark.parametrize("scale", [2, 3])
def test_a_resize_split_along_rows_computes_the_same(mode: str, coordinates: str, scale: int) -> None:
    from anec.lowering.tile import even_bounds, split_along

    kind, _, rounding = mode.partition("-")

    def body(e, x):
        shape = (1, 3, 7 * scale, 5 * scale)
        return _named(e.add(ane.ResizeOp(x, shape, kind, [scale, scale], coordinates, rounding or "round_prefer_floor")), "up")

    before = segment_graph([(1, 3, 7, 5)], body)
    after = run_pass(before)
    (op,) = ops_named(after, "ane.resize")
    assert split_along(op, 2, even_bounds(7 * scale, 4)) is not None
    assert_same_results(before, after)


def test_an_align_corners_resize_is_not_split_along_rows() -> None:
    from anec.lowering.tile import split_along

    before = segment_graph([(1, 3, 7, 5)], lambda e, x: _named(e.add(ane.ResizeOp(x, (1, 3, 14, 10), "bilinear", [2, 2], "align_corners")), "up"))
    (op,) = ops_named(run_pass(before), "ane.resize")
    assert split_along(op, 2, [(0, 7), (7, 14)]) is None


def test_a_top_k_past_the_working_set_is_split_along_rows_and_computes_the_same() -> None:
    """Both results of each row piece are concatenated; the selected axis is never cut."""
    m4 = get_target("m4")
    before = segment_graph([(4, 1024, 600)], lambda e, x: list(e.insert(ane.TopkOp(x, 5, 2, largest=False)).results))
    (original,) = ops_named(before, "ane.topk")
    assert legality(original, m4, strict=True).rule == "working-set"
    after = run_pass(before, TilePass(target="m4"))
    pieces = ops_named(after, "ane.topk")
    assert len(pieces) >= 2 and all(shape_of(p.input)[2] == 600 and legality(p, m4, strict=True) for p in pieces)
    assert all(legality(op, m4, strict=True) for op in ops_named(after, "ane.concat"))
    assert_same_results(before, after, rtol=0, atol=0)


def test_strided_taps_of_a_tensor_wider_than_the_w_field_lower_for_the_m1() -> None:
    """basic-pitch on the M1: a stride-256 conv becomes 256 taps, each every 256th element of a
    44100-wide tensor, concatenated along channels. A W step past the 4-bit WStep field is read
    through a transpose of the tap's span, 43777 wide: past the 15-bit Win field, so to-anehw
    refused. Cut along W, each piece spans at most the transpose limit and the program encodes."""
    from anec.lowering.to_anehw import ToAneHwPass

    def taps(e, x):
        y = e.add(ane.ReluOp(x))
        return e.add(ane.ConcatOp([e.add(ane.SliceOp(y, [0, 0, 0, t], [1, 1, 1, t + 171 * 256 + 1], [1, 1, 1, 256])) for t in range(4)], 1))

    before = segment_graph([(1, 1, 1, 44100)], taps)
    m1 = get_target("m1")
    assert any(legality(op, m1, strict=True).rule == "slice-w-span" for op in ops_named(before, "ane.slice"))
    tiled = run_pass(before, TilePass(target="m1"))
    spans = [(shape_of(op.result)[-1] - 1) * op.steps.get_values()[-1] + 1 for op in ops_named(tiled, "ane.slice")]
    assert spans and max(spans) <= m1.limits.max_transpose_extent.value
    assert_same_results(before, tiled, rtol=1e-3, atol=1e-3)
    lowered = run_pass(tiled, ToAneHwPass(target="m1"))
    assert not ops_named(lowered, "ane.segment")
