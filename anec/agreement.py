"""When two tensors agree: the bar every comparison in anec uses (an output against the reference,
a stage against the one before it, fp16 against float32).

Two tensors agree at cosine similarity ≥ 0.999 and relative L2 error ≤ 1e-2; non-finite values must
sit at the same places with the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anec.errors import AnecError

COSINE_MIN = 0.999
REL_L2_MAX = 1e-2
"""What an output must reach against its reference."""


FP16_MIN_NORMAL = float(np.finfo(np.float16).tiny)
"""fp16's smallest normal number, 6.1e-5: the MAC flushes smaller operands to zero (M1 … M4)."""

F32_NOISE = (1e-5, 1e-6)
FP16_NOISE = (1e-3, FP16_MIN_NORMAL)
"""(fraction of the reference's largest magnitude, absolute floor): differences within the larger
of the two are the noise of float32 (or fp16) arithmetic, whatever cosine and relative L2 say. An
output of sigmoids near 0 differs by 1e-7 between two float32 libraries, a large relative error of
nothing; fp16 holds nothing finer than its smallest normal, 6.1e-5."""


@dataclass(frozen=True)
class Error:
    cosine: float
    rel_l2: float
    max_abs: float
    scale: float = 0.0
    """The reference's largest finite magnitude."""

    @property
    def ok(self) -> bool:
        return self.cosine >= COSINE_MIN and self.rel_l2 <= REL_L2_MAX

    def meets(self, rel_l2_max: float = REL_L2_MAX) -> bool:
        """The agreement bar with another relative L2 bound (`--tolerance`); fp16 noise always passes."""
        fraction, floor = FP16_NOISE
        return (self.cosine >= COSINE_MIN and self.rel_l2 <= rel_l2_max) or self.max_abs <= max(fraction * self.scale, floor)

    def ok_within(self, noise: tuple[float, float]) -> bool:
        """`ok`, or every difference within the arithmetic's noise (`F32_NOISE`, `FP16_NOISE`)."""
        fraction, floor = noise
        return self.ok or self.max_abs <= max(fraction * self.scale, floor)


def error(got: np.ndarray, want: np.ndarray, dtype: type[np.floating] = np.float64) -> Error:
    """`got` against `want`, computed in `dtype`: float64, or float32 where a caller measures many
    large tensors and needs a relative error to far better than the 1e-3 it compares (the fp16
    attribution measures every op's output)."""
    a = np.asarray(got, dtype=dtype).ravel()
    b = np.asarray(want, dtype=dtype).ravel()
    if a.shape != b.shape:
        raise AnecError(f"output has {a.size} elements, the reference {b.size}")
    finite = np.isfinite(a) & np.isfinite(b)
    if not finite.all():
        if not np.array_equal(a[~finite], b[~finite], equal_nan=True):  # NaN where the reference has NaN agrees
            return Error(float("nan"), float("inf"), float("inf"))
        a, b = a[finite], b[finite]
    ref = float(np.sqrt(b @ b))
    norm = float(np.sqrt(a @ a)) * ref
    cosine = float(a @ b) / norm if norm else float(np.array_equal(a, b))
    d = a - b
    diff = float(np.sqrt(d @ d))
    return Error(cosine, diff / ref if ref else diff, float(np.abs(d).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))


