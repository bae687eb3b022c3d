"""The C fp16 kernels give the same bits as their numpy twins (the specification), on every class of
value, through strided and padded slot views, and for whole programs."""

from __future__ import annotations

import numpy as np
import pytest

from anec.kernels import BINARY
from anec.sim import fp16_kernels
from anec.sim.fp16_kernels import NUMPY, Fp16Kernels
from tests.sim.support import F16, every_fp16, float32_samples


@pytest.fixture(autouse=True, params=["vector", "scalar"])
def code_path(request: pytest.FixtureRequest):
    """Every test runs on both C code paths: AVX2/F16C (x86-64) and the portable scalar one (other CPUs)."""
    compiled()
    from anec.sim import _fp16

    was = _fp16.uses_vector_path()
    if request.param == "vector" and not was:
        pytest.fail("this machine's CPU has no AVX2/F16C: the vector path cannot be tested here")
    _fp16.use_vector_path(request.param == "vector")
    yield request.param
    _fp16.use_vector_path(was)


def compiled() -> Fp16Kernels:
    assert fp16_kernels.COMPILED is not None, \
        "the C kernels (anec/sim/_fp16.c) were not built: reinstall with a C compiler (pip install -e .)"
    return fp16_kernels.COMPILED


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, except that NaN payloads may differ (NaN never reaches a slot)."""
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(f"u{a.itemsize}"), b[~nan].view(f"u{b.itemsize}")))


def padded(shape: tuple[int, ...], dtype: type, pad: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A destination view whose rows are padded (as slot rows are), and the whole block around it."""
    block = np.full((*shape[:-1], shape[-1] + pad), 7, dtype=dtype)
    return block[..., :shape[-1]], block


def test_the_simulator_uses_the_c_kernels() -> None:
    assert fp16_kernels.ACTIVE is compiled()


@pytest.mark.parametrize("flush", [False, True])
def test_widen(flush: bool) -> None:
    x = every_fp16()
    outs = []
    for kernels in (NUMPY, compiled()):
        out = np.empty(x.shape, np.float32)
        kernels.widen(x, out, flush)
        outs.append(out)
    assert same_bits(*outs)
    assert outs[1][1] == (0 if flush else 2.0**-24) and np.signbit(outs[1][0x8001]) and outs[1][0x7C00] == np.inf


def test_narrow() -> None:
    x = float32_samples()
    outs = []
    for kernels in (NUMPY, compiled()):
        out = np.empty(x.shape, F16)
        kernels.narrow(x, out, 0.0)
        outs.append(out)
    assert same_bits(*outs) and not np.isnan(outs[1]).any()
    with np.errstate(all="ignore"):
        finite = ~np.isnan(x)
        assert np.array_equal(outs[1][finite].view(np.uint16), x[finite].astype(F16).view(np.uint16))


def test_lookup() -> None:
    x = every_fp16()
    table = np.random.default_rng(1).integers(0, 1 << 16, 1 << 16, dtype=np.uint64).astype(np.uint16)
    outs = []
    for kernels in (NUMPY, compiled()):
        out = np.empty(x.shape, F16)
        kernels.lookup(x, out, table, 0.0)
        outs.append(out)
    assert same_bits(*outs) and not np.isnan(outs[1]).any()


def nan_keeping(table: np.ndarray) -> np.ndarray:
    """An activation table maps every NaN to NaN (the port's rounding may change a NaN's payload)."""
    table[np.isnan(every_fp16())] = 0x7E00
    return table


PORTS = [  # bias axis, post-scale, saturation, flush, activation table
    (None, None, 32768.0, True, False),
    (None, None, 32768.0, False, True),
    (2, None, 32768.0, True, False),
    (2, 0.375, 32768.0, True, True),
    (4, None, 65536.0, False, False),
    (4, 3.0, 32768.0, False, True),
]


@pytest.mark.parametrize(("bias_axis", "post_scale", "saturation", "flush", "table"), PORTS)
def test_mac_port(bias_axis: int | None, post_scale: float | None, saturation: float, flush: bool, table: bool) -> None:
    """Every class of value, with every per-channel bias (including ±inf and denormals), through a
    padded destination; the padding is never written."""
    samples = float32_samples()
    rng = np.random.default_rng(2)
    shape = (1, 1, 16, 3, 4) if bias_axis == 2 else (1, 1, 3, 4, 16)
    acc = np.resize(samples, (samples.size // 192, *shape[2:]))  # 192 = 16 * 3 * 4 values per block
    acc = acc.reshape(-1, 1, *shape[2:])
    bias = None
    if bias_axis is not None:
        bias = rng.standard_normal(16).astype(np.float32) * 100
        bias[:4] = [np.inf, -np.inf, 1e-6, -3e-8]
    activation = nan_keeping(every_fp16().view(np.uint16)[::-1].copy()) if table else None
    outs = []
    for kernels in (NUMPY, compiled()):
        out, block = padded(acc.shape, F16)
        kernels.mac_port(acc, out, bias, bias_axis if bias_axis is not None else 0, post_scale, saturation, flush, activation, 0.0)
        assert (block[..., acc.shape[-1]:].view(np.uint16) == np.float16(7).view(np.uint16)).all()
        outs.append(out)
    assert same_bits(*outs) and not np.isnan(outs[1]).any()


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_binary(op: str) -> None:
    """Every fp16 value against every fp16 value shifted (and against itself: x - x, inf - inf), and
    random pairs: the float32 operation rounded half to even, NaN stored as the indeterminate result."""
    x = every_fp16()
    rng = np.random.default_rng(3)
    a = np.concatenate([x, x, x, rng.integers(0, 1 << 16, 1 << 20).astype(np.uint16).view(F16)])
    b = np.concatenate([x, np.roll(x, 1), np.roll(x, 12345), rng.integers(0, 1 << 16, 1 << 20).astype(np.uint16).view(F16)])
    outs = []
    for kernels in (NUMPY, compiled()):
        out = np.empty(a.shape, F16)
        kernels.binary(op, a, b, out, 0.5)
        outs.append(out)
    with np.errstate(all="ignore"):
        exact = BINARY[op](a.astype(np.float32), b.astype(np.float32)).astype(F16)
    exact[np.isnan(exact)] = 0.5
    assert same_bits(outs[0], exact) and same_bits(outs[1], exact)


@pytest.mark.parametrize("width", [1, 7, 31, 32, 56, 600])
def test_strided_views(width: int) -> None:
    """Short rows (packed), long rows (converted in place, across spans), transposed and broadcast
    operands, and a padded destination."""
    rng = np.random.default_rng(width)
    x = (rng.standard_normal((3, width, 5)) * 1000).astype(np.float32).transpose(0, 2, 1)
    row = (rng.standard_normal((1, 1, width)) * 10).astype(np.float32)
    halves = rng.standard_normal((3, 5, width + 3)).astype(F16)[..., 3:]
    for source in (x, np.broadcast_to(row, x.shape)):
        outs = []
        for kernels in (NUMPY, compiled()):
            out, block = padded(source.shape, F16)
            kernels.narrow(source, out, 0.0)
            assert (block[..., width:] == 7).all()
            outs.append(out)
        assert same_bits(*outs)
    widened = []
    for kernels in (NUMPY, compiled()):
        out, _ = padded(halves.shape, np.float32)
        kernels.widen(halves, out, True)
        widened.append(out)
    assert same_bits(*widened)
    transposed, broadcast = x.astype(F16), np.broadcast_to(row.astype(F16), x.shape)
    sums = []
    for kernels in (NUMPY, compiled()):
        out, block = padded(x.shape, F16)
        kernels.binary("sub", broadcast, transposed, out, 0.0)
        assert (block[..., width:] == 7).all()
        sums.append(out)
    assert same_bits(*sums)
    with np.errstate(all="ignore"):
        assert same_bits(sums[1], (broadcast.astype(np.float32) - transposed.astype(np.float32)).astype(F16))


@pytest.mark.parametrize("width", [7, 13, 600])
def test_in_place(width: int) -> None:
    """A destination that is also a source (an activation or an add in place) is read before it is
    written, group by group: a partial last group is not recomputed over values already stored."""
    rng = np.random.default_rng(width)
    start = rng.standard_normal((4, width)).astype(F16) * 3
    table = rng.integers(0, 0x7C00, 1 << 16).astype(np.uint16)
    outs = []
    for kernels in (NUMPY, compiled()):
        x = start.copy()
        kernels.binary("mul", x, x, x, 0.0)
        kernels.lookup(x, x, table, 0.0)
        outs.append(x)
    assert same_bits(*outs)


def test_bad_buffers_are_refused() -> None:
    kernels = compiled()
    with pytest.raises(TypeError, match="float16"):
        kernels.widen(np.zeros(4, np.float32), np.zeros(4, np.float32), False)
    with pytest.raises(ValueError, match="same shape"):
        kernels.narrow(np.zeros(4, np.float32), np.zeros(5, F16), 0.0)
    with pytest.raises(ValueError, match="bias"):
        kernels.mac_port(np.zeros((2, 3), np.float32), np.zeros((2, 3), F16), np.zeros(2, np.float32), 1, None, 32768.0, False, None, 0.0)
    with pytest.raises(ValueError, match="no fused operation 'div'"):
        kernels.binary("div", np.zeros(4, F16), np.zeros(4, F16), np.zeros(4, F16), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        kernels.binary("add", np.zeros(4, F16), np.zeros(3, F16), np.zeros(4, F16), 0.0)
    with pytest.raises(ValueError, match="65536"):
        kernels.lookup(np.zeros(4, F16), np.zeros(4, F16), np.zeros(10, np.uint16), 0.0)


def test_programs_run_the_same_with_either_kernels() -> None:
    """Every simulator test case gives the same output bits with the C kernels and the numpy twins,
    on ordinary inputs and on inputs large enough to saturate the MAC port and overflow fp16."""
    from anec.pipeline import descriptor_program
    from anec.sim.builders import segment_module
    from anec.sim.functional import Machine
    from tests.sim.test_functional import ARCH, CASES, inputs_for

    for case, (shapes, build) in CASES.items():
        file = descriptor_program(segment_module(shapes, build), ARCH.get(case, "h13"))
        for program in file.programs:
            for scale in (1.0, 3000.0):
                inputs = [x * np.float32(scale) for x in inputs_for([tuple(b.shape) for b in program.inputs])]
                outs = [Machine.for_program(program, kernels).run(inputs) for kernels in (NUMPY, compiled())]
                assert all(same_bits(a, b) for a, b in zip(*outs)), (case, scale)


@pytest.mark.parametrize(("kernel", "strides", "pads", "dilations", "out"), [
    ((3, 3), (1, 1), (1, 1), (1, 1), (9, 11)),
    ((3, 3), (2, 2), (1, 1), (1, 1), (5, 6)),
    ((7, 7), (2, 2), (3, 3), (1, 1), (5, 6)),
    ((3, 2), (1, 2), (2, 0), (2, 3), (7, 4)),
    ((1, 1), (2, 2), (0, 0), (1, 1), (5, 6)),
    ((2, 2), (3, 3), (1, 0), (1, 1), (3, 3)),
    ((1, 3), (1, 1), (0, 1), (1, 1), (9, 8)),
])
@pytest.mark.parametrize("flush", [False, True])
def test_windows(kernel, strides, pads, dilations, out, flush: bool) -> None:
    """A convolution's columns, from a padded fp16 source holding every fp16 value (denormals, ±0,
    ±inf), with contiguous or strided rows: zero outside the source, and trailing windows cropped to
    the output extents. Output rows of 3 to 11 elements, strides 1 to 3."""
    block = np.resize(every_fp16(), (2, 3, 9, 24))
    for src in (block[..., 2:13], block[..., 2::2]):
        outs = []
        for kernels in (NUMPY, compiled()):
            cols = np.full((2, 3, *kernel, *out), np.nan, np.float32)
            kernels.windows(src, cols, kernel, strides, pads, dilations, flush)
            outs.append(cols)
        assert same_bits(*outs) and not np.isnan(outs[1][..., 0, 0]).any()


@pytest.fixture(params=[1, 2, 3])
def threads(request: pytest.FixtureRequest):
    """The C kernels' pool: one thread, two (this machine's CPUs, usually), or three."""
    from anec.sim import _fp16

    _fp16.set_threads(request.param)
    yield request.param
    _fp16.set_threads(fp16_kernels.threads())


def test_kernels_share_rows_among_threads(threads: int) -> None:
    """Large enough to be shared: padded rows of every fp16 value, a per-channel bias, a broadcast
    second operand, an activation in place and a convolution's windows give the numpy twins' bits
    whatever the number of threads."""
    x = np.resize(every_fp16(), (64, 56, 40))[..., 3:]  # rows of 37 elements, 40 apart
    acc = np.resize(float32_samples(), (1, 64, 56, 37))
    bias = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    table = nan_keeping(every_fp16().view(np.uint16)[::-1].copy())
    results = []
    for kernels in (NUMPY, compiled()):
        widened, _ = padded(x.shape, np.float32)
        kernels.widen(x, widened, True)
        port, _ = padded(acc.shape, F16)
        kernels.mac_port(acc, port, bias, 1, None, 32768.0, True, table, 0.0)
        total, _ = padded(x.shape, F16)
        kernels.binary("add", x, np.broadcast_to(x[:1], x.shape), total, 0.0)
        kernels.lookup(total, total, table, 0.0)
        cols = np.empty((1, 64, 3, 3, 28, 19), np.float32)
        kernels.windows(x[None], cols, (3, 3), (2, 2), (1, 1), (1, 1), True)
        results.append((widened, port, total, cols))
    assert all(same_bits(a, b) for a, b in zip(*results))


def test_kernels_called_from_two_threads_at_once() -> None:
    """A call that finds the pool busy does its work alone: results are unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    acc = np.resize(float32_samples(), (8, 64, 56, 56))
    expected = [ported(part) for part in acc]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert all(same_bits(a, b) for a, b in zip(pool.map(ported, acc), expected))


def test_kernels_run_in_a_forked_child() -> None:
    """A forked child has none of its parent's pool threads; its kernels start their own."""
    import multiprocessing

    acc = np.resize(float32_samples(), (64, 56, 56))
    out = ported(acc)  # the pool is running
    with multiprocessing.get_context("fork").Pool(1) as children:
        child = children.apply_async(ported, (acc,)).get(timeout=60)
    assert same_bits(child, out)


def ported(acc: np.ndarray) -> np.ndarray:
    """`acc` through the C MAC port (no bias, scale or activation): a kernel large enough to share."""
    out = np.empty(acc.shape, F16)
    compiled().mac_port(acc, out, None, 0, None, 32768.0, False, None, 0.0)
    return out


def matmul_operands(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Products of every kind the simulator makes: lone products in bands along rows or columns
    (and too small for bands), transposed operands, a weight broadcast over a batch, attention's
    batched products, vector products (gemv in numpy), x @ x.T (syrk in numpy) and float64."""
    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    x = normal(300, 200)
    return [
        (normal(64, 576), normal(576, 3136)),
        (normal(2048, 512), normal(512, 49)),
        (normal(13, 391), normal(391, 274)),
        (normal(604, 91), normal(91, 34)),
        (normal(7, 5), normal(5, 3)),
        (normal(576, 64).T, normal(3136, 576).T),
        (normal(1, 1, 256, 64), normal(1, 1, 64, 3136)),
        (normal(1, 256, 64), normal(3, 1, 64, 200)),
        (normal(12, 128, 64), np.swapaxes(normal(12, 128, 64), 1, 2)),
        (normal(1, 700), normal(700, 300)),
        (normal(300, 700), normal(700, 1)),
        (x, x.T),
        (normal(100, 200)[:, ::2], normal(100, 300)),
        (normal(40, 50).astype(np.float64), normal(50, 60).astype(np.float64)),
    ]


def test_matmul(threads: int) -> None:
    """np.matmul's values, and the numpy twin's bits whatever the number of threads."""
    for a, b in matmul_operands(np.random.default_rng(5)):
        product = compiled().matmul(a, b)
        assert product.dtype == np.result_type(a, b) and product.shape == np.matmul(a, b).shape
        assert same_bits(product, NUMPY.matmul(a, b)), (a.shape, b.shape)
        np.testing.assert_allclose(product, np.matmul(a.astype(np.float64), b.astype(np.float64)), rtol=1e-4, atol=1e-3)


def test_lone_products_are_split_in_bands() -> None:
    """At most two bands, aligned, along the longer output axis, only when each holds enough work."""
    assert fp16_kernels.bands(64, 3136, 576) == [slice(0, 1568), slice(1568, 3136)]
    assert fp16_kernels.bands(2048, 49, 512) == [slice(0, 1024), slice(1024, 2048)]
    assert fp16_kernels.bands(13, 391, 274) == [slice(0, 391)]
    assert fp16_kernels.bands(20, 100, 5000) == [slice(0, 48), slice(48, 100)]


def test_products_from_several_threads_restore_openblas_threads() -> None:
    """Products that overlap on several Python threads (C and numpy twins) give their bits, and the
    last one out restores the OpenBLAS thread count the first one found."""
    from concurrent.futures import ThreadPoolExecutor

    blas = fp16_kernels.numpy_blas()
    assert blas is not None, "numpy's OpenBLAS (scipy-openblas) was not found: the products fall back to np.matmul"
    operands = matmul_operands(np.random.default_rng(6))[:4]
    expected = [NUMPY.matmul(a, b) for a, b in operands]
    before = blas.set_threads(0)
    blas.set_threads(before)
    with ThreadPoolExecutor(4) as pool:
        for kernels in (compiled(), NUMPY, compiled()):
            products = pool.map(lambda ab, kernels=kernels: kernels.matmul(*ab), operands * 4)
            assert all(same_bits(p, e) for p, e in zip(products, expected * 4))
    assert blas.set_threads(before) == before


def test_the_thread_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from anec.errors import AnecError

    monkeypatch.setenv("ANEC_SIM_THREADS", "3")
    assert fp16_kernels.threads() == 3
    for wrong in ("0", "two", "-1"):
        monkeypatch.setenv("ANEC_SIM_THREADS", wrong)
        with pytest.raises(AnecError, match="ANEC_SIM_THREADS"):
            fp16_kernels.threads()
    monkeypatch.delenv("ANEC_SIM_THREADS")
    assert fp16_kernels.threads() >= 1
