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
    # model with repeated weights re-recorded when the weight store began keeping equal arrays once
    ('tiny', 'm1', 'descriptors'): '67780ad743803b50fd2bc0c139be39deb6688d03bf7b6a1d5951830f1db4b62a',
    ('tiny', 'm1', 'coreml'): 'dc74921c4f213fab9857dcf6a1a061679ee8fab03f094d876790f868988b3fc4',
    ('tiny', 'm4', 'descriptors'): 'd3f97b18f4fddf8ee44b401fe4a664150a4dcdae4e440bf77cbd72d8ee15a35d',
    ('tiny', 'm4', 'coreml'): 'e0222a993440cc25e3c6166194ec7d8ef5c5aaa95a59bdc4a1529b12e1213764',
    ('bert-tiny', 'm1', 'descriptors'): '4baf22a3f847e03475e5e8142c5bba3ebec83215b04b092e5e58b76720b85727',
    ('bert-tiny', 'm1', 'coreml'): '4f28adc3804e3429cf1f623c2e6c8d9e4fa06b7017e01b7be7743b5d5d10c38b',
    ('bert-tiny', 'm4', 'descriptors'): '0851b4856e43b1416fc1debf9908366445ac82a6d7dd34a8a01ba6cb95067247',
    ('bert-tiny', 'm4', 'coreml'): '40be1bd5a9a7a8e4fe9f437083253492a716ae0ace94eb9f500b8f4f784b323b',
    ('resnet-tiny', 'm1', 'descriptors'): '5bd64a8b2f2f4925c58ad48a5ec6aa33deb92ea51cd879ab969b8a84563c1cf9',
    ('resnet-tiny', 'm1', 'coreml'): '5fa7c5c82d27acc301c41d352814b08c70378ac2f1ece819601b30c9db9bc406',
    ('resnet-tiny', 'm4', 'descriptors'): '6b3fa061a855da97863b5287ad5f2c94c503ecba3801dbd9c9aca85d7ab01e1d',
    ('resnet-tiny', 'm4', 'coreml'): '654db0c8bf29782ff006ef26c23f815ce6e6f8bb6543c1f849e29dfd3b79dfaa',
    ('bert-base', 'm1', 'descriptors'): '2148256b0a168ea91f1db1fbd39059f71e4de2506f5bf99a767ba8fc9d863823',
    ('bert-base', 'm1', 'coreml'): '32f0261f39bf8428bec63d7995a7e3e46769d2c3650ab5c40f9aa560f83292ea',
    ('bert-base', 'm4', 'descriptors'): '71228fcda59b052a389caf17180726882118a530c8667ef446b44512485e7da7',
    ('bert-base', 'm4', 'coreml'): '7c0896ad62c80f4ecc1b16080e104d4a32c0e07f6bfd7dbeedd4f096ce52df6a',
    ('gpt2', 'm1', 'descriptors'): '6e49c0d22b50f107e9b493c805aced966ac5b36ae0c543c0e7e8ec8a45db6c78',
    ('gpt2', 'm1', 'coreml'): 'cae45c589fd189aa895f65d30906c8e689ad658d7bf0c1291249733b503fab7e',
    ('gpt2', 'm4', 'descriptors'): '393e032ea96acfceb169670eb6a5a9cccb999548a9e21da5701ae155bd5ded85',
    ('gpt2', 'm4', 'coreml'): 'fea90bf1ae017ce858132cc79031c43937e17b7d538e36d75b4869ca75f1639a',
    ('vit-b16', 'm1', 'descriptors'): '2268eaaadfcd2ca421697329eafda12d3010ed67c85f2229c034af0a4735073a',
    ('vit-b16', 'm1', 'coreml'): '1c21def6931c1c4f41f1846331b0d4dbde817121cbe9268e198b4cce375ab457',
    ('vit-b16', 'm4', 'descriptors'): '35d82231c75240849937f7da8c1913956d7d0f0cebf5e601e2597dab39009360',
    ('vit-b16', 'm4', 'coreml'): 'f1dbe91584b4180e2123c1070cf7b7b3048ba5e0adb8b1048605e5013f395023',
    ('resnet50', 'm1', 'descriptors'): '209987c68ed1f82cc2d11df1169349ad8bbadd36254391189693edb6ca484d8f',
    ('resnet50', 'm1', 'coreml'): '5c07a0513aaf34a4f259c04b54a0541d8f30c9e47fb19f1707cf6c4317d078b2',
    ('resnet50', 'm4', 'descriptors'): '69b1aab1bf4a48e7d7848593fed71027733f8fdce6b65bebf60aded02b6534a6',
    ('resnet50', 'm4', 'coreml'): 'eb8d3b16f5e779e6d4142a3903735294007c217ef5dbea1c19cb37c460db2a05',
    ('mobilenetv2', 'm1', 'descriptors'): '8fe9ee93be0087e0697c373502ab580928630347af9c35cc95e2e5f676c71118',
    ('mobilenetv2', 'm1', 'coreml'): '9d05213400ea765eae2d821997811c01bc102a3f7cc24f92faa7ea3f965976dd',
    ('mobilenetv2', 'm4', 'descriptors'): 'fb97f49ad69f8fbc03f025f621cf38f34bfff70840ad9f5474a039facb347542',
    ('mobilenetv2', 'm4', 'coreml'): 'a1ad5f286f2d51d32c21273d9fa8b45a7394af6bc3550b9573024708b08a3b0f',
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
