"""The torch.compile backend's compile cache on disk, so a second process skips anec's compiles.

Like Inductor's FX graph cache: an entry is keyed by the SHA-256 of everything its result depends
on — the ATen graph's code, its input shapes and dtypes, a fingerprint of its frozen constants, the
target, and anec itself (its version and the digest of its source, so editing anec invalidates
every entry). The constants' fingerprint is each one's name, dtype, shape and CRC-32 of its bytes:
every byte is read (a changed weight is a miss), at about twice SHA-256's speed, since on a hit it is
most of anec's work. Entries live in `$ANEC_CACHE_DIR`, else `~/.cache/anec`, one file per entry, written
atomically; an unreadable entry is a miss. `ANEC_CACHE_DIR=off` turns the cache off.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import fx

DISABLED = "off"

BUILT = frozenset({".pyc", ".so", ".pyd"})
"""Files of anec's tree built from its sources (their sources are hashed instead)."""


def cache_dir() -> Path | None:
    """Where entries live (None: the cache is off)."""
    configured = os.environ.get("ANEC_CACHE_DIR")
    if configured == DISABLED:
        return None
    return Path(configured) if configured else Path.home() / ".cache" / "anec"


@functools.cache
def anec_digest() -> str:
    """anec's version and a digest of its source and data files: a changed compiler never reuses an old entry."""
    digest = hashlib.sha256(importlib.metadata.version("anec").encode())
    packages = ("anec", "anec.dialects", "anec.lowering")  # the last two live outside anec/ (package-dir mapping)
    roots = dict.fromkeys(Path(_package_folder(p)).resolve() for p in packages)
    sources = (f for root in roots for f in root.rglob("*") if f.is_file() and f.suffix not in BUILT and "__pycache__" not in f.parts)
    for source in sorted(sources):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _package_folder(package: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is a package of anec's own"
    return spec.submodule_search_locations[0]


def graph_key(kind: str, gm: fx.GraphModule, target: str, extra: Iterable[str] = ()) -> str:
    """The key of `gm` compiled as `kind` for `target`: its code, input and constant metadata,
    the constants' fingerprint, and anec's digest."""
    digest = hashlib.sha256(f"{kind}\0{target}\0{anec_digest()}\0".encode())
    digest.update(gm.code.encode())
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            value = node.meta.get("val")
            digest.update(f"{node.name}:{getattr(value, 'dtype', type(value).__name__)}:{list(getattr(value, 'shape', []))}".encode())
    for name, tensor in sorted(gm.named_buffers()):
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}:{_crc(tensor)}".encode())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()


def _crc(tensor: torch.Tensor) -> int:
    data = tensor.detach().contiguous().reshape(-1)
    if data.numel() and data.stride(0) != 1:  # torch calls a one-element slice contiguous whatever its stride
        data = torch.empty(data.shape, dtype=data.dtype).copy_(data)
    return zlib.crc32(data.view(torch.uint8).numpy().data) if data.numel() else 0


def load(key: str) -> bytes | None:
    root = cache_dir()
    if root is None:
        return None
    try:
        return (root / key[:2] / key).read_bytes()
    except OSError:
        return None


def store(key: str, data: bytes) -> None:
    """Write an entry atomically; a cache that cannot be written is skipped, not an error."""
    root = cache_dir()
    if root is None:
        return
    folder = root / key[:2]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / key)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
