"""The `anehw` dialect: ANE programs at the level of task descriptors.

`anehw.program` replaces an `ane.segment`: same operands and results, and a body of buffer and weight
declarations plus one `anehw.task` per task descriptor. A task holds register-field values in eight
dictionaries (the TD header and the seven register groups: kernel DMA, common, tile-DMA source, L2,
planar engine, neural engine, tile-DMA destination); values are in the hardware's units (tile-DMA
strides in 64-byte steps, L2 addresses in 16-byte steps), and every field is checked against the
field table of the program's architecture (`anec.isa.fields`). Tasks name buffer *slots*,
never addresses: `to-anehw` states which tensor each DMA walks (`#anehw.view`), and `plan-memory`
places the tensors and turns views into slots, bases and strides.

    %y = anehw.program (%x) {arch = "h13"} : (tensor<1x8x4x4xf16>) -> tensor<1x8x4x4xf16> {
      anehw.buffer @in0 {role = "input", port = 0 : i64, shape = array<i64: 1, 8, 4, 4>}
      anehw.buffer @out0 {role = "output", port = 0 : i64, shape = array<i64: 1, 8, 4, 4>}
      anehw.task {src1 = #anehw.view<@in0, rows [0, 0, 4, 1], offset 0, w 0 step 1>, dst = …,
                  kernel_dma = {Kind = 5 : i64, Neuron = 1 : i64}, common = {Win = 4 : i64, …}}
    }
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    DictionaryAttr,
    IntAttr,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, NoTerminator, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException

from anec.compression import STREAM_FORMS
from anec.errors import AnecError
from anec.isa.fields import GROUP_NAMES, table_for

FIELD_GROUPS: tuple[str, ...] = ("header", *GROUP_NAMES)
ROLES = ("input", "output", "intermediate")
LAYOUTS = ("dense", "tensor")
COEFF_NAMES = ("kernel", "bias", "scale", "lut")


@irdl_attr_definition
class ViewAttr(ParametrizedAttribute):
    """The tensor a DMA walks: a buffer and, per hardware axis N, D, C, H, a stride in rows of the
    buffer (0 repeats), a start in rows, and along W (contiguous) a start and an element step (0 repeats).

    `#anehw.view<@t3, rows [0, 0, 56, 1], offset 0, w 0 step 1>`
    """

    name = "anehw.view"
    buffer: StringAttr
    rows: DenseArrayBase[I64]
    offset: IntAttr
    w_offset: IntAttr
    w_step: IntAttr

    def __init__(self, buffer: str, rows: Sequence[int], offset: int = 0, w_offset: int = 0, w_step: int = 1):
        super().__init__(StringAttr(buffer), DenseArrayBase.from_list(i64, list(rows)), IntAttr(offset), IntAttr(w_offset), IntAttr(w_step))

    @property
    def row_strides(self) -> tuple[int, ...]:
        return self.rows.get_values()

    def verify(self) -> None:
        if len(self.row_strides) != 4:
            raise VerifyException("anehw.view needs four row strides (N, D, C, H)")
        if self.w_offset.data < 0 or self.w_step.data < 0:
            raise VerifyException("anehw.view: the W start and step must be >= 0")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            buffer = parser.parse_symbol_name()
            parser.parse_punctuation(",")
            parser.parse_keyword("rows")
            rows = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
            parser.parse_punctuation(",")
            parser.parse_keyword("offset")
            offset = parser.parse_integer()
            parser.parse_punctuation(",")
            parser.parse_keyword("w")
            w_offset = parser.parse_integer()
            parser.parse_keyword("step")
            w_step = parser.parse_integer()
        return (buffer, DenseArrayBase.from_list(i64, rows), IntAttr(offset), IntAttr(w_offset), IntAttr(w_step))

    def print_parameters(self, printer: Printer) -> None:
        rows = ", ".join(str(r) for r in self.row_strides)
        printer.print_string(f"<@{self.buffer.data}, rows [{rows}], offset {self.offset.data}, w {self.w_offset.data} step {self.w_step.data}>")


def ints(values: Sequence[int]) -> DenseArrayBase[I64]:
    return _ints(tuple(map(int, values)))


@functools.lru_cache(maxsize=1 << 16)
def _ints(values: tuple[int, ...]) -> DenseArrayBase[I64]:
    """Built once per value, like `int_attr`: lowering and memory planning set the same shapes and
    lifetimes on thousands of ops."""
    return DenseArrayBase.from_list(i64, list(values))


@functools.lru_cache(maxsize=1 << 16)
def _fields_attr(items: tuple[tuple[str, int], ...]) -> DictionaryAttr:
    """One register group's fields as an attribute, built once per distinct group (most tasks of a
    large model repeat the groups of others: the same extents, kernel and modes)."""
    return DictionaryAttr({k: int_attr(v) for k, v in items})


@functools.lru_cache(maxsize=1 << 16)
def _coeffs_attr(items: tuple[tuple[str, str], ...]) -> DictionaryAttr:
    return DictionaryAttr({k: StringAttr(v) for k, v in items})


@functools.lru_cache(maxsize=1 << 16)
def view(buffer: str, rows: tuple[int, ...], offset: int = 0, w_offset: int = 0, w_step: int = 1) -> ViewAttr:
    """A `ViewAttr`, built and verified once per distinct view (the tiles of an unrolled recurrence
    repeat their views' strides and offsets)."""
    return ViewAttr(buffer, rows, offset, w_offset, w_step)


@functools.cache
def int_attr(value: int) -> IntegerAttr:
    """An i64 attribute, built once per value: attributes are immutable, and a program of thousands of
    tasks sets the same few field values over and over (building and verifying each is most of the cost)."""
    return IntegerAttr(value, i64)


@irdl_op_definition
class BufferOp(IRDLOperation):
    """A tensor of the program: an input or output port, or an intermediate. `plan-memory` adds its
    slot, offset, size (bytes, a multiple of the 16 KB page) and lifetime."""

    name = "anehw.buffer"
    sym_name = prop_def(SymbolNameConstraint())
    role = prop_def(StringAttr)
    port = opt_prop_def(IntegerAttr[I64])
    shape = prop_def(DenseArrayBase[I64])
    slot = opt_prop_def(IntegerAttr[I64])
    offset = opt_prop_def(IntegerAttr[I64])
    size = opt_prop_def(IntegerAttr[I64])
    live = opt_prop_def(DenseArrayBase[I64])
    """[first, last] task that uses the buffer; intermediates whose lifetimes are disjoint may share bytes."""
    traits = lazy_traits_def(lambda: (SymbolOpInterface(), HasParent(ProgramOp)))
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name attr-dict"

    def __init__(self, name: str, role: str, shape: Sequence[int], port: int | None = None):
        props: dict[str, Attribute] = {"sym_name": StringAttr(name), "role": StringAttr(role), "shape": ints(shape)}
        if port is not None:
            props["port"] = int_attr(port)
        super().__init__(properties=props)

    @property
    def dims(self) -> tuple[int, ...]:
        return self.shape.get_values()

    def port_index(self) -> int:
        """An input's or output's port (`verify_` makes sure they have one)."""
        assert self.port is not None, f"anehw.buffer @{self.sym_name.data} ({self.role.data}) has no port"
        return self.port.value.data

    def verify_(self) -> None:
        if self.role.data not in ROLES:
            raise VerifyException(f"anehw.buffer: role must be one of {ROLES}")
        if (self.port is not None) != (self.role.data in ("input", "output")):
            raise VerifyException("anehw.buffer: inputs and outputs have a port, intermediates none")
        if not 1 <= len(self.dims) <= 5 or any(d < 1 for d in self.dims):
            raise VerifyException(f"anehw.buffer: shape {list(self.dims)} must have 1 to 5 non-empty axes")


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A constant in the weight section: a handle into the module's weight store, stored as fp16 either
    densely (a kernel-DMA coefficient stream) or in tensor layout (read by a tile DMA)."""

    name = "anehw.weight"
    sym_name = prop_def(SymbolNameConstraint())
    handle = prop_def(StringAttr)
    layout = prop_def(StringAttr)
    shape = prop_def(DenseArrayBase[I64])
    offset = opt_prop_def(IntegerAttr[I64])
    size = opt_prop_def(IntegerAttr[I64])
    encoding = opt_prop_def(StringAttr)
    """A kernel stream kept compressed (`anec.compression.STREAM_FORMS`); fp16 when absent."""
    traits = lazy_traits_def(lambda: (SymbolOpInterface(), HasParent(ProgramOp)))
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name attr-dict"

    def __init__(self, name: str, handle: str, layout: str, shape: Sequence[int], encoding: str | None = None):
        super().__init__(properties={"sym_name": StringAttr(name), "handle": StringAttr(handle), "layout": StringAttr(layout),
                                     "shape": ints(shape)} | ({"encoding": StringAttr(encoding)} if encoding else {}))

    @property
    def dims(self) -> tuple[int, ...]:
        return self.shape.get_values()

    def placement(self) -> tuple[int, int]:
        """(offset, size) in the weight section, which `plan-memory` sets."""
        if self.offset is None or self.size is None:
            raise AnecError(f"anehw.weight @{self.sym_name.data} is unplaced", hint="run plan-memory before emitting descriptors")
        return self.offset.value.data, self.size.value.data

    def verify_(self) -> None:
        if self.layout.data not in LAYOUTS:
            raise VerifyException(f"anehw.weight: layout must be one of {LAYOUTS}")
        if self.encoding is not None and (self.encoding.data not in STREAM_FORMS or self.layout.data != "dense"):
            raise VerifyException(f"anehw.weight: a compressed weight is a dense kernel stream of one of {STREAM_FORMS}")


@irdl_op_definition
class TaskOp(IRDLOperation):
    """One task descriptor: views of the tensors it walks, the weights it streams, and its fields."""

    name = "anehw.task"
    src1 = opt_prop_def(ViewAttr)
    src2 = opt_prop_def(ViewAttr)
    dst = opt_prop_def(ViewAttr)
    coeffs = opt_prop_def(DictionaryAttr)
    header = opt_prop_def(DictionaryAttr)
    kernel_dma = opt_prop_def(DictionaryAttr)
    common = opt_prop_def(DictionaryAttr)
    tile_src = opt_prop_def(DictionaryAttr)
    l2 = opt_prop_def(DictionaryAttr)
    planar = opt_prop_def(DictionaryAttr)
    neural = opt_prop_def(DictionaryAttr)
    tile_dst = opt_prop_def(DictionaryAttr)
    traits = lazy_traits_def(lambda: (HasParent(ProgramOp),))
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "attr-dict"

    def __init__(self, fields: Mapping[str, Mapping[str, int]], *, src1: ViewAttr | None = None, src2: ViewAttr | None = None,
                 dst: ViewAttr | None = None, coeffs: Mapping[str, str] | None = None):
        props: dict[str, Attribute] = {}
        for name, view in (("src1", src1), ("src2", src2), ("dst", dst)):
            if view is not None:
                props[name] = view
        if coeffs:
            props["coeffs"] = _coeffs_attr(tuple(coeffs.items()))
        super().__init__(properties=props)
        for group, values in fields.items():
            self.update_fields(group, values)

    def fields(self, group: str) -> dict[str, int]:
        attr = self.properties.get(group)
        if not isinstance(attr, DictionaryAttr):
            return {}
        out: dict[str, int] = {}
        for name, value in attr.data.items():
            if not isinstance(value, IntegerAttr):
                raise AnecError(f"field {group}.{name} is {value}, not an integer", where="anehw.task")
            out[name] = value.value.data
        return out

    def all_fields(self) -> dict[str, dict[str, int]]:
        return {g: self.fields(g) for g in FIELD_GROUPS}

    def update_fields(self, group: str, values: Mapping[str, int]) -> None:
        """Set fields of one group; zero values are dropped (descriptors store nonzero fields only)."""
        if group not in FIELD_GROUPS:
            raise ValueError(f"no register group {group}")
        merged = self.fields(group) | dict(values)
        merged = {k: v for k, v in sorted(merged.items()) if v != 0}
        if merged:
            self.properties[group] = _fields_attr(tuple(merged.items()))
        else:
            self.properties.pop(group, None)

    def coefficient(self, name: str) -> str | None:
        stream = None if self.coeffs is None else self.coeffs.data.get(name)
        return stream.data if isinstance(stream, StringAttr) else None

    def verify_(self) -> None:
        program = self.parent_op()
        if not isinstance(program, ProgramOp):
            return
        try:
            table = table_for(program.arch.data)
            for group in FIELD_GROUPS:
                for name, value in self.fields(group).items():
                    table.check(group, name, value)
        except AnecError as e:
            raise VerifyException(f"anehw.task: {e.what}") from None
        if self.coeffs is not None and any(k not in COEFF_NAMES for k in self.coeffs.data):
            raise VerifyException(f"anehw.task: coefficient streams are named {COEFF_NAMES}")
        if self.coeffs is not None and not all(isinstance(v, StringAttr) for v in self.coeffs.data.values()):
            raise VerifyException("anehw.task: a coefficient stream names its buffer with a string")


@irdl_op_definition
class ProgramOp(IRDLOperation):
    """One ANE program: what an `ane.segment` becomes once it is lowered to task descriptors."""

    name = "anehw.program"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    arch = prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(IsolatedFromAbove(), NoTerminator(), SymbolTable())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "`(` $inputs `)` attr-dict `:` functional-type($inputs, $outputs) $body"

    def __init__(self, inputs: Sequence[SSAValue], result_types: Sequence[Attribute], arch: str, body: Region):
        super().__init__(operands=[list(inputs)], result_types=[list(result_types)], properties={"arch": StringAttr(arch)}, regions=[body])

    def buffers(self) -> list[BufferOp]:
        return [op for op in self.body.block.ops if isinstance(op, BufferOp)]

    def weights(self) -> list[WeightOp]:
        return [op for op in self.body.block.ops if isinstance(op, WeightOp)]

    def tasks(self) -> list[TaskOp]:
        return [op for op in self.body.block.ops if isinstance(op, TaskOp)]

    def verify_(self) -> None:
        try:
            table_for(self.arch.data)
        except AnecError as e:
            raise VerifyException(e.what) from None
        names = {b.sym_name.data for b in self.buffers()} | {w.sym_name.data for w in self.weights()}
        for task in self.tasks():
            for view in (task.src1, task.src2, task.dst):
                if view is not None and view.buffer.data not in names:
                    raise VerifyException(f"anehw.task reads or writes @{view.buffer.data}, which the program does not declare")
            for name in COEFF_NAMES:
                ref = task.coefficient(name)
                if ref is not None and ref not in names:
                    raise VerifyException(f"anehw.task streams @{ref}, which the program does not declare")
        for role, count in (("input", len(self.inputs)), ("output", len(self.outputs))):
            ports = sorted(b.port.value.data for b in self.buffers() if b.role.data == role and b.port is not None)
            if ports != list(range(count)):
                raise VerifyException(f"anehw.program has {count} {role}s but {role} ports {ports}")


@irdl_op_definition
class CallOp(IRDLOperation):
    """Run program `program` of a `.anec` file: how the host graph of a decoded file calls the ANE."""

    name = "anehw.call"
    args = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    program = prop_def(IntegerAttr[I64])
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$program `(` $args `)` attr-dict `:` functional-type($args, $outputs)"

    def __init__(self, program: int, args: Sequence[SSAValue], result_types: Sequence[Attribute]):
        super().__init__(operands=[list(args)], result_types=[list(result_types)], properties={"program": int_attr(program)})


ANEHW = Dialect("anehw", [ProgramOp, BufferOp, WeightOp, TaskOp, CallOp], [ViewAttr])
