"""docs/supported-ops.md is generated; it must match what the code and expectations say now."""

from tests.conformance.supported_ops import PAGE, render


def test_supported_ops_page_is_up_to_date() -> None:
    assert PAGE.read_text() == render(), "docs/supported-ops.md is stale: run `python -m tests.conformance.supported_ops`"


def test_page_lists_ane_cpu_and_inlined_ops() -> None:
    page = render()
    assert "| Conv | 1, 11, 22 | ANE | `ane.conv` |" in page
    assert "| TopK |" in page and "| Attention |" in page
    assert "| strings | fails |" in page
