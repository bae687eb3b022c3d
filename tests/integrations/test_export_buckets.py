"""`anec.compile(module, dynamic_dims=...)`: one program per bucket, inputs padded to their bucket
where that keeps the results, outputs sliced back."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import anec
from anec import AnecError, AnecFallbackWarning
from tests.integrations.plain_models import PLAIN

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def run_sizes(name: str, shapes: list[tuple[int, ...]], dynamic_dims: dict, emit: str = "descriptors") -> tuple[anec.BucketedModel, list]:
    """Compile `name` with `dynamic_dims`, run inputs of `shapes` checked against eager; returns the
    compiled model and the warnings."""
    model, example = PLAIN[name][0](), PLAIN[name][1]()
    compiled = anec.compile(model, example_inputs=example, dynamic_dims=dynamic_dims, emit=emit)
    input_name = next(iter(example))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, shape in enumerate(shapes):
            x = np.random.default_rng(i).standard_normal(shape).astype(np.float32)
            (output,) = compiled.run({input_name: x}).values()
            with torch.no_grad():
                expected = model(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(output, expected, atol=5e-3, rtol=5e-3)
    return compiled, [w for w in caught if not issubclass(w.category, FutureWarning)]


def test_a_causal_model_is_compiled_per_bucket_and_runs_every_size_up_to_the_largest() -> None:
    compiled, caught = run_sizes("attention-block", [(2, 10, 64), (2, 16, 64), (2, 20, 64)], {"tokens.1": [16, 32]})
    assert list(compiled.compiled) == [(("tokens.1", 16),), (("tokens.1", 32),)]
    assert not [w for w in caught if issubclass(w.category, AnecFallbackWarning)]
    assert [w for w in caught if "pads tokens.1 to 16" in str(w.message)] and [w for w in caught if "pads tokens.1 to 32" in str(w.message)]


def test_padding_an_image_is_refused_and_that_bucket_runs_in_torch() -> None:
    _, caught = run_sizes("small-cnn", [(2, 3, 24, 24)], {"image.2": [32], "image.3": [32]})
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, AnecFallbackWarning)]
    assert len(fallbacks) == 1 and "changes this graph's results" in fallbacks[0]


def test_each_bucket_is_saved_under_its_sizes(tmp_path: Path) -> None:
    compiled, _ = run_sizes("mlp", [(3, 64)], {"features.0": [4, 8]}, emit="ir")
    saved = compiled.save(tmp_path / "mlp.mlir")
    assert sorted(p.name for p in saved) == ["mlp.features.0=4.mlir", "mlp.features.0=8.mlir"]


def test_core_ml_buckets_are_one_package_with_a_function_per_bucket_sharing_weights(tmp_path: Path) -> None:
    from tests.emit.mil_interpreter import load_package, run_program

    compiled, _ = run_sizes("mlp", [(3, 64)], {"features.0": [4, 8]}, emit="coreml")
    (package,) = compiled.save(tmp_path / "mlp.mlpackage")
    program = load_package(package)
    assert set(program.functions) == {"features_0_4", "features_0_8"}
    model = PLAIN["mlp"][0]()
    for batch in (4, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 64)).astype(np.float32)
        (got,) = run_program(program, {"features": x}, function=f"features_0_{batch}").values()
        with torch.no_grad():
            np.testing.assert_allclose(got.astype(np.float32), model(torch.from_numpy(x)).numpy(), atol=2e-2)
    single = compiled.compiled[(("features.0", 4),)].save(tmp_path / "single.mlpackage")
    weights = [p / "Data" / "com.apple.CoreML" / "weights" / "weight.bin" for p in (package, single)]
    assert weights[0].stat().st_size < 1.5 * weights[1].stat().st_size  # one copy of the weights, not one per bucket


@pytest.mark.parametrize(("dims", "message"), [
    ({"tokens.7": [16]}, "tokens.7, which the exported program does not keep dynamic"),
    ({"nope.1": [16]}, "dynamic_dims names 'nope.1'"),
    ({"tokens.1": []}, "must be a list of positive sizes"),
])
def test_bad_dynamic_dims_are_one_line_errors(dims: dict, message: str) -> None:
    with pytest.raises(AnecError, match=message):
        anec.compile(PLAIN["attention-block"][0](), example_inputs=PLAIN["attention-block"][1](), dynamic_dims=dims, emit="ir")


def test_dynamic_dims_need_a_torch_module() -> None:
    with pytest.raises(AnecError, match=r"dynamic_dims needs a PyTorch nn\.Module with example_inputs"):
        anec.compile("model.onnx", dynamic_dims={"x.1": [16]})
