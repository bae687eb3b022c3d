"""transformers' `generate` with a GPT-2 forward compiled by the anec backend: a static cache gives
the two compiles a user expects (prefill, decode), the default dynamic cache a clear warning rather
than a compile per token (its cache grows by one each call); tokens equal eager's either way."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from anec import AnecFallbackWarning
from anec.integrations import dynamo

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("fresh_dynamo")]

NEW_TOKENS = 6


def tiny_gpt2() -> torch.nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def generate_both(cache: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(eager tokens, tokens with an anec-compiled forward, the AnecFallbackWarnings)."""
    model, prompt = tiny_gpt2(), torch.randint(1, 256, (1, 5), generator=torch.Generator().manual_seed(0))
    options = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False, **cache}
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = model.generate(prompt, **options)
        model.forward = torch.compile(model.forward, backend="anec")
        got = model.generate(prompt, **options)
    return expected, got, [str(w.message) for w in caught if issubclass(w.category, AnecFallbackWarning)]


def test_a_static_cache_compiles_prefill_and_decode_once_each() -> None:
    expected, got, fallbacks = generate_both({"cache_implementation": "static"})
    assert torch.equal(got, expected)
    assert fallbacks == []
    assert len(dynamo.REPORTS) == 2 and all(r.fallback is None and r.partitions >= 1 for r in dynamo.REPORTS)


def test_a_dynamic_cache_warns_once_instead_of_compiling_every_token() -> None:
    expected, got, fallbacks = generate_both({})
    assert torch.equal(got, expected)
    # prefill, the first decode step, then one dynamic graph: two cache lengths compiled, then (the cache grows
    # by one on every call) eager
    assert len(dynamo.REPORTS) <= 4
    assert len(fallbacks) == 1 and "cache_implementation='static'" in fallbacks[0] and "kwargs['cache']" in fallbacks[0]
    assert "grows by one on every call" in fallbacks[0]
