"""Graphs with dynamic sizes under the anec backend: one static anec compile per shape.

Dynamo hands the backend a graph whose sizes are symbols under `dynamic=True`, or from the second
input shape on under the default `dynamic=None`. anec compiles static shapes, so the graph is
compiled again for each shape it is called with (`ShapeDispatch`), all under one Dynamo graph, so
Dynamo's recompile limit is never reached:

- a dimension no bucket covers is compiled at each size as it arrives, exactly (an image pyramid
  needs no option); after `max_shapes` distinct shapes (16 by default) a graph's further shapes run
  eagerly in torch, with one `AnecFallbackWarning` that says to list buckets. A dimension that grows
  by one on consecutive calls is a decode loop's cache, which would compile every token: that graph
  runs eagerly, with a warning that names the static cache;
- with the backend option `buckets` (`{"x.1": [128, 256, 512]}`: axis 1 of forward's argument `x`;
  `"*"` for every dynamic axis) a size is rounded up to the smallest bucket that holds it: inputs are
  padded with zeros at the end of each such axis, outputs sliced back.

Padding is used only where it keeps the results. That is decided by experiment, once per bucket:
the graph runs in torch on the call's inputs as given and as padded, and the padded outputs, sliced,
must equal the others (to fp32 rounding). A causal model, or one whose padded positions an
attention-mask input (padded with zeros) masks out, passes; a convolution over a padded image, or
attention without a mask, does not — that bucket is refused for the graph, with a warning, and
calls that would need it run eagerly. A size equal to a bucket needs no padding.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy
import torch
from torch import fx

from anec.errors import AnecError

Buckets = Mapping[str, Sequence[int]]
"""Dimension name (`x.1`, or `*` for every dynamic dimension) -> the sizes it is compiled for."""

ANY_DIMENSION = "*"

MAX_SHAPES = 16
"""How many distinct shapes a dynamic graph is compiled for, by default, where no bucket covers a dimension."""

GROWTH_STEPS = 2
"""A dimension no bucket covers that grew by one this many calls in a row is a decode loop's cache:
compiling each size would compile every token, so the graph runs eagerly from then on, with a warning."""


def parse_buckets(value: Any) -> dict[str, tuple[int, ...]]:
    """The `buckets` option, checked: names to sorted, distinct positive sizes."""
    if not isinstance(value, Mapping):
        raise AnecError(f"buckets must map dimension names to sizes, got {value!r}", hint="options={'buckets': {'x.1': [128, 256, 512]}}")
    parsed = {}
    for name, sizes in value.items():
        if not isinstance(name, str) or not isinstance(sizes, Sequence) or not sizes or \
                any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
            raise AnecError(f"buckets[{name!r}] must be a list of positive sizes, got {sizes!r}", hint="{'x.1': [128, 256, 512]}")
        parsed[name] = tuple(sorted(set(sizes)))
    return parsed


def dimension_name(source: str) -> str | None:
    """`x.1` for Dynamo's source `L['x'].size()[1]` (None for sources that are not an input's size)."""
    match = re.fullmatch(r"L\['(\w+)'\](.*)\.size\(\)\[(\d+)\]", source)
    return f"{match[1]}{match[2]}.{match[3]}" if match else None


@dataclass(frozen=True)
class DynamicGraph:
    """What padding needs to know about a Dynamo graph with symbolic sizes."""

    symbols: dict[sympy.Symbol, str]
    """Each size symbol with the name of the input dimension it is."""
    int_inputs: dict[int, sympy.Symbol]
    """Graph inputs that are a size (Dynamo passes them as ints), by position."""
    tensor_inputs: dict[int, tuple[sympy.Expr | int, ...]]
    """Tensor inputs by position, with their (symbolic) shapes."""
    outputs: list[tuple[sympy.Expr | int, ...] | None]
    """Each output's (symbolic) shape; None for a non-tensor output."""

    @classmethod
    def of(cls, gm: fx.GraphModule) -> DynamicGraph:
        symbols: dict[sympy.Symbol, str] = {}
        int_inputs, tensor_inputs = {}, {}
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        for i, node in enumerate(placeholders):
            value = node.meta.get("example_value")
            if isinstance(value, torch.SymInt) and isinstance(expr := value.node.expr, sympy.Symbol):
                int_inputs[i] = expr
                source = getattr(node.meta.get("grapharg"), "source", None)
                if source is not None and (name := dimension_name(source.name)):
                    symbols.setdefault(expr, name)
            elif isinstance(value, torch.Tensor):
                tensor_inputs[i] = _shape(value)
                source = getattr(node.meta.get("grapharg"), "source", None)
                for axis, size in enumerate(tensor_inputs[i]):
                    if source is not None and isinstance(size, sympy.Symbol) and (name := dimension_name(f"{source.name}.size()[{axis}]")):
                        symbols.setdefault(size, name)
        output = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        results = output if isinstance(output, list | tuple) else [output]
        outputs = [_shape(r.meta["example_value"]) if isinstance(r, fx.Node) and isinstance(r.meta.get("example_value"), torch.Tensor)
                   else None for r in results]
        return cls(symbols, int_inputs, tensor_inputs, outputs)

    @classmethod
    def of_exported(cls, program: torch.export.ExportedProgram, names: Sequence[str]) -> DynamicGraph:
        """The same for a torch.export program, its user inputs named `names` (dimensions `x.1`)."""
        nodes = {n.name: n for n in program.graph.nodes}
        kinds = torch.export.graph_signature
        users = [nodes[s.arg.name] for s in program.graph_signature.input_specs if s.kind == kinds.InputKind.USER_INPUT]
        symbols: dict[sympy.Symbol, str] = {}
        tensor_inputs = {}
        for i, (name, node) in enumerate(zip(names, users)):
            tensor_inputs[i] = _shape(node.meta["val"])
            for axis, size in enumerate(tensor_inputs[i]):
                if isinstance(size, sympy.Symbol):
                    symbols.setdefault(size, f"{name}.{axis}")
        outputs = [_shape(nodes[s.arg.name].meta["val"]) for s in program.graph_signature.output_specs
                   if s.kind == kinds.OutputKind.USER_OUTPUT]
        return cls(symbols, {}, tensor_inputs, list(outputs))

    def name(self, symbol: sympy.Symbol) -> str:
        """The input dimension `symbol` is (`x.1`), else the symbol itself."""
        return self.symbols.get(symbol, str(symbol))

    def bindings(self, args: Sequence[Any]) -> dict[sympy.Symbol, int]:
        """The symbols' values in a call."""
        values = {symbol: int(args[i]) for i, symbol in self.int_inputs.items()}
        for i, shape in self.tensor_inputs.items():
            for size, actual in zip(shape, args[i].shape):
                if isinstance(size, sympy.Symbol):
                    values.setdefault(size, int(actual))
        return values

    def pad(self, args: Sequence[Any], bucketed: Mapping[sympy.Symbol, int]) -> list[Any]:
        """`args` with size inputs set to the bucket and tensors zero-padded at the end of each axis."""
        padded = list(args)
        for i, symbol in self.int_inputs.items():
            padded[i] = bucketed[symbol]
        for i, shape in self.tensor_inputs.items():
            target = [_value(size, bucketed) for size in shape]
            tensor = args[i]
            if list(tensor.shape) != target:
                grow = [p for size, want in zip(reversed(tensor.shape), reversed(target)) for p in (0, want - size)]
                padded[i] = torch.nn.functional.pad(tensor, grow)
        return padded

    def slice(self, outputs: Any, actual: Mapping[sympy.Symbol, int]) -> Any:
        """Outputs computed on padded inputs, cut back to the sizes of the call."""
        items = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
        for k, shape in enumerate(self.outputs):
            if shape is not None and isinstance(items[k], torch.Tensor):
                index = tuple(slice(0, _value(size, actual)) for size in shape)
                items[k] = items[k][index]
        return type(outputs)(items) if isinstance(outputs, list | tuple) else items[0]


def _shape(value: torch.Tensor) -> tuple[sympy.Expr | int, ...]:
    return tuple(s.node.expr if isinstance(s, torch.SymInt) else int(s) for s in value.shape)


def _value(size: sympy.Expr | int, bindings: Mapping[sympy.Symbol, int]) -> int:
    return int(size) if isinstance(size, int) else int(sympy.sympify(size).xreplace(bindings))


def same_results(padded: Any, plain: Any) -> bool:
    """Do outputs computed on padded inputs (already sliced) equal the unpadded ones, to fp32 rounding?"""
    pairs = zip(padded if isinstance(padded, list | tuple) else [padded], plain if isinstance(plain, list | tuple) else [plain])
    for a, b in pairs:
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            if a.shape != b.shape:
                return False
            if a.is_floating_point():
                scale = float(b.abs().max()) if b.numel() else 0.0
                if not torch.allclose(a, b, rtol=1e-4, atol=1e-5 + 1e-4 * scale):
                    return False
            elif not torch.equal(a, b):
                return False
    return True


class ShapeDispatch:
    """A dynamic graph run through one static anec compile per shape (see the module docstring)."""

    def __init__(self, eager: Callable, graph: DynamicGraph, buckets: Mapping[sympy.Symbol, tuple[int, ...] | None],
                 compile_static: Callable[[list[Any], dict[str, int]], Callable], warn: Callable[[str], None],
                 max_shapes: int = MAX_SHAPES):
        self.eager = eager
        self.graph = graph
        self.buckets = buckets
        """Each size symbol's buckets; None: compiled at each size as it arrives."""
        self.compile_static = compile_static
        self.warn = warn
        self.max_shapes = max_shapes
        self.compiled: dict[tuple[int, ...], Callable | None] = {}
        """Bucket sizes (in symbol order) -> their compiled graph; None: padding to them changes the results."""
        self.growth: dict[sympy.Symbol, tuple[int, int]] = {}
        """Each dimension no bucket covers: (its size at the last call, how many calls in a row it grew by one)."""
        self.growing = False

    def reuse(self, sizes: Mapping[str, int], forward: Callable) -> None:
        """Run calls whose dimensions have exactly `sizes` (by name) through `forward`, a graph already
        compiled for them, rather than compile them again."""
        key = []
        for symbol, buckets in self.buckets.items():
            size = sizes.get(self.graph.name(symbol))
            if size is None or (buckets is not None and size not in buckets):
                return
            key.append(size)
        self.compiled.setdefault(tuple(key), forward)

    def __call__(self, *args: Any) -> Any:
        actual = self.graph.bindings(args)
        if self.growing or self._grows_by_one(actual):
            return self.eager(*args)
        bucketed = {}
        for symbol, sizes in self.buckets.items():
            fits = [actual[symbol]] if sizes is None else [s for s in sizes if s >= actual[symbol]]
            if not fits:
                assert sizes is not None, "a size compiled as it arrives always fits"
                self.warn(f"{self.graph.name(symbol)} = {actual[symbol]} is larger than its largest bucket {sizes[-1]}; "
                          "this call runs eagerly in torch (add a bucket)")
                return self.eager(*args)
            bucketed[symbol] = fits[0]
        key = tuple(bucketed[s] for s in self.buckets)
        if key not in self.compiled:
            exact = [self.graph.name(s) for s, sizes in self.buckets.items() if sizes is None]
            if exact and len(self.compiled) >= self.max_shapes:
                self.warn(f"this graph has been compiled for {self.max_shapes} shapes (max_shapes) and runs new ones eagerly in torch; "
                          f"list the sizes of {', '.join(exact)} as buckets, options={{'buckets': {{{exact[0]!r}: [...]}}}} "
                          "(each size rounded up to one, padded where that keeps the results), or raise max_shapes")
                return self.eager(*args)
            self.compiled[key] = self._compile(args, actual, bucketed)
        compiled = self.compiled[key]
        if compiled is None:
            return self.eager(*args)
        return self.graph.slice(compiled(*self.graph.pad(args, bucketed)), actual)

    def _grows_by_one(self, actual: Mapping[sympy.Symbol, int]) -> bool:
        """Has a dimension no bucket covers grown by one `GROWTH_STEPS` calls in a row (say so, once)?"""
        growing = []
        for symbol, sizes in self.buckets.items():
            if sizes is None:
                last, steps = self.growth.get(symbol, (-1, 0))
                self.growth[symbol] = (actual[symbol], steps + 1 if actual[symbol] == last + 1 else 0)
                if self.growth[symbol][1] >= GROWTH_STEPS:
                    growing.append(self.graph.name(symbol))
        if growing:
            self.growing = True
            self.warn(f"{', '.join(growing)} grows by one on every call (a decode loop with a growing cache): compiling each size "
                      "would compile every token, so this graph runs eagerly in torch from now on; keep shapes fixed (for "
                      f"transformers' generate, cache_implementation='static') or give {growing[0]} buckets")
        return self.growing

    def _compile(self, args: Sequence[Any], actual: dict[sympy.Symbol, int], bucketed: dict[sympy.Symbol, int]) -> Callable | None:
        padded = self.graph.pad(args, bucketed)
        sizes = {self.graph.name(s): bucketed[s] for s in self.buckets}
        if bucketed != {s: actual[s] for s in bucketed}:
            with torch.no_grad():
                agree = same_results(self.graph.slice(self.eager(*padded), actual), self.eager(*args))
            if not agree:
                self.warn(f"padding {', '.join(f'{n} to {v}' for n, v in sizes.items())} changes this graph's results "
                          "(no attention mask hides the padded positions, or a convolution sees them): calls in this bucket run "
                          "eagerly in torch; list their exact sizes as buckets")
                return None
            warnings.warn(f"anec: this graph pads {', '.join(f'{n} to {v}' for n, v in sizes.items())} "
                          "(a shape bucket: inputs zero-padded, outputs sliced back; checked to keep the results)", stacklevel=3)
        return self.compile_static(padded, sizes)


def bucket_symbols(graph: DynamicGraph, buckets: Mapping[str, Sequence[int]]) -> dict[sympy.Symbol, tuple[int, ...] | None]:
    """Each size symbol's buckets (None where no bucket covers its dimension: compiled at each size)."""
    symbols = set(graph.int_inputs.values()) | {s for shape in graph.tensor_inputs.values() for s in shape if isinstance(s, sympy.Symbol)}
    chosen: dict[sympy.Symbol, tuple[int, ...] | None] = {}
    for symbol in sorted(symbols, key=str):
        name = graph.name(symbol)
        sizes = buckets.get(name, buckets.get(ANY_DIMENSION))
        chosen[symbol] = None if sizes is None else tuple(sizes)
    return chosen
