"""The xDSL context every anec tool parses and transforms in, and the dialects it knows."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.func import Func
from xdsl.ir import Dialect

from anec.dialects import ane, anehw, host

DIALECTS: dict[str, Callable[[], Dialect]] = {
    "ane": lambda: ane.ANE,
    "host": lambda: host.HOST,
    "anehw": lambda: anehw.ANEHW,
}
"""anec's dialects by name (factories, as xDSL's `Context` and `Universe` take them)."""


def make_context() -> Context:
    ctx = Context()
    for dialect in (Builtin, Func, Arith):
        ctx.load_dialect(dialect)
    for name, factory in DIALECTS.items():
        ctx.register_dialect(name, factory)
    return ctx
