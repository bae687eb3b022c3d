"""`anec profile`: one row per task, each program's total, and the predicted latency."""

from __future__ import annotations

import re
from pathlib import Path

from anec.cli import main
from anec.runtime import read_file
from anec.sim.timing import program_time
from tests.commands.programs import write_program


def test_profile_lists_every_task_and_the_total(tmp_path: Path, capsys) -> None:
    path, _ = write_program(tmp_path)
    assert main(["profile", str(path)]) == 0
    out = capsys.readouterr().out
    file = read_file(path)
    assert out.count("\nprogram") == len(file.programs) == 2
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+ ", line)]
    assert len(rows) == sum(len(p.tasks) for p in file.programs)
    assert "CPU: 1 op(s)" in out
    total = float(re.search(r"predicted latency on the M1 \(h13\): ([\d.]+) ms", out).group(1))
    programs = sum(program_time(p).total_s for p in file.programs) * 1e3
    assert programs <= total < programs + 1.0
    bounds = ("dispatch", "overhead", "compute", "weights", "activations", "l2-cliff")
    assert all(row.split()[-2] in bounds for row in rows)  # every task names what bounds it
    assert re.findall(r"ms \(([\w-]+)-bound\)", out) == [program_time(p).bound for p in file.programs]


def test_profile_of_a_missing_model_is_one_line(capsys) -> None:
    assert main(["profile", "nowhere.onnx"]) == 2
    assert "no such file" in capsys.readouterr().err
