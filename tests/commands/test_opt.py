"""`anec opt --load-pass`: passes from outside anec, and the one-line errors when loading fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from anec.cli import main

PASS_FILE = '''
from dataclasses import dataclass
from xdsl.passes import ModulePass

@dataclass(frozen=True)
class RenameFunctions(ModulePass):
    name = "rename-functions"

    def apply(self, ctx, op):
        for fn in op.ops:
            fn.sym_name = type(fn.sym_name)("renamed")
'''

IR = "func.func @original(%x: tensor<2xf32>) -> tensor<2xf32> {\n  func.return %x : tensor<2xf32>\n}\n"


@pytest.fixture
def ir(tmp_path: Path) -> Path:
    path = tmp_path / "in.mlir"
    path.write_text(IR)
    return path


def test_a_pass_from_a_file_runs(ir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "my_pass.py").write_text(PASS_FILE)
    assert main(["opt", str(ir), "--load-pass", str(tmp_path / "my_pass.py"), "-p", "rename-functions"]) == 0
    out = capsys.readouterr().out
    assert "func.func @renamed" in out and "@original" not in out


def test_a_pass_from_a_module_runs(ir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opt", str(ir), "--load-pass", "anec.lowering.legalize", "-p", "ane-legalize"]) == 0
    assert "func.func @original" in capsys.readouterr().out


def test_without_load_pass_the_pass_is_unknown(ir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opt", str(ir), "-p", "rename-functions"]) == 2
    assert "rename-functions" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "message"), [
    ("missing.py", "no such file"),
    ("empty.py", "defines no ModulePass"),
    ("broken.py", "importing it failed: SyntaxError"),
    ("no.such.module", "cannot import it: ModuleNotFoundError"),
])
def test_load_errors_are_one_line(spec: str, message: str, ir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.py").write_text("X = 1\n")
    (tmp_path / "broken.py").write_text("def (\n")
    path = str(tmp_path / spec) if spec.endswith(".py") else spec
    assert main(["opt", str(ir), "--load-pass", path, "-p", "cse"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
