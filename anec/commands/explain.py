"""`anec explain OP --target T`: does one op, with these shapes and attributes, run on a chip's ANE —
and if not, which legality rule stops it and what would let it.

The op is an ONNX op type, built into a one-node model and taken through the importer and the
graph passes before partitioning (legalize, layout), so the answer is about the very ops `anec
compile` would place. The verdict is `anec.legality.legality`'s (its rule, reason and hint);
limits the tile pass removes are asked with `strict=True`, and the tiles are counted by compiling
the op to descriptors.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from anec.dialects.discardable import REASON_ATTR, name_of
from anec.errors import AnecError

DTYPES: dict[str, np.dtype] = {name: np.dtype(t) for names, t in (
    (("f32", "float", "float32"), np.float32), (("f16", "half", "float16"), np.float16), (("f64", "double", "float64"), np.float64),
    (("i64", "int64"), np.int64), (("i32", "int32"), np.int32), (("i8", "int8"), np.int8), (("bool",), np.bool_),
) for name in names}

EXAMPLES = """examples:
  anec explain Conv --shape 1x64x56x56 --weight 128x64x31x31 --attr strides=4,4 --target m1
  anec explain Sin --shape 1x128 --target m1
  anec explain TopK --shape 1x1000 --value 5 --target m2
  anec explain MatMul --shape 1x128x768 --weight 768x3072
Inputs are given in the op's ONNX input order by --shape (a run-time input), --weight (a constant of
random values) and --value (a constant with these values); a shape may end in :int64, :f16, :bool …"""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("explain", parents=[common], help="does one op run on a chip's ANE? if not, why, and what would let it",
                       description="Whether one ONNX op with the given inputs and attributes runs on the ANE of a chip; if not, "
                       "the legality rule that stops it, its hint and the chips that do run it; if the tile pass must split "
                       "it first, the limit it exceeds and the number of tiles.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("op", help="an ONNX op type (Conv, MatMul, Softmax …; case does not matter)")
    p.add_argument("--shape", dest="inputs", action="append", type=lambda text: ("input", text), default=[], metavar="D0xD1x…[:DTYPE]",
                   help="the next input: a run-time tensor of this shape (float32 unless :DTYPE)")
    p.add_argument("--weight", dest="inputs", action="append", type=lambda text: ("weight", text), metavar="D0xD1x…[:DTYPE]",
                   help="the next input: a constant of this shape (seeded random values)")
    p.add_argument("--value", dest="inputs", action="append", type=lambda text: ("value", text), metavar="V0,V1,…",
                   help="the next input: a 1-D constant holding these numbers (int64 unless one has a '.')")
    p.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE", help="an ONNX attribute, e.g. strides=2,2 or mode=reflect")
    p.add_argument("--target", default="m1", help="chip (m1 … m5-max) or architecture (h13 …); default m1")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class InputSpec:
    kind: str  # "input", "weight" or "value"
    array: np.ndarray  # the constant's values, or a zero array giving shape and dtype for a run-time input


def parse_shape(text: str) -> tuple[tuple[int, ...], np.dtype]:
    """`1x64x56x56`, `1,64,56,56` or `1x128:int64` → (shape, dtype)."""
    dims, _, dtype = text.partition(":")
    try:
        shape = tuple(int(d) for d in dims.replace(",", "x").split("x")) if dims else ()
    except ValueError:
        shape = None
    if shape is None or any(d <= 0 for d in shape):
        raise AnecError(f"shape {text!r} is not D0xD1x… with positive sizes", hint="e.g. --shape 1x64x56x56 or --shape 1x128:int64")
    if dtype and dtype.lower() not in DTYPES:
        raise AnecError(f"shape {text!r}: unknown element type {dtype!r}", hint=f"use one of {', '.join(sorted(DTYPES))}")
    return shape, DTYPES[dtype.lower() or "f32"]


def parse_input(kind: str, text: str, index: int) -> InputSpec:
    if kind == "value":
        try:
            numbers = [float(v) if "." in v or "e" in v.lower() else int(v) for v in text.split(",")]
        except ValueError:
            raise AnecError(f"--value {text!r} is not a comma-separated list of numbers", hint="e.g. --value 5 or --value 0,2,1,3") from None
        return InputSpec(kind, np.array(numbers, np.float32 if any(isinstance(v, float) for v in numbers) else np.int64))
    shape, dtype = parse_shape(text)
    if kind == "input":
        return InputSpec(kind, np.zeros(shape, dtype))
    values = np.random.default_rng(index).standard_normal(shape)
    return InputSpec(kind, (values > 0) if dtype == np.bool_ else values.astype(dtype))


def resolve_op(name: str):
    """The newest ONNX schema of op type `name` (case-insensitive) in the default domain."""
    import onnx

    schemas = {s.name: s for s in onnx.defs.get_all_schemas() if s.domain == ""}
    by_lower = {n.lower(): n for n in schemas}
    found = schemas.get(name) or schemas.get(by_lower.get(name.lower(), ""))
    if found is None or found.deprecated:
        close = difflib.get_close_matches(name, list(schemas), n=3, cutoff=0.6) + [by_lower[m] for m in difflib.get_close_matches(
            name.lower(), list(by_lower), n=3, cutoff=0.6)]
        raise AnecError(f"unknown op {name!r}", why="explain takes an ONNX op type",
                        hint=f"did you mean {' or '.join(dict.fromkeys(close))}?" if close else "see docs/supported-ops.md for the op types")
    return found


def parse_attr(schema, text: str):
    """`NAME=VALUE` → an onnx AttributeProto, typed by the op's schema."""
    import onnx
    from onnx import helper

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise AnecError(f"--attr {text!r} is not NAME=VALUE", hint="e.g. --attr strides=2,2")
    spec = schema.attributes.get(name)
    if spec is None:
        raise AnecError(f"{schema.name} has no attribute {name!r}", hint=f"its attributes: {', '.join(sorted(schema.attributes)) or '(none)'}")
    kinds = onnx.defs.OpSchema.AttrType
    converters: dict[onnx.defs.OpSchema.AttrType, Callable[[str], object]] = {kinds.INT: int, kinds.FLOAT: float, kinds.STRING: str,
                  kinds.INTS: lambda v: [int(x) for x in v.split(",") if x], kinds.FLOATS: lambda v: [float(x) for x in v.split(",") if x],
                  kinds.STRINGS: lambda v: v.split(",")}
    if spec.type not in converters:
        raise AnecError(f"attribute {name} of {schema.name} is a {spec.type.name}, which explain cannot take on the command line")
    try:
        return helper.make_attribute(name, converters[spec.type](value))
    except ValueError:
        raise AnecError(f"--attr {text!r}: {name} takes {spec.type.name.lower()}", hint="numbers separated by commas, e.g. 2,2") from None


def one_node_model(schema, inputs: Sequence[InputSpec], attrs: Sequence[str]):
    """A model of one `schema` node over `inputs`; its required outputs are the graph's outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not inputs:
        raise AnecError(f"{schema.name} needs its inputs", hint="give each with --shape, --weight or --value, in ONNX order")
    names = [f"in{i}" for i in range(len(inputs))]
    node_outputs = [f"out{i}" for i, o in enumerate(schema.outputs)
                    if i == 0 or o.option != onnx.defs.OpSchema.FormalParameterOption.Optional]
    node = helper.make_node(schema.name, names, node_outputs, name=schema.name.lower(), **{})
    node.attribute.extend(parse_attr(schema, a) for a in attrs)
    graph = helper.make_graph(
        [node], "explain",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(s.array.dtype), s.array.shape)
         for n, s in zip(names, inputs) if s.kind == "input"],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node_outputs],
        [numpy_helper.from_array(s.array, n) for n, s in zip(names, inputs) if s.kind != "input"],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version())])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    try:  # inputs that do not fit the op are the user's mistake, not a CPU op
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
        raise AnecError(f"{schema.name} does not take these inputs", why=str(e).strip().splitlines()[-1],
                        hint=f"{schema.name} takes {', '.join(i.name for i in schema.inputs)}, in this order") from None
    return model


def run(args: argparse.Namespace) -> int:
    from anec.targets import get_target

    target = get_target(args.target)
    schema = resolve_op(args.op)
    inputs = [parse_input(kind, text, i) for i, (kind, text) in enumerate(args.inputs)]
    model = one_node_model(schema, inputs, args.attr)
    lines = explain(model, target)  # before printing anything: it may refuse the op
    print(f"{schema.name} on the {target}:", *lines, sep="\n")
    return 0


def explain(model, target) -> list[str]:
    """Lines answering, for each op the node becomes, where it runs on `target` and why."""
    from xdsl.dialects import func

    from anec.dialects import ane, host
    from anec.importers import import_model
    from anec.legality import legality
    from anec.pipeline import CompileOptions, run_pipeline
    from anec.targets import TARGETS

    module = import_model(model)
    run_pipeline(module, CompileOptions(target=target.arch, emit="descriptors", stop_after="ane-layout"))
    ops = [op for fn in module.ops if isinstance(fn, func.FuncOp) for op in fn.body.block.ops
           if not isinstance(op, ane.ConstOp | func.ReturnOp)]
    if not ops:
        return ["  no op is left to run: the importer computed it at compile time"]
    tiled = None
    lines = []
    for op in ops:
        verdict, limit = legality(op, target), legality(op, target, strict=True)
        kind = op.op_name.data if isinstance(op, host.HostOp) else op.name
        lines.append(f"  {kind} {name_of(op)}: {_signature(op)}")
        if not verdict:
            reason = op.attributes.get(REASON_ATTR)
            lines.append(f"    CPU — {reason.data if reason is not None else verdict.reason}  [rule {verdict.rule}]")
            if verdict.hint:
                lines.append(f"    what would let it: {verdict.hint}")
            others = [t.name for t in TARGETS if t is not target and legality(op, t)]
            lines.append(f"    runs on the ANE of: {', '.join(others)}" if others else "    no chip's ANE runs it as it is")
        elif not limit:
            tiled = tiled if tiled is not None else _tiles(model, target)
            count = tiled.get(name_of(op)) if isinstance(tiled, dict) else None
            lines.append(f"    ANE, once the tile pass splits it{f' into {count} tiles' if count else ''}  [rule {limit.rule}: {limit.reason}]")
            lines.append(f"    how: {limit.hint}" if not isinstance(tiled, str) else f"    but the tile pass fails here: {tiled}")
        else:
            lines.append("    ANE — within every limit of this chip")
    return lines


def _signature(op) -> str:
    from xdsl.dialects.builtin import TensorType

    def show(values) -> str:
        return ", ".join("x".join(map(str, v.type.get_shape())) or "scalar" for v in values if isinstance(v.type, TensorType))
    return f"{show(op.operands)} → {show(op.results)}"


def _tiles(model, target) -> dict[str, int] | str:
    """Tiles per op name when the op is compiled to descriptors, or why that fails."""
    from anec.pipeline import compile as compile_model

    try:
        report = compile_model(model, target=target, emit="descriptors").report
    except AnecError as e:
        return e.one_line()
    return {r.name: r.tiles for r in report.ops}
