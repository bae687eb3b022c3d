"""anec's dialects and passes for xDSL tools: registered as the `xdsl.universe` entry point, so
stock `xdsl-opt` knows them, and used by `anec opt` and `anec.context.make_context`.

Everything is imported lazily: listing the universe costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xdsl.ir import Dialect
from xdsl.passes import ModulePass
from xdsl.universe import Universe


def _dialect(module: str, name: str) -> Callable[[], Dialect]:
    return lambda: getattr(importlib.import_module(f"anec.dialects.{module}"), name)


def _pass(module: str, name: str) -> Callable[[], type[ModulePass]]:
    return lambda: getattr(importlib.import_module(f"anec.lowering.{module}"), name)


DIALECTS: dict[str, Callable[[], Dialect]] = {
    "ane": _dialect("ane", "ANE"),
    "host": _dialect("host", "HOST"),
}

PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "ane-partition": _pass("partition", "PartitionPass"),
}
"""Every anec pass by its registered name (one pass per file in lowering/)."""

ANEC_UNIVERSE = Universe(all_dialects=DIALECTS, all_passes=PASSES)
