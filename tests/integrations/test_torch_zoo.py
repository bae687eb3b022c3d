"""The torch zoo through both PyTorch routes: `torch.export` + `anec.compile`, and
`torch.compile(backend="anec")`. Outputs must match eager PyTorch (cosine >= 0.999); the fraction
of FLOPs on the ANE is printed for each in the terminal summary.

Each model is built once and its eager output computed once, shared by its two routes; full-size
models are exported once per machine to `.pt2` files in the zoo cache, so the export route also
covers `anec.compile("model.pt2")`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import anec
from anec.integrations import dynamo
from tests import zoo
from tests.integrations.plain_models import PLAIN

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

FULL_SIZE = ("bert-base", "gpt2", "distilbert", "vit-b16", "resnet50", "mobilenetv2", "convnext", "whisper-encoder")
ROUTES = ("export", "compile")
CASES = [(name, route) for name in (*PLAIN, *FULL_SIZE) for route in ROUTES]


@dataclass
class Loaded:
    name: str
    model: torch.nn.Module
    inputs: dict[str, np.ndarray]
    expected: np.ndarray


_current: dict[str, Loaded] = {}


def loaded(name: str) -> Loaded:
    """The model `name` with its eager output; only the latest model stays in memory."""
    if name not in _current:
        _current.clear()
        build, make_inputs = PLAIN[name] if name in PLAIN else (zoo.ZOO[name].build, zoo.ZOO[name].inputs)
        model, inputs = build(), make_inputs()
        with torch.no_grad():
            expected = model(*(torch.from_numpy(v) for v in inputs.values())).numpy()
        _current[name] = Loaded(name, model, inputs, expected)
    return _current[name]


def exported_pt2(case: Loaded) -> Path:
    """`torch.export.save` of a zoo model, written once per machine (torch/transformers versions)."""
    path = zoo.CACHE / zoo._versions() / f"{case.name}.pt2"
    with zoo._locked(path):
        if not path.exists():
            args = tuple(torch.from_numpy(v) for v in case.inputs.values())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(case.model, args)
            tmp = path.with_suffix(".tmp.pt2")
            torch.export.save(program, tmp)
            tmp.rename(path)
    return path


def through_export(case: Loaded) -> tuple[np.ndarray, float]:
    if case.name in FULL_SIZE:  # a .pt2 names its inputs after forward's (*args): pass them in order
        model, examples = exported_pt2(case), list(case.inputs.values())
    else:
        model, examples = case.model, case.inputs
    compiled = anec.compile(model, example_inputs=examples, emit="descriptors")
    (output,) = compiled.run(list(case.inputs.values())).values()
    return output, compiled.report.ane_flops_fraction


def through_torch_compile(case: Loaded) -> tuple[np.ndarray, float]:
    torch._dynamo.reset()
    dynamo.REPORTS.clear()
    with torch.no_grad():
        output = torch.compile(case.model, backend="anec", options={"strict": True})(*(torch.from_numpy(v) for v in case.inputs.values()))
    ane = sum(r.ane_flops for r in dynamo.REPORTS)
    total = sum(r.total_flops for r in dynamo.REPORTS)
    return output.numpy(), ane / total


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    request.config.stash.setdefault(SUMMARY, []).extend(lines)


SUMMARY = pytest.StashKey[list[str]]()


@pytest.mark.parametrize(("name", "route"), CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_torch_zoo_matches_eager(name: str, route: str, summary: list[str]) -> None:
    case = loaded(name)
    output, ane_fraction = (through_export if route == "export" else through_torch_compile)(case)
    assert output.shape == case.expected.shape
    similarity = cosine(output, case.expected)
    summary.append(f"{name:16s} {'torch.export + anec.compile' if route == 'export' else 'torch.compile(backend=anec)':28s} "
                   f"cosine {similarity:.6f}  ANE FLOPs {ane_fraction:7.2%}")
    assert similarity >= 0.999
