"""Shapes that change: a graph is compiled once per size as it arrives (up to max_shapes), or once per
bucket, padded only where the padding keeps the results, and says so."""

from __future__ import annotations

import warnings

import pytest
import torch

from anec import AnecError, AnecFallbackWarning
from anec.integrations import dynamo
from anec.integrations.shape_buckets import dimension_name
from tests.integrations.plain_models import PLAIN

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("fresh_dynamo")]


def run_sizes(name: str, shapes: list[tuple[int, ...]], buckets: dict | None = None) -> tuple[list[str], list[str]]:
    """Call `torch.compile(model)` on inputs of `shapes`, checking each against eager; returns
    (fallback warnings, other warnings). The first shape is compiled static; from the second on,
    Dynamo hands anec one graph whose changing sizes are symbols."""
    model = PLAIN[name][0]()
    compiled = torch.compile(model, backend="anec", options=None if buckets is None else {"buckets": buckets})
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        for i, shape in enumerate(shapes):
            x = torch.randn(shape, generator=torch.Generator().manual_seed(i))
            torch.testing.assert_close(compiled(x), model(x), atol=3e-3, rtol=3e-3)
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, AnecFallbackWarning)]
    others = [str(w.message) for w in caught if not issubclass(w.category, AnecFallbackWarning | FutureWarning)]
    return fallbacks, others


def test_a_causal_model_is_compiled_once_per_bucket_with_padding_and_a_note() -> None:
    shapes = [(2, 10, 64), (2, 13, 64), (2, 16, 64), (2, 20, 64), (2, 11, 64)]
    fallbacks, notes = run_sizes("attention-block", shapes, {"tokens.1": [16, 32]})
    assert fallbacks == []
    assert [r.sizes for r in dynamo.REPORTS] == [{}, {"tokens.1": 16}, {"tokens.1": 32}]  # the first call's static graph, 2 buckets
    assert all(r.partitions == 1 and r.fallback is None for r in dynamo.REPORTS)
    assert [n for n in notes if "pads tokens.1 to 16" in n] and [n for n in notes if "pads tokens.1 to 32" in n]


def test_exact_sizes_as_buckets_compile_an_image_pyramid_once_per_scale_without_padding() -> None:
    scales = [(1, 3, s, s) for s in (16, 24, 32, 24, 16)]
    fallbacks, notes = run_sizes("small-cnn", scales, {"image.2": [16, 24, 32], "image.3": [16, 24, 32]})
    assert fallbacks == [] and not [n for n in notes if "pads" in n]
    assert [r.sizes for r in dynamo.REPORTS] == [{}] + [{"image.2": s, "image.3": s} for s in (24, 32)]  # 16: the static graph
    assert all(r.partitions == 1 for r in dynamo.REPORTS)


def test_padding_that_changes_the_results_is_refused_and_runs_eagerly() -> None:
    fallbacks, _ = run_sizes("small-cnn", [(1, 3, 20, 20), (1, 3, 24, 24)], {"*": [32]})
    assert len(fallbacks) == 1 and "changes this graph's results" in fallbacks[0] and "exact sizes" in fallbacks[0]
    assert [r.sizes for r in dynamo.REPORTS] == [{}]  # the first call's static graph; nothing for the refused bucket


def test_a_size_beyond_the_largest_bucket_runs_eagerly_with_a_warning() -> None:
    fallbacks, _ = run_sizes("attention-block", [(2, 10, 64), (2, 40, 64)], {"tokens.1": [16, 32]})
    assert len(fallbacks) == 1 and "tokens.1 = 40 is larger than its largest bucket 32" in fallbacks[0]


def test_strict_raises_where_a_bucket_would_run_eagerly() -> None:
    compiled = torch.compile(PLAIN["attention-block"][0](), backend="anec", options={"buckets": {"tokens.1": [16]}, "strict": True})
    with torch.no_grad(), pytest.raises(AnecError, match=r"tokens\.1 = 20 is larger than its largest bucket 16"):
        for n in (10, 12, 20):
            compiled(torch.randn(2, n, 64))


def test_an_image_pyramid_runs_every_scale_on_anec_with_no_options() -> None:
    torch._dynamo.utils.counters.clear()
    scales = (16, 20, 24, 28, 32, 40, 48, 56, 64, 72)
    fallbacks, notes = run_sizes("small-cnn", [(1, 3, s, s) for s in (*scales, 24, 16)])  # ten scales, two of them again
    assert fallbacks == [] and not [n for n in notes if "pads" in n]
    # each size compiled once, exactly (a static graph, {}, is the first size's; the dynamic graph reuses it)
    assert sorted(r.sizes.get("image.2", scales[0]) for r in dynamo.REPORTS) == list(scales)
    assert all(r.sizes.get("image.3", scales[0]) == r.sizes.get("image.2", scales[0]) for r in dynamo.REPORTS)
    assert all(r.partitions == 1 and r.fallback is None for r in dynamo.REPORTS)
    # the first size's static graph, then one for all sizes (one only, if Dynamo already knows the sizes change)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2


def test_the_first_size_past_max_shapes_warns_once_and_runs_eagerly() -> None:
    sizes = [*range(2, 2 + 2 * (16 + 2), 2), 4]  # 16 sizes, then a 17th and 18th, then one of the 16 again
    fallbacks, _ = run_sizes("mlp", [(n, 64) for n in sizes])
    assert len(fallbacks) == 1 and "compiled for 16 shapes (max_shapes)" in fallbacks[0]
    assert "features.0" in fallbacks[0] and "'buckets': {'features.0'" in fallbacks[0]
    assert len(dynamo.REPORTS) == 16  # the first size's static graph, then 15 in the dynamic graph


def test_a_size_that_grows_by_one_each_call_runs_eagerly_with_one_warning() -> None:
    fallbacks, _ = run_sizes("attention-block", [(2, n, 64) for n in range(10, 16)])  # a decode loop's growing cache
    assert len(fallbacks) == 1 and "tokens.1 grows by one on every call" in fallbacks[0] and "buckets" in fallbacks[0]
    assert [r.sizes for r in dynamo.REPORTS] == [{}, {"tokens.1": 11}, {"tokens.1": 12}]  # then 13, 14, 15 eagerly


def test_a_dimension_without_a_bucket_is_compiled_at_each_size_beside_a_bucketed_one() -> None:
    fallbacks, _ = run_sizes("attention-block", [(2, 10, 64), (3, 12, 64), (3, 14, 64)], {"tokens.1": [16]})
    assert fallbacks == []
    assert [r.sizes for r in dynamo.REPORTS] == [{}, {"tokens.0": 3, "tokens.1": 16}]


@pytest.mark.parametrize("buckets", [[16, 32], {"x.1": []}, {"x.1": [0, 8]}, {"x.1": "16"}])
def test_malformed_buckets_are_errors(buckets: object) -> None:
    with pytest.raises(AnecError, match="buckets"):
        dynamo.BackendOptions.parse({"buckets": buckets})


def test_dimension_names_follow_forward_arguments() -> None:
    assert dimension_name("L['input_ids'].size()[1]") == "input_ids.1"
    assert dimension_name("L['self'].weight") is None
