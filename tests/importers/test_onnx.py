"""The ONNX importer: what it maps to ANE ops, what it folds, inlines and leaves to the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func

from anec.dialects import ane, host
from anec.errors import AnecError
from anec.importers import import_model
from anec.importers.onnx import import_onnx
from anec.interpreter import input_names, interpret, output_names
from anec.weights import store_of
from tests.importers.onnx_models import F, model, random, reference


def ops_of(module) -> list:
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    return [op for op in fn.body.block.ops if not isinstance(op, func.ReturnOp)]


def names_of(module) -> list[str]:
    """The compute ops, by name (constants left out)."""
    return [op.op_name.data if isinstance(op, host.HostOp) else op.name for op in ops_of(module) if not isinstance(op, ane.ConstOp)]


def check_against_reference(m: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-6):
    module = import_onnx(m)
    got = interpret(module, feeds)
    for g, r in zip(got, reference(m, feeds)):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
    return module


def test_conv_relu_maps_to_ane_ops_with_names_and_weights_in_the_store() -> None:
    w = random((8, 3, 3, 3), 1)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["c"], ["y"], name="relu1")],
              [("x", F, [1, 3, 16, 16])], ["y"], {"w": w, "b": random((8,), 2)})
    module = check_against_reference(m, {"x": random((1, 3, 16, 16))})
    ops = ops_of(module)
    conv = next(op for op in ops if isinstance(op, ane.ConvOp))
    assert conv.attributes["ane.name"].data == "conv1"
    assert next(op for op in ops if isinstance(op, ane.ReluOp)).attributes["ane.name"].data == "relu1"
    weight = conv.weight.owner
    assert isinstance(weight, ane.ConstOp) and weight.handle is not None
    assert np.array_equal(store_of(module)[weight.handle.data], w)
    fn = next(iter(module.ops))
    assert input_names(fn) == ["x"] and output_names(fn) == ["y"]


def test_broadcasting_operands_get_rank_equalizing_reshapes() -> None:
    m = model([helper.make_node("Add", ["x", "v"], ["y"])], [("x", F, [2, 3, 4]), ("v", F, [4])], ["y"])
    module = check_against_reference(m, {"x": random((2, 3, 4)), "v": random((4,), 1)})
    add = next(op for op in ops_of(module) if isinstance(op, ane.AddOp))
    assert [len(ane.shape_of(v)) for v in add.operands] == [3, 3]


def test_exporter_shape_arithmetic_folds_into_a_static_reshape() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write a flatten."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus_one": np.array([-1], np.int64)}
    m = model(nodes, [("x", F, [2, 3, 4])], ["y"], inits)
    module = check_against_reference(m, {"x": random((2, 3, 4))})
    assert names_of(module) == ["ane.reshape"]
    assert ane.shape_of(ops_of(module)[-1].result) == (2, 12)


def test_ops_without_a_handler_are_inlined_from_their_onnx_function() -> None:
    """MeanVarianceNormalization has no handler: its schema function body becomes ANE ops."""
    m = model([helper.make_node("MeanVarianceNormalization", ["x"], ["y"])], [("x", F, [2, 3, 4, 5])], ["y"])
    module = check_against_reference(m, {"x": random((2, 3, 4, 5))}, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(op, host.HostOp) for op in ops_of(module))
    assert "ane.reduce_mean" in names_of(module)


def test_model_local_functions_are_inlined() -> None:
    body = [helper.make_node("Mul", ["a", "a"], ["sq"]), helper.make_node("Add", ["sq", "a"], ["out"])]
    fn = helper.make_function("custom", "SquarePlus", ["a"], ["out"], body, [helper.make_opsetid("", 17)])
    m = model([helper.make_node("SquarePlus", ["x"], ["y"], domain="custom")], [("x", F, [3, 4])], ["y"],
              functions=[fn], extra_opsets={"custom": 1})
    module = import_onnx(m)
    assert names_of(module) == ["ane.mul", "ane.add"]
    x = random((3, 4))
    np.testing.assert_allclose(interpret(module, {"x": x})[0], x * x + x, rtol=1e-6)


def test_unmapped_ops_become_host_ops_that_run_on_the_cpu() -> None:
    m = model([helper.make_node("Hardmax", ["x"], ["y"], axis=0)], [("x", F, [3, 8])], ["y"], {})
    module = check_against_reference(m, {"x": random((3, 8))})
    (hardmax,) = [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    assert hardmax.op_name.data == "onnx.Hardmax" and hardmax.version.value.data == 17
    assert hardmax.attrs.data["axis"].value.data == 0


def test_host_ops_keep_the_positions_of_omitted_optional_inputs() -> None:
    """Resize(x, roi='', scales='', sizes) with cubic mode: a CPU op whose operands skip two slots."""
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic")
    m = model([node], [("x", F, [1, 1, 4, 4])], ["y"], {"sizes": np.array([1, 1, 6, 6], np.int64)}, opset=13)
    module = check_against_reference(m, {"x": random((1, 1, 4, 4))})
    (resize,) = [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    assert list(resize.attributes["host.arg_slots"].get_values()) == [0, 3]
    assert "cubic resize" in resize.attributes["ane.reason"].data


def test_opset_11_clip_bounds_come_from_constant_inputs() -> None:
    m = model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", F, [4, 4])], ["y"],
              {"lo": np.array(-0.5, np.float32), "hi": np.array(0.25, np.float32)}, opset=11)
    module = check_against_reference(m, {"x": random((4, 4))})
    assert names_of(module) == ["ane.clamp"]


@pytest.mark.parametrize(("equation", "shapes"), [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bhid,bhjd->bhij", [(2, 3, 4, 8), (2, 3, 5, 8)]),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("bij->b", [(2, 3, 4)]),
])
def test_einsum_common_forms_become_matmuls_transposes_and_sums(equation: str, shapes: list) -> None:
    names = [f"x{i}" for i in range(len(shapes))]
    m = model([helper.make_node("Einsum", names, ["y"], equation=equation)], [(n, F, s) for n, s in zip(names, shapes)], ["y"],
              opset=12)
    module = check_against_reference(m, {n: random(s, i) for i, (n, s) in enumerate(zip(names, shapes))}, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(op, host.HostOp) for op in ops_of(module))


def test_gemm_with_a_constant_bias_becomes_one_matmul() -> None:
    m = model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)], [("x", F, [2, 8])], ["y"],
              {"w": random((4, 8), 1), "c": random((4,), 2)})
    module = check_against_reference(m, {"x": random((2, 8))})
    assert names_of(module) == ["ane.matmul"]
    assert next(op for op in ops_of(module) if isinstance(op, ane.MatmulOp)).bias is not None


def test_batch_norm_with_constant_statistics_folds_into_scale_and_shift() -> None:
    stats = {"s": random((3,), 1), "b": random((3,), 2), "m": random((3,), 3), "v": np.abs(random((3,), 4)) + 0.5}
    m = model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], [("x", F, [1, 3, 4, 4])], ["y"], stats)
    module = check_against_reference(m, {"x": random((1, 3, 4, 4))})
    assert names_of(module) == ["ane.mul", "ane.add"]


def test_dynamic_dimensions_need_input_shapes() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, ["batch", 8])], ["y"])
    with pytest.raises(AnecError, match=r"input 'x' has a dynamic dimension 0 \(batch\).*--input-shape x=N,8"):
        import_onnx(m)
    module = import_onnx(m, input_shapes={"x": [4, 8]})
    assert ane.shape_of(next(iter(module.ops)).args[0]) == (4, 8)
    with pytest.raises(AnecError, match="sets dimension 1 of 'x' to 9, but the model fixes it at 8"):
        import_onnx(m, input_shapes={"x": [4, 9]})
    with pytest.raises(AnecError, match="'y', which is not an input"):
        import_onnx(m, input_shapes={"y": [4, 8]})


def test_external_data_files_are_loaded(tmp_path: Path) -> None:
    w = random((64, 64), 1)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", F, [2, 64])], ["y"], {"w": w})
    onnx.save_model(m, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data",
                    size_threshold=0)
    assert (tmp_path / "m.data").exists()
    x = random((2, 64))
    module = import_model(tmp_path / "m.onnx")
    np.testing.assert_allclose(interpret(module, {"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)
    (tmp_path / "m.data").unlink()
    with pytest.raises(AnecError, match="cannot load the model's external data"):
        import_model(tmp_path / "m.onnx")


def test_a_string_input_is_refused_clearly() -> None:
    m = model([helper.make_node("Identity", ["s"], ["t"])], [("s", TensorProto.STRING, [2])], ["t"])
    with pytest.raises(AnecError, match="input 's' holds strings"):
        import_onnx(m)


def test_initializer_used_as_output_becomes_a_constant() -> None:
    m = model([helper.make_node("Identity", ["c"], ["y"])], [], ["y"], {"c": np.arange(4, dtype=np.float32)})
    module = import_onnx(m)
    np.testing.assert_array_equal(interpret(module, {})[0], np.arange(4, dtype=np.float32))


def test_folded_constants_keep_their_dtype_in_the_ir() -> None:
    value = numpy_helper.from_array(np.array([1, 2, 3], np.int32), "v")
    m = model([helper.make_node("Constant", [], ["c"], value=value), helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT)],
              [], ["y"])
    module = import_onnx(m)
    assert interpret(module, {})[0].dtype == np.float32


def _if_model(cond: np.ndarray | None) -> onnx.ModelProto:
    """y = If(c, then: x * w, else: x + w), where w is a value of the outer graph the branches read."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, [2, 3])])
    else_g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, [2, 3])])
    nodes = [helper.make_node("Relu", ["x0"], ["x"]),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    inputs = [("x0", F, [2, 3])] + ([] if cond is not None else [("c", TensorProto.BOOL, [])])
    inits = {"w": random((2, 3), 1)} | ({"c": cond} if cond is not None else {})
    return model(nodes, inputs, ["y"], inits)


def test_an_if_with_a_constant_condition_is_the_branch_it_takes() -> None:
    module = check_against_reference(_if_model(np.array(False)), {"x0": random((2, 3))})
    assert names_of(module) == ["ane.relu", "ane.add"]


def test_an_if_decided_at_run_time_runs_on_the_cpu_with_the_values_its_branches_read() -> None:
    m = _if_model(None)
    module = import_onnx(m)
    (branch,) = [op for op in ops_of(module) if isinstance(op, host.HostOp)]
    assert [a.data for a in branch.attributes["host.captured"].data] == ["w", "x"]
    assert "condition is computed at run time" in branch.attributes["ane.reason"].data and "--freeze" in branch.attributes["ane.reason"].data
    x = random((2, 3))
    for c in (True, False):
        np.testing.assert_allclose(interpret(module, {"x0": x, "c": np.array(c)})[0], reference(m, {"x0": x, "c": np.array(c)})[0])


def test_numeric_and_punctuated_onnx_names_import_and_keep_their_names() -> None:
    """Older exporters number values ("390") and TF-converted models use "input:0": neither is an
    xDSL SSA name, yet the model compiles, runs, and its I/O and ops keep the ONNX names."""
    import anec

    nodes = [helper.make_node("Relu", ["0"], ["390"], name="12"),
             helper.make_node("Mul", ["390", "w:0"], ["467"], name="13"),
             helper.make_node("Add", ["467", "0"], ["1"], name="14")]
    m = model(nodes, [("0", F, [2, 3])], ["1"], {"w:0": random((2, 3), 1)})
    x = random((2, 3))
    module = check_against_reference(m, {"0": x})
    fn = next(iter(module.ops))
    assert input_names(fn) == ["0"] and output_names(fn) == ["1"]
    assert [op.attributes["ane.name"].data for op in ops_of(module) if not isinstance(op, ane.ConstOp)] == ["12", "13", "14"]
    compiled = anec.compile(m, emit="ir")
    out = compiled.run({"0": x})
    assert list(out) == ["1"]
    np.testing.assert_allclose(out["1"], reference(m, {"0": x})[0], rtol=1e-2, atol=1e-2)


def test_internal_failures_leave_as_one_line_errors_naming_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler bug or an op that does not verify is an AnecError naming the node, never xDSL's
    multi-line VerifyException with the module printed."""
    from xdsl.utils.exceptions import VerifyException

    from anec.errors import ImportFailure
    from anec.importers import onnx_handlers

    m = model([helper.make_node("Relu", ["x"], ["r"], name="act"), helper.make_node("Hardmax", ["r"], ["v"], name="top")],
              [("x", F, [3, 8])], ["v"], {})

    def broken(node, b):
        raise KeyError("oops")

    monkeypatch.setitem(onnx_handlers.HANDLERS, "Relu", broken)
    with pytest.raises(ImportFailure, match=r"node 'act' \(Relu\): anec failed to import the node: KeyError") as e:
        import_onnx(m)
    assert e.value.exit_code == 1
    monkeypatch.undo()

    def bad_verify(self):
        raise VerifyException("operand types do not match\nbuiltin.module {\n  ...\n}")

    monkeypatch.setattr(host.HostOp, "verify_", bad_verify)
    with pytest.raises(AnecError, match=r"node 'top' \(Hardmax\): an op it imports to does not verify: VerifyException: operand types do not match") as e:
        import_onnx(m)
    assert "\n" not in str(e.value) and "builtin.module" not in str(e.value)


def _sample_rate_model() -> onnx.ModelProto:
    """An audio front end's shape arithmetic: y = If(sr == 16000, x * w, x + w) reshaped to [-1, sr / 8000]."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, [1, 8])])
    else_g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, [1, 8])])
    nodes = [helper.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["y"], name="by_rate", then_branch=then_g, else_branch=else_g),
             helper.make_node("Div", ["sr", "k8"], ["cols"]),
             helper.make_node("Unsqueeze", ["cols", "zero"], ["cols1"]),
             helper.make_node("Concat", ["minus_one", "cols1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["y", "shape"], ["z"], name="frames")]
    inits = {"w": random((1, 8), 1), "sr16k": np.array(16000, np.int64), "k8": np.array(8000, np.int64),
             "zero": np.array([0], np.int64), "minus_one": np.array([-1], np.int64)}
    return model(nodes, [("x", F, [1, 8]), ("sr", TensorProto.INT64, [])], ["z"], inits)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_freezing_an_input_folds_the_if_and_the_shapes_that_depend_on_it(rate: int) -> None:
    m = _sample_rate_model()
    with pytest.raises(AnecError, match=r"node 'frames'.*depends on the input values"):
        import_onnx(m)
    module = import_onnx(m, input_values={"sr": rate})
    fn = next(iter(module.ops))
    assert input_names(fn) == ["x"]
    assert not any(isinstance(op, host.HostOp) for op in ops_of(module))
    assert names_of(module) == ["ane.mul" if rate == 16000 else "ane.add", "ane.reshape"]
    x = random((1, 8))
    got = interpret(module, {"x": x})[0]
    want = reference(m, {"x": x, "sr": np.array(rate, np.int64)})[0]
    assert got.shape == want.shape == (8 * 8000 // rate, rate // 8000)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_freeze_is_checked_against_the_model_inputs() -> None:
    m = _sample_rate_model()
    with pytest.raises(AnecError, match="--freeze names 'rate', which is not an input"):
        import_onnx(m, input_values={"rate": 16000})
    with pytest.raises(AnecError, match=r"--freeze sr: a value of shape \[2\] does not fit the input's shape \[\]"):
        import_onnx(m, input_values={"sr": [1, 2]})
    assert import_onnx(m, input_values={"sr": [16000]}) is not None  # one element fits a scalar input


def test_anec_compile_freeze_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import anec
    from anec.cli import main

    path = tmp_path / "m.onnx"
    path.write_bytes(_sample_rate_model().SerializeToString())
    out = tmp_path / "m.mlir"
    assert main(["compile", str(path), "--emit", "ir", "-o", str(out), "--freeze", "sr=16000", "-q"]) == 0
    assert "host.op" not in out.read_text() and "ane.reshape" in out.read_text()
    assert main(["compile", str(path), "--emit", "ir", "-o", str(out), "--freeze", "sr=fast"]) == 2
    assert "--freeze 'sr=fast'" in capsys.readouterr().err
    compiled = anec.compile(path, emit="ir", input_values={"sr": 8000})
    assert compiled.options.input_values == {"sr": 8000}
    x = random((1, 8))
    np.testing.assert_allclose(compiled.run({"x": x})["z"], (x + random((1, 8), 1)).reshape(8, 1), rtol=1e-2, atol=1e-2)


def test_freeze_is_for_onnx_models(tmp_path: Path) -> None:
    program = tmp_path / "m.pt2"
    program.write_bytes(b"not read")
    with pytest.raises(AnecError, match=r"--freeze \(input_values=\) applies to ONNX models"):
        import_model(program, input_values={"sr": 16000})


@pytest.mark.parametrize("opset", [11, 17])
def test_an_empty_constant_in_an_optional_input_is_an_unset_parameter(opset: int) -> None:
    """Resize's `roi`: optional from op set 13, required but ignored when empty in op set 11."""
    from tests.wild.repros import resize_empty_roi

    ops = names_of(import_onnx(resize_empty_roi(opset)))
    assert "ane.resize" in ops and not any(o.startswith("onnx.") for o in ops)
