"""Compressed weights in Core ML packages: a QDQ model's int8 weights and a palettized weight stay
compressed (`constexpr_*` ops, chosen by deployment target), and the package computes their values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import anec
from anec.compression import PaletteWeight, prune, quantize_int8_block
from anec.errors import AnecError
from tests.emit.support import compiled_model, emit_package, op_types, run_emitted
from tests.importers.quantized_models import INPUT_SHAPE, cosine, dynamic, float_model, static_qdq
from tests.test_compression import compressed_linear

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


RNG = np.random.default_rng(4)
FORMS = {
    "palette4": PaletteWeight(RNG.integers(0, 16, (48, 32)).astype(np.uint8), np.sort(RNG.standard_normal(16)).astype(np.float16), 4),
    "palette6": PaletteWeight(RNG.integers(0, 64, (48, 32)).astype(np.uint8), np.sort(RNG.standard_normal(64)).astype(np.float16), 6),
    "int8-block": quantize_int8_block(RNG.standard_normal((64, 32)).astype(np.float32), axis=1, block_axis=0),
    "prune50": prune(RNG.standard_normal((48, 32)).astype(np.float32)),
}
CONSTEXPR_OF = {"palette4": "constexpr_lut_to_dense", "palette6": "constexpr_lut_to_dense",
                "int8-block": "constexpr_blockwise_shift_scale", "prune50": "constexpr_sparse_to_dense"}


@pytest.mark.parametrize("deployment_target", ["ios17", "ios18"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_compressed_weight_becomes_its_constexpr_op_whose_values_are_the_irs(form: str, deployment_target: str, tmp_path: Path) -> None:
    weight = FORMS[form]
    compiled = compiled_model(compressed_linear(weight), deployment_target=deployment_target)
    if form == "int8-block" and deployment_target == "ios17":
        with pytest.raises(AnecError, match="stored int8/block1x32, which Core ML holds only from iOS 18"):
            emit_package(compiled, tmp_path / "p.mlpackage")
        return
    program = emit_package(compiled, tmp_path / "p.mlpackage")
    (op,) = [o for o in program.functions["main"].operations if o.op_type == CONSTEXPR_OF[form]]
    dense = op.materialized_val_inference()
    assert dense.astype(np.float16).tobytes() == weight.fp16().T.tobytes()  # linear: [N, K]
    assert _weight_bytes(tmp_path / "p.mlpackage") < 0.8 * dense.nbytes  # stored compressed, in the package's float type
    x = RNG.standard_normal((2, weight.shape[0])).astype(np.float32)
    (got,) = run_emitted(program, {next(iter(program.functions["main"].inputs)): x}).values()
    # codebook entries and sparse values are the fp16 values; a float32 scale times the integers is the
    # fp16 value before its rounding (2**-11 relative a weight, ~4e-3 over a 64-term sum of unit terms)
    tolerance = 1e-2 if form == "int8-block" else 1e-5
    np.testing.assert_allclose(got, x @ weight.fp16().astype(np.float32), rtol=tolerance, atol=tolerance)


def test_mil_text_writes_the_same_constexpr_ops_and_a_smaller_blob(models: dict[str, Path], tmp_path: Path) -> None:
    sizes = {}
    for kind in ("float", "qdq"):
        folder = anec.compile(models[kind], target="m1", emit="mil-text").save(tmp_path / kind)
        sizes[kind] = _weight_bytes(folder)
        if kind == "qdq":
            assert (folder / "model.mil").read_text().count("= constexpr_affine_dequantize(") == 4
    assert sizes["qdq"] <= 0.55 * sizes["float"]


@pytest.mark.parametrize("mode", ["palettize4", "prune50"])
def test_mil_text_packs_sub_byte_indices_and_masks_on_ios18(models: dict[Path, str], mode: str, tmp_path: Path) -> None:
    """iOS 18 types palette indices uint4 and sparse masks uint1: the blob holds them packed, as iOS 17's
    flat uint8 forms are, not a byte an element."""
    sizes = {target: _weight_bytes(anec.compile(models["float"], target="m1", emit="mil-text", compress=mode,
                                                deployment_target=target).save(tmp_path / target)) for target in ("ios17", "ios18")}
    assert abs(sizes["ios18"] - sizes["ios17"]) <= 1024
