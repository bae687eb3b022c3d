"""The IR's vocabulary lives in the dialects: no module outside `dialects/` spells an `ane.` or
`host.` name itself (attribute names and op-name prefixes come from `anec.dialects`)."""

from __future__ import annotations

import ast
from pathlib import Path

from anec.dialects import ane
from anec.dialects.discardable import derived_name, source_name, tile_origin, tiled_name

ROOT = Path(__file__).resolve().parents[2]


def spelled_names(path: Path) -> list[tuple[int, str]]:
    """String constants (docstrings aside) that start with a dialect prefix."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and node.value.startswith(("ane.", "host."))]


def test_no_ane_or_host_name_is_spelled_outside_the_dialects() -> None:
    found = {str(p.relative_to(ROOT)): names for folder in ("anec", "lowering") for p in sorted((ROOT / folder).rglob("*.py"))
             if (names := spelled_names(p))}
    assert found == {}


def test_the_scan_sees_a_spelled_name(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('"""Mentions ane.name in a docstring."""\nKEY = "ane.name"\n')
    assert spelled_names(probe) == [(2, "ane.name")]


def test_derived_names_round_trip() -> None:
    tile = tiled_name(derived_name("/conv1", "layout"), 3)
    assert tile == "/conv1#layout#tile3"
    assert tile_origin(tile) == "/conv1#layout" and source_name(tile) == "/conv1"
    assert tile_origin("/conv1") == "/conv1" and derived_name("/conv1", "") == "/conv1"


def test_op_kind_and_dialect() -> None:
    x = ane.ConstOp.create(result_types=[ane.tensor((1, 4), ane.f32)]).results[0]
    relu = ane.ReluOp(x)
    assert ane.is_ane(relu) and ane.kind(relu) == "relu"
