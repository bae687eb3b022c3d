"""Quantized PyTorch weights: the dequantizations torch.export leaves in a graph import as compressed
weights (`anec.importers.aten_quantized`), int8 in the IR, the `.anec` and the `.mlpackage`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.ao.quantization.fx._decomposed  # registers the quantized_decomposed ops (shipped with torch)
from torch import nn

import anec
from anec.compression import AffineWeight, BlockAffineWeight
from anec.dialects import ane
from anec.importers.torch import import_torch
from anec.interpreter import interpret
from anec.weights import compressed_of

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::UserWarning")


def _stored(module) -> list[AffineWeight | BlockAffineWeight]:
    return [w for op in module.walk() if isinstance(op, ane.ConstOp) and (w := compressed_of(op)) is not None]


def _weight_bytes(package: Path) -> int:
    return sum(p.stat().st_size for p in package.rglob("weight.bin"))


class PerChannelLinear(nn.Module):
    """What torch's reference quantized linear and PT2E's converted graphs compute: int8 weights per output
    channel, `quantized_decomposed.dequantize_per_channel`, then the float linear."""

    def __init__(self, out_features: int = 96, in_features: int = 256, zero: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("q", torch.randint(-127, 128, (out_features, in_features), dtype=torch.int8, generator=generator))
        self.register_buffer("scale", torch.rand(out_features, generator=generator) * 1e-2 + 1e-3)
        self.register_buffer("zero", torch.full((out_features,), zero, dtype=torch.int64))
        self.bias = nn.Parameter(torch.randn(out_features, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.ops.quantized_decomposed.dequantize_per_channel(self.q, self.scale, self.zero, 0, -128, 127, torch.int8)
        return nn.functional.linear(x, w, self.bias)


class PerTensorConv(nn.Module):
    """`quantized_decomposed.dequantize_per_tensor` of a uint8 conv weight with a zero point."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.register_buffer("q", torch.randint(0, 256, (16, 8, 3, 3), dtype=torch.uint8, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.ops.quantized_decomposed.dequantize_per_tensor(self.q, 0.02, 131, 0, 255, torch.uint8)
        return nn.functional.conv2d(x, w)


def _x(*shape: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(3).standard_normal(shape).astype(np.float32))


def test_dequantize_per_channel_weights_import_as_int8_per_channel_and_match_eager() -> None:
    model, x = PerChannelLinear(zero=3).eval(), _x(4, 256)
    module = import_torch(model, example_inputs=(x,))
    (weight,) = _stored(module)
    assert isinstance(weight, AffineWeight) and weight.form == "int8/channel"
    np.testing.assert_array_equal(weight.quantized, model.q.numpy().T if weight.axis == 1 else model.q.numpy())
    assert np.all(weight.zero_point == 3)
    # the IR reads the weight as stored (fp16 of (q - z) * s): eager's linear, within that rounding
    np.testing.assert_allclose(interpret(module, [x.numpy()])[0], model(x).detach().numpy(), rtol=0, atol=2e-2)


def test_dequantize_per_tensor_uint8_conv_weight_keeps_its_zero_point() -> None:
    model, x = PerTensorConv().eval(), _x(1, 8, 10, 10)
    (weight,) = _stored(import_torch(model, example_inputs=(x,)))
    assert isinstance(weight, AffineWeight) and weight.form == "uint8" and weight.axis is None
    assert weight.zero_point.tolist() == [131] and weight.scale.tolist() == [np.float32(0.02)]


def test_a_dequantized_weight_read_by_an_op_that_is_no_mac_folds_to_floats() -> None:
    class AddsIt(PerChannelLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ops.quantized_decomposed.dequantize_per_channel(self.q, self.scale, self.zero, 0, -128, 127, torch.int8)

    model, x = AddsIt().eval(), _x(96, 256)
    module = import_torch(model, example_inputs=(x,))
    assert _stored(module) == []
    np.testing.assert_array_equal(interpret(module, [x.numpy()])[0], model(x).detach().numpy())


def test_int8_weights_stay_int8_in_the_anec_file_and_the_mlpackage(tmp_path: Path) -> None:
    model, x = PerChannelLinear(out_features=256).eval(), _x(8, 256)
    float_model = nn.Linear(256, 256)
    sizes = {}
    for label, m in (("int8", model), ("float", float_model)):
        compiled = anec.compile(m, example_inputs=(x,), target="m4")
        sizes[label] = (_weight_bytes(compiled.save(tmp_path / f"{label}.mlpackage")), len(compiled.program_bytes))
        if label == "int8":
            (simulated,) = compiled.run({"x": x.numpy()}).values()
            expected = model(x).detach().numpy()
            assert np.linalg.norm(simulated - expected) / np.linalg.norm(expected) < 1e-2
    assert sizes["int8"][0] <= 0.55 * sizes["float"][0]
    assert sizes["int8"][1] <= 0.6 * sizes["float"][1]  # the M4 streams int8: the .anec carries the integers


# ------------------------------------------------------------------------------------------------
# torchao's quantize_ (torchao is not a dependency of anec: these run where it is installed)
# ------------------------------------------------------------------------------------------------

class TwoLinears(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = nn.Linear(64, 128), nn.Linear(128, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def _torchao_config(name: str):
    quantization = pytest.importorskip("torchao.quantization", reason="torchao is not installed (pip install torchao)")
    granularity = pytest.importorskip("torchao.quantization.granularity")
    return {
        "int8-weight-only": lambda: quantization.Int8WeightOnlyConfig(),
        "intx-int8-per-channel": lambda: quantization.IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=granularity.PerAxis(0)),
        "intx-int4-per-group": lambda: quantization.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=granularity.PerGroup(32)),
    }[name]()


@pytest.mark.parametrize(("config", "form"), [("int8-weight-only", "int8"), ("intx-int8-per-channel", "int8/channel"),
                                              ("intx-int4-per-group", "int8/block1x32")])
def test_torchao_weight_only_models_import_compressed_and_match_eager(config: str, form: str) -> None:
    """Int8WeightOnlyConfig exports `mm(x, t(q))` times the scale (the weight's integers, scale one, the
    scale a float multiply after); IntxWeightOnlyConfig exports `dequantize_affine` (per channel, or per
    group of 32 inputs: int4 values in int8 storage)."""
    torchao_config = _torchao_config(config)  # skips first when torchao is absent
    from torchao.quantization import quantize_

    model, x = TwoLinears().eval(), _x(5, 64)
    quantize_(model, torchao_config)
    module = import_torch(torch.export.export(model, (x,)))
    stored = _stored(module)
    assert [w.form for w in stored] == [form, form]
    if config == "intx-int4-per-group":
        assert all(w.quantized.min() >= -8 and w.quantized.max() <= 7 for w in stored)
    expected = model(x).detach().numpy()
    got = interpret(module, [x.numpy()])[0]
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 2e-3
    compiled = anec.compile(model, example_inputs=(x,), target="m1")
    # Int8WeightOnly's scale after the matmul moved into the weight (ane-fp16): sums of int8 products
    # would overflow fp16 on a wide layer
    compiled_forms = [w.form for w in _stored(compiled.ir)]  # the linear layers became 1x1 convs (block forms gain two axes)
    assert len(compiled_forms) == 2 and all(f.startswith("int8/channel" if config == "int8-weight-only" else form) for f in compiled_forms)
    (simulated,) = compiled.run({"x": x.numpy()}).values()
    assert np.linalg.norm(simulated - expected) / np.linalg.norm(expected) < 1e-2


def test_a_pt2e_quantized_model_keeps_its_int8_weights_and_runs_its_activation_pairs_on_the_cpu() -> None:
    """torchao's PT2E flow (XNNPACK's symmetric per-channel config; torch 2.13 dropped torch.ao's copy and
    torchao 0.14's imports it): weights are `dequantize_per_channel` of int8 constants, activations
    quantize/dequantize pairs that run on the CPU in torch, so the outputs are eager's but where fp16
    moves a value across a rounding boundary (one quantization step)."""
    pytest.importorskip("torchao", minversion="0.15", reason="PT2E needs torchao >= 0.15 with torch 2.13 (pip install torchao)")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    x = _x(5, 64)
    prepared = prepare_pt2e(torch.export.export(TwoLinears().eval(), (x,)).module(),
                            XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    prepared(x)
    model = convert_pt2e(prepared)
    compiled = anec.compile(torch.export.export(model, (x,)), target="m1")
    assert [w.form for w in _stored(compiled.ir)] == ["int8/channel"] * 2
    (simulated,) = compiled.run({"x": x.numpy()}).values()
    expected = model(x).detach().numpy()
    step = np.min(np.diff(np.unique(expected)))  # the output's quantization step
    assert np.abs(simulated - expected).max() <= step * 1.01 and np.mean(simulated != expected) < 0.05
