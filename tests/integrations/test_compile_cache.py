"""The backend's compile cache: a graph compiled once is read back, not imported, placed or compiled
again, and only for the same graph, shapes, weights and target."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from anec.integrations import compile_cache, dynamo
from tests.integrations.test_dynamo import HostOpInTheMiddle

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def compile_and_run(model: torch.nn.Module, x: torch.Tensor, **options: object) -> torch.Tensor:
    torch._dynamo.reset()
    dynamo.REPORTS.clear()
    with torch.no_grad():
        return torch.compile(model, backend="anec", options=options or None)(x)


def refuse_to_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make importing the graph, running any pass and compiling a partition fail."""
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("anec compiled although the cache holds this graph")

    monkeypatch.setattr(dynamo, "compile_model", fail)
    monkeypatch.setattr(dynamo, "node_verdicts", fail)
    monkeypatch.setattr(dynamo.GraphImporter, "run", fail)
    monkeypatch.setattr(dynamo, "run_pipeline", fail)


def test_a_second_compile_of_the_same_graph_reads_the_cache(private_compile_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = HostOpInTheMiddle().eval(), torch.randn(4, 16)
    first = compile_and_run(model, x)
    (first_report,) = dynamo.REPORTS
    assert len(list(private_compile_cache.rglob("*"))) > 2 and not first_report.from_cache
    refuse_to_compile(monkeypatch)
    torch.testing.assert_close(compile_and_run(model, x), first)
    (report,) = dynamo.REPORTS
    assert report.from_cache and report == dataclasses.replace(first_report, from_cache=True) and report.partitions == 2


@pytest.mark.parametrize("change", ["shape", "weights", "target", "anec"])
def test_another_shape_weight_target_or_anec_is_a_miss(change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = HostOpInTheMiddle().eval(), torch.randn(4, 16)
    compile_and_run(model, x)
    refuse_to_compile(monkeypatch)
    if change == "weights":
        with torch.no_grad():
            model.a.weight[3, 5] += 1e-3  # one element: the fingerprint reads every byte
    if change == "anec":
        monkeypatch.setattr(compile_cache, "anec_digest", lambda: "an edited anec")
    with pytest.warns(dynamo.AnecFallbackWarning, match="anec compiled although the cache holds"):
        compile_and_run(model, torch.randn(5, 16) if change == "shape" else x, **({"target": "m4"} if change == "target" else {}))


def test_the_cache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, private_compile_cache: Path) -> None:
    monkeypatch.setenv("ANEC_CACHE_DIR", compile_cache.DISABLED)
    compile_and_run(HostOpInTheMiddle().eval(), torch.randn(4, 16))
    assert not private_compile_cache.exists() and dynamo.REPORTS[0].partitions == 2


class BoundedRotary(torch.nn.Module):
    """cos/sin of an integer position: with `input_ranges` the importer rewrites the FX graph into
    table lookups before partitioning, which a cache hit must repeat to cut the same graph."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, 16, 2) / 16))
        self.proj = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None].float() * self.inv_freq[None, :]
        return self.proj(x) * torch.cat([angles.cos(), angles.sin()], -1)


def test_a_hit_partitions_the_graph_the_import_rewrote(private_compile_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, pos = BoundedRotary().eval(), torch.randn(6, 16), torch.arange(6)
    options = {"target": "m1", "input_ranges": {"pos": (0, 31)}}

    def run() -> torch.Tensor:
        torch._dynamo.reset()
        dynamo.REPORTS.clear()
        with torch.no_grad():
            return torch.compile(model, backend="anec", options=options)(x, pos)

    first = run()
    (report,) = dynamo.REPORTS
    assert report.partitions == 1 and not [op for _, op, _ in report.host_ops if "cos" in op or "sin" in op]  # tables, on the M1's ANE
    refuse_to_compile(monkeypatch)
    torch.testing.assert_close(run(), first)
    assert dynamo.REPORTS[0].from_cache and dynamo.REPORTS[0].partitions == 1


def test_a_one_element_slice_with_a_stride_is_fingerprinted() -> None:
    strided = torch.arange(20.0).reshape(4, 5)[1:2, 2]
    assert strided.stride() == (5,) and compile_cache._crc(strided) == compile_cache._crc(strided.clone().contiguous())
