"""Entry points of the PyTorch importer: nn.Module + example inputs, ExportedProgram, `.pt2` files
(API and `anec compile`), symbolic sizes, weights in the store, names, and user errors."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from xdsl.printer import Printer

import anec
from anec.cli import main as anec_main
from anec.dialects import ane
from anec.importers.torch import import_torch
from anec.interpreter import input_names, interpret, output_names
from anec.weights import store_of

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(16, 32)
        self.norm = nn.LayerNorm(32)

    def forward(self, tokens: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tokens)).relu().reshape(tokens.shape[0], -1) * scale


def feeds(batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"tokens": rng.standard_normal((batch, 3, 16), dtype=np.float32), "scale": rng.standard_normal((1,), dtype=np.float32)}


def eager(model: nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(v) for v in inputs.values())).numpy()


@pytest.fixture(scope="module")
def dynamic_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(TwoInputs(), tuple(torch.from_numpy(v) for v in feeds().values()),
                                  dynamic_shapes={"tokens": {0: batch}, "scale": None})
    path = tmp_path_factory.mktemp("pt2") / "dynamic.pt2"
    torch.export.save(program, path)
    return path


def test_module_with_example_dict_names_inputs_and_matches_eager() -> None:
    model = TwoInputs().eval()
    compiled = anec.compile(model, example_inputs=feeds(), emit="ir")
    fn = compiled.ir.ops.first
    assert input_names(fn) == ["tokens", "scale"]
    assert len(output_names(fn)) == 1
    (got,) = compiled.run(feeds()).values()
    np.testing.assert_allclose(got, eager(model, feeds()), rtol=1e-2, atol=1e-2)  # ANE segments store fp16


def test_exported_program_and_positional_examples() -> None:
    model = TwoInputs().eval()
    program = torch.export.export(model, tuple(torch.from_numpy(v) for v in feeds().values()))
    module = import_torch(program)
    (got,) = interpret(module, list(feeds().values()))
    np.testing.assert_allclose(got, eager(model, feeds()), rtol=1e-5, atol=1e-5)


def test_weights_live_in_the_store_under_their_parameter_names() -> None:
    module = import_torch(TwoInputs(), example_inputs=tuple(torch.from_numpy(v) for v in feeds().values()))
    store = store_of(module)
    assert "proj.weight" in store and store["proj.weight"].shape == (1, 32, 16)  # rank of the 3-D input
    inline = [op.value for op in module.walk() if isinstance(op, ane.ConstOp) and op.value is not None]
    assert all(math.prod(v.get_shape()) <= 16 for v in inline)
    text = io.StringIO()
    Printer(stream=text).print_op(module)
    assert 'ane.const "proj.weight" : tensor<1x32x16xf32>' in text.getvalue()


def test_pt2_with_a_dynamic_batch_is_specialized_from_the_given_shape(dynamic_pt2: Path) -> None:
    inputs = feeds(batch=5)
    compiled = anec.compile(dynamic_pt2, emit="ir", input_shapes={"tokens": [5, 3, 16], "scale": [1]})
    assert ane.shape_of(compiled.ir.ops.first.args[0]) == (5, 3, 16)
    (got,) = compiled.run(inputs).values()
    np.testing.assert_allclose(got, eager(TwoInputs().eval(), inputs), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(("shapes", "message"), [
    (None, "input 'tokens' has a dynamic axis 0"),
    ({"tokens": [5, 4, 16]}, "input 'tokens' is given shape [5, 4, 16], the program expects [5, 3, 16]"),
    ({"tokens": [100, 3, 16]}, "outside the range [1, 64]"),
])
def test_pt2_dynamic_sizes_without_a_fitting_shape_are_refused(dynamic_pt2: Path, shapes, message: str) -> None:
    with pytest.raises(anec.AnecError, match=re.escape(message)):
        anec.compile(dynamic_pt2, emit="ir", input_shapes=shapes)


def test_anec_compile_cli_writes_ir_for_a_pt2_file(dynamic_pt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "model.mlir"
    assert anec_main(["compile", str(dynamic_pt2), "--emit", "ir", "-o", str(out), "--input-shape", "tokens=2,3,16"]) == 0
    assert out.exists() and (tmp_path / "model.weights.npz").exists()
    capsys.readouterr()
    assert anec_main(["compile", str(dynamic_pt2), "--emit", "ir", "-o", str(tmp_path / "again.mlir")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dynamic axis 0" in err and "Traceback" not in err
    assert not (tmp_path / "again.mlir").exists()


def test_a_file_that_is_not_a_program_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.pt2"
    bad.write_text("not a zip")
    assert anec_main(["compile", str(bad), "--emit", "ir"]) == 2
    err = capsys.readouterr().err
    assert "not a torch.export program" in err and err.count("\n") == 1


def test_a_module_needs_example_inputs() -> None:
    with pytest.raises(anec.AnecError, match="needs example_inputs"):
        anec.compile(TwoInputs(), emit="ir")


def test_an_untraceable_module_is_a_clear_error() -> None:
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[x > 0]  # output size depends on the data

    with pytest.raises(anec.AnecError):
        anec.compile(DataDependent(), example_inputs=(torch.randn(4),), emit="ir")


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_layers_through_torch_export_unroll_onto_the_ane(cell: type[nn.RNNBase]) -> None:
    torch.manual_seed(0)
    model, frames = cell(12, 24, num_layers=2, batch_first=True).eval(), torch.randn(2, 6, 12)
    compiled = anec.compile(model, example_inputs=(frames,), emit="descriptors")
    assert compiled.report.host_ops == [] and compiled.report.ane_flops_fraction == 1.0
    output = next(iter(compiled.run([frames.numpy()]).values()))
    with torch.no_grad():
        expected = model(frames)[0].numpy()
    np.testing.assert_allclose(output, expected, atol=5e-3)


def tiny_gpt2_with_static_cache() -> nn.Module:
    """transformers' exportable static-cache wrapper around a 2-layer GPT-2 with random weights."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
    from transformers.integrations.executorch import TorchExportableModuleWithStaticCache

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0,
                                       eos_token_id=0)).eval()
    model.generation_config = GenerationConfig(use_cache=True, cache_implementation="static", max_length=16,
                                               cache_config={"batch_size": 1, "max_cache_len": 16, "device": "cpu"})
    return TorchExportableModuleWithStaticCache(model, batch_size=1, max_cache_len=16)


@pytest.mark.filterwarnings("ignore")
def test_an_exported_static_cache_torch_cannot_decompose_is_one_line_naming_the_stage_and_the_cause() -> None:
    wrapper = tiny_gpt2_with_static_cache()
    example = {"input_ids": torch.tensor([[1]]), "cache_position": torch.tensor([0])}
    program = torch.export.export(wrapper, (), example, strict=False)  # lifts cache tensors as aliasing constants
    with pytest.raises(anec.AnecError, match=r"^run_decompositions: torch's decompositions failed .* share storage; export with strict=True") as caught:
        anec.compile(program, emit="ir")
    assert "\n" not in str(caught.value)
    strict = torch.export.export(wrapper, (), example, strict=True)  # the fix the hint gives works
    assert anec.compile(strict, emit="ir").report.ane_flops_fraction > 0.5


class FailsToTrace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError  # as torch's own asserts do: no message


def test_a_module_torch_export_cannot_trace_is_one_line_naming_the_stage() -> None:
    with pytest.raises(anec.AnecError, match=r"^torch.export: torch.export cannot trace FailsToTrace: AssertionError") as caught:
        anec.compile(FailsToTrace(), example_inputs=(torch.randn(2),), emit="ir")
    assert "\n" not in str(caught.value)


def test_import_anec_and_the_onnx_route_never_import_torch() -> None:
    code = """
import sys, numpy as np, onnx
from onnx import TensorProto, helper
import anec, anec.cli
anec.cli.build_parser()
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
compiled = anec.compile(helper.make_model(graph), emit="ir")
assert (compiled.run({"x": -np.ones((2, 3), np.float32)})["y"] == 0).all()
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_internal_failures_are_one_line_errors_naming_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler bug, or an op that only fails the module's verification, leaves `anec.compile` as one
    line naming the node, never a bare exception or xDSL's message with the module printed."""
    from xdsl.utils.exceptions import VerifyException

    from anec.errors import ImportFailure
    from anec.importers import aten

    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    example = (torch.randn(2, 4),)

    def broken(e):
        raise IndexError("out of range")

    monkeypatch.setitem(aten.HANDLERS, "aten.relu.default", broken)
    with pytest.raises(ImportFailure, match=r"node 'relu' \(aten.relu.default\): anec failed to import the node: IndexError: out of range"):
        anec.compile(net, example_inputs=example, emit="ir")
    monkeypatch.undo()

    def bad_verify(self):
        raise VerifyException("operand types do not match")

    monkeypatch.setattr(ane.ReluOp, "verify_", bad_verify)
    with pytest.raises(ImportFailure, match=r"node 'relu': the torch importer built an invalid ane.relu: VerifyException: operand") as e:
        anec.compile(net, example_inputs=example, emit="ir")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("shape", "axis", "index"), [
    ((1, 2, 8, 4), 2, [3]),          # a static KV cache's decode update
    ((1, 2, 8, 4), 2, [0, 1, 2]),    # its prefill update
    ((6, 5), 0, [4, -1]),            # a negative index counts from the end
    ((3, 7), 1, [6, 0, 2]),          # the last axis
])
def test_index_put_along_one_axis_decomposes_to_the_same_values(shape: tuple[int, ...], axis: int, index: list[int]) -> None:
    from anec.importers.torch import one_hot_index_put

    torch.manual_seed(0)
    x = torch.randn(shape)
    rows = torch.randn(*shape[:axis], len(index), *shape[axis + 1:])
    indices = [None] * axis + [torch.tensor(index)]
    expected = torch.ops.aten.index_put.default(x, indices, rows)
    assert torch.equal(one_hot_index_put(x, indices, rows), expected)


def test_index_put_forms_without_a_one_hot_equivalent_stay_index_put() -> None:
    from anec.importers.torch import one_hot_index_put

    x, rows = torch.zeros(4, 4), torch.ones(2)
    assert one_hot_index_put(x, [torch.tensor([0, 1]), torch.tensor([1, 2])], rows) is NotImplemented  # two index tensors
    assert one_hot_index_put(x, [torch.tensor([0, 1])], torch.ones(2, 4), accumulate=True) is NotImplemented
    assert one_hot_index_put(x, [torch.tensor([[True] * 4] * 4)], torch.ones(16)) is NotImplemented  # a mask


def test_a_cache_update_exported_with_index_copy_runs_on_the_ane() -> None:
    class CacheUpdate(nn.Module):
        def forward(self, cache: torch.Tensor, position: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            return cache.index_copy(2, position, new) * 2

    inputs = {"cache": torch.randn(1, 2, 8, 4), "position": torch.tensor([5]), "new": torch.randn(1, 2, 1, 4)}
    compiled = anec.compile(CacheUpdate(), example_inputs=inputs, emit="descriptors")
    host = {op.op for op in compiled.report.ops if op.placement != "ane"}
    assert not any("index" in op for op in host), host  # only the position's one-hot compare is on the CPU
    assert {"matmul", "greater"} <= {op.op for op in compiled.report.ops if op.placement == "ane"}  # rows moved, positions written
    got = next(iter(compiled.run({k: v.numpy() for k, v in inputs.items()}).values()))
    np.testing.assert_allclose(got, CacheUpdate()(**inputs).numpy(), atol=1e-2)


class Rotary(nn.Module):
    """Llama's rotary angles: positions × inverse frequencies, duplicated, then cos and sin."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, dim, 2).float() / dim))

    def forward(self, position_ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        angles = position_ids[:, :, None].float() * self.inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return x * angles.cos() + angles.sin()


def _rotary_inputs(positions: list[int]) -> dict[str, torch.Tensor]:
    return {"position_ids": torch.tensor([positions]), "x": torch.linspace(-1, 1, 8 * len(positions)).reshape(1, len(positions), 8)}


@pytest.mark.parametrize("positions", [[37], [0, 5, 2, 63]], ids=["decode", "prefill"])
def test_cos_and_sin_of_a_bounded_position_are_exact_table_lookups_on_the_ane(positions: list[int]) -> None:
    """M1's ANE has no sin/cos: with the positions' range declared they become one-hot gathers from
    tables of torch's own values, so the whole model is one ANE segment."""
    inputs = _rotary_inputs(positions)
    compiled = anec.compile(Rotary(), example_inputs=inputs, emit="descriptors", target="m1", input_ranges={"position_ids": (0, 63)})
    assert compiled.report.segments == 1
    assert not {"cos", "sin"} & {op.op for op in compiled.report.ops}
    assert all(op.placement == "ane" or op.op in ("equal", "cast", "reshape") for op in compiled.report.ops)  # the compares on the CPU
    got = next(iter(compiled.run({k: v.numpy() for k, v in inputs.items()}).values()))
    np.testing.assert_allclose(got, Rotary()(**inputs).numpy(), atol=2e-3)


def test_a_rotary_table_holds_torchs_values_for_every_position_in_the_range() -> None:
    from anec.importers.torch import TABULATED, ane_decompositions, tabulate_bounded

    program = torch.export.export(Rotary(), tuple(_rotary_inputs([3, 4]).values()))
    program = program.run_decompositions(ane_decompositions(torch.export.default_decompositions()))  # as the importer does
    gm = program.graph_module
    placeholders = {n.name: n for n in gm.graph.nodes if n.op == "placeholder"}
    constants = {placeholders[s.arg.name]: program.state_dict[s.target] for s in program.graph_signature.input_specs if s.target}
    source = next(n for n in gm.graph.nodes if n.name == "position_ids")
    assert tabulate_bounded(gm.graph, gm, {source: (-4, 11)}, lambda n: constants.get(n) if n.op == "placeholder" else getattr(gm, n.target)) == 2
    assert not any(n.target in TABULATED for n in gm.graph.nodes)
    tables = [getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr" and n.target.endswith("_table")]
    angles = torch.arange(-4, 12).float()[:, None] * Rotary().inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    assert len(tables) == 2 and {t.shape for t in tables} == {(16, 8)}
    assert any(torch.equal(t, angles.cos()) for t in tables) and any(torch.equal(t, angles.sin()) for t in tables)  # bit for bit


def test_cos_and_sin_stay_without_a_bound_or_in_another_form() -> None:
    class Summed(nn.Module):  # each angle depends on every position: no table row per position
        def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
            return position_ids.float().sum(-1, keepdim=True).cos()

    cases = [(Rotary(), _rotary_inputs([3]), None), (Summed(), {"position_ids": torch.tensor([[1, 2]])}, {"position_ids": (0, 63)}),
             (Rotary(), _rotary_inputs([3]), {"position_ids": (0, 1 << 20)})]  # a table beyond MAX_TABLE_ELEMENTS
    for model, inputs, ranges in cases:
        compiled = anec.compile(model, example_inputs=inputs, emit="ir", target="m1", input_ranges=ranges)
        assert "cos" in {op.op for op in compiled.report.host_ops}, model


def test_keys_and_values_written_at_the_same_positions_share_one_one_hot() -> None:
    class KeyValueUpdate(nn.Module):
        def forward(self, keys: torch.Tensor, values: torch.Tensor, position: torch.Tensor, k: torch.Tensor,
                    v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return keys.index_copy(2, position, k), values.index_copy(2, position, v)

    torch.manual_seed(0)
    inputs = {"keys": torch.randn(1, 2, 8, 4), "values": torch.randn(1, 2, 8, 4), "position": torch.tensor([5]),
              "k": torch.randn(1, 2, 1, 4), "v": torch.randn(1, 2, 1, 4)}
    compiled = anec.compile(KeyValueUpdate(), example_inputs=inputs, emit="descriptors")
    assert [op.op for op in compiled.report.ops].count("equal") == 1  # each index_put decomposition builds its own
    got = compiled.run({k: v.numpy() for k, v in inputs.items()})
    for result, expected in zip(got.values(), KeyValueUpdate()(**inputs), strict=True):
        np.testing.assert_allclose(result, expected.numpy(), atol=1e-2)


def test_grouped_query_attention_runs_on_the_ane_with_each_key_head_serving_its_group() -> None:
    class Grouped(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    torch.manual_seed(0)
    inputs = {"q": torch.randn(1, 4, 6, 8), "k": torch.randn(1, 2, 6, 8), "v": torch.randn(1, 2, 6, 8)}
    compiled = anec.compile(Grouped(), example_inputs=inputs, emit="descriptors")
    assert compiled.report.host_ops == []
    got = next(iter(compiled.run({k: v.numpy() for k, v in inputs.items()}).values()))
    np.testing.assert_allclose(got, Grouped()(**inputs).numpy(), atol=1e-2)
