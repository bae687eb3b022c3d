"""The type-check shim (`python -m tests.typecheck`): its tree imports `anec.dialects` and
`anec.lowering` from the real folders, mypy on it does report a type error, its report names the
checkout's files, and every `# type: ignore` left in the source says why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.typecheck import ROOT, build_tree, map_report, run_mypy

PROBE = '''\
from xdsl.ir import Operation

from anec.dialects.ane import Shape, broadcast_shapes
from anec.lowering.layout import is_agnostic


def probe(a: Shape) -> str:
    return broadcast_shapes(a, a)


def probe_lowering(op: Operation) -> str:
    return is_agnostic(op)
'''


def test_the_tree_maps_the_packages_to_their_folders(tmp_path: Path) -> None:
    tree = build_tree(tmp_path)
    assert (tree / "anec" / "dialects" / "ane.py").resolve() == ROOT / "dialects" / "ane.py"
    assert (tree / "anec" / "lowering" / "tile.py").resolve() == ROOT / "lowering" / "tile.py"
    assert (tree / "anec" / "pipeline.py").resolve() == ROOT / "anec" / "pipeline.py"


def test_reported_paths_name_the_checkout_files() -> None:
    report = ("anec/lowering/fuse.py:3: error: boom  [misc]\nanec/dialects/ane.py:9: note: see\n"
              "anec/pipeline.py:1: error: bang  [misc]\nFound 2 errors in 2 files (checked 3 source files)")
    assert map_report(report).splitlines() == [
        "lowering/fuse.py:3: error: boom  [misc]", "dialects/ane.py:9: note: see",
        "anec/pipeline.py:1: error: bang  [misc]", "Found 2 errors in 2 files (checked 3 source files)"]


@pytest.mark.slow
def test_mypy_on_the_tree_catches_an_ill_typed_module(tmp_path: Path) -> None:
    """Types flow from dialects/ and lowering/ through the tree: were `anec.dialects.ane` not found,
    `broadcast_shapes` would be untyped and mypy would report a missing import instead.

    Slow when mypy's cache is cold: the probe imports `anec`, whose package follows the whole source
    and the xDSL, numpy and torch stubs (20-40 s on two busy cores). CI runs `python -m tests.typecheck`
    before pytest, which warms the shared `.mypy_cache`; then it takes about 3 s."""
    tree = build_tree(tmp_path)
    (tree / "anec" / "_typecheck_probe.py").write_text(PROBE)
    status, report = run_mypy(tree, ["anec/_typecheck_probe.py"])
    assert status == 1, report
    assert ('anec/_typecheck_probe.py:8: error: Incompatible return value type (got "tuple[int, ...]", expected "str")'
            in report), report
    assert 'anec/_typecheck_probe.py:12: error: Incompatible return value type (got "bool", expected "str")' in report, report
    assert "import-not-found" not in report and "import-untyped" not in report, report


IGNORE = re.compile(r"#\s*(type|pyright):\s*ignore(?P<rest>.*)$")


def test_every_type_ignore_says_why() -> None:
    unexplained = []
    for folder in ("anec", "dialects", "lowering"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                found = IGNORE.search(line)
                if found and not re.fullmatch(r"\[[\w\-, ]+\]\s+#\s*\S.*", found["rest"]):
                    unexplained.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert unexplained == [], "each ignore names its error code and says why after it:\n" + "\n".join(unexplained)
