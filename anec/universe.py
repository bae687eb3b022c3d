"""anec's dialects and passes for xDSL tools: registered as the `xdsl.universe` entry point, so
stock `xdsl-opt` knows them, and used by `anec opt` and the pipeline.

Passes are named here and imported only when asked for (xDSL's `Universe` takes factories), so
listing the universe costs nothing; the dialects come from `anec.context`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xdsl.passes import ModulePass
from xdsl.universe import Universe

from anec.context import DIALECTS


def _pass(module: str, name: str) -> Callable[[], type[ModulePass]]:
    return lambda: getattr(importlib.import_module(f"anec.lowering.{module}"), name)


PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "ane-compress": _pass("compress", "CompressPass"),
    "ane-legalize": _pass("legalize", "LegalizePass"),
    "ane-layout": _pass("layout", "LayoutPass"),
    "ane-partition": _pass("partition", "PartitionPass"),
    "ane-fp16": _pass("fp16", "Fp16Pass"),
    "ane-fuse": _pass("fuse", "FusePass"),
    "ane-tile": _pass("tile", "TilePass"),
    "to-anehw": _pass("to_anehw", "ToAneHwPass"),
    "plan-memory": _pass("plan_memory", "PlanMemoryPass"),
}
"""Every anec pass by its registered name (one pass per file in lowering/)."""

ANEC_UNIVERSE = Universe(all_dialects=DIALECTS, all_passes=PASSES)
