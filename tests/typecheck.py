"""Type-check anec with mypy, on a tree laid out the way Python imports it.

pyproject's `package-dir` installs `dialects/` as `anec.dialects` and `lowering/` as `anec.lowering`;
the editable install reaches them through an import hook, which no type checker runs. Given the source
folders, mypy would name `lowering/fuse.py` the module `lowering.fuse` and fail every `anec.lowering`
import. So `python -m tests.typecheck` builds a throwaway tree: a folder `anec/` holding a symlink to
each entry of the real `anec/`, plus `anec/dialects -> dialects/` and `anec/lowering -> lowering/`;
runs mypy on it with pyproject's `[tool.mypy]`; prints mypy's report with each path mapped back to the
real source file; and exits with mypy's status. Extra arguments go to mypy. The cache lives in the
checkout's `.mypy_cache`, so a second run takes about a second.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "anec"
MAPPED = ("dialects", "lowering")  # anec/<name> is the checkout's <name>/ (pyproject's package-dir)


def build_tree(dest: Path) -> Path:
    """Lay out `dest/anec` as Python imports it (symlinks into the checkout); returns `dest`."""
    package = dest / PACKAGE
    package.mkdir(parents=True)
    for entry in sorted((ROOT / PACKAGE).iterdir()):
        if entry.name == "__pycache__" or entry.name in MAPPED:
            continue
        (package / entry.name).symlink_to(entry)
    for name in MAPPED:
        (package / name).symlink_to(ROOT / name, target_is_directory=True)
    return dest


def source_path(reported: str) -> str:
    """The checkout path of a path mypy reports in the tree (`anec/lowering/x.py` -> `lowering/x.py`)."""
    for name in MAPPED:
        prefix = f"{PACKAGE}/{name}/"
        if reported.startswith(prefix):
            return f"{name}/{reported[len(prefix):]}"
    return reported


def map_report(report: str) -> str:
    """mypy's report with the path that starts each line mapped back to the checkout."""
    lines = []
    for line in report.splitlines():
        path, sep, rest = line.partition(":")
        lines.append(source_path(path) + sep + rest if sep and path.endswith(".py") else line)
    return "\n".join(lines)


def run_mypy(tree: Path, targets: Sequence[str] = (PACKAGE,), extra: Sequence[str] = ()) -> tuple[int, str]:
    """Run mypy in `tree` on `targets` (paths relative to it): its exit status and mapped report."""
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(ROOT / ".mypy_cache"), *extra, *targets]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    return done.returncode, map_report(done.stdout + done.stderr)


def main(argv: Sequence[str] = ()) -> int:
    with tempfile.TemporaryDirectory(prefix="anec-typecheck-") as tmp:
        status, report = run_mypy(build_tree(Path(tmp)), extra=argv)
    print(report)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
