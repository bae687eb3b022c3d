"""One table type for everything anec dispatches on an op: interpreter kernels, task-descriptor
lowerings, MIL handlers, ONNX and ATen import handlers, CPU runners of host ops.

A `Registry` is a dict keyed by op class or by name (an ONNX op type, an ATen op, a host op's
source) with two additions: `register` as a decorator, which refuses a key registered twice, and
`lookup`, which finds an op's entry through its class hierarchy, so a handler registered for a base
class (`ane.UnaryOp`) covers every leaf op derived from it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(dict[Hashable, V], Generic[V]):
    def __init__(self, what: str):
        super().__init__()
        self.what = what
        """What the entries are ("interpreter kernel"), for error messages."""

    def add(self, key: Hashable, value: V) -> None:
        if key in self:
            raise ValueError(f"{key!r} already has a {self.what}")
        self[key] = value

    def register(self, *keys: Hashable) -> Callable[[F], F]:
        """A decorator registering the function under every key."""
        def decorate(fn: F) -> F:
            for key in keys:
                self.add(key, fn)  # type: ignore[arg-type]  # an entry may take the op class it is registered for, narrower than V says: lookup dispatches by class
            return fn
        return decorate

    def lookup(self, key: object) -> V | None:
        """The entry for a name, or for an op (or op class) through its class hierarchy."""
        if isinstance(key, str):
            return self.get(key)
        cls = key if isinstance(key, type) else type(key)
        return next((self[c] for c in cls.__mro__ if c in self), None)
