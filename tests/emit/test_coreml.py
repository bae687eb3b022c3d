"""`--emit coreml`: every `ane` op and known `host.op`, inside fp16 segments and outside them, is
written as a package that coremltools reads back, and its MIL computes what anec's IR computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Block, Region

import anec
from anec.dialects import ane, host
from anec.dialects.discardable import NAME_ATTR
from anec.errors import AnecError
from anec.interpreter import interpret
from anec.mlpackage import INPUT_NAMES_KEY, OUTPUT_NAMES_KEY
from anec.weights import WeightStore, attach
from tests.emit.ir_cases import CASES, build_module
from tests.emit.support import (
    compiled_model,
    dtype_name,
    emit_package,
    op_types,
    rel_l2,
    run_emitted,
)

TARGETS = ("ios16", "ios17", "ios18")


def _check_outputs(module: ModuleOp, feeds: dict, names: list[str], program, tolerance: float) -> None:
    expected = interpret(module, feeds)
    got = run_emitted(program, feeds)
    failures = []
    for name, want in zip(names, expected):
        out = got[name]
        if out.shape != want.shape:
            failures.append(f"{name}: shape {out.shape} != {want.shape}")
        elif want.dtype.kind in "iub":
            if not np.array_equal(out.astype(want.dtype), want):
                failures.append(f"{name}: integer values differ")
        elif (err := rel_l2(out, want)) > tolerance:
            failures.append(f"{name}: relative L2 {err:.2e} > {tolerance}")
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """Every ANE-side case, each in its own fp16 segment, emitted for every deployment target."""
    module, feeds, names = build_module([c for c in CASES.values() if not c.host_only], segments=True)
    folder = tmp_path_factory.mktemp("segmented")
    programs = {t: emit_package(compiled_model(module, deployment_target=t), folder / f"{t}.mlpackage") for t in TARGETS}
    return module, feeds, names, programs


@pytest.mark.parametrize("target", TARGETS)
def test_every_ane_op_in_fp16_segments_matches_the_ir(segmented, target: str):
    module, feeds, names, programs = segmented
    _check_outputs(module, feeds, names, programs[target], tolerance=2e-3)


def test_segments_become_fp16_ops_between_casts(segmented):
    program = segmented[3]["ios17"]
    function = program.functions["main"]
    assert all(dtype_name(v) == "fp32" for v in function.inputs.values() if dtype_name(v) != "int32")
    # an output that a segment widens to fp32 is returned in fp16, as coremltools does from iOS 16
    assert {dtype_name(v) for v in function.outputs} == {"fp16", "int32"}
    assert not any(op.op_type == "cast" and not op.outputs[0].child_ops for op in function.operations)
    computed = [op for op in function.operations if op.op_type not in ("const", "cast")]
    fp16 = [op for op in computed if dtype_name(op.outputs[0]) == "fp16"]
    assert len(fp16) > 0.9 * len([op for op in computed if dtype_name(op.outputs[0]) in ("fp16", "fp32")])
    assert {"conv", "conv_transpose", "linear", "matmul", "layer_norm", "instance_norm", "max_pool", "avg_pool",
            "upsample_bilinear", "pixel_shuffle", "depth_to_space", "reduce_argmax", "topk", "softmax"} <= set(op_types(program))


def test_fused_attention_only_from_ios18(segmented):
    programs = segmented[3]
    assert "scaled_dot_product_attention" in op_types(programs["ios18"])
    for target in ("ios16", "ios17"):
        assert "scaled_dot_product_attention" not in op_types(programs[target])


def test_every_op_outside_segments_matches_the_ir_at_f32(tmp_path: Path):
    module, feeds, names = build_module(list(CASES.values()), segments=False)
    program = emit_package(compiled_model(module), tmp_path / "flat.mlpackage")
    assert not any(dtype_name(v) == "fp16" for op in program.functions["main"].operations if op.op_type != "cast" for v in op.outputs)
    _check_outputs(module, feeds, names, program, tolerance=1e-5)


def _module(body, arg_types, arg_names, result_names, store: WeightStore | None = None) -> ModuleOp:
    block = Block(arg_types=arg_types)
    results = body(block)
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp("main", (arg_types, [r.type for r in results]), Region(block),
                     arg_attrs=ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(n)}) for n in arg_names]),
                     res_attrs=ArrayAttr([DictionaryAttr({NAME_ATTR: StringAttr(n)}) for n in result_names]))
    module = ModuleOp([fn])
    attach(module, store or WeightStore())
    module.verify()
    return module


def _add(block: Block, op):
    block.add_op(op)
    return op.results


def test_an_op_mil_cannot_express_is_an_error_naming_it_and_nothing_is_written(tmp_path: Path):
    x_type = TensorType(f32, [2, 3])

    def body(block):
        op = host.HostOp("onnx.NonZero", [block.args[0]], [TensorType(i64, [2, 6])], version=13)
        op.attributes[NAME_ATTR] = StringAttr("/model/NonZero_3")
        return _add(block, op)

    model = compiled_model(_module(body, [x_type], ["x"], ["nz"]))
    out = tmp_path / "model.mlpackage"
    with pytest.raises(AnecError, match=r"/model/NonZero_3 \(onnx.NonZero\): onnx.NonZero cannot be expressed in Core ML"):
        model.save(out)
    assert list(tmp_path.iterdir()) == []


def test_a_form_coremltools_rejects_is_an_error_naming_the_op(tmp_path: Path):
    types = [TensorType(f32, [2, 3]), TensorType(f32, [3, 4])]

    def body(block):
        op = host.HostOp("onnx.Einsum", list(block.args), [TensorType(f32, [2, 4])], {"equation": StringAttr("ij,jk->ik")})
        return _add(block, op)

    with pytest.raises(AnecError, match=r"onnx\.Einsum cannot be expressed.*coremltools rejects it"):
        compiled_model(_module(body, types, ["a", "b"], ["c"])).save(tmp_path / "m.mlpackage")


def test_names_are_mil_identifiers_and_the_package_records_the_originals(tmp_path: Path):
    x_type = TensorType(f32, [2, 3])

    def body(block):
        (y,) = _add(block, ane.ReluOp(block.args[0]))
        return [y, block.args[0], y]  # an input and a repeated value are outputs too

    module = _module(body, [x_type], ["input.1"], ["out/relu", "0_passthrough", "again"])
    path = tmp_path / "m.mlpackage"
    program = emit_package(compiled_model(module), path)
    assert list(program.functions["main"].inputs) == ["input_1"]
    assert [v.name for v in program.functions["main"].outputs] == ["out_relu", "v_0_passthrough", "again"]
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], np.float32)
    got = run_emitted(program, {"input.1": x})
    np.testing.assert_array_equal(got["out_relu"], np.maximum(x, 0))
    np.testing.assert_array_equal(got["v_0_passthrough"], x)
    np.testing.assert_array_equal(got["again"], np.maximum(x, 0))
    import coremltools as ct

    metadata = ct.models.MLModel(str(path), skip_model_load=True).user_defined_metadata
    assert json.loads(metadata[INPUT_NAMES_KEY]) == ["input.1"]
    assert json.loads(metadata[OUTPUT_NAMES_KEY]) == ["out/relu", "0_passthrough", "again"]
    assert metadata["anec.deployment_target"] == "ios17"


def test_aten_embedding_is_a_gather(tmp_path: Path):
    table = np.arange(24, dtype=np.float32).reshape(6, 4)
    store = WeightStore()

    def body(block):
        (weight,) = _add(block, ane.ConstOp(TensorType(f32, [6, 4]), handle=store.add(table, "table")))
        return _add(block, host.HostOp("aten.embedding.default", [weight, block.args[0]], [TensorType(f32, [1, 3, 4])]))

    module = _module(body, [TensorType(i64, [1, 3])], ["ids"], ["emb"], store)
    program = emit_package(compiled_model(module), tmp_path / "e.mlpackage")
    ids = np.array([[5, 0, 2]])
    np.testing.assert_array_equal(run_emitted(program, {"ids": ids})["emb"], table[ids])


def test_a_weight_named_by_two_constants_is_stored_once(tmp_path: Path):
    store = WeightStore()
    handle = store.add(np.arange(20, dtype=np.float32).reshape(4, 5), "shared")

    def body(block):
        first = _add(block, ane.ConstOp(TensorType(f32, [4, 5]), handle=handle))[0]
        second = _add(block, ane.ConstOp(TensorType(f32, [4, 5]), handle=handle))[0]
        return _add(block, ane.AddOp(_add(block, ane.MulOp(block.args[0], first))[0], second))

    program = emit_package(compiled_model(_module(body, [TensorType(f32, [4, 5])], ["x"], ["y"], store)), tmp_path / "w.mlpackage")
    consts = [op for op in program.functions["main"].operations if op.op_type == "const" and op.outputs[0].shape == (4, 5)]
    assert len(consts) == 1
    x = np.ones((4, 5), np.float32)
    np.testing.assert_array_equal(run_emitted(program, {"x": x})["y"], 2 * np.arange(20).reshape(4, 5))


def test_unknown_deployment_target_is_an_error(tmp_path: Path):
    module, _, _ = build_module([CASES["relu"]], segments=True)
    with pytest.raises(AnecError, match=r"unknown deployment target 'ios12'.*ios16"):
        compiled_model(module, deployment_target="ios12").save(tmp_path / "m.mlpackage")


def test_a_package_must_be_named_mlpackage(tmp_path: Path):
    module, _, _ = build_module([CASES["relu"]], segments=True)
    with pytest.raises(AnecError, match=r"\.mlpackage"):
        compiled_model(module).save(tmp_path / "m.bin")


def test_macos_names_share_the_ios_opset(tmp_path: Path):
    module, _, _ = build_module([CASES["sdpa"]], segments=True)
    program = emit_package(compiled_model(module, deployment_target="macOS15"), tmp_path / "m.mlpackage")
    assert "scaled_dot_product_attention" in op_types(program)


def test_equal_models_give_byte_equal_programs_and_weights(tmp_path: Path):
    module, _, _ = build_module([CASES["conv"], CASES["linear"]], segments=True)
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.mlpackage"
        compiled_model(module).save(path)
        data = path / "Data" / "com.apple.CoreML"
        files.append(((data / "model.mlmodel").read_bytes(), (data / "weights" / "weight.bin").read_bytes()))
    assert files[0] == files[1]
    assert len(files[0][1]) > 1000  # the weights are in the blob file, not inline in the program


def test_compiling_for_other_emitters_does_not_import_coremltools():
    code = ("import sys, anec.pipeline, anec.emit.coreml, anec.emit.miltext; "
            "assert 'coremltools' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ops_kept_in_float32_stay_float32_in_the_mil_program_between_casts(tmp_path: Path):
    import anec
    from tests.precision_models import scaled_sum, unit_inputs

    compiled = anec.compile(scaled_sum(), emit="coreml", keep_fp32=["ReduceSum"])
    program = emit_package(compiled, tmp_path / "kept.mlpackage")
    ops = {op.name: op for op in program.functions["main"].operations}
    (total,) = [op for op in ops.values() if op.op_type == "reduce_sum"]
    assert dtype_name(total.outputs[0]) == "fp32"
    assert total.x.op.op_type == "cast" and dtype_name(total.x) == "fp32"  # the fp16 segment ends before it
    assert dtype_name(ops["scale"].outputs[0]) == "fp16"
    x = unit_inputs()
    (got,) = run_emitted(program, {"x": x}).values()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, (x.astype(np.float64) * 1000).sum(-1, keepdims=True), rtol=1e-3)


def test_an_onnx_top_k_compiled_for_the_m4_is_a_mil_topk_in_fp16(tmp_path: Path):
    """ONNX TopK imports as `ane.topk`, which the M4 places in a segment: the package holds MIL's
    `topk` on fp16 data, whose values and indices are onnx's (ties by lower index included)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("TopK", ["r", "k"], ["values", "indices"], axis=-1)], "topk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3, 9))],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, None), helper.make_tensor_value_info("indices", TensorProto.INT64, None)],
        [helper.make_tensor("k", TensorProto.INT64, [1], [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = (np.random.default_rng(0).integers(-3, 4, (2, 3, 9)) * 0.5).astype(np.float32)
    compiled = anec.compile(model, target="m4")
    assert not compiled.report.host_ops
    program = emit_package(compiled, tmp_path / "topk.mlpackage")
    (topk,) = [op for op in program.functions["main"].operations if op.op_type == "topk"]
    assert dtype_name(topk.outputs[0]) == "fp16"
    got = run_emitted(program, {"x": x})
    values, indices = ReferenceEvaluator(model).run(None, {"x": x})
    assert got["indices"].tolist() == indices.tolist()
    assert got["values"].astype(np.float32).tolist() == values.tolist()


@pytest.mark.parametrize("then_relu", [False, True])
def test_an_embedding_table_is_stored_in_fp16_only_where_the_ane_reads_its_rows(then_relu: bool, tmp_path: Path):
    """gather → relu runs the rows on the ANE in fp16, so the float32 table is stored in fp16 (rounding
    the table then selecting equals selecting then rounding); a gather whose rows leave the model as
    they are keeps the table in float32, exactly."""
    from onnx import numpy_helper

    table = np.random.default_rng(8).standard_normal((1000, 8)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows" if then_relu else "y"])]
    if then_relu:
        nodes.append(helper.make_node("Relu", ["rows"], ["y"]))
    graph = helper.make_graph(nodes, "lookup", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8])], [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    program = emit_package(anec.compile(model, emit="coreml"), tmp_path / "lookup.mlpackage")
    stored = sum(p.stat().st_size for p in (tmp_path / "lookup.mlpackage").rglob("weight.bin"))
    assert (table.size * 2 <= stored < table.size * 3) if then_relu else stored >= table.size * 4
    ids = np.random.default_rng(9).integers(0, 1000, (1, 16))
    rows = table[ids]
    expected = np.maximum(rows.astype(np.float16), 0) if then_relu else rows
    assert run_emitted(program, {"ids": ids})["y"].astype(np.float32).tolist() == expected.astype(np.float32).tolist()
