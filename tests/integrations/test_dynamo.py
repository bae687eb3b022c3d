"""The `anec` torch.compile backend: partitions, graph breaks, host ops, options and fallbacks."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import anec
from anec.errors import AnecError
from anec.importers.torch import import_graph_module
from anec.integrations import dynamo
from anec.integrations.dynamo import AnecFallbackWarning, AnePartition
from anec.weights import store_of
from tests.integrations.plain_models import PLAIN

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("fresh_dynamo")]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def run_both(model: nn.Module, *inputs: torch.Tensor, **options: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(eager output, torch.compile(backend="anec") output), without autograd."""
    with torch.no_grad():
        expected = model(*inputs)
        got = torch.compile(model, backend="anec", options=options or None)(*inputs)
    return expected, got


class GraphBreak(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x)).mean((2, 3))
        torch._dynamo.graph_break()
        return self.fc(x).sigmoid()


class GraphBreak2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x).relu()
        torch._dynamo.graph_break()
        return self.b(x)


class HostOpInTheMiddle(nn.Module):
    """cumsum has no ANE equivalent: it runs in torch between two ANE partitions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.cumsum(F.gelu(self.a(x)), dim=-1))


def test_a_graph_break_gives_two_graphs_each_with_an_ane_partition() -> None:
    expected, got = run_both(GraphBreak().eval(), torch.randn(2, 3, 8, 8))
    assert len(dynamo.REPORTS) == 2
    assert [r.partitions for r in dynamo.REPORTS] == [1, 1] and all(r.fallback is None for r in dynamo.REPORTS)
    assert cosine(got, expected) >= 0.999
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)


def test_an_op_the_ane_lacks_runs_in_torch_between_ane_partitions() -> None:
    expected, got = run_both(HostOpInTheMiddle().eval(), torch.randn(4, 16))
    (report,) = dynamo.REPORTS
    assert report.partitions == 2
    assert [(op, why) for _, op, why in report.host_ops] == [("aten.cumsum.default", "aten.cumsum.default has no ANE equivalent")]
    assert 0.9 < report.ane_flops_fraction < 1.0
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)


def test_the_backend_report_and_anec_compile_agree_on_what_runs_where() -> None:
    model, x = HostOpInTheMiddle().eval(), torch.randn(4, 16)
    run_both(model, x)
    (graph,) = dynamo.REPORTS
    report = anec.compile(model, example_inputs=(x,), emit="ir").report
    assert {op for _, op, _ in graph.host_ops} == {r.op for r in report.host_ops} == {"aten.cumsum.default"}
    assert graph.ane_flops_fraction == pytest.approx(report.ane_flops_fraction)
    assert graph.total_flops == sum(r.flops for r in report.ops)


def test_partition_weights_are_frozen_constants_named_after_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    graphs: list[torch.fx.GraphModule] = []
    original = AnePartition.__init__

    def spy(self: AnePartition, graph: torch.fx.GraphModule, target: str, *precision: object, **key: object) -> None:
        graphs.append(graph)
        original(self, graph, target, *precision, **key)

    monkeypatch.setattr(AnePartition, "__init__", spy)
    run_both(PLAIN["mlp"][0](), torch.from_numpy(PLAIN["mlp"][1]()["features"]))
    (graph,) = graphs
    assert len([n for n in graph.graph.nodes if n.op == "placeholder"]) == 1  # the features; the weights are constants
    store = store_of(import_graph_module(graph))
    assert {"layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.5.weight"} <= set(store)
    assert store["layers.0.weight"].shape == (256, 64)  # as the parameter is stored (the matmul transposes it)


def test_min_partition_size_keeps_small_partitions_in_torch() -> None:
    expected, got = run_both(HostOpInTheMiddle().eval(), torch.randn(4, 16), min_partition_size=1000)
    (report,) = dynamo.REPORTS
    assert report.partitions == 0 and report.ane_flops == 0
    assert {why for _, op, why in report.host_ops if op != "aten.cumsum.default"} == {
        "its ANE partition has fewer than the 1000 ops of min_partition_size"}
    torch.testing.assert_close(got, expected)


def test_target_option_reaches_the_partitions() -> None:
    run_both(PLAIN["mlp"][0](), torch.from_numpy(PLAIN["mlp"][1]()["features"]), target="m4")
    assert dynamo.REPORTS[0].target == "m4" and dynamo.REPORTS[0].partitions == 1


@pytest.mark.parametrize(("options", "message"), [
    ({"bogus": 1}, "unknown anec backend option 'bogus'"),
    ({"target": "m99"}, "m99"),
    ({"min_partition_size": 0}, "min_partition_size must be a positive integer"),
    ({"max_shapes": 0}, "max_shapes must be a positive integer"),
])
def test_bad_options_are_errors(options: dict, message: str) -> None:
    with pytest.raises(Exception, match=message):
        run_both(HostOpInTheMiddle().eval(), torch.randn(4, 16), **options)


def test_a_dynamic_graph_beyond_max_shapes_runs_eagerly_with_one_warning() -> None:
    model = HostOpInTheMiddle().eval()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend="anec", dynamic=True, options={"max_shapes": 1})
        outputs = [compiled(torch.randn(n, 16)) for n in (3, 5, 7)]
    fallbacks = [w for w in caught if issubclass(w.category, AnecFallbackWarning)]
    assert len(fallbacks) == 1 and "compiled for 1 shapes (max_shapes)" in str(fallbacks[0].message)
    assert "as buckets" in str(fallbacks[0].message)
    assert [r.sizes for r in dynamo.REPORTS] == [{"x.0": 3}]  # 5 and 7 ran eagerly
    assert [o.shape for o in outputs] == [(3, 8), (5, 8), (7, 8)]


def test_strict_raises_instead_of_falling_back() -> None:
    compiled = torch.compile(HostOpInTheMiddle().eval(), backend="anec", dynamic=True, options={"strict": True, "max_shapes": 1})
    with pytest.raises(AnecError, match=r"max_shapes"), torch.no_grad():
        for n in (3, 5):
            compiled(torch.randn(n, 16))


def test_a_torch_decomposition_failure_is_an_anec_error_naming_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise AssertionError  # as torch's own asserts do: no message

    original = dynamo.ane_decompositions
    monkeypatch.setattr(dynamo, "ane_decompositions", lambda table: {**original(table), torch.ops.aten.addmm.default: broken})
    compiled = torch.compile(HostOpInTheMiddle().eval(), backend="anec", options={"strict": True})
    with pytest.raises(Exception, match=r"aot_autograd: torch's AOT tracing and decompositions failed on the graph: AssertionError") as caught, \
            torch.no_grad():
        compiled(torch.randn(4, 16))
    assert isinstance(getattr(caught.value, "inner_exception", caught.value), AnecError)  # Dynamo wraps what a backend raises


def test_an_anec_failure_inside_the_backend_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamo, "fold_constants", lambda gm: [][0])
    with pytest.warns(AnecFallbackWarning, match=r"the torch.compile backend: anec failed to place or compile the ATen graph: IndexError"):
        expected, got = run_both(HostOpInTheMiddle().eval(), torch.randn(4, 16))
    torch.testing.assert_close(got, expected)


def test_a_runtime_failure_falls_back_to_eager_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: AnePartition, *args: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("simulated device failure")

    monkeypatch.setattr(AnePartition, "forward", broken)
    model, x = HostOpInTheMiddle().eval(), torch.randn(4, 16)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend="anec")
        outputs = [compiled(x) for _ in range(3)]
        expected = model(x)
    fallbacks = [w for w in caught if issubclass(w.category, AnecFallbackWarning)]
    assert len(fallbacks) == 1 and "simulated device failure" in str(fallbacks[0].message)
    for out in outputs:
        torch.testing.assert_close(out, expected)
    (report,) = dynamo.REPORTS
    assert report.partitions == 0 and report.ane_flops_fraction == 0.0 and report.total_flops > 0


def test_a_partition_anec_fails_to_compile_counts_its_flops_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(self: AnePartition, *args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated compiler failure")

    monkeypatch.setattr(AnePartition, "__init__", failing)
    with pytest.warns(AnecFallbackWarning, match="simulated compiler failure"):
        expected, got = run_both(HostOpInTheMiddle().eval(), torch.randn(4, 16))
    (report,) = dynamo.REPORTS
    assert report.fallback is not None and report.partitions == 0 and report.ane_flops_fraction == 0.0
    torch.testing.assert_close(got, expected)


def fallback_messages(model: nn.Module, sizes: list[int], **compile_options: object) -> list[str]:
    """The AnecFallbackWarnings of calling `torch.compile(model)` on inputs of `sizes` rows."""
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend="anec", **compile_options)
        for n in sizes:
            torch.testing.assert_close(compiled(torch.randn(n, 16)).shape, torch.Size([n, 8]))
    return [str(w.message) for w in caught if issubclass(w.category, AnecFallbackWarning)]


def test_each_graph_of_a_graph_break_compiles_each_size_once_without_warnings() -> None:
    messages = fallback_messages(GraphBreak2D().eval(), [3, 5, 7, 5])  # dynamic=None: the second size goes dynamic
    assert messages == []
    assert sorted(tuple(r.sizes.values()) for r in dynamo.REPORTS) == [(), (), (5,), (5,), (7,), (7,)]  # 2 static graphs, then 2 dynamic
    assert all(r.fallback is None and r.partitions >= 1 for r in dynamo.REPORTS)


def test_a_dynamo_reset_forgets_the_static_graphs_of_its_frames() -> None:
    with torch.no_grad():
        torch.compile(GraphBreak2D().eval(), backend="anec")(torch.randn(3, 16))
    assert dynamo.STATIC_GRAPHS  # kept for the dynamic graph Dynamo compiles next for these frames
    torch._dynamo.reset()  # frame ids start again: another function's frame would find them
    with torch.no_grad():
        torch.compile(HostOpInTheMiddle().eval(), backend="anec")(torch.randn(3, 16))
    assert [len(graphs) for graphs in dynamo.STATIC_GRAPHS.values()] == [1]  # only the new function's graph


def test_recompiling_for_each_new_shape_warns_once_with_the_fix() -> None:
    messages = fallback_messages(HostOpInTheMiddle().eval(), [3, 5, 7], dynamic=False)
    assert len(messages) == 1 and "recompiles this code for each new input shape" in messages[0]
    assert len(dynamo.REPORTS) == 3 and all(r.fallback is None for r in dynamo.REPORTS)


def test_the_recompile_limit_sending_calls_to_eager_is_a_warning() -> None:
    with torch._dynamo.config.patch(recompile_limit=2):
        messages = fallback_messages(HostOpInTheMiddle().eval(), [3, 5, 7, 9], dynamic=False)
    assert [m for m in messages if "recompile_limit was reached" in m] == [messages[-1]]
    assert len(dynamo.REPORTS) == 2


def test_gradients_flow_through_an_ane_forward() -> None:
    model = PLAIN["mlp"][0]()
    x = torch.from_numpy(PLAIN["mlp"][1]()["features"])
    torch.compile(model, backend="anec")(x).square().sum().backward()
    compiled_grad = model.layers[0].weight.grad.clone()
    model.zero_grad()
    model(x).square().sum().backward()
    assert cosine(compiled_grad, model.layers[0].weight.grad) >= 0.999


def test_the_backend_is_registered_by_entry_point_without_importing_anec() -> None:
    code = ("import sys, torch; f = torch.compile(lambda x: (x @ x.T).relu() + 1, backend='anec'); "
            "x = torch.randn(4, 4); assert torch.allclose(f(x), (x @ x.T).relu() + 1, atol=1e-2); "
            "assert 'anec.integrations.dynamo' in sys.modules")
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)


class ScaledSum(nn.Module):
    """x · 1000 summed over 256 values in [0, 1): about 128 000, beyond fp16's 65 504 (inf on the ANE)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 1000).sum(-1) + 1


def test_keep_fp32_runs_the_named_aten_op_in_torch_and_fixes_the_overflow() -> None:
    x = torch.rand(1, 8, 256, generator=torch.Generator().manual_seed(0))
    expected, fp16 = run_both(ScaledSum(), x)
    assert not torch.isfinite(fp16).all()  # the hazard is real on the ANE path
    torch._dynamo.reset()
    expected, got = run_both(ScaledSum(), x, keep_fp32=["aten.sum.dim_IntList", "aten.add.Tensor"])
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=0.0)
    kept = [(node, reason) for node, _, reason in dynamo.REPORTS[-1].host_ops if "keep_fp32" in reason]
    assert {node for node, _ in kept} == {"sum_1", "add"}


def test_precision_auto_reaches_the_backend_and_keeps_the_overflowing_sum() -> None:
    x = torch.rand(1, 8, 256, generator=torch.Generator().manual_seed(0))
    expected, got = run_both(ScaledSum(), x, precision="auto", tolerance=1e-2)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=0.0)


def test_unknown_precision_option_is_refused() -> None:
    with pytest.raises(Exception, match="unknown precision 'fp8'"):
        dynamo.BackendOptions.parse({"precision": "fp8"})
