"""Test data shared by the simulator tests."""

from __future__ import annotations

import numpy as np

F16 = np.float16


def every_fp16() -> np.ndarray:
    """All 2^16 fp16 values, in the order of their bits."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16)


def float32_samples() -> np.ndarray:
    """Every class of float32 the MAC port meets: each fp16 value, the midpoints between neighbours
    (the ties) and the float32 values either side of both, the saturation and overflow edges,
    float32 denormals, signed zeros, infinities, NaN, and random bit patterns."""
    values = every_fp16().astype(np.float32)
    finite = np.unique(values[np.isfinite(values)])
    midpoints = (finite[:-1].astype(np.float64) + finite[1:]) / 2
    centers = np.concatenate([finite, midpoints.astype(np.float32),
                              np.array([32752, 32760, 32768, 65504, 65520, 65536, 1e-45, -1e-45, 1e-40, 3e38], np.float32)])
    around = np.concatenate([np.nextafter(centers, np.float32(-np.inf)), centers, np.nextafter(centers, np.float32(np.inf))])
    random_bits = np.random.default_rng(0).integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    return np.concatenate([around, random_bits, special]).astype(np.float32)
