"""The import structure: no cycles among anec's modules (the layers themselves are checked by
`lint-imports`, configured in `.importlinter`, on the same graph)."""

from __future__ import annotations

from tests.layers import cycles, import_graph, source_modules


def test_the_graph_sees_all_three_source_trees() -> None:
    graph = import_graph()
    assert {"anec.pipeline", "anec.dialects.ane", "anec.lowering.tile"} <= graph.modules
    assert "anec.dialects.discardable" in graph.find_modules_directly_imported_by("anec.lowering.tile")
    assert set(source_modules()) == graph.modules


def test_no_import_cycle_among_anec_modules() -> None:
    assert cycles(import_graph()) == []


def test_a_cycle_would_be_found() -> None:
    graph = import_graph()
    graph.add_import(importer="anec.dialects.ane", imported="anec.pipeline")
    found = cycles(graph)
    assert found and "anec.dialects.ane" in found[0] and "anec.pipeline" in found[0]
