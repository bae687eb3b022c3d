"""Quantized PyTorch models: the dequantizations torch.export leaves in a graph import as compressed
weights (`anec.importers.aten_quantized`), int8 in the IR, the `.anec` and the `.mlpackage`; PT2E's
activation quantize/dequantize pairs run on the ANE as float32 integers, torch's arithmetic bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.ao.quantization.fx._decomposed  # registers the quantized_decomposed ops (shipped with torch)
from torch import nn

import anec
from anec.compression import AffineWeight, BlockAffineWeight
from anec.dialects import ane
from anec.dialects.discardable import source_name
from anec.dialects.host import HostOp
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
    def __init__(self, hidden: int = 128, out: int = 32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = nn.Linear(64, hidden), nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def _torchao_config(name: str):
    quantization = pytest.importorskip("torchao.quantization", reason="torchao is not installed (pip install torchao)")
    granularity = pytest.importorskip("torchao.quantization.granularity")
    return {
        "int8-weight-only": lambda: quantization.Int8WeightOnlyConfig(),
        "intx-int8-per-channel": lambda: quantization.IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=granularity.PerAxis(0)),
        "intx-int4-per-group": lambda: quantization.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=granularity.PerGroup(32)),
        "intx-int8-per-group": lambda: quantization.IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=granularity.PerGroup(32)),
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


class Embedded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.fc = nn.Embedding(4000, 128), nn.Linear(128, 16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(ids))


@pytest.mark.parametrize(("granularity", "form"), [("per-row", "int8/channel"), ("per-group", None)])
def test_a_torchao_embedding_table_per_row_stays_int8_in_the_mlpackage(granularity: str, form: str | None, tmp_path: Path) -> None:
    """IntxWeightOnlyConfig on an nn.Embedding exports `dequantize_affine` read by `aten.embedding` (a
    gather on the CPU, which reads the table's expansion): per row the table is stored int8, as an ONNX
    Gather's; per group it stays floats (Core ML holds blockwise tables only from iOS 18)."""
    torchao_config = _torchao_config("intx-int8-per-channel" if granularity == "per-row" else "intx-int8-per-group")
    from torchao.quantization import quantize_

    model, ids = Embedded().eval(), torch.randint(0, 4000, (1, 12), generator=torch.Generator().manual_seed(0))
    quantize_(model, torchao_config, filter_fn=lambda module, _: isinstance(module, nn.Embedding))
    compiled = anec.compile(torch.export.export(model, (ids,)), target="m1")
    assert [w.form for w in _stored(compiled.ir)] == ([form] if form else [])
    float_bytes = 4000 * 128 * 2
    stored = _weight_bytes(compiled.save(tmp_path / "model.mlpackage"))
    assert stored <= 0.55 * float_bytes if form else stored >= float_bytes
    (simulated,) = compiled.run({"ids": ids.numpy()}).values()
    expected = model(ids).detach().numpy()
    assert np.linalg.norm(simulated - expected) / np.linalg.norm(expected) < 1e-3


# ------------------------------------------------------------------------------------------------
# PT2E (torchao's prepare_pt2e / convert_pt2e): int8 weights, activation pairs on the ANE
# ------------------------------------------------------------------------------------------------

class ResidualConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c1(x))
        return self.c3(torch.relu(self.c2(y)) + y)


def _pt2e(model: nn.Module, *calibration: torch.Tensor) -> torch.fx.GraphModule:
    """`model` through torchao's PT2E flow with XNNPACK's symmetric config: int8 weights per channel
    (`dequantize_per_channel` of constants), static per-tensor activations (`quantize_per_tensor` →
    `dequantize_per_tensor` pairs). torch 2.13 dropped torch.ao's copy of the flow; torchao's needs 0.15."""
    pytest.importorskip("torchao", minversion="0.15", reason="PT2E needs torchao >= 0.15 with torch 2.13 (pip install torchao)")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    prepared = prepare_pt2e(torch.export.export(model.eval(), calibration[:1]).module(),
                            XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    for x in calibration:
        prepared(x)
    return convert_pt2e(prepared)


def _conv_net() -> tuple[torch.fx.GraphModule, torch.Tensor]:
    x, *calibration = (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(5))
    return _pt2e(ResidualConvNet(), *calibration), x


def _output_step(model: torch.fx.GraphModule) -> float:
    """The scale of the model's last dequantize_per_tensor: one step of its output."""
    (output,) = next(n for n in model.graph.nodes if n.op == "output").args[0]
    return float(output.args[1])


def test_a_pt2e_conv_net_runs_its_activation_pairs_on_the_ane_in_one_partition() -> None:
    """Before, each pair ran on the CPU between four ANE partitions. Eager runs the same pairs in float32;
    on the ANE the activations are fp16, and where fp16's rounding of `x / scale` moves it across a
    half-integer the pair rounds one step the other way (~10% of outputs here: fp16 holds `x / scale`
    only to 1/16..1/8 between 64 and 255, and a flipped input moves the next layer's sums), so the
    output is eager's within one step: rel L2 1.04e-2 (0.72e-2 with the pairs in float32 on the CPU)."""
    model, x = _conv_net()
    program = torch.export.export(model, (x,))
    compiled = anec.compile(program, target="m1")
    report = compiled.report
    assert report.segments == 1 and report.host_ops == []
    quantizes = {n.name for n in program.graph.nodes if "quantized_decomposed.quantize_per_tensor" in str(n.target)}
    assert len(quantizes) == 5 and quantizes <= {source_name(r.name) for r in report.ops if r.placement == "ane"}
    assert [w.form for w in _stored(compiled.ir)] == ["int8/channel"] * 3
    (simulated,) = compiled.run({"x": x.numpy()}).values()
    expected = model(x).detach().numpy()
    assert np.linalg.norm(simulated - expected) / np.linalg.norm(expected) < 1.5e-2
    fp16_rounding = np.abs(expected) * 2.0 ** -10  # `(q - z) * s` with s in fp16, the product rounded to fp16
    assert np.all(np.abs(simulated - expected) <= _output_step(model) + fp16_rounding)


def test_the_float32_ir_of_a_pt2e_conv_net_is_eager_bit_for_bit_when_its_weights_are_exact_in_fp16() -> None:
    """The imported IR reads each int8 weight as stored, `fp16((q - z) * s)`: with the scales PT2E chose,
    that moves a conv's result by a rounding, which a requantization turns into one step on a few
    outputs (~2%); with power-of-two weight scales (every weight exact in fp16) the float32 IR is
    eager's bit for bit: the pairs are torch's arithmetic, the convs sum alike."""
    model, x = _conv_net()
    expected = model(x).detach().numpy()
    got = interpret(import_torch(torch.export.export(model, (x,))), [x.numpy()])[0]
    steps = np.abs(got.astype(np.float64) - expected) / _output_step(model)
    assert steps.max() <= 1 + 1e-5 and 0 < np.mean(steps > 0.5) < 0.05
    weight_scales = [b for name, b in model.named_buffers() if name.startswith("_scale_")]
    assert len(weight_scales) == 3
    for scale in weight_scales:
        scale.copy_(2.0 ** torch.round(torch.log2(scale)))
    expected = model(x).detach().numpy()
    np.testing.assert_array_equal(interpret(import_torch(torch.export.export(model, (x,))), [x.numpy()])[0], expected)


class QuantizePair(nn.Module):
    """`quantized_decomposed.quantize_per_tensor` → `dequantize_per_tensor`, as PT2E writes them."""

    def __init__(self, scale: float, zero: int, low: int, high: int, dtype: torch.dtype, overload: str) -> None:
        super().__init__()
        self.parameters_ = (scale, zero, low, high, dtype)
        self.overload = overload
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))
        self.register_buffer("zero", torch.tensor(zero))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero, low, high, dtype = self.parameters_
        ops = torch.ops.quantized_decomposed
        if self.overload == "tensor":
            q = ops.quantize_per_tensor.tensor(x, self.scale, self.zero, low, high, dtype)
            return ops.dequantize_per_tensor.tensor(q, self.scale, self.zero, low, high, dtype)
        if self.overload == "tensor2":
            bounds = torch.tensor(low), torch.tensor(high)
            q = ops.quantize_per_tensor.tensor2(x, self.scale, self.zero, *bounds, dtype)
            return ops.dequantize_per_tensor.tensor2(q, self.scale, self.zero, *bounds, dtype)
        q = ops.quantize_per_tensor(x, scale, zero, low, high, dtype)
        return ops.dequantize_per_tensor(q, scale, zero, low, high, dtype)


PAIRS = {  # scale, zero point, quant_min, quant_max, dtype
    "int8": (0.02593645639717579, -9, -128, 127, torch.int8),  # a scale PT2E's observer chose
    "int8-narrow": (0.1, 0, -127, 127, torch.int8),  # XNNPACK's symmetric range
    "uint8": (0.0123, 131, 0, 255, torch.uint8),
    "int4-in-int8": (0.25, 2, -8, 7, torch.int8),  # exact ties
}


def _around_ties(scale: float) -> np.ndarray:
    """Inputs at and a float32 step either side of each rounding tie, over and beyond the integer range."""
    ties = (np.arange(-300, 300, dtype=np.float32) + 0.5) * np.float32(scale)
    return np.stack([ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)), ties * 0.37])


@pytest.mark.parametrize("overload", ["default", "tensor", "tensor2"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_a_pt2e_activation_pair_is_torchs_float32_arithmetic_bit_for_bit(pair: str, overload: str) -> None:
    """torch's `clamp(round(x * (1 / scale)) + zero_point, quant_min, quant_max)` rounds the product
    `x * float32(1 / scale)`, not the quotient `x / scale` (these inputs tell the two apart), half to
    even, and clamps at the given bounds, not the dtype's; then `(q - zero_point) * scale`."""
    scale, zero, low, high, dtype = PAIRS[pair]
    model = QuantizePair(scale, zero, low, high, dtype, overload).eval()
    x = torch.from_numpy(_around_ties(scale).reshape(1, 4, 20, 30).copy())
    module = import_torch(model, example_inputs=(x,))
    assert not [op for op in module.walk() if isinstance(op, HostOp)]
    expected = model(x).numpy()
    np.testing.assert_array_equal(interpret(module, [x.numpy()])[0], expected)
    t = x.numpy() * np.float32(1 / scale)
    if math.log2(scale).is_integer():  # exact ties, rounded half to even
        assert np.any(t % 2 == 0.5) and np.any(t % 2 == 1.5)
    else:  # the inputs tell x * (1 / s) from x / s
        assert not np.array_equal(np.rint(t), np.rint(x.numpy() / np.float32(scale)))
    assert expected.min() == (low - zero) * np.float32(scale) and expected.max() == (high - zero) * np.float32(scale)


def test_a_quantize_whose_integers_another_op_reads_stays_on_the_cpu() -> None:
    class ReadsIntegers(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = torch.ops.quantized_decomposed.quantize_per_tensor(x, 0.1, 0, -128, 127, torch.int8)
            return torch.ops.quantized_decomposed.dequantize_per_tensor(q, 0.1, 0, -128, 127, torch.int8) + q.float()

    x = _x(1, 4, 8, 8)
    module = import_torch(ReadsIntegers().eval(), example_inputs=(x,))
    assert [op.op_name.data for op in module.walk() if isinstance(op, HostOp)] == ["quantized_decomposed.quantize_per_tensor.default"]
    np.testing.assert_array_equal(interpret(module, [x.numpy()])[0], ReadsIntegers()(x).numpy())


def test_a_pt2e_conv_net_under_torch_compile_runs_its_pairs_in_its_one_ane_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from anec.integrations import dynamo

    monkeypatch.setenv("ANEC_CACHE_DIR", str(tmp_path / "anec-cache"))  # a compile cache of its own
    model, x = _conv_net()
    torch._dynamo.reset()
    dynamo.REPORTS.clear()
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, backend="anec")(x)
    (report,) = dynamo.REPORTS
    assert report.fallback is None and report.partitions == 1 and report.host_ops == [] and not report.from_cache
    assert report.ane_flops_fraction == 1.0
    assert float(torch.linalg.norm(got - expected) / torch.linalg.norm(expected)) < 1.5e-2  # as anec.compile's (above)
