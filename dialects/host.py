"""The `host` dialect: an op the ANE cannot run, kept whole so the CPU can run it.

Importing never fails on an op anec does not model: the op becomes `host.op`, carrying its source
name (`onnx.TopK`, `aten.embedding.default`), the source op-set version and its attributes, and the
runtime executes it with the source framework's own implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xdsl.dialects.builtin import I64, DictionaryAttr, IntegerAttr, StringAttr, TensorType
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    var_operand_def,
    var_result_def,
)
from xdsl.utils.exceptions import VerifyException


@irdl_op_definition
class HostOp(IRDLOperation):
    """`host.op "onnx.TopK"(%x, %k) {attrs = {axis = 1 : i64}, version = 11 : i64} : (...) -> (...)`."""

    name = "host.op"
    args = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    op_name = prop_def(StringAttr)
    attrs = opt_prop_def(DictionaryAttr, default_value=DictionaryAttr({}))
    version = opt_prop_def(IntegerAttr[I64])
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$op_name `(` $args `)` attr-dict `:` functional-type($args, $outputs)"

    def __init__(self, op_name: str, args: Sequence[SSAValue], result_types: Sequence[Attribute], attrs: Mapping[str, Attribute] | None = None,
                 version: int | None = None):
        props: dict[str, Attribute] = {"op_name": StringAttr(op_name), "attrs": DictionaryAttr(dict(attrs or {}))}
        if version is not None:
            props["version"] = IntegerAttr(version, 64)
        super().__init__(operands=[list(args)], result_types=[list(result_types)], properties=props)

    @property
    def source(self) -> str:
        """The framework the op comes from: the part of `op_name` before the first dot."""
        return self.op_name.data.split(".", 1)[0]

    @property
    def source_op(self) -> str:
        """The op's name within its framework (`TopK`, `embedding.default`)."""
        return self.op_name.data.split(".", 1)[1]

    def verify_(self) -> None:
        source, _, op = self.op_name.data.partition(".")
        if not source or not op:
            raise VerifyException(f"host.op name {self.op_name.data!r} must be <source>.<op>, e.g. onnx.TopK")


HOST = Dialect("host", [HostOp], [])
