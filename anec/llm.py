"""Causal language models from transformers (`GPT2LMHeadModel`, `LlamaForCausalLM`, …) on anec.

`CausalLM.generate` runs transformers' `generate` with the model's forward compiled by
`torch.compile(backend="anec")` and a static KV cache, so prefill and decode are two static graphs,
each compiled by anec once; the cache update (`index_copy_` at the cache positions) reaches the ANE
as a one-hot select (`anec.importers.torch.one_hot_index_put`) rather than a CPU `index_put`.

`CausalLM.predict` reports per chip the tokens per second anec's timing model predicts for
prefill and decode, and the KV cache's bytes in the ANE's layout; `CausalLM.save_coreml` writes one
Core ML package with a `prefill` and a `decode` function sharing their weights. Both work on the
two steps exported as `CachedStep`s: the cache is an input and an output of each step, not Core ML
state (`ct.StateType`), because the direct ANE path has no native state (ane-hardware §4, type
gates); on a device it stays resident by binding one buffer as a step's output and the next step's
input (§5, residency).

Imports torch and transformers (only the torch routes load this module).
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anec.analysis import ane_bytes
from anec.emit.coreml import join_functions
from anec.errors import AnecError, first_line
from anec.integrations import dynamo
from anec.pipeline import compile as compile_model
from anec.pipeline import compile_targets
from anec.targets import TARGETS, Target, get_target

FUNCTIONS = ("prefill", "decode")
"""The functions of an LLM's Core ML package, in the order they run."""


@dataclass(frozen=True)
class Generation:
    """What one `generate` produced and what it took."""

    tokens: torch.Tensor
    """The prompt followed by the new tokens, [batch, length]."""
    logits: tuple[torch.Tensor, ...]
    """The logits each step chose from, [batch, vocab] per new token."""
    graphs: int
    """How many graphs anec compiled for it (prefill and decode: 2 the first time, 0 after)."""
    fallbacks: tuple[str, ...]
    """Why a graph ran eagerly in torch instead, one entry per such graph."""


@dataclass(frozen=True)
class ChipFigures:
    """What anec's timing model predicts for one chip."""

    chip: str
    prefill_tokens_per_s: float
    """Prompt tokens per second: the prompt's length over the prefill step's predicted latency."""
    decode_tokens_per_s: float
    """New tokens per second: one over the decode step's predicted latency."""
    kv_cache_bytes: int
    """The keys and values of every layer for the whole cache, fp16 in the ANE's layout."""
    ane_flops_fraction: float
    """The decode step's share of FLOPs on the ANE."""


class CachedStep(torch.nn.Module):
    """One forward of a causal LM with a static KV cache carried as inputs and outputs:
    `(input_ids, cache_position, keys_0, values_0, keys_1, …) -> (logits, keys_0, values_0, …)`.

    The cache tensors given are copied into transformers' `StaticCache`, which updates the copies
    (a functional step, as an exported program or a Core ML function needs); the updated copies are
    returned after the logits.
    """

    def __init__(self, model: torch.nn.Module, max_cache_len: int):
        super().__init__()
        self.model = model
        self.config: Any = model.config  # a transformers config (Module.__getattr__ types it as a tensor or module)
        self.max_cache_len = max_cache_len

    def forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor, *cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import StaticCache

        past = StaticCache(config=self.config, max_cache_len=self.max_cache_len)
        layers: list[Any] = list(past.layers)  # full-attention layers: StaticCache's layer union names others too
        for layer, keys, values in zip(layers, cache[0::2], cache[1::2], strict=True):
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys.clone(), values.clone()
            layer.cumulative_length = cache_position[0].clone()
        out = self.model(input_ids=input_ids, cache_position=cache_position, past_key_values=past, use_cache=True)
        return (out.logits, *(t for layer in layers for t in (layer.keys, layer.values)))


class CausalLM:
    """A transformers causal LM run through anec with a static KV cache of `max_cache_len` positions
    (the prompt and every new token must fit)."""

    def __init__(self, model: torch.nn.Module, max_cache_len: int, *, target: str = "m1", options: dict[str, Any] | None = None):
        if not hasattr(model, "generate") or not hasattr(model, "config"):
            raise AnecError(f"{type(model).__name__} is not a transformers causal LM", where="anec.llm",
                            hint="pass a model such as GPT2LMHeadModel or LlamaForCausalLM")
        transformers_model: Any = model  # a PreTrainedModel: `generate`, `config`
        self.model = transformers_model.eval()
        self.config: Any = transformers_model.config.get_text_config()
        self.max_cache_len = max_cache_len
        self.target = get_target(target)
        backend_options: dict[str, Any] = {"target": target, "input_ranges": self.position_ranges(), **(options or {})}
        self.compiled_forward = torch.compile(model.forward, backend="anec", options=backend_options)

    # --- generation ---------------------------------------------------------------------------

    def generate(self, prompt: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False, seed: int = 0,
                 eager: bool = False, **sampling: Any) -> Generation:
        """`max_new_tokens` tokens after `prompt` ([batch, length] token ids), greedy or sampled
        (`do_sample=True` with `temperature`, `top_k`, `top_p`; seeded by `seed`). `eager=True`
        runs the same generation in torch, as the reference."""
        self._check_fits(prompt.shape[-1], max_new_tokens)
        options = {"max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens, "do_sample": do_sample,
                   "cache_implementation": "static", "max_cache_len": self.max_cache_len, "return_dict_in_generate": True,
                   "output_logits": True, **sampling}
        before = len(dynamo.REPORTS)
        torch.manual_seed(seed)
        with torch.no_grad(), warnings.catch_warnings(), contextlib.nullcontext() if eager else self._compiled():
            warnings.simplefilter("ignore", FutureWarning)
            out = self.model.generate(prompt, **options)
        new = dynamo.REPORTS[before:]
        return Generation(out.sequences, tuple(out.logits), len(new), tuple(r.fallback for r in new if r.fallback))

    @contextlib.contextmanager
    def _compiled(self) -> Iterator[None]:
        """The model's forward replaced by the anec-compiled one for the duration."""
        self.model.forward = self.compiled_forward
        try:
            yield
        finally:
            del self.model.forward

    def _check_fits(self, prompt_length: int, new_tokens: int) -> None:
        if prompt_length + new_tokens > self.max_cache_len:
            raise AnecError(f"a {prompt_length}-token prompt and {new_tokens} new tokens do not fit the {self.max_cache_len}-position cache",
                            where="anec.llm", hint="raise max_cache_len or generate fewer tokens")

    # --- the two steps, exported ----------------------------------------------------------------

    def cache_shapes(self) -> list[tuple[int, ...]]:
        """The shape of each cache tensor (keys, values per layer) at batch 1."""
        config = self.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return [(1, heads, self.max_cache_len, head_dim)] * (2 * config.num_hidden_layers)

    def step_inputs(self, tokens: int, position: int) -> dict[str, torch.Tensor]:
        """Example inputs of a step that reads `tokens` tokens at cache `position` (the cache empty),
        named as the exported step names them: `cache_{2i}` holds layer i's keys, `cache_{2i+1}` its values."""
        dtype = next(self.model.parameters()).dtype
        return {"input_ids": torch.ones((1, tokens), dtype=torch.long), "cache_position": torch.arange(position, position + tokens),
                **{f"cache_{i}": torch.zeros(shape, dtype=dtype) for i, shape in enumerate(self.cache_shapes())}}

    def position_ranges(self) -> dict[str, tuple[int, int]]:
        """The positions a forward reads, below the cache length (`generate` checks the prompt and new
        tokens fit): with them bounded, rotary cos/sin are exact table lookups on the ANE
        (`anec.importers.torch.tabulate_bounded`), which M1/M2 need (their ANE has no sin/cos)."""
        return {"position_ids": (0, self.max_cache_len - 1), "cache_position": (0, self.max_cache_len - 1)}

    def step_ranges(self) -> dict[str, tuple[int, int]]:
        """The values a step's integer inputs take, for the fp16 range analysis (which would otherwise
        try positions and token ids outside the model's tables) and the rotary tables."""
        return {"input_ids": (0, self.config.vocab_size - 1), "cache_position": self.position_ranges()["cache_position"]}

    def exported_steps(self, prompt_length: int) -> dict[str, tuple[torch.export.ExportedProgram, dict[str, torch.Tensor]]]:
        """The prefill step (`prompt_length` tokens at position 0) and the decode step (one token),
        exported with their example inputs, by function name."""
        self._check_fits(prompt_length, 1)
        step = CachedStep(self.model, self.max_cache_len).eval()
        steps = {}
        for name, (tokens, position) in zip(FUNCTIONS, ((prompt_length, 0), (1, prompt_length))):
            inputs = self.step_inputs(tokens, position)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    program = torch.export.export(step, tuple(inputs.values()), strict=False)
                except Exception as e:
                    raise AnecError(f"the {name} step could not be exported", where="torch.export",
                                    why=first_line(e)) from e
            steps[name] = (program, inputs)
        return steps

    # --- predictions ------------------------------------------------------------------------------

    def predict(self, prompt_length: int, chips: Sequence[str | Target] = TARGETS) -> list[ChipFigures]:
        """Per chip: predicted prefill and decode tokens/s (anec's timing model on each step compiled
        for that chip) and the KV cache's bytes."""
        steps = self.exported_steps(prompt_length)
        latencies: dict[str, list[float]] = {}
        fractions: list[float] = []
        for name, (program, inputs) in steps.items():
            compiled = compile_targets(program, list(chips), emit="ir", example_inputs=inputs, input_ranges=self.step_ranges())
            latencies[name] = [c.report.predicted_latency_s or 0.0 for c in compiled]
            fractions = [c.report.ane_flops_fraction for c in compiled]
        cache_bytes = sum(ane_bytes(shape) for shape in self.cache_shapes())
        return [ChipFigures(get_target(chip).name, prompt_length / prefill, 1 / decode, cache_bytes, fraction)
                for chip, prefill, decode, fraction in zip(chips, latencies["prefill"], latencies["decode"], fractions, strict=True)]

    # --- Core ML ----------------------------------------------------------------------------------

    def save_coreml(self, path: str | Path, prompt_length: int, *, deployment: str = "ios18") -> Path:
        """One `.mlpackage` with a `prefill` function (`prompt_length` tokens) and a `decode` function
        (one token), whose weights are stored once; `decode` is the default."""
        path = Path(path)
        if path.suffix != ".mlpackage":
            raise AnecError(f"{path}: a Core ML package must be named *.mlpackage", hint="use NAME.mlpackage")
        with tempfile.TemporaryDirectory(prefix="anec-llm-") as staging:
            singles = {name: compile_model(program, target=self.target, emit="coreml", example_inputs=inputs, deployment_target=deployment,
                                           input_ranges=self.step_ranges()).save(Path(staging, f"{name}.mlpackage")) for name, (program, inputs) in self.exported_steps(prompt_length).items()}
            return join_functions(singles, path, default=FUNCTIONS[-1])
