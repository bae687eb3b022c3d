"""`anec.compile(model, dynamic_dims={"x.1": [128, 256, 512]})`: a PyTorch model compiled once per
bucket of sizes, run by padding to the bucket and slicing the outputs back.

The model is exported once with the named axes dynamic (`torch.export.Dim.AUTO`), so the program
says how each output's sizes follow them; each combination of bucket sizes is then compiled as a
static program (the exported one specialized to those shapes). Running pads and slices through the
same `ShapeDispatch` the torch.compile backend uses, with the same rule: padding is used only where
torch, running the exported program on the call's inputs as given and padded, gets the same
results; else that bucket runs the exported program eagerly, with one warning.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch

from anec.emit.coreml import join_functions
from anec.errors import AnecError, AnecFallbackWarning, first_line
from anec.importers.torch import example_call
from anec.integrations.shape_buckets import DynamicGraph, ShapeDispatch, parse_buckets
from anec.mlpackage import mil_name
from anec.pipeline import CompiledModel
from anec.pipeline import compile as compile_model


@dataclass
class BucketedModel:
    """One `CompiledModel` per bucket (keyed by the sizes, `{"x.1": 128}` as sorted pairs) and the
    dispatch that runs an input through the bucket that holds it."""

    compiled: dict[tuple[tuple[str, int], ...], CompiledModel]
    dispatch: ShapeDispatch
    output_names: list[str]

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        values = list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)
        outputs = self.dispatch(*(torch.from_numpy(np.ascontiguousarray(v)) for v in values))
        items = outputs if isinstance(outputs, list | tuple) else [outputs]
        return {name: out.numpy() for name, out in zip(self.output_names, items)}

    def save(self, path: str | Path) -> list[Path]:
        """Each bucket's artifact beside `path`, named by its sizes (`model.x.1=128.mlir`); a Core ML
        package is one `path` with a function per bucket (`x_1_128`; the largest bucket the default),
        the weights stored once."""
        path = Path(path)
        labels = {sizes: ".".join(f"{name}={size}" for name, size in sizes) for sizes in self.compiled}
        if path.suffix != ".mlpackage":
            return [compiled.save(path.with_name(f"{path.stem}.{labels[sizes]}{path.suffix}")) for sizes, compiled in self.compiled.items()]
        functions = {sizes: mil_name(labels[sizes].replace("=", "_")) for sizes in self.compiled}
        with tempfile.TemporaryDirectory(prefix="anec-buckets-") as staging:
            singles = {functions[sizes]: compiled.save(Path(staging, f"{functions[sizes]}.mlpackage")) for sizes, compiled in self.compiled.items()}
            return [join_functions(singles, path, default=functions[max(self.compiled)])]


def compile_bucketed(model: Any, dynamic_dims: Mapping[str, Sequence[int]], *, example_inputs: Any = None, **options: Any) -> BucketedModel:
    """See the module docstring; `options` are `anec.compile`'s."""
    buckets = parse_buckets(dynamic_dims)
    if not isinstance(model, torch.nn.Module) or isinstance(model, torch.fx.GraphModule) or example_inputs is None:
        raise AnecError("dynamic_dims needs a PyTorch nn.Module with example_inputs",
                        hint="for ONNX or .pt2 files, compile each size with input_shapes=; under torch.compile use options={'buckets': …}")
    program, names, by_keyword = _export(model, example_inputs, buckets)
    graph = DynamicGraph.of_exported(program, names)
    missing = sorted(set(buckets) - set(graph.symbols.values()))
    if missing:
        raise AnecError(f"dynamic_dims names {', '.join(missing)}, which the exported program does not keep dynamic",
                        why=f"its dynamic axes are {', '.join(sorted(graph.symbols.values())) or 'none'}",
                        hint="name axes as <forward argument>.<axis>; torch.export fixes an axis the model's code ties to a constant")
    symbol_of = {name: symbol for symbol, name in graph.symbols.items()}
    placeholders = [s.arg.name for s in program.graph_signature.input_specs if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    compiled: dict[tuple[tuple[str, int], ...], CompiledModel] = {}
    for sizes in itertools.product(*(buckets[name] for name in sorted(buckets))):
        chosen = dict(zip(sorted(buckets), sizes))
        bindings = {symbol_of[name]: size for name, size in chosen.items()}
        shapes = {node: [int(sympy.sympify(s).xreplace(bindings)) for s in graph.tensor_inputs[i]] for i, node in enumerate(placeholders)}
        compiled[tuple(chosen.items())] = compile_model(program, input_shapes=shapes, **options)

    def run_bucket(*padded: torch.Tensor, sizes: dict[str, int]) -> Any:
        outputs = compiled[tuple(sorted(sizes.items()))].run([t.numpy() for t in padded]).values()
        return tuple(torch.from_numpy(np.array(y)) for y in outputs)

    def refuse(message: str) -> None:
        warnings.warn(f"anec: {message}", AnecFallbackWarning, stacklevel=4)

    module = program.module()

    def eager(*inputs: torch.Tensor) -> Any:
        with torch.no_grad():
            return module(**dict(zip(names, inputs))) if by_keyword else module(*inputs)

    dispatch = ShapeDispatch(eager, graph, {symbol_of[name]: buckets[name] for name in sorted(buckets)},
                             lambda padded, sizes: functools.partial(run_bucket, sizes=sizes), refuse)
    outputs = [spec.arg.name for spec in program.graph_signature.output_specs]
    return BucketedModel(compiled, dispatch, outputs)


def _export(model: torch.nn.Module, example_inputs: Any, buckets: Mapping[str, Sequence[int]]) -> tuple[torch.export.ExportedProgram, list[str], bool]:
    """The model exported with every axis `buckets` names dynamic; its inputs' names in call order,
    and whether they are passed by keyword."""
    args, kwargs, given_names = example_call(model, example_inputs)
    names = given_names or list(kwargs) or list(inspect.signature(model.forward).parameters)[:len(args)]
    axes: dict[str, dict[int, Any]] = {}
    for dim in buckets:
        name, _, axis = dim.rpartition(".")
        if name not in names or not axis.isdigit():
            raise AnecError(f"dynamic_dims names {dim!r}", why=f"the inputs are {', '.join(names)}", hint="name axes as <input>.<axis>, e.g. x.1")
        axes.setdefault(name, {})[int(axis)] = torch.export.Dim.AUTO
    if kwargs:
        dynamic: Any = {name: axes.get(name) for name in kwargs}
    else:
        dynamic = tuple(axes.get(name) for name in names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.export(model, args, kwargs, dynamic_shapes=dynamic)
    except Exception as e:
        raise AnecError(f"torch.export cannot trace {type(model).__name__} with dynamic {', '.join(buckets)}", where="torch.export",
                        why=first_line(e),
                        hint="check that the model's code does not tie these axes to constants") from e
    return program, names, bool(kwargs)
