"""Runs every `// RUN:` line of every .mlir file under tests/ (FileCheck tests beside each module).

A RUN line is a pipe of producers ending in `filecheck %s [ARGS]`: `anec opt %s ARGS | filecheck %s`,
`anec opt %s --print-op-generic | anec opt | filecheck %s`, `xdsl-opt %s | filecheck %s`. `anec`
runs in-process (fast); `xdsl-opt` runs as a real subprocess, proving the entry point works. A
producer after the first reads its predecessor's output from a file appended to its arguments.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from filecheck.matcher import Matcher
from filecheck.options import parse_argv_options

from anec.cli import main as anec_main

TESTS = Path(__file__).parent
MLIR_FILES = sorted(p for p in TESTS.rglob("*.mlir") if "// RUN:" in p.read_text())


def run_lines(path: Path) -> list[str]:
    return [line.split("// RUN:", 1)[1].strip() for line in path.read_text().splitlines() if "// RUN:" in line]


def produce(command: list[str]) -> str:
    """Output of the command before the `| filecheck`."""
    if command[0] == "anec":
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = anec_main(command[1:])
        assert code == 0, f"{shlex.join(command)} exited {code}: {err.getvalue()}"
        return out.getvalue()
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / command[0]), *command[1:]], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{shlex.join(command)} exited {done.returncode}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize("path", MLIR_FILES, ids=[str(p.relative_to(TESTS)) for p in MLIR_FILES])
def test_filecheck(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for line in run_lines(path):
        *producers, checker = line.replace("%s", str(path)).split("|")
        out_file = tmp_path / "out.mlir"
        output = ""
        for i, producer in enumerate(producers):
            output = produce(shlex.split(producer) + ([str(out_file)] if i else []))
            out_file.write_text(output)
        args = shlex.split(checker)
        assert args and args[0] == "filecheck", f"RUN line must pipe into filecheck: {line}"
        code = Matcher.from_opts(parse_argv_options([*args, "--input-file", str(out_file)])).run()
        assert code == 0, f"filecheck failed for `{line}`:\n{capsys.readouterr().err}\n--- output ---\n{output}"


def test_every_mlir_file_has_a_run_line() -> None:
    silent = [p for p in TESTS.rglob("*.mlir") if "// RUN:" not in p.read_text()]
    assert not silent, f"FileCheck files without a RUN line never run: {silent}"
