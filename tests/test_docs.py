"""The generated reference pages (docs/targets.md, docs/passes.md) match the code, and every page
the README's docs list names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anec.docs import DOCS, PAGES, main
from anec.pipeline import GRAPH_PASSES, HARDWARE_PASSES
from anec.targets import TARGETS


@pytest.mark.parametrize("page", sorted(PAGES))
def test_committed_page_is_up_to_date(page: str) -> None:
    file, generate = PAGES[page]
    assert (DOCS / file).read_text() == generate(), f"docs/{file} is stale: run `python -m anec.docs {page}`"


def test_pages_hold_every_chip_and_every_pass_in_pipeline_order() -> None:
    targets = PAGES["targets"][1]()
    for t in TARGETS:
        assert re.search(rf"^\| {re.escape(t.name)} \| {t.arch} \|", targets, re.M), t.name
    assert "| `limits.max_kernel_width_fp16` | 13 |" in targets
    headings = re.findall(r"^## `([a-z0-9-]+)`$", PAGES["passes"][1](), re.M)
    assert headings == list(GRAPH_PASSES + HARDWARE_PASSES)


def test_the_generator_writes_the_pages_and_refuses_unknown_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("anec.docs.DOCS", tmp_path)
    assert main(["passes"]) == 0 and (tmp_path / "passes.md").read_text() == PAGES["passes"][1]()
    assert main(["nonsense"]) == 2 and "unknown page 'nonsense'" in capsys.readouterr().err


def test_readme_links_every_doc_page() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", readme))
    assert linked == {p.name for p in DOCS.glob("*.md")}, linked
