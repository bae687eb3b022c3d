"""`anec dump`: the buffer table, every TD's fields with units, and the host graph."""

from __future__ import annotations

from pathlib import Path

from anec.cli import main
from tests.commands.programs import write_program


def test_dump_shows_buffers_fields_and_graph(tmp_path: Path, capsys) -> None:
    path, _ = write_program(tmp_path)
    assert main(["dump", str(path)]) == 0
    out = capsys.readouterr().out
    assert "anec program for h13 (TD layout h13/td-v7), 2 program(s)" in out
    assert "RowStride=1 (64 B)" in out and "Kind=1" in out and "Neuron=1" in out
    assert " weights " in out and " input " in out and " output " in out
    assert 'host.op "onnx.Neg"' in out and "anehw.call 1" in out
    assert main(["dump", str(path), "--summary", "--no-graph"]) == 0
    short = capsys.readouterr().out
    assert "TD 0" in short and "RowStride" not in short and "host.op" not in short


def test_dump_of_a_text_file_is_one_line(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "x.anec"
    bogus.write_text("not a program")
    assert main(["dump", str(bogus)]) == 2
    assert capsys.readouterr().err.startswith("anec: error: anec file: truncated")
