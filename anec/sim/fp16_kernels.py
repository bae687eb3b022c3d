"""The simulator's kernels: every value the simulator reads from or writes to a slot passes one of
the fp16 storage kernels, and every MAC task's sum is one of their matrix products.

Each kernel exists twice with one signature: in numpy (here: the specification) and in C
(`_fp16.c`, built when the package is installed with a C compiler). numpy's float32 <-> float16
conversions are scalar loops of about 2 ns per element, and they dominate a simulated convolution
network; the C kernels use the CPU's conversion instructions and run a store in one pass straight
into the slot view. tests/sim/test_fp16_kernels.py checks that both give the same bits.

`ANEC_SIM_KERNELS=numpy` selects the numpy twins even when the C kernels are built.

- `widen(src, dst, flush)`: fp16 -> float32; with `flush`, denormals become zero of the same sign.
- `narrow(src, dst, indeterminate)`: float32 -> fp16, round half to even; NaN is stored as
  `indeterminate`.
- `lookup(src, dst, table, indeterminate)`: fp16 bits -> `table[bits]` (an activation); NaN as above.
- `mac_port(acc, dst, bias, bias_axis, post_scale, saturation, flush, table, indeterminate)`: the MAC
  port: float32 sums rounded to fp16, magnitudes of `saturation` or more to ±inf, denormals flushed,
  then post-scale (rounded), bias (one per index of `bias_axis`), rounding, activation `table`
  (which maps every NaN to NaN: rounding may change a NaN's payload).
- `binary(op, a, b, dst, indeterminate)`: an elementwise `op` (one of BINARY_OPS) of two fp16
  operands, computed in float32 and stored as `narrow` stores it.
- `windows(src, cols, kernel, strides, pads, dilations, flush)`: a convolution's columns,
  cols[n, c, i, j, y, x] = src[n, c, y·sy + i·dy − py, x·sx + j·dx − px] widened, zero outside src.
- `matmul(a, b)`: the MAC tasks' float32 products, as np.matmul with numpy's BLAS on one thread
  computes them, a lone product in `bands`. The C twin runs the same sgemm calls (numpy's
  OpenBLAS, found by `numpy_blas`) on its threads.

The C kernels share their work among a pool of threads, one per CPU the process may use
(`ANEC_SIM_THREADS` sets another number; 1 keeps everything on the calling thread): rows of a view,
planes of a convolution's input, entries of a batch or bands of a product. The parts never change
an element's computation, so the bits do not depend on the number of threads.

Sources and destinations are same-shaped arrays of any strides (slot views).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from anec.errors import AnecError
from anec.kernels import BINARY

FP16_MIN_NORMAL = np.float32(2.0**-14)


@dataclass(frozen=True)
class Fp16Kernels:
    name: str
    widen: Callable[[np.ndarray, np.ndarray, bool], None]
    narrow: Callable[[np.ndarray, np.ndarray, float], None]
    lookup: Callable[[np.ndarray, np.ndarray, np.ndarray, float], None]
    mac_port: Callable[..., None]
    binary: Callable[[str, np.ndarray, np.ndarray, np.ndarray, float], None]
    windows: Callable[..., None]
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray]


# -- the numpy twins -----------------------------------------------------------------------------


def take(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`table` indexed by the bits of the fp16 array `x` (np.take: about twice as fast as indexing)."""
    return np.take(table, x.view(np.uint16))


def store_fp16(dst: np.ndarray, values: np.ndarray, indeterminate: float) -> None:
    """Copy fp16 `values` into `dst`; NaN never exists in memory: it is stored as `indeterminate`."""
    np.copyto(dst, values)
    if ((values.view(np.uint16) & 0x7FFF) > 0x7C00).any():  # numpy's fp16 isnan is a slow loop
        dst[np.isnan(dst)] = np.float16(indeterminate)


def _fp16_values() -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def _flushed(values: np.ndarray) -> np.ndarray:
    return np.where((values != 0) & (np.abs(values) < FP16_MIN_NORMAL), np.copysign(np.float32(0), values), values)


@functools.cache
def widening_table(flush: bool) -> np.ndarray:
    """fp16 bits -> float32 (denormals become zero of the same sign with `flush`)."""
    values = _fp16_values()
    return _flushed(values) if flush else values


@functools.cache
def mac_port_table(saturation: float, flush: bool) -> np.ndarray:
    """fp16 bits -> fp16 bits leaving the MAC port: magnitudes of `saturation` and above become ±inf,
    and denormal results become zero with `flush`."""
    values = _fp16_values()
    with np.errstate(invalid="ignore"):
        out = np.where(np.abs(values) >= saturation, np.copysign(np.float32(np.inf), values), values)
    out = _flushed(out) if flush else out
    return out.astype(np.float16).view(np.uint16)


def widen(src: np.ndarray, dst: np.ndarray, flush: bool) -> None:
    np.copyto(dst, take(widening_table(flush), src))


def narrow(src: np.ndarray, dst: np.ndarray, indeterminate: float) -> None:
    store_fp16(dst, fp16(src), indeterminate)


def lookup(src: np.ndarray, dst: np.ndarray, table: np.ndarray, indeterminate: float) -> None:
    store_fp16(dst, take(table, src).view(np.float16), indeterminate)


def mac_port(acc: np.ndarray, dst: np.ndarray, bias: np.ndarray | None, bias_axis: int, post_scale: float | None,
             saturation: float, flush: bool, table: np.ndarray | None, indeterminate: float) -> None:
    if bias is not None:
        shape = [1] * acc.ndim
        shape[bias_axis] = -1
        bias = bias.reshape(shape)
    scale = None if post_scale is None else np.float32(post_scale)

    def leave(acc: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        if scale is None and bias is None:
            out = take(mac_port_table(saturation, flush), fp16(acc)).view(np.float16)
        else:
            value = fp16_values(acc, saturation, flush)
            if scale is not None:
                value = fp16_values(value * scale)
            out = fp16(value if bias is None else np.add(value, bias, out=value))
        return out if table is None else take(table, out).view(np.float16)

    with np.errstate(invalid="ignore", over="ignore"):
        store_fp16(dst, blockwise(leave, acc, bias), indeterminate)


BINARY_OPS = ("add", "sub", "mul")
"""The operations (of `anec.kernels.BINARY`) that `binary` fuses: exact IEEE operations in float32
(no choice of a zero's sign or a NaN's payload), so both twins give the same bits."""


def binary(op: str, a: np.ndarray, b: np.ndarray, dst: np.ndarray, indeterminate: float) -> None:
    if op not in BINARY_OPS:
        raise ValueError(f"binary: no fused operation '{op}' (add, sub or mul)")
    values = widening_table(False)
    with np.errstate(all="ignore"):
        narrow(BINARY[op](take(values, a), take(values, b)), dst, indeterminate)


def windows(src: np.ndarray, cols: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int],
            dilations: tuple[int, int], flush: bool) -> None:
    (kh, kw), (sy, sx), (py, px), (dy, dx) = kernel, strides, pads, dilations
    n, c, h, w = src.shape
    ho, wo = cols.shape[-2:]
    padded = np.zeros((n, c, py + max(h, (ho - 1) * sy + (kh - 1) * dy + 1), px + max(w, (wo - 1) * sx + (kw - 1) * dx + 1)), np.float32)
    widen(src, padded[:, :, py:py + h, px:px + w], flush)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, i * dy:i * dy + (ho - 1) * sy + 1:sy, j * dx:j * dx + (wo - 1) * sx + 1:sx]


def fp16(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(np.float16)


BLOCK_ELEMENTS = 1 << 16
"""Elements per block of `blockwise`: a block and its temporaries stay in the core's cache."""


def blockwise(fn: Callable[[np.ndarray, np.ndarray | None], np.ndarray], x: np.ndarray, operand: np.ndarray | None) -> np.ndarray:
    """`fn(x, operand)` for an elementwise `fn` returning fp16, computed by blocks along x's outermost
    axis longer than 1 (`operand` broadcasts against x): each output element is computed as the
    whole-array call computes it, with the temporaries in cache."""
    if operand is not None and np.broadcast_shapes(x.shape, operand.shape) != x.shape:
        return fn(x, operand)  # x broadcasts against the operand: one block
    if operand is not None:
        operand = operand.reshape((1,) * (x.ndim - operand.ndim) + operand.shape)
    axis = next((i for i, extent in enumerate(x.shape) if extent > 1), 0)
    step = max(1, BLOCK_ELEMENTS * x.shape[axis] // max(x.size, 1))
    out = np.empty(x.shape, dtype=np.float16)

    for start in range(0, x.shape[axis], step):
        part = (slice(None),) * axis + (slice(start, start + step),)
        out[part] = fn(x[part], operand if operand is None or operand.shape[axis] == 1 else operand[part])
    return out


SIGN_BIT = np.int32(-0x80000000)
EXPONENT_BITS = np.int32(0x7F800000)
FP16_MIN_NORMAL_BITS = np.int32(0x38800000)
FP16_QUANTUM_SHIFT = np.int32(13 << 23)
"""Added to a float32's exponent bits: a power of two whose last place is the fp16 quantum there."""


def fp16_values(x: np.ndarray, saturation: float = 65536.0, flush: bool = False) -> np.ndarray:
    """float32 `x` rounded to fp16 (half to even), as float32 — what converting to fp16 and back
    gives, without numpy's scalar conversions: |x| + 2^(e+13) has the fp16 quantum of |x|'s binade e
    (at least 2^-14's) as its last place, so float32 addition rounds |x| there, half to even, and
    subtracting 2^(e+13) back is exact. Magnitudes of `saturation` or more become ±inf (the MAC port
    saturates at 2^15; 2^16 is fp16's overflow); with `flush`, denormal results become zero.
    NaN stays NaN. Equal to the conversion on all 2^32 float32 values (checked once, exhaustively;
    tests/sim/test_numerics.py samples every class of value)."""
    magnitude = np.minimum(np.abs(x), np.float32(65536))
    place = magnitude.view(np.int32) & EXPONENT_BITS
    np.maximum(place, FP16_MIN_NORMAL_BITS, out=place)
    place += FP16_QUANTUM_SHIFT
    rounded = magnitude + place.view(np.float32)
    rounded -= place.view(np.float32)
    rounded[rounded >= saturation] = np.inf
    if flush:
        rounded[rounded < FP16_MIN_NORMAL] = 0
    rounded.view(np.int32)[...] |= x.view(np.int32) & SIGN_BIT  # x's sign (np.copysign is slower)
    return rounded


BAND_ALIGN = 16
BAND_WORK = 1 << 22
MAX_BANDS = 2


def bands(m: int, n: int, k: int) -> list[slice]:
    """The bands a lone m x n product summing over k is computed in, each by one sgemm: a power of
    two, at most MAX_BANDS, each about BAND_WORK multiply-adds or more and BAND_ALIGN lines or more,
    along the output's longer axis (columns when n >= m). The rule depends on the shapes alone, so
    the bits do not depend on how many threads share the bands."""
    extent, count = max(m, n), 1
    while count < MAX_BANDS and m * n * k >= 2 * count * BAND_WORK and extent >= 2 * count * BAND_ALIGN:
        count *= 2
    starts = [extent * band // count // BAND_ALIGN * BAND_ALIGN for band in range(count)] + [extent]
    return [slice(lo, hi) for lo, hi in itertools.pairwise(starts)]


def float32_matrices(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a @ b multiplies float32 matrices (or stacks of them): the products sgemm computes."""
    return a.dtype == np.float32 and b.dtype == np.float32 and a.ndim >= 2 and b.ndim >= 2


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul as the C kernels compute it: numpy's BLAS on one thread (OpenBLAS's threads change
    some sums' order), a lone float32 matrix product in `bands`."""
    with single_threaded_blas():
        if not float32_matrices(a, b):
            return np.matmul(a, b)
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        (m, k), n = a.shape[-2:], b.shape[-1]
        if math.prod(batch) != 1 or min(m, n) < 2:
            return np.matmul(a, b)
        a, b = a.reshape(m, k), b.reshape(k, n)
        out = np.empty((m, n), np.float32)
        for band in bands(m, n, k):
            if n >= m:
                np.matmul(a, b[:, band], out=out[:, band])
            else:
                np.matmul(a[band], b, out=out[band])
        return out.reshape(*batch, m, n)


NUMPY = Fp16Kernels("numpy", widen, narrow, lookup, mac_port, binary, windows, matmul)


@dataclass(frozen=True)
class NumpyBlas:
    """The OpenBLAS numpy ships (scipy-openblas, ILP64): cblas_sgemm's address, for the C kernels,
    and its thread-count override (`openblas_set_num_threads_local`, which returns the previous one)."""
    sgemm_address: int
    set_threads: Callable[[int], int]


@functools.cache
def numpy_blas() -> NumpyBlas | None:
    """numpy's OpenBLAS, or None when numpy uses another BLAS."""
    import ctypes
    import glob

    numpy_dir = os.path.dirname(np.__file__)
    for path in sorted(glob.glob(os.path.join(numpy_dir, os.pardir, "numpy.libs", "libscipy_openblas64_*"))
                       + glob.glob(os.path.join(numpy_dir, ".dylibs", "libscipy_openblas64_*"))):
        try:
            library = ctypes.CDLL(path)
            set_threads = library.openblas_set_num_threads_local
            set_threads.argtypes, set_threads.restype = [ctypes.c_int], ctypes.c_int
            return NumpyBlas(ctypes.cast(library.scipy_cblas_sgemm64_, ctypes.c_void_p).value or 0, set_threads)
        except (OSError, AttributeError):
            continue
    return None


class _OneThreadHold:
    """Holds numpy's OpenBLAS to one thread while any caller needs it (callers on several threads may
    overlap: the last one out restores the thread count the first one found)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = 0

    @contextlib.contextmanager
    def __call__(self, blas: NumpyBlas) -> Iterator[None]:
        with self.lock:
            if self.depth == 0:
                self.saved = blas.set_threads(1)
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0:
                    blas.set_threads(self.saved)


_ONE_THREAD = _OneThreadHold()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """numpy's OpenBLAS on the calling thread only, for the duration (nothing with another BLAS)."""
    blas = numpy_blas()
    if blas is None:
        yield
        return
    with _ONE_THREAD(blas):
        yield


def threads() -> int:
    """The threads the C kernels share their work among: `ANEC_SIM_THREADS`, else the CPUs this
    process may run on."""
    text = os.environ.get("ANEC_SIM_THREADS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise AnecError(f"ANEC_SIM_THREADS={text!r} is not a number of threads", where="environment",
                            why="the simulator's kernels run on that many threads", hint="set it to 1 or more, or unset it")
        return int(text)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _compiled() -> Fp16Kernels | None:
    try:
        from anec.sim import _fp16
    except ImportError:
        return None
    _fp16.set_threads(threads())
    blas = numpy_blas()
    _fp16.use_blas(blas.sgemm_address if blas else 0)

    def compiled_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`matmul`, on the pool's threads when numpy's BLAS was found and BLAS reads the layouts."""
        if float32_matrices(a, b) and a.__array_interface__["data"][0] != b.__array_interface__["data"][0]:  # numpy's x @ x.T: a syrk
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            out = np.empty((*batch, a.shape[-2], b.shape[-1]), np.float32)
            with single_threaded_blas():
                if _fp16.matmul(_as_batch(a, batch), _as_batch(b, batch), out.reshape(-1, *out.shape[-2:])):
                    return out
        return matmul(a, b)

    return Fp16Kernels("c", _fp16.widen, _fp16.narrow, _fp16.lookup, _fp16.mac_port, _fp16.binary, _fp16.windows, compiled_matmul)


def _as_batch(x: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """x broadcast to `batch` leading axes and viewed as [B, rows, cols] (a copy only when the batch
    axes do not merge)."""
    return np.broadcast_to(x, (*batch, *x.shape[-2:])).reshape(-1, *x.shape[-2:])


COMPILED = _compiled()
"""The C kernels, or None when the package was installed without a C compiler."""
ACTIVE = NUMPY if COMPILED is None or os.environ.get("ANEC_SIM_KERNELS") == "numpy" else COMPILED
"""The kernels the simulator uses."""
