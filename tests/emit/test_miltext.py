"""`--emit mil-text`: MIL text that names every op of the packaged program, and a MILBlob v2 weight
file in which every tensor sits at the offset the text names."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from anec.emit.miltext import ALIGNMENT, BLOB_DTYPES, SENTINEL, BlobWriter, MilTextPrinter
from anec.mlpackage import deployment_target
from tests.emit.ir_cases import CASES, build_module
from tests.emit.support import compiled_model, dtype_name, emit_package

CONST = re.compile(r"^(?P<type>\S+(?:, \[[^\]]*\]>)?) (?P<name>\w+) = const\(\)\[name = [^(]+\(\"(?P=name)\"\), val = (?P<val>.*)\];$")
OP = re.compile(r"^(?P<outs>.+?) = (?P<op>\w+)\((?P<args>.*)\)\[name = [^(]+\(\"(?P<name>[^\"]*)\"\)\];$")
BLOBFILE = re.compile(r"^tensor<(?P<dtype>\w+), \[(?P<shape>[^\]]*)\]>\(BLOBFILE\(path = .*\(\"(?P<path>[^\"]+)\"\), offset = .*\((?P<offset>\d+)\)\)\)$")
TYPED_OUT = re.compile(r"(tensor<\w+, \[[^\]]*\]>|\w+) (\w+)")
NUMPY = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "uint8": np.uint8, "int8": np.int8}


@pytest.fixture(scope="module", params=["ios17", "ios18"])
def emitted(request, tmp_path_factory):
    """(MIL text, weight file bytes, the same model's package read back)."""
    cases = [CASES[n] for n in ("conv", "linear", "norms", "concat_split", "padding", "arg_reductions", "sdpa", "gelu")]
    module, _, _ = build_module(cases, segments=True)
    folder = tmp_path_factory.mktemp(request.param)
    compiled_model(module, emit="mil-text", deployment_target=request.param).save(folder / "model")
    program = emit_package(compiled_model(module, deployment_target=request.param), folder / "model.mlpackage")
    text = (folder / "model" / "model.mil").read_text()
    return request.param, text, (folder / "model" / "weights" / "weight.bin").read_bytes(), program


def _op_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("        ")]


def _consts(program) -> dict[str, np.ndarray]:
    return {op.outputs[0].name: op.outputs[0].val for op in program.functions["main"].operations if op.op_type == "const"}


def test_the_text_has_apples_program_header_and_signature(emitted):
    target, text, _, program = emitted
    version = "1.3" if target == "ios18" else "1.0"
    assert text.startswith(f"program({version})\n[buildInfo = dict<")
    function = program.functions["main"]
    signature = ", ".join(f"tensor<fp32, [{', '.join(map(str, v.shape))}]> {n}" for n, v in function.inputs.items())
    assert f"    func main<{target}>({signature}) {{\n" in text
    assert text.rstrip().endswith(f"}} -> ({', '.join(v.name for v in function.outputs)});\n}}")


def test_every_tensor_sits_at_the_offset_the_text_names(emitted):
    _, text, blob, program = emitted
    count, version = struct.unpack_from("<II", blob, 0)
    assert version == 2
    codes = {code: dtype for dtype, code in BLOB_DTYPES.items()}
    consts = _consts(program)
    found = {}
    for line in _op_lines(text):
        if (m := CONST.match(line)) and (b := BLOBFILE.match(m["val"])):
            offset = int(b["offset"])
            assert b["path"] == "@model_path/weights/weight.bin"
            assert offset % ALIGNMENT == 0
            sentinel, code, size, data_offset = struct.unpack_from("<IIQQ", blob, offset)
            assert sentinel == SENTINEL, f"{m['name']}: no metadata record at offset {offset}"
            dtype = np.dtype(NUMPY[b["dtype"]])
            assert codes[code] == dtype
            shape = tuple(int(d) for d in b["shape"].split(", "))
            assert size == dtype.itemsize * int(np.prod(shape))
            assert data_offset % ALIGNMENT == 0 and data_offset == offset + ALIGNMENT
            stored = np.frombuffer(blob, dtype=dtype.newbyteorder("<"), count=int(np.prod(shape)), offset=data_offset).reshape(shape)
            np.testing.assert_array_equal(stored, consts[m["name"]], err_msg=m["name"])
            found[offset] = m["name"]
    assert len(found) == count and count >= 8
    assert len(blob) == max(found) + ALIGNMENT + struct.unpack_from("<Q", blob, max(found) + 8)[0]


def test_the_text_names_every_op_of_the_package(emitted):
    _, text, _, program = emitted
    lines = [line for line in _op_lines(text) if not CONST.match(line)]
    ops = [op for op in program.functions["main"].operations if op.op_type != "const"]
    assert len(lines) == len(ops)
    for line, op in zip(lines, ops):
        m = OP.match(line)
        assert m, line
        assert (m["op"], m["name"]) == (op.op_type, op.name)
        outs = TYPED_OUT.findall(m["outs"])
        assert [name for _, name in outs] == [v.name for v in op.outputs]
        assert all(typ.startswith("tensor<fp16") == (dtype_name(v) == "fp16") for (typ, _), v in zip(outs, op.outputs))
        args = dict(part.split(" = ", 1) for part in re.split(r", (?![^(]*\))", m["args"]))
        expected = {k: f"({', '.join(x.name for x in v)})" if isinstance(v, tuple | list) else v.name for k, v in op.inputs.items()}
        assert args == expected


def _literal(value: str) -> np.ndarray:
    body = value[value.index(">(") + 2:-1] if value.startswith("tensor<") else value[value.index("(") + 1:-1]
    items = body.strip("[]").split(", ") if body.startswith("[") else [body]
    parse = {"true": True, "false": False}
    return np.array([parse[i] if i in parse else i.strip('"') if i.startswith('"') else float.fromhex(i) if "0x" in i else int(i)
                     for i in items if i])


def test_inline_values_round_trip_exactly(emitted):
    _, text, _, program = emitted
    consts = _consts(program)
    checked = 0
    for line in _op_lines(text):
        if (m := CONST.match(line)) and "BLOBFILE" not in m["val"]:
            want = np.asarray(consts[m["name"]])
            got = _literal(m["val"])
            if want.dtype.kind in "US":
                assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
            else:
                np.testing.assert_array_equal(got.astype(want.dtype).reshape(want.shape), want, err_msg=m["name"])
            checked += 1
    assert checked > 20


def test_blob_file_is_byte_identical_to_coremltools_writer(tmp_path: Path):
    from coremltools.libmilstoragepython import _BlobStorageReader, _BlobStorageWriter

    arrays = [np.arange(3, dtype=np.float16), np.linspace(-1, 1, 20, dtype=np.float32), np.arange(-5, 70, dtype=np.int8),
              np.arange(17, dtype=np.uint8), np.arange(12, dtype=np.int32)]
    theirs = tmp_path / "theirs.bin"
    writer = _BlobStorageWriter(str(theirs))
    their_offsets = [writer.write_fp16_data(arrays[0].view(np.uint16)), writer.write_float_data(arrays[1]),
                     writer.write_int8_data(arrays[2]), writer.write_uint8_data(arrays[3]), writer.write_int32_data(arrays[4])]
    del writer
    buffer = io.BytesIO()
    ours = BlobWriter(buffer)
    offsets = [ours.add(a) for a in arrays]
    ours.close()
    assert offsets == their_offsets
    assert buffer.getvalue() == theirs.read_bytes()
    (tmp_path / "ours.bin").write_bytes(buffer.getvalue())
    reader = _BlobStorageReader(str(tmp_path / "ours.bin"))
    np.testing.assert_array_equal(reader.read_float_data(offsets[1]), arrays[1])
    np.testing.assert_array_equal(reader.read_int32_data(offsets[4]), arrays[4])


@pytest.mark.parametrize(("value", "text"), [(0.5, "0x1p-1"), (-3.25, "-0x1.ap+1"), (1e-5, "0x1.4f8b588e368f1p-17"), (0.0, "0x0p+0"),
                                             (float("inf"), "inf"), (7, "7"), (True, "true"), ("a\"b", '"a\\"b"')])
def test_numbers_print_as_exact_c_literals(value, text):
    assert MilTextPrinter.number(value) == text
    if isinstance(value, float) and "0x" in text:
        assert float.fromhex(text) == value


def test_small_tensors_stay_inline_and_integers_go_to_the_blob_only_from_ios18():
    from anec.emit.miltext import blob_stored

    ios17, ios18 = deployment_target("ios17"), deployment_target("ios18")
    assert not blob_stored(np.zeros(9, np.float16), ios17)
    assert blob_stored(np.zeros(10, np.float16), ios17)
    assert not blob_stored(np.zeros(10, np.int32), ios17)
    assert blob_stored(np.zeros(10, np.int32), ios18)
