"""Every script in examples/ runs here as a user would run it (a subprocess; `--small` where it has one)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def readme_first_command() -> list[str]:
    """The `anec …` command at the end of the README's `<!-- ci:main -->` block."""
    block = re.search(r"<!-- ci:main -->\s*```\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no <!-- ci:main --> block"
    return shlex.split(block.group(1).strip().rsplit("&&", 1)[1])


def test_shipped_tiny_model_is_what_its_generator_writes(tmp_path: Path) -> None:
    out = run([sys.executable, str(EXAMPLES / "make_tiny.py"), "-o", str(tmp_path / "tiny.onnx")], tmp_path)
    assert "wrote" in out
    assert (tmp_path / "tiny.onnx").read_bytes() == (EXAMPLES / "tiny.onnx").read_bytes()
    assert (EXAMPLES / "tiny.onnx").stat().st_size < 300_000


def test_readme_first_command_writes_a_package_and_prints_the_placement(tmp_path: Path) -> None:
    argv = readme_first_command()
    assert argv[:3] == ["anec", "compile", "examples/tiny.onnx"], argv
    (tmp_path / "examples").symlink_to(EXAMPLES)  # the command as written, run from a checkout's root
    out = " ".join(run([str(BIN / "anec"), *argv[1:]], tmp_path).split())
    assert re.search(r"\d+ of \d+ ops on the ANE of the M1 \(100\.0% of FLOPs\) in 1 segment\(s\), 1 on the CPU", out), out
    assert re.search(r"CPU topk top3 top-k fails the M1's code generator", out), out
    package = tmp_path / argv[argv.index("-o") + 1]
    assert (package / "Manifest.json").is_file()
    assert any(package.rglob("*.mlmodel"))


def test_tiny_model_simulated_matches_onnxruntime() -> None:
    import onnxruntime

    import anec

    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    compiled = anec.compile(EXAMPLES / "tiny.onnx", emit="descriptors")
    got = compiled.run({"image": image})
    session = onnxruntime.InferenceSession(str(EXAMPLES / "tiny.onnx"), providers=["CPUExecutionProvider"])
    logits, scores, classes = session.run(None, {"image": image})
    np.testing.assert_allclose(got["logits"], logits, atol=0.02 * np.abs(logits).max())
    np.testing.assert_allclose(got["scores_top3"], scores, atol=0.02 * np.abs(logits).max())
    np.testing.assert_array_equal(got["classes_top3"], classes)


@pytest.mark.parametrize("script", ["cnn", "encoder", "decoder", "vit"])
def test_model_family_example(script: str, tmp_path: Path) -> None:
    artifact = tmp_path / f"{script}.anec"
    out = run([sys.executable, str(EXAMPLES / f"{script}.py"), "--small", "-o", str(artifact)], tmp_path)
    assert re.search(r"^placement: \d+ of \d+ ops on the ANE \(\d+\.\d% of [\d.]+ GFLOPs\) in \d+ segment", out, re.M), out
    assert re.search(r"^predicted latency on the M4: \d+\.\d+ ms", out, re.M), out
    assert "match: yes" in out, out
    assert artifact.is_file() and artifact.stat().st_size > 0
    if script in ("encoder", "decoder"):  # token ids are looked up on the CPU
        assert "CPU aten.embedding.default" in out


@pytest.mark.parametrize("target", ["m4", "m1"])
def test_torch_compile_example(target: str, tmp_path: Path) -> None:
    """The M4 runs the whole graph, `topk` included; the M1 leaves `topk` to eager PyTorch."""
    out = run([sys.executable, str(EXAMPLES / "torch_compile.py"), "--target", target], tmp_path)
    assert re.search(rf"^graph 0: 1 ANE partition\(s\), 100\.0% of [\d,]+ FLOPs on the ANE of the {target}", out, re.M), out
    assert ("eager aten.topk.default (topk): top-k fails the M1's code generator" in out) == (target == "m1"), out
    assert "match: yes" in out


def test_researcher_pass_example(tmp_path: Path) -> None:
    before, after = run([sys.executable, str(EXAMPLES / "fold_identity_arith.py")], tmp_path).split("// after")
    for name in ("scale", "bias", "norm", "halve", "broadcast"):
        assert f'ane.name = "{name}"' in before
    for name in ("scale", "bias", "norm"):  # x*1, x+0, x/1: gone
        assert f'ane.name = "{name}"' not in after
    assert "ane.relu %x" in after
    assert 'ane.mul %act, %half {ane.name = "halve"}' in after  # x*0.5 stays
    assert 'ane.name = "broadcast"' in after  # x*ones that broadcasts x stays
