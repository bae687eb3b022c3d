"""Shared by the conformance test, the benchmark and the supported-ops generator: onnx's node cases,
the expectation file, and what "ANE-capable" means."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

import onnx

EXPECTATIONS = Path(__file__).with_name("expectations.toml")
TARGET = "m1"
FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16})


@dataclass(frozen=True)
class Bucket:
    name: str
    kind: str  # "fails" or "off-ane"
    reason: str
    cases: tuple[str, ...]


@functools.cache
def buckets() -> tuple[Bucket, ...]:
    data = tomllib.loads(EXPECTATIONS.read_text())
    out = tuple(Bucket(b["name"], b["kind"], b["reason"], tuple(b["cases"])) for b in data["bucket"])
    assert all(b.kind in ("fails", "off-ane") for b in out), "bucket kinds are 'fails' and 'off-ane'"
    return out


@functools.cache
def expectation_of() -> dict[str, Bucket]:
    """Case name -> the bucket listing it."""
    table: dict[str, Bucket] = {}
    for b in buckets():
        for case in b.cases:
            assert case not in table, f"{case} is listed in two buckets ({table[case].name}, {b.name})"
            table[case] = b
    return table


def float_io(model: onnx.ModelProto) -> bool:
    """Every input and output is a float32/float16 tensor (what the ANE takes and gives)."""
    values = [*model.graph.input, *model.graph.output]
    return all(v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type in FLOAT_TYPES for v in values)


@functools.cache
def node_cases() -> tuple:
    """onnx's node test cases, generated in memory (a few seconds, once per process)."""
    import warnings

    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(load_model_tests(kind="node"))
