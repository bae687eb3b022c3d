"""Realistic inputs for the real-world corpus, one generator per input kind of the manifest.

Uniform noise makes detectors see nothing and classifiers answer the same: errors against
onnxruntime measured on it prove little. So each kind imitates the data the model was trained on:
a page of text lines for OCR detectors, a cropped line for recognisers, gradients and shapes for
photos, voiced speech with formants and fricative bursts for VAD, notes for pitch models, log-mel
features for audio transformers, and bytes of a real source file for file-type classifiers.
Everything is seeded from the entry and input names, so a run is reproducible.
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.wild.manifest import Entry, InputSpec

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SPEECH_RATE = 16000
MUSIC_RATE = 22050


def _blur(img: np.ndarray, k: int = 3) -> np.ndarray:
    """Box blur over the first two axes: strokes get anti-aliased edges like a scanned page."""
    out = img.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (k // 2, k // 2)
        p = np.pad(out, pad, mode="edge")
        out = sum(np.take(p, range(i, i + out.shape[axis]), axis=axis) for i in range(k)) / k
    return out


def _glyphs(rng: np.random.Generator, canvas: np.ndarray, x0: int, y0: int, width: int, height: int, ink: float) -> None:
    """Draws a run of glyph-like strokes (stems, bars, dots) of one text line into `canvas` (H, W)."""
    x = x0
    stroke = max(1, height // 8)
    while x < x0 + width - height:
        w = int(rng.integers(height * 5 // 10, height * 9 // 10))
        if rng.random() < 0.15:  # a word gap
            x += w
            continue
        for _ in range(int(rng.integers(2, 5))):
            if rng.random() < 0.5:  # vertical stem
                sx = x + int(rng.integers(0, max(1, w - stroke)))
                top = y0 + int(rng.integers(0, height // 3))
                canvas[top:y0 + height, sx:sx + stroke] = ink
            else:  # horizontal bar
                sy = y0 + int(rng.integers(0, max(1, height - stroke)))
                canvas[sy:sy + stroke, x:x + w - stroke] = ink
        x += w + stroke


def page(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An RGB page (H, W, 3) in [0, 255]: black text lines on off-white paper, a heading and a rule."""
    img = np.full((h, w), 245.0, np.float32) + rng.normal(0, 2, (h, w)).astype(np.float32)
    margin = w // 12
    y = h // 12
    line_h = max(8, h // 40)
    _glyphs(rng, img, margin, y, w // 2, line_h * 2, 20.0)  # heading
    y += line_h * 4
    while y < h - h // 12 - line_h:
        length = int(rng.integers(w // 2, w - 2 * margin))
        _glyphs(rng, img, margin, y, length, line_h, float(rng.uniform(10, 60)))
        y += int(line_h * rng.uniform(1.6, 2.2))
        if rng.random() < 0.1:  # paragraph break
            y += line_h
    img = _blur(img)
    return np.repeat(img[:, :, None], 3, axis=2)


def text_line(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cropped text line (H, W, 3) in [0, 255]: glyphs filling most of the width, tinted paper."""
    img = np.full((h, w), float(rng.uniform(220, 250)), np.float32)
    _glyphs(rng, img, h // 8, h // 6, int(w * 0.9), h * 2 // 3, 25.0)
    img = _blur(img) + rng.normal(0, 3, (h, w)).astype(np.float32)
    tint = np.array([1.0, 0.97, 0.92], np.float32)
    return np.clip(img[:, :, None] * tint, 0, 255)


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like RGB image (H, W, 3) in [0, 255]: a smooth sky-to-ground gradient, lit shapes, grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky, ground = rng.uniform(80, 230, 3), rng.uniform(20, 150, 3)
    t = (yy / h)[:, :, None]
    img = sky * (1 - t) + ground * t
    for _ in range(int(rng.integers(4, 9))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(min(h, w) / 12, min(h, w) / 4)
        color = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        else:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * rng.uniform(0.5, 1.5))
        shade = 1 - 0.3 * (xx - cx) / w  # a light from the left
        img[mask] = (color * shade[mask][:, None])
    img = _blur(img, 5) + rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.float32)


def document(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A document photo (H, W, 3): a page with a coloured figure block, for layout and orientation."""
    img = page(rng, h, w)
    fy, fx = h // 2, w // 2
    img[fy:fy + h // 5, fx:fx + w // 3] = photo(rng, h // 5, w // 3)[: h - fy, : w - fx]
    return img


def speech(rng: np.random.Generator, n: int, rate: int = SPEECH_RATE) -> np.ndarray:
    """`n` samples of speech-like audio: voiced syllables (a gliding f0 with harmonics shaped by two
    formants), fricative noise bursts, pauses, and a little room noise; peak about 0.5."""
    t = np.arange(n) / rate
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    f1, f2 = rng.uniform(300, 800), rng.uniform(900, 2500)
    voiced = np.zeros(n)
    for k in range(1, 30):
        fk = k * f0.mean()
        if fk > rate / 2:
            break
        gain = np.exp(-((fk - f1) / 150) ** 2) + 0.6 * np.exp(-((fk - f2) / 250) ** 2) + 0.02
        voiced += gain * np.sin(k * phase) / k
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    audio = voiced * syllables
    hiss = rng.normal(0, 1, n)
    bursts = (np.sin(2 * np.pi * 1.3 * t + 1) > 0.85).astype(float)
    audio += 0.3 * np.diff(hiss, prepend=0) * bursts  # high-passed noise: fricatives
    audio = audio / (np.abs(audio).max() + 1e-9) * 0.5 + rng.normal(0, 0.003, n)
    return audio.astype(np.float32)


def speech_frames(rng: np.random.Generator, frames: int, width: int) -> np.ndarray:
    """(frames, width) windows of one utterance, overlapping as Silero's wrapper builds them
    (64 samples of context before each 512-sample chunk)."""
    hop = width - 64 if width > 64 else width
    audio = speech(rng, hop * frames + width)
    return np.stack([audio[i * hop:i * hop + width] for i in range(frames)])


def music(rng: np.random.Generator, n: int, rate: int = MUSIC_RATE) -> np.ndarray:
    """`n` samples of piano-like notes: harmonic tones with exponential decays, some overlapping."""
    out = np.zeros(n)
    t = np.arange(n) / rate
    start = 0
    while start < n:
        f = 440.0 * 2 ** ((int(rng.integers(-24, 20))) / 12)
        length = int(rng.uniform(0.2, 0.8) * rate)
        seg = t[: min(length * 2, n - start)]
        env = np.exp(-seg * rng.uniform(2, 6)) * (1 - np.exp(-seg * 400))
        tone = sum(np.sin(2 * np.pi * f * k * seg) / k ** 1.5 for k in range(1, 8) if f * k < rate / 2)
        out[start:start + seg.size] += env * tone
        start += length
    return (0.4 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def _mel_filters(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters evenly spaced on the mel scale: (n_mels, n_fft // 2 + 1)."""
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + f / 700)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700 * (10 ** (m / 2595) - 1)

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = hz(np.linspace(mel(np.array(0.0)), mel(np.array(rate / 2)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def log_mel(rng: np.random.Generator, n_mels: int, frames: int) -> np.ndarray:
    """Whisper-style log-mel features (n_mels, frames) of speech: 25 ms Hann windows, 10 ms hop,
    log10 clamped to 8 decades below the peak, scaled as (x + 4) / 4."""
    n_fft, hop = 400, 160
    audio = speech(rng, hop * frames + n_fft)
    window = np.hanning(n_fft + 1)[:-1]
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(audio[idx] * window, axis=1)) ** 2
    mel = _mel_filters(SPEECH_RATE, n_fft, n_mels) @ power.T
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return ((logm + 4.0) / 4.0).astype(np.float32)


def file_bytes(n: int) -> np.ndarray:
    """Magika's features of a real file (Python's own `textwrap.py`): its first and last bytes with
    surrounding whitespace stripped, padded with 256; three blocks (begin, middle, end) when `n` is
    divisible by three (the v1 models), else two (begin, end)."""
    data = Path(textwrap.__file__).read_bytes().strip()
    parts = 3 if n % 3 == 0 else 2
    block = n // parts
    beg = list(data[:block]) + [256] * max(0, block - len(data))
    end = [256] * max(0, block - len(data)) + list(data[-block:])
    mid_at = max(0, len(data) // 2 - block // 2)
    mid = list(data[mid_at:mid_at + block]) + [256] * max(0, block - len(data))
    return np.array(beg + (mid if parts == 3 else []) + end, np.int64)


def _nchw(img: np.ndarray, spec: InputSpec, scale: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """HWC [0, 255] image -> the spec's NCHW layout after the model's normalisation."""
    x = scale(img.astype(np.float32))
    if spec.shape[1] == 1:
        x = x.mean(axis=2, keepdims=True)
    return np.broadcast_to(x.transpose(2, 0, 1)[None], spec.shape)


def _image(draw: Callable[[np.random.Generator, int, int], np.ndarray], scale: Callable[[np.ndarray], np.ndarray]):
    return lambda rng, spec: _nchw(draw(rng, spec.shape[2], spec.shape[3]), spec, scale)


def imagenet(x: np.ndarray) -> np.ndarray:
    return (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def centred(x: np.ndarray) -> np.ndarray:
    return (x / 255.0 - 0.5) / 0.5


def _speech(rng: np.random.Generator, spec: InputSpec) -> np.ndarray:
    return speech_frames(rng, spec.shape[0], spec.shape[-1]).reshape(spec.shape)


GENERATORS: dict[str, Callable[[np.random.Generator, InputSpec], np.ndarray]] = {
    "ocr-page": _image(page, imagenet),
    "document": _image(document, imagenet),
    "text-line": _image(text_line, centred),
    "captcha": _image(text_line, centred),
    "photo": _image(photo, lambda x: x / 255.0),
    "photo-255": _image(photo, lambda x: x),
    "speech": _speech,
    "music": lambda rng, spec: music(rng, int(np.prod(spec.shape))).reshape(spec.shape),
    "log-mel": lambda rng, spec: log_mel(rng, spec.shape[-2], spec.shape[-1])[None].reshape(spec.shape),
    "file-bytes": lambda rng, spec: np.broadcast_to(file_bytes(spec.shape[-1]), spec.shape),
    "zeros": lambda rng, spec: np.zeros(spec.shape),
    "const": lambda rng, spec: np.full(spec.shape, spec.value),
}
"""Input kind (the manifest's `kind`) -> generator of one array of the spec's shape."""


def make_input(entry_name: str, spec: InputSpec) -> np.ndarray:
    """The spec's input, seeded from the entry and input names so reruns feed the same data."""
    rng = np.random.default_rng(zlib.crc32(f"{entry_name}/{spec.name}".encode()))
    if spec.kind not in GENERATORS:
        raise KeyError(f"no input generator for kind {spec.kind!r}; known: {', '.join(GENERATORS)}")
    return np.array(GENERATORS[spec.kind](rng, spec), dtype=spec.dtype).reshape(spec.shape)


def make_inputs(entry: Entry) -> dict[str, np.ndarray]:
    """Every input of `entry`, by name."""
    return {spec.name: make_input(entry.name, spec) for spec in entry.inputs}
