"""Headless Chromium for the report tests: a screenshot and the DOM after the page's script ran.

Debian's `chromium` package must be installed (`apt-get install -y chromium`); a missing browser
fails the test with that instruction rather than skipping it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

WINDOW = "1400,1000"


def command(*args: str) -> list[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: the HTML report tests need Debian's chromium package "
                    "(apt-get install -y chromium)")
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW}", *args]


def screenshot(page: Path, png: Path) -> np.ndarray:
    """Render `page` into `png` and return its pixels (height × width × channels)."""
    subprocess.run(command(f"--screenshot={png}", page.resolve().as_uri()), check=True, capture_output=True, timeout=300)
    assert png.exists() and png.stat().st_size > 0, f"chromium wrote no screenshot to {png}"
    return decode_png(png.read_bytes())


def dump_dom(page: Path) -> str:
    """The document after its scripts ran, serialized by Chromium."""
    done = subprocess.run(command("--dump-dom", page.resolve().as_uri()), check=True, capture_output=True, timeout=300)
    return done.stdout.decode("utf-8")


def decode_png(data: bytes) -> np.ndarray:
    """The pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None, "PNG without IHDR"
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    channels = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        up = out[y - 1] if y else np.zeros_like(line)
        if kind in (0, 2):
            out[y] = (line + (up if kind == 2 else 0)) % 256
            continue
        row = np.zeros_like(line)
        for x in range(len(line)):  # Sub, Average, Paeth depend on the left pixel: sequential
            left = row[x - channels] if x >= channels else 0
            corner = up[x - channels] if x >= channels else 0
            if kind == 1:
                predictor = left
            elif kind == 3:
                predictor = (left + up[x]) // 2
            else:
                p = left + up[x] - corner
                pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up[x] if pb <= pc else corner
            row[x] = (line[x] + predictor) % 256
        out[y] = row
    return out.reshape(height, width, channels).astype(np.uint8)
