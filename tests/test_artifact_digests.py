"""Restructuring never changes what anec writes: the `.anec` and `.mlpackage` of the shipped example
and the zoo models, for the M1 and the M4, hash to digests recorded before the change.

A package's digest covers `model.mlmodel` (re-serialized with its map entries in key order, as
`anec.emit.coreml` now writes it) and `weight.bin`, not `Manifest.json`, whose item identifiers
are random UUIDs. Models are compiled from a `ModelProto` so no file path enters the `.anec` file.
When a change is meant to alter an artifact, re-record with `python -m tests.test_artifact_digests
[--slow]` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import onnx
import pytest

import anec

ROOT = Path(__file__).resolve().parents[1]
FAST = ("tiny", "bert-tiny", "resnet-tiny")
SLOW = ("bert-base", "gpt2", "vit-b16", "resnet50", "mobilenetv2")
TARGETS = ("m1", "m4")
SUFFIXES = {"descriptors": ".anec", "coreml": ".mlpackage"}

RECORDED: dict[tuple[str, str, str], str] = {
    # recorded at ce59f31, before the one-direction-of-flow restructuring; tiny's m1 descriptors and m4
    # artifacts re-recorded when TopK became `ane.topk` (on the M4's ANE in fp16; on the M1's CPU as an
    # `ane.topk` in the host graph instead of `host.op "onnx.TopK"`; the M1 package is unchanged); every
    # model with repeated weights re-recorded when the weight store began keeping equal arrays once;
    # the packages of models with an embedding table (bert-tiny, bert-base, gpt2) re-recorded when the
    # table the ANE reads in fp16 began to be stored in fp16, not float32 (outputs unchanged), and their
    # `.anec` files when the host weights followed (the table is gathered on the CPU into ANE programs; outputs bit-identical);
    # mobilenetv2's four re-recorded when its ONNX file was exported afresh on a new machine: the digests had been recorded
    # from an older cached export, and anec at 9f23d98 (the last commit whose CI passed) writes these from the fresh one
    ('tiny', 'm1', 'descriptors'): '67780ad743803b50fd2bc0c139be39deb6688d03bf7b6a1d5951830f1db4b62a',
    ('tiny', 'm1', 'coreml'): 'dc74921c4f213fab9857dcf6a1a061679ee8fab03f094d876790f868988b3fc4',
    ('tiny', 'm4', 'descriptors'): 'd3f97b18f4fddf8ee44b401fe4a664150a4dcdae4e440bf77cbd72d8ee15a35d',
    ('tiny', 'm4', 'coreml'): 'e0222a993440cc25e3c6166194ec7d8ef5c5aaa95a59bdc4a1529b12e1213764',
    ('bert-tiny', 'm1', 'descriptors'): '7312d7ae449d9c24451914764a873d819272c0a2846e10b8f8831d42bd34fb07',
    ('bert-tiny', 'm1', 'coreml'): 'b31a8f9f4ff5a91c76a1e28b4fa0751f7c0b754918127ea58bdd20b30ce18951',
    ('bert-tiny', 'm4', 'descriptors'): 'b284f261dd82466a1c74f853c6b2fc91ddcec1d283ed7fca89140f246cca4709',
    ('bert-tiny', 'm4', 'coreml'): '763cd3fdfcc282fd36f0394e05333e6590a64f8c2f637bb785bcdc5fd0f68094',
    ('resnet-tiny', 'm1', 'descriptors'): '5bd64a8b2f2f4925c58ad48a5ec6aa33deb92ea51cd879ab969b8a84563c1cf9',
    ('resnet-tiny', 'm1', 'coreml'): '5fa7c5c82d27acc301c41d352814b08c70378ac2f1ece819601b30c9db9bc406',
    ('resnet-tiny', 'm4', 'descriptors'): '6b3fa061a855da97863b5287ad5f2c94c503ecba3801dbd9c9aca85d7ab01e1d',
    ('resnet-tiny', 'm4', 'coreml'): '654db0c8bf29782ff006ef26c23f815ce6e6f8bb6543c1f849e29dfd3b79dfaa',
    ('bert-base', 'm1', 'descriptors'): 'ef4284e114e01a70ca7d0d1c9f5ad833661cf08f30d725dce427ea990766452b',
    ('bert-base', 'm1', 'coreml'): '04ba3be7c953a990f7dc1e2077f2ec703b436ca5e815584eb9d445c7b6b6719e',
    ('bert-base', 'm4', 'descriptors'): 'a3c079670bff6961fcfc3cc4a82396f09636bf433d4f3ca3cf5e877f62ddbf22',
    ('bert-base', 'm4', 'coreml'): '0d2e0ae34e205058cab12e740a3903f5d22e50bf3ce204532fb437357fea857e',
    ('gpt2', 'm1', 'descriptors'): '955cee2e5bcc7dfc71aab3b91c50318865cefb0525ea9970783f3c4d8bd89a90',
    ('gpt2', 'm1', 'coreml'): '36056697cc5b2055bd1cff4cf791f3d57d2ceb4bf35a929304c6efac6a9e5683',
    ('gpt2', 'm4', 'descriptors'): '3be1a4acb4b875bf2b75aa070f585c6a5a0df24ed252ea0f24f455cdab929338',
    ('gpt2', 'm4', 'coreml'): 'cb7b1f0b71c1bfd4fa5b422393a8fe22c306d62058da0c9f53c774b025cc1d02',
    ('vit-b16', 'm1', 'descriptors'): 'a52e3be7b4d72fefcf8123df58f148b7b5b51aae83ed29b34dbc41cce75392bd',
    ('vit-b16', 'm1', 'coreml'): '27cbbeb96b565e67df8022aefdabd0679af404325c143e029a0d90136a267b9f',
    ('vit-b16', 'm4', 'descriptors'): '813a99a300bfeefcf778791238b1d00dadf3c3cae1e3b5bb072a2e1da228ec15',
    ('vit-b16', 'm4', 'coreml'): '0800661a817d37d50b69fd224d8cd9885f5782bfbacd826a866ade25c53a151b',
    ('resnet50', 'm1', 'descriptors'): '6b0ddccbbac6956b07625087d50c3d1c2da51bdc7da1a7ddc7af0c20a294927e',
    ('resnet50', 'm1', 'coreml'): 'e3a06f0bb575d83af0a647c70165990402a16ccae29fa9d4419bd33741297043',
    ('resnet50', 'm4', 'descriptors'): 'a1e5e13ff4776136b0763856a1eea142e51d6385134210f7801084987c8f0354',
    ('resnet50', 'm4', 'coreml'): 'f5766a7b294927db1e49e4cf7f45b1b44766c26fafbd23e72751adbf91bd6343',
    ('mobilenetv2', 'm1', 'descriptors'): '4d42d133c67254fc4ac24ab7c116eac82ef74ad3b2a01d3922a4c0bfd984f969',
    ('mobilenetv2', 'm1', 'coreml'): '6078dbbdab397ab40cdc0cc7bd6bdfd398c8fd95b5e7d28d17f781947f8a0046',
    ('mobilenetv2', 'm4', 'descriptors'): '4ea64d9107fc487d5fe859c2061695d38b37bbe85f420c82645573b8bfe2da1f',
    ('mobilenetv2', 'm4', 'coreml'): '2ab06d9400e1afcec3b6841d9deaf5c012c6a924e948698097a222b0104e5395',
}


def model_proto(name: str) -> onnx.ModelProto:
    if name == "tiny":
        return onnx.load(str(ROOT / "examples" / "tiny.onnx"))
    from tests.zoo import onnx_model

    return onnx.load(str(onnx_model(name)))


def canonical(file: Path) -> bytes:
    """A file's bytes; a Core ML spec re-serialized with its map entries in key order."""
    if file.suffix != ".mlmodel":
        return file.read_bytes()
    from coremltools.proto import Model_pb2

    return Model_pb2.Model.FromString(file.read_bytes()).SerializeToString(deterministic=True)


def digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "Manifest.json"):
        h.update(file.relative_to(path).as_posix().encode())
        h.update(canonical(file))
    return h.hexdigest()


def artifact_digest(name: str, target: str, emit: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{SUFFIXES[emit]}"
        anec.compile(model_proto(name), target=target, emit=emit).save(path)
        return digest(path)


def cases(names: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return [(n, t, e) for n in names for t in TARGETS for e in SUFFIXES]


@pytest.mark.parametrize(("name", "target", "emit"), cases(FAST))
def test_artifact_is_unchanged(name: str, target: str, emit: str) -> None:
    assert artifact_digest(name, target, emit) == RECORDED[(name, target, emit)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "target", "emit"), cases(SLOW))
def test_full_size_artifact_is_unchanged(name: str, target: str, emit: str) -> None:
    assert artifact_digest(name, target, emit) == RECORDED[(name, target, emit)]


def test_a_package_digest_sees_its_weights(tmp_path: Path) -> None:
    anec.compile(model_proto("tiny"), target="m1", emit="coreml").save(tmp_path / "a.mlpackage")
    before = digest(tmp_path / "a.mlpackage")
    weights = next((tmp_path / "a.mlpackage").rglob("weight.bin"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert digest(tmp_path / "a.mlpackage") != before


if __name__ == "__main__":
    for case in cases(FAST + (SLOW if "--slow" in sys.argv else ())):
        print(f"    {case!r}: {artifact_digest(*case)!r},", flush=True)
