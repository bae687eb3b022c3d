"""Recurrent layers under torch.compile(backend="anec"): on the ANE once Dynamo may trace them, a
clear warning when it may not, and FLOPs counted as the layer's definition counts them."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from anec import AnecFallbackWarning
from anec.integrations import dynamo
from tests.integrations.test_dynamo import cosine

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("fresh_dynamo")]

STEPS, FEATURES, HIDDEN = 12, 40, 64


class SpeakerEncoder(nn.Module):
    """A speaker-encoder-style model, scaled down: a 2-layer recurrence, a projection, an L2 norm."""

    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = cell(FEATURES, HIDDEN, num_layers=2, batch_first=True)
        self.project = nn.Linear(HIDDEN, 32)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(frames)
        embedding = self.project(out[:, -1]).relu()
        return embedding / embedding.norm(dim=-1, keepdim=True)


def matrix_flops(model: SpeakerEncoder, batch: int) -> int:
    """The recurrence's multiply-adds from its parameters: each weight matrix once per step and row."""
    weights = sum(p.numel() for name, p in model.rnn.named_parameters() if name.startswith("weight"))
    return 2 * STEPS * batch * weights


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
def test_a_recurrent_model_runs_on_the_ane_when_dynamo_may_trace_it(cell: type[nn.RNNBase]) -> None:
    model, frames = SpeakerEncoder(cell).eval(), torch.randn(2, STEPS, FEATURES)
    with torch.no_grad(), torch._dynamo.config.patch(allow_rnn=True), warnings.catch_warnings():
        warnings.simplefilter("error", AnecFallbackWarning)
        expected = model(frames)
        got = torch.compile(model, backend="anec")(frames)
    assert cosine(got, expected) >= 0.999
    (report,) = dynamo.REPORTS
    assert report.fallback is None and report.partitions == 1 and report.host_ops == []
    # every step's matmuls are on the ANE (the first step's product with the zero state folds away)
    assert 0.9 <= report.total_flops / matrix_flops(model, 2) <= 1.1
    assert report.ane_flops_fraction == 1.0


def test_a_skipped_recurrent_model_warns_once_with_the_fix() -> None:
    model, frames = SpeakerEncoder(nn.LSTM).eval(), torch.randn(1, STEPS, FEATURES)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend="anec")
        outputs = [compiled(frames) for _ in range(3)]
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, AnecFallbackWarning)]
    assert len(fallbacks) == 1 and "allow_rnn = True" in fallbacks[0]
    torch.testing.assert_close(outputs[-1], model(frames))
    assert dynamo.REPORTS == []  # Dynamo never handed anec a graph


def test_a_onednn_lstm_layer_left_on_the_cpu_is_counted_at_its_real_flops() -> None:
    """The ANE and CPU shares weigh an LSTM by its work: a model whose LSTM stays on the CPU (here,
    traced with oneDNN on, as the backend does not) reports almost none of its FLOPs on the ANE."""
    model, frames = SpeakerEncoder(nn.LSTM).eval(), torch.randn(2, STEPS, FEATURES)
    with torch.no_grad(), torch._dynamo.config.patch(allow_rnn=True), pytest.MonkeyPatch.context() as patch:
        patch.setattr(dynamo, "_without_onednn", warnings.catch_warnings)  # a no-op context: oneDNN stays on
        torch.compile(model, backend="anec")(frames)
    (report,) = dynamo.REPORTS
    assert {op for _, op, _ in report.host_ops} == {"aten.mkldnn_rnn_layer.default"}
    assert report.total_flops >= matrix_flops(model, 2)
    assert report.ane_flops_fraction < 0.05
