"""`anec.llm`: transformers causal LMs (GPT-2, Llama) generate through the anec backend with a static
cache, tokens equal to eager's in two compiles; per-chip predictions; the multifunction Core ML
package (prefill and decode sharing weights), run by the MIL interpreter against torch."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from anec import AnecError
from anec.integrations import dynamo
from anec.llm import FUNCTIONS, CachedStep, CausalLM
from anec.pipeline import compile as compile_model
from tests.emit.mil_interpreter import load_package, run_program

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CACHE = 16
PROMPT = torch.randint(1, 256, (1, 5), generator=torch.Generator().manual_seed(0))


def tiny_gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=64, bos_token_id=0,
                                      eos_token_id=0, pad_token_id=0)).eval()


def tiny_llama() -> torch.nn.Module:
    """Grouped-query attention (4 query heads, 2 key/value heads), rotary positions, SwiGLU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64,
                                        intermediate_size=128, vocab_size=256, max_position_embeddings=64, bos_token_id=0,
                                        eos_token_id=0, pad_token_id=0)).eval()


@pytest.fixture(autouse=True)
def private_compile_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANEC_CACHE_DIR", str(tmp_path / "anec-cache"))
    torch._dynamo.reset()
    dynamo.REPORTS.clear()


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def test_greedy_and_sampled_tokens_equal_eager_with_prefill_and_decode_compiled_once(build: Callable[[], torch.nn.Module]) -> None:
    lm = CausalLM(build(), CACHE)
    greedy = lm.generate(PROMPT, 6)
    assert torch.equal(greedy.tokens, lm.generate(PROMPT, 6, eager=True).tokens)
    assert greedy.graphs == 2 and greedy.fallbacks == ()
    sampled = lm.generate(PROMPT, 6, do_sample=True, seed=3, top_k=20)
    assert torch.equal(sampled.tokens, lm.generate(PROMPT, 6, do_sample=True, seed=3, top_k=20).tokens)  # seeded
    assert not torch.equal(sampled.tokens, greedy.tokens)  # the sampling was not greedy
    assert sampled.graphs == 0  # the same two graphs
    with torch.no_grad():  # random weights give near-uniform logits, where fp16 rounding moves a draw: compare logits
        eager_logits = lm.model(sampled.tokens[:, :-1]).logits[0, PROMPT.shape[1] - 1:]
    for step, (logits, token) in enumerate(zip(sampled.logits, sampled.tokens[0, PROMPT.shape[1]:], strict=True)):
        torch.testing.assert_close(logits[0], eager_logits[step], atol=5e-3, rtol=0)
        assert (logits[0] > logits[0, token]).sum() < 20  # drawn from the top 20 (fp16 logits tie more often)
    host_ops = {op for report in dynamo.REPORTS for _, op, _ in report.host_ops}
    assert "aten.index_put.default" not in host_ops  # the cache update runs on the ANE as a one-hot select
    assert all(report.ane_flops_fraction > 0.99 for report in dynamo.REPORTS)  # attention too (Llama's grouped queries)
    assert all(report.partitions == 1 for report in dynamo.REPORTS)  # Llama's rotary cos/sin too: M1 tables, not CPU ops


def test_a_cache_with_more_tensors_than_a_program_has_buffer_slots_still_runs_on_the_ane() -> None:
    """8 layers: 16 cache tensors in and 16 out, beyond one program's 28 I/O slots."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=8, n_head=1, n_embd=32, vocab_size=64, n_positions=32, bos_token_id=0,
                                       eos_token_id=0, pad_token_id=0)).eval()
    lm = CausalLM(model, CACHE)
    prompt = PROMPT % 64
    got = lm.generate(prompt, 3)
    assert got.fallbacks == () and got.graphs == 2
    assert torch.equal(got.tokens, lm.generate(prompt, 3, eager=True).tokens)


def test_the_prediction_gives_each_chip_positive_tokens_per_second_and_the_cache_bytes() -> None:
    lm = CausalLM(tiny_gpt2(), CACHE)
    figures = lm.predict(len(PROMPT[0]), chips=["m1", "m4"])
    assert [f.chip for f in figures] == ["M1", "M4"]
    for f in figures:
        assert f.prefill_tokens_per_s > 0 and f.decode_tokens_per_s > 0 and f.ane_flops_fraction > 0.9
        assert f.kv_cache_bytes == 2 * 2 * (2 * CACHE * 32) * 2  # keys and values, 2 layers, 2 heads × 16 positions × 32, fp16
    assert figures[1].decode_tokens_per_s > figures[0].decode_tokens_per_s  # the M4's ANE is faster


def test_a_prompt_longer_than_the_cache_is_one_clear_error() -> None:
    with pytest.raises(AnecError, match="do not fit the 16-position cache"):
        CausalLM(tiny_gpt2(), CACHE).generate(PROMPT, CACHE)


def weight_bytes(package: Path) -> int:
    return (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").stat().st_size


def test_the_core_ml_package_has_prefill_and_decode_sharing_weights_and_matches_torch(tmp_path: Path) -> None:
    lm = CausalLM(tiny_gpt2(), CACHE)
    package = lm.save_coreml(tmp_path / "gpt2.mlpackage", prompt_length=5)
    program = load_package(package)
    assert set(program.functions) >= set(FUNCTIONS)
    singles = [compile_model(exported, emit="coreml", example_inputs=inputs, deployment_target="ios18").save(tmp_path / f"{name}.mlpackage")
               for name, (exported, inputs) in lm.exported_steps(5).items()]
    assert weight_bytes(package) < 0.6 * sum(weight_bytes(p) for p in singles)  # one copy of the weights, not two

    step = CachedStep(lm.model, CACHE)
    prefill_inputs = {**lm.step_inputs(5, 0), "input_ids": PROMPT}
    with torch.no_grad():
        expected = step(*prefill_inputs.values())
    got = list(run_program(program, {k: v.numpy() for k, v in prefill_inputs.items()}, function="prefill").values())
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value.astype(np.float32), reference.numpy(), atol=2e-2)
    next_token = expected[0][:, -1:].argmax(-1)
    decode_inputs = {"input_ids": next_token, "cache_position": torch.tensor([5]),
                     **{f"cache_{i}": cache for i, cache in enumerate(expected[1:])}}
    with torch.no_grad():
        expected = step(*decode_inputs.values())
    got = list(run_program(program, {k: v.numpy() for k, v in decode_inputs.items()}, function="decode").values())
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value.astype(np.float32), reference.numpy(), atol=2e-2)


def test_a_package_path_without_the_mlpackage_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AnecError, match="must be named"):
        CausalLM(tiny_gpt2(), CACHE).save_coreml(tmp_path / "gpt2.bin", prompt_length=5)
