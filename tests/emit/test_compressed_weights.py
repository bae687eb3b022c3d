"""Compressed weights in Core ML packages: a QDQ model's int8 weights and a palettized weight stay
compressed (`constexpr_*` ops, chosen by deployment target), and the package computes their values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import f32

import anec
from anec.compression import PaletteWeight
from anec.weights import WeightStore, attach, make_compressed_const
from tests.emit.support import compiled_model, emit_package, op_types, run_emitted
from tests.importers.quantized_models import INPUT_SHAPE, cosine, dynamic, float_model, static_qdq

CONSTEXPR = {"ios16": "constexpr_affine_dequantize", "ios17": "constexpr_affine_dequantize", "ios18": "constexpr_blockwise_shift_scale"}


def _weight_bytes(package: Path) -> int:
    return sum(p.stat().st_size for p in package.rglob("weight.bin"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("compressed")
    return {"float": float_model(folder / "float.onnx"), "qdq": static_qdq(folder)}


@pytest.mark.parametrize("deployment_target", sorted(CONSTEXPR))
def test_a_qdq_model_keeps_its_int8_weights_in_the_package(models: dict[str, Path], deployment_target: str, tmp_path: Path) -> None:
    packages = {}
    for kind in ("float", "qdq"):
        compiled = anec.compile(models[kind], target="m1", emit="coreml", deployment_target=deployment_target)
        packages[kind] = tmp_path / f"{kind}.mlpackage"
        program = emit_package(compiled, packages[kind])
        if kind == "qdq":
            assert op_types(program).count(CONSTEXPR[deployment_target]) == 4
            x = np.random.default_rng(3).standard_normal(INPUT_SHAPE).astype(np.float32)
            (got,) = run_emitted(program, {"x": x}).values()
            assert cosine(got, anec.compile(models[kind], target="m1", emit="ir").run({"x": x})["y"]) >= 0.999
    assert _weight_bytes(packages["qdq"]) <= 0.55 * _weight_bytes(packages["float"])


def test_a_dynamically_quantized_model_saves_with_its_int8_weights(tmp_path: Path) -> None:
    """quantize_dynamic's graph: runtime scales are 0-d tensors (a reshape to a scalar, whose empty shape
    coremltools once typed as float), the integer convs' weights stay int8 in the package."""
    pytest.importorskip("onnxruntime")
    path = dynamic(tmp_path)
    compiled = anec.compile(path, target="m1", emit="coreml")
    program = emit_package(compiled, tmp_path / "dynamic.mlpackage")
    assert op_types(program).count("constexpr_affine_dequantize") == 4
    x = np.random.default_rng(3).standard_normal(INPUT_SHAPE).astype(np.float32)
    (got,) = run_emitted(program, {"x": x}).values()
    assert cosine(got, anec.compile(path, target="m1", emit="ir").run({"x": x})["y"]) >= 0.999


@pytest.mark.parametrize("deployment_target", ["ios17", "ios18"])
def test_a_palettized_weight_becomes_a_lookup_table_whose_values_are_the_irs(deployment_target: str, tmp_path: Path) -> None:
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.dialects.func import FuncOp, ReturnOp
    from xdsl.ir import Block, Region

    from anec.dialects import ane
    from anec.dialects.ane import tensor

    rng = np.random.default_rng(4)
    weight = PaletteWeight(rng.integers(0, 16, (48, 32)).astype(np.uint8), np.sort(rng.standard_normal(16)).astype(np.float16), 4)
    store = WeightStore()
    block = Block(arg_types=[tensor((2, 48))])
    const = make_compressed_const(weight, "fc.weight", store, f32)
    mm = ane.MatmulOp(block.args[0], const.result)
    block.add_ops([const, mm, ReturnOp(mm.result)])
    module = ModuleOp([FuncOp("main", ([block.args[0].type], [mm.result.type]), Region(block))])
    attach(module, store)
    program = emit_package(compiled_model(module, deployment_target=deployment_target), tmp_path / "p.mlpackage")
    (lut,) = [o for o in program.functions["main"].operations if o.op_type == "constexpr_lut_to_dense"]
    assert lut.materialized_val_inference().astype(np.float16).tobytes() == weight.fp16().T.tobytes()  # linear: [N, K]
    x = rng.standard_normal((2, 48)).astype(np.float32)
    (got,) = run_emitted(program, {next(iter(program.functions["main"].inputs)): x}).values()
    np.testing.assert_allclose(got, x @ weight.fp16().astype(np.float32), rtol=1e-5, atol=1e-5)


def test_mil_text_writes_the_same_constexpr_ops_and_a_smaller_blob(models: dict[str, Path], tmp_path: Path) -> None:
    sizes = {}
    for kind in ("float", "qdq"):
        folder = anec.compile(models[kind], target="m1", emit="mil-text").save(tmp_path / kind)
        sizes[kind] = _weight_bytes(folder)
        if kind == "qdq":
            assert (folder / "model.mil").read_text().count("= constexpr_affine_dequantize(") == 4
    assert sizes["qdq"] <= 0.55 * sizes["float"]
