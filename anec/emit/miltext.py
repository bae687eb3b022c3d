"""`--emit mil-text`: the Core ML program as MIL text plus its weight file, in a folder.

The folder holds `model.mil` and `weights/weight.bin`: the layout Core ML's compiler reads, and the
one the in-memory ANE compiler (`_ANEInMemoryModelDescriptor modelWithMILText:weights:…`) takes
on macOS. It is the same program `--emit coreml` packages, printed instead of serialized.

The weight file is MILBlob v2 (coremltools' `MILBlob/Blob/StorageFormat.hpp`): a 64-byte header
{u32 count, u32 version = 2}, then per weight a 64-byte metadata record {u32 0xDEADBEEF, u32 data
type, u64 size in bytes, u64 absolute offset of the data} followed by the data, every record and
every data block starting on a 64-byte boundary. A constant's `BLOBFILE(… offset = …)` names the
offset of its *metadata record*, not of its data.

Text syntax follows what Apple's compiler prints: `program(1.3)` with bare scalar types (`int32`,
`string`) for iOS 18, `program(1.0)` with rank-0 tensor types (`tensor<int32, []>`) before it;
floats print as C hex literals, so every value round-trips exactly.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from anec.compression import pack_bits
from anec.emit.coreml import core_ml_program
from anec.emit.options import EmitOptions
from anec.mlpackage import DeploymentTarget

if TYPE_CHECKING:
    from coremltools.converters.mil.mil import Program


WEIGHTS_PATH = "@model_path/weights/weight.bin"
ALIGNMENT = 64
SENTINEL = 0xDEADBEEF
BLOB_VERSION = 2

BLOB_DTYPES: dict[np.dtype, int] = {
    np.dtype(np.float16): 1, np.dtype(np.float32): 2, np.dtype(np.uint8): 3, np.dtype(np.int8): 4,
    np.dtype(np.int16): 6, np.dtype(np.uint16): 7, np.dtype(np.int32): 14, np.dtype(np.uint32): 15,
}
"""numpy dtype -> MILBlob data type code."""
SUB_BYTE_BLOBS: dict[str, tuple[int, int]] = {"int4": (8, 4), "uint1": (9, 1), "uint2": (10, 2), "uint4": (11, 4), "uint3": (12, 3), "uint6": (13, 6)}
"""MIL sub-byte types (iOS 18: palette indices, sparse masks) -> (MILBlob code, bits): packed least
significant bit first, as coremltools writes them."""


def emit_mil_text(module: ModuleOp, path: Path, options: EmitOptions) -> None:
    """Write the folder `path` with `model.mil` and `weights/weight.bin` for the graph-level `module`."""
    program, target = core_ml_program(module, options.deployment_target)
    (path / "weights").mkdir(parents=True)
    with open(path / "weights" / "weight.bin", "wb") as blob_file:
        blobs = BlobWriter(blob_file)
        text = MilTextPrinter(target, blobs).program(program)
        blobs.close()
    (path / "model.mil").write_text(text)


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class BlobWriter:
    """Appends arrays to a MILBlob v2 file; `add` returns the offset the text must name."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.count = 0
        self.end = ALIGNMENT
        file.write(bytes(ALIGNMENT))  # the header, written in full by close()

    def add(self, array: np.ndarray, sub_byte: str | None = None) -> int:
        """Append `array` (of the MIL sub-byte type `sub_byte`, when it has one, stored a byte an element)."""
        if sub_byte is not None:
            code, bits = SUB_BYTE_BLOBS[sub_byte]
            data = pack_bits(np.ascontiguousarray(array).view(np.uint8) & ((1 << bits) - 1), bits).tobytes()
        else:
            code, data = BLOB_DTYPES[array.dtype], np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        record = _align(self.end)
        start = record + ALIGNMENT
        self.file.write(bytes(record - self.end))
        self.file.write(struct.pack("<IIQQ", SENTINEL, code, len(data), start).ljust(ALIGNMENT, b"\0"))
        self.file.write(data)
        self.end = start + len(data)
        self.count += 1
        return record

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(struct.pack("<II", self.count, BLOB_VERSION))


def blob_stored(value: Any, target: DeploymentTarget) -> bool:
    """coremltools' rule for what goes in the weight file: float or byte tensors of ≥ 10 elements
    (and 16/32-bit integers from iOS 18)."""
    if not isinstance(value, np.ndarray) or value.size < 10:
        return False
    kinds = {np.dtype(t) for t in (np.float16, np.float32, np.uint8, np.int8)}
    if target.ios >= 18:
        kinds |= {np.dtype(t) for t in (np.int16, np.uint16, np.int32, np.uint32)}
    return value.dtype in kinds


class MilTextPrinter:
    """Prints a pymil program in Apple's MIL text syntax; big constants go to `blobs`."""

    def __init__(self, target: DeploymentTarget, blobs: BlobWriter):
        self.target = target
        self.blobs = blobs
        self.modern = target.ios >= 18

    # -- types and literals ---------------------------------------------------------------

    def dtype_name(self, dtype: Any) -> str:
        from coremltools.converters.mil.mil import types

        return types.builtin_to_string(dtype)

    def scalar_type(self, name: str) -> str:
        return name if self.modern else f"tensor<{name}, []>"

    def var_type(self, var: Any) -> str:
        name = self.dtype_name(var.dtype)
        if var.shape == ():
            return self.scalar_type(name)
        return f"tensor<{name}, [{', '.join(str(d) for d in var.shape)}]>"

    def string(self, text: str) -> str:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.scalar_type("string")}("{escaped}")'

    @staticmethod
    def number(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, int | np.integer):
            return str(int(value))
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        mantissa, _, exponent = value.hex().partition("p")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}p{exponent}"

    def literal(self, var: Any) -> str:
        value = var.val
        kind = self.var_type(var)
        if isinstance(value, np.ndarray) and blob_stored(value, self.target):
            name = self.dtype_name(var.dtype)
            offset = self.blobs.add(value, name if name in SUB_BYTE_BLOBS else None)
            path = f"path = {self.string(WEIGHTS_PATH)}, offset = {self.scalar_type('uint64')}({offset})"
            return f"{kind}(BLOBFILE({path}))"
        array = np.asarray(value)
        if array.ndim == 0:
            return f"{kind}({self.number(array.item())})"
        return f"{kind}([{', '.join(self.number(v) for v in array.reshape(-1).tolist())}])"

    # -- program ------------------------------------------------------------------------------

    def program(self, program: Program) -> str:
        version = "1.3" if self.modern else "1.0"
        pair = self.scalar_type("string")
        info = f'{{"anec-deployment-target", "{self.target.name}"}}'
        lines = [f"program({version})", f"[buildInfo = dict<{pair}, {pair}>({{{info}}})]", "{"]
        for name, function in program.functions.items():
            lines.extend(self.function(name, function))
        lines.append("}")
        return "\n".join(lines) + "\n"

    def function(self, name: str, function: Any) -> Iterable[str]:
        params = ", ".join(f"{self.var_type(v)} {n}" for n, v in function.inputs.items())
        yield f"    func {name}<ios{self.target.ios}>({params}) {{"
        for op in function.operations:
            yield "        " + self.operation(op)
        yield f"    }} -> ({', '.join(v.name for v in function.outputs)});"

    def operation(self, op: Any) -> str:
        outputs = ", ".join(f"{self.var_type(v)} {v.name}" for v in op.outputs)
        if op.op_type == "const":
            return f"{outputs} = const()[name = {self.string(op.name)}, val = {self.literal(op.outputs[0])}];"
        args = []
        for key in sorted(op.inputs):
            value = op.inputs[key]
            text = f"({', '.join(v.name for v in value)})" if isinstance(value, tuple | list) else value.name
            args.append(f"{key} = {text}")
        return f"{outputs} = {op.op_type}({', '.join(args)})[name = {self.string(op.name)}];"
