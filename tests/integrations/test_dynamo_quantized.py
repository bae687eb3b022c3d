"""Quantized PyTorch models under `torch.compile(backend="anec")`: the backend folds the dequantizations
of frozen integer weights (PT2E's `dequantize_per_channel`, torchao's tensor subclasses flattened by AOT
Autograd) before the partitions are imported, and the partitions' MAC weights stay int8, as they do
through `anec.compile` of a torch.export program (tests/importers/test_torch_quantized.py)."""

from __future__ import annotations

import pytest
import torch
import torch.ao.quantization.fx._decomposed  # registers the quantized_decomposed ops (shipped with torch)
from torch import nn

from anec.importers.torch import import_graph_module
from anec.integrations import dynamo
from anec.integrations.dynamo import AnePartition
from tests.importers.test_torch_quantized import TwoLinears, _pt2e, _stored, _torchao_config, _x

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::UserWarning"), pytest.mark.usefixtures("fresh_dynamo")]


@pytest.fixture
def partitions(monkeypatch: pytest.MonkeyPatch) -> list[AnePartition]:
    """The ANE partitions the backend makes, in order."""
    made: list[AnePartition] = []
    original = AnePartition.__init__

    def spy(self: AnePartition, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(AnePartition, "__init__", spy)
    return made


def _compiled(model: nn.Module, x: torch.Tensor, partitions: list[AnePartition]) -> tuple[float, list[AnePartition]]:
    """torch.compile(backend="anec") of `model` for the M4 (which streams int8 weights): its output's
    relative L2 distance to eager's, and the ANE partitions it made."""
    partitions.clear()
    torch._dynamo.reset()
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, backend="anec", options={"target": "m4"})(x)
    assert [(r.fallback, r.partitions) for r in dynamo.REPORTS[-1:]] == [(None, 1)]
    return float(torch.linalg.norm(got - expected) / torch.linalg.norm(expected)), list(partitions)


def _weight_bytes(partitions: list[AnePartition]) -> int:
    """The bytes of the partitions' programs' weight sections."""
    return sum(len(p.weights) for partition in partitions if partition.program for p in partition.program.programs)


def _quantized(config: str) -> nn.Module:
    model = TwoLinears(hidden=256, out=64).eval()
    if config == "pt2e":
        return _pt2e(model, *(torch.randn(5, 64, generator=torch.Generator().manual_seed(i)) for i in range(8)))
    torchao_config = _torchao_config(config)  # skips first when torchao is absent
    from torchao.quantization import quantize_

    quantize_(model, torchao_config)
    return model


@pytest.mark.parametrize(("config", "form"), [("pt2e", "int8/channel"), ("int8-weight-only", "int8"), ("intx-int8-per-channel", "int8/channel")])
def test_quantized_weights_stay_int8_in_the_partitions_of_torch_compile(config: str, form: str, partitions: list[AnePartition]) -> None:
    """PT2E's `dequantize_per_channel` (whose result is a view: the partition reads a permute of it) and
    torchao's Int8WeightOnly / IntxWeightOnly weights, folded by the backend, import int8 (Int8WeightOnly's
    scale comes after the matmul, as on the export route) and the partition's program holds about half
    the float model's weight bytes."""
    x = _x(5, 64)
    _, float_partitions = _compiled(TwoLinears(hidden=256, out=64).eval(), x, partitions)
    error, quantized_partitions = _compiled(_quantized(config), x, partitions)
    assert error < 1e-2
    (partition,) = quantized_partitions
    assert [w.form for w in _stored(import_graph_module(partition.graph))] == [form, form]
    assert _weight_bytes(quantized_partitions) <= 0.55 * _weight_bytes(float_partitions)
