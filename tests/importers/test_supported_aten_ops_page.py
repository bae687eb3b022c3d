"""docs/supported-aten-ops.md is generated; it must match what the handler table says now."""

from tests.importers.supported_aten_ops import PAGE, render


def test_supported_aten_ops_page_is_up_to_date() -> None:
    assert PAGE.read_text() == render(), "docs/supported-aten-ops.md is stale: run `python -m tests.importers.supported_aten_ops`"


def test_page_says_where_each_kind_of_op_runs() -> None:
    page = render()
    assert "| aten.convolution.default | ANE | `ane.conv`, `ane.conv_transpose` |" in page
    assert "| aten.cumsum.default | CPU |" in page
    assert "| aten.sort.default | ANE | `ane.topk` |" in page
    assert "| aten.arange.start_step | compile time |" in page
    assert "| aten.linear.default | ANE | `ane.matmul` |" in page
