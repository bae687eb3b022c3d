"""ane-fp16: f16 segments with casts at the edges, safe fixes, and a lint that names the ops."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from xdsl.dialects.builtin import Float16Type, StringAttr

import anec
from anec.cli import main
from anec.dialects import ane
from anec.dialects.ane import element_type_of, shape_of
from anec.errors import AnecError
from anec.interpreter import interpret
from anec.lowering.fp16 import Fp16Pass
from anec.lowering.layout import LayoutPass
from anec.pipeline import CompileOptions, run_pipeline
from anec.report import build_report
from anec.targets import get_target
from anec.weights import clone_module
from tests.lowering.graphs import (
    assert_same_results,
    ops_named,
    run_pass,
    segment_graph,
    transformer_block,
)


def _block(e, x, mask):
    return transformer_block(e, x, mask, heads=4, ffn=64)


@pytest.fixture(scope="module")
def block():
    return segment_graph([(1, 16, 32), (1, 1, 1, 16)], _block)


def _mask_inputs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.where(np.arange(16) < 12, 0.0, np.finfo(np.float32).min).astype(np.float32).reshape(1, 1, 1, 16)
    return [rng.standard_normal((1, 16, 32)).astype(np.float32), mask]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # the f32 mask's lowest value is -inf in fp16
@pytest.mark.parametrize("laid_out", [False, True], ids=["as-imported", "after-layout"])
def test_transformer_block_in_fp16_matches_float32(block, laid_out: bool) -> None:
    before = run_pass(block, LayoutPass()) if laid_out else block
    after = run_pass(before, Fp16Pass())
    assert_same_results(block, after, inputs=_mask_inputs(), precision="f16", rtol=1e-2)


def test_segment_tensors_are_f16_and_casts_sit_only_at_the_edges(block) -> None:
    after = run_pass(block, Fp16Pass())
    (segment,) = ops_named(after, "ane.segment")
    body = segment.body.block
    for op in body.ops:
        if isinstance(op, ane.CastOp):
            at_entry = op.input in body.args
            at_exit = isinstance(op.result.get_user_of_unique_use(), ane.YieldOp)
            assert at_entry or at_exit, f"cast inside the segment: {op}"
        elif not isinstance(op, ane.YieldOp):
            for r in op.results:
                assert isinstance(element_type_of(r), Float16Type), f"{op.name} produces {r.type}"
    assert [r.type for r in segment.outputs] == [r.type for r in ops_named(block, "ane.segment")[0].outputs]


def test_fixes_are_recorded_and_reported(block) -> None:
    after = run_pass(block, Fp16Pass())
    report = build_report(after, get_target("m1"))
    assert sum("epsilon 1e-12 raised to 1e-07" in f for f in report.fp16_fixes) == 2


def _hazards(e, x):
    hot = e.add(ane.MatmulOp(x, e.constant(np.full((1, 64, 64), 16.0, np.float32))))
    hot.owner.attributes["ane.name"] = StringAttr("hot_matmul")
    big = e.add(ane.MulOp(x, e.scalar(6.0e4, x)))
    big.owner.attributes["ane.name"] = StringAttr("big_scale")
    return e.add(ane.AddOp(e.add(ane.ReluOp(hot)), e.add(ane.TanhOp(big))))


def test_planted_range_hazards_are_flagged_by_name_in_the_report() -> None:
    module = segment_graph([(1, 8, 64)], _hazards)
    inputs = {"arg0": np.full((1, 8, 64), 40.0, np.float32)}
    stats = run_pipeline(module, CompileOptions(emit="ir", example_inputs=[inputs["arg0"]], stop_after="ane-fp16"))
    warnings = build_report(module, get_target("m1"), stats).fp16_warnings
    assert any(w.startswith("hot_matmul: output reaches 4.1e+04") and "MAC" in w for w in warnings), warnings
    assert any(w.startswith("big_scale: output reaches 2.4e+06") and "65504" in w for w in warnings), warnings


def test_without_sample_inputs_the_planted_hazards_are_safe_in_the_default_input_range() -> None:
    after = run_pass(segment_graph([(1, 8, 64)], _hazards), Fp16Pass())
    assert not build_report(after, get_target("m1")).fp16_warnings  # |x| ≤ 1: 1024 and 6e4 at most


def test_without_sample_inputs_a_declared_input_range_reveals_the_planted_hazards() -> None:
    after = run_pass(segment_graph([(1, 8, 64)], _hazards), Fp16Pass(input_ranges={"arg0": (-40.0, 40.0)}))
    flags = dict(build_report(after, get_target("m1")).fp16_flags)
    assert flags["hot_matmul"].kind == "MAC saturation" and flags["hot_matmul"].verdict == "proven"
    assert flags["big_scale"].kind == "overflow" and flags["big_scale"].verdict == "proven"


def test_calibrate_uses_seeded_random_inputs() -> None:
    after = run_pass(segment_graph([(1, 8, 64)], _hazards), Fp16Pass(calibrate=True))
    warnings = build_report(after, get_target("m1")).fp16_warnings
    assert any(w.startswith("big_scale:") for w in warnings)


def test_sample_inputs_that_do_not_fit_the_model_are_a_user_error() -> None:
    module = segment_graph([(1, 8, 64)], _hazards)
    with pytest.raises(AnecError, match="example inputs lack 'arg0'"):
        Fp16Pass(example_inputs={"nope": np.zeros(3)}).apply(None, clone_module(module))  # type: ignore[arg-type]


def test_log_sum_exp_gets_max_subtraction_and_survives_large_inputs() -> None:
    module = segment_graph([(2, 6, 16)], lambda e, x: e.add(ane.ReduceLogSumExpOp(x, [2], keepdims=False)))
    after = run_pass(module, Fp16Pass())
    assert ops_named(after, "ane.reduce_max") and not ops_named(after, "ane.reduce_logsumexp")
    x = (np.random.default_rng(0).standard_normal((2, 6, 16)) * 3 + 20).astype(np.float32)  # exp(23) overflows fp16
    assert_same_results(module, after, inputs=[x], precision="f16", rtol=1e-3)
    assert shape_of(ops_named(after, "ane.segment")[0].outputs[0]) == (2, 6)


def _masked_attention(fill: float, guard: bool):
    def body(e, scores, keep):
        mask = e.add(ane.SelectOp(e.add(ane.GreaterOp(keep, e.scalar(0.5, keep))), e.scalar(0.0, keep), e.scalar(fill, keep)))
        probs = e.add(ane.SoftmaxOp(e.add(ane.AddOp(scores, mask)), 3))
        if guard:  # the exporters' NaN guard for rows masked entirely
            probs = e.add(ane.SelectOp(e.add(ane.NotEqualOp(probs, probs)), e.scalar(0.0, probs), probs))
        return probs
    return body


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # NaN rows of the -inf reference
@pytest.mark.parametrize("fill, guard, fixed", [(float(np.finfo(np.float32).min), False, True), (float("-inf"), False, True),
                                                (float("-inf"), True, False)], ids=["f32-lowest", "-inf", "-inf-nan-guarded"])
def test_masks_become_finite_unless_the_model_handles_fully_masked_rows(fill: float, guard: bool, fixed: bool) -> None:
    module = segment_graph([(1, 2, 4, 8), (1, 1, 4, 8)], _masked_attention(fill, guard))
    after = run_pass(module, Fp16Pass())
    report = build_report(after, get_target("m1"))
    assert bool(report.fp16_fixes) == fixed and bool(report.fp16_warnings) == (not fixed)
    keep = np.ones((1, 1, 4, 8), np.float32)
    keep[..., 5:] = 0.0
    keep[..., 2, :] = 0.0  # row 2 masked entirely
    scores = np.random.default_rng(0).standard_normal((1, 2, 4, 8)).astype(np.float32)
    inputs = [scores, keep]
    if fixed and np.isinf(fill):  # a fully masked row turns from NaN into uniform weights; the others agree
        expected = interpret_rows(module, inputs)
        actual = interpret_rows(after, inputs)
        np.testing.assert_allclose(np.delete(actual, 2, axis=2), np.delete(expected, 2, axis=2), atol=2e-3)
        np.testing.assert_allclose(actual[:, :, 2], 1 / 8, atol=1e-3)
    else:
        assert_same_results(module, after, inputs=inputs, precision="f16", rtol=1e-2)


def interpret_rows(module, inputs):
    return interpret(module, inputs, precision="f32", segments="f32")[0]


def test_compile_cli_calibrates_on_sample_files(tmp_path, capsys) -> None:
    nodes = [helper.make_node("Mul", ["x", "k"], ["big"], name="big_scale"), helper.make_node("Relu", ["big"], ["y"], name="act")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor("k", TensorProto.FLOAT, [1], [6.0e4])])
    model = tmp_path / "m.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    np.save(tmp_path / "x.npy", np.full((1, 4, 8, 8), 3.0, np.float32))
    code = main(["compile", str(model), "--emit", "ir", "-o", str(tmp_path / "m.mlir"), "--calibrate", f"x={tmp_path / 'x.npy'}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "fp16 warning: big_scale: output reaches 1.8e+05" in out
    assert main(["compile", str(model), "--emit", "ir", "-o", str(tmp_path / "n.mlir"), "--calibrate", "x"]) == 2
    assert "is not NAME=FILE.npy" in capsys.readouterr().err


def test_planted_hazards_in_an_onnx_model_are_named_in_the_compiled_report() -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["hot"], name="hot_matmul"),
             helper.make_node("Mul", ["x", "k"], ["big"], name="big_scale"),
             helper.make_node("Add", ["hot", "big"], ["y"], name="sum")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [8, 8], [600.0] * 64),
                               helper.make_tensor("k", TensorProto.FLOAT, [1], [6.0e4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sample = {"x": np.full((1, 16, 8), 8.0, np.float32)}  # x·w = 38400 > 2^15; x·k = 480000 > 65504
    compiled = anec.compile(model, target="m1", emit="ir", example_inputs=sample)
    warnings = compiled.report.to_json()["fp16_warnings"]
    assert any(w.startswith("hot_matmul:") and "32768" in w for w in warnings), warnings
    assert any(w.startswith("big_scale:") and "65504" in w for w in warnings), warnings
    assert not anec.compile(model, target="m1", emit="ir").report.fp16_warnings  # no samples, no range facts
