"""Compressed weights: the stored forms, the store that keeps them, and constants that name them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp, StringAttr, f32
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Region
from xdsl.printer import Printer

from anec.compression import (
    AffineWeight,
    BlockAffineWeight,
    CompressedWeight,
    KeptOnlyExpanded,
    PaletteWeight,
    SparseWeight,
    fit_palette,
    fit_palettes,
    pack_bits,
    prune,
    quantize_int8_block,
    smallest_dropped,
    unpack_bits,
)
from anec.dialects import ane
from anec.dialects.ane import tensor
from anec.errors import AnecError
from anec.interpreter import interpret
from anec.weights import (
    WEIGHTS_FILE_ATTR,
    WeightStore,
    attach,
    compressed_of,
    const_value,
    load_module,
    make_compressed_const,
    store_of,
)

RNG = np.random.default_rng(20)


def compressed_linear(weight: CompressedWeight) -> ModuleOp:
    """main(x[2, K]) = x @ weight, the weight an `ane.const "fc.weight"` stored compressed."""
    store = WeightStore()
    block = Block(arg_types=[tensor((2, weight.shape[0]))])
    const = make_compressed_const(weight, "fc.weight", store, f32)
    mm = ane.MatmulOp(block.args[0], const.result)
    block.add_ops([const, mm, ReturnOp(mm.result)])
    module = ModuleOp([FuncOp("main", ([block.args[0].type], [mm.result.type]), Region(block))])
    attach(module, store)
    return module


def test_four_bit_indices_pack_low_nibble_first() -> None:
    assert pack_bits(np.array([1, 2, 15, 0, 7]), 4).tolist() == [0x21, 0x0F, 0x07]
    assert pack_bits(np.array([1, 0, 0, 1, 1, 1, 0, 0, 1]), 1).tolist() == [0b00111001, 0b1]


@pytest.mark.parametrize("bits", [1, 2, 4, 6, 8])
def test_packing_round_trips_at_every_palette_width(bits: int) -> None:
    indices = RNG.integers(0, 1 << bits, 37).astype(np.uint8)
    packed = pack_bits(indices, bits)
    assert packed.size == -(-37 * bits // 8)
    assert unpack_bits(packed, bits, 37).tolist() == indices.tolist()


def test_affine_weight_is_q_minus_zero_times_scale_rounded_once_to_fp16() -> None:
    q = np.array([[0, 255, 128], [10, 20, 30]], np.uint8)
    w = AffineWeight(q, np.array([0.1, 3e-3], np.float32), np.array([128, 20], np.uint8), axis=0)
    expected = np.array([[-12.8, 12.7, 0.0], [-0.03, 0.0, 0.03]], np.float32).astype(np.float16)
    assert w.fp16().dtype == np.float16 and w.fp16().tobytes() == expected.tobytes()
    assert w.stored_nbytes == 6 + 2 * 5 and w.form == "uint8/channel"
    per_tensor = AffineWeight(q.astype(np.int8) // 2, np.array(0.5, np.float32), np.array(0, np.int8))
    assert per_tensor.form == "int8" and per_tensor.fp16().tolist() == ((q.astype(np.int8) // 2) * 0.5).tolist()


def test_affine_weight_refuses_scales_that_do_not_match_the_axis() -> None:
    with pytest.raises(AnecError, match="needs 2 scale"):
        AffineWeight(np.zeros((2, 3), np.int8), np.ones(3, np.float32), np.zeros(3, np.int8), axis=0)


def test_palette_weight_reads_its_codebook_and_counts_packed_bytes() -> None:
    lut = np.linspace(-1, 1, 16).astype(np.float16)
    indices = RNG.integers(0, 16, (8, 6)).astype(np.uint8)
    w = PaletteWeight(indices, lut, 4)
    assert w.fp16().tobytes() == lut[indices].tobytes()
    assert w.stored_nbytes == 24 + 32 and w.form == "palette4"
    with pytest.raises(AnecError, match="does not fit in 2 bits"):
        PaletteWeight(indices, lut[:4], 2)


def _affine(shape: tuple[int, ...] = (5, 4)) -> AffineWeight:
    return AffineWeight(RNG.integers(-127, 128, shape).astype(np.int8), RNG.uniform(1e-3, 1e-2, shape[0]).astype(np.float32),
                        np.zeros(shape[0], np.int8), axis=0)


def test_the_store_serves_the_fp16_value_and_counts_stored_bytes(tmp_path: Path) -> None:
    store = WeightStore()
    affine, palette = _affine(), PaletteWeight(RNG.integers(0, 16, (3, 7)).astype(np.uint8), RNG.standard_normal(16).astype(np.float16), 4)
    a, p = store.add_compressed(affine, "fc.weight"), store.add_compressed(palette, "fc.weight")
    plain = store.add(np.ones(3, np.float32), "b")
    assert (a, p) == ("fc.weight", "fc.weight#1") and set(store) == {a, p, plain} and len(store) == 3
    assert store[a].tobytes() == affine.fp16().tobytes()
    assert store.nbytes == affine.stored_nbytes + palette.stored_nbytes + 12
    store.save(tmp_path / "w.npz")
    loaded = WeightStore.load(tmp_path / "w.npz")
    again = loaded.compressed(a)
    assert isinstance(again, AffineWeight) and again.quantized.tobytes() == affine.quantized.tobytes() and again.axis == 0
    assert loaded[p].tobytes() == palette.fp16().tobytes() and loaded.compressed(plain) is None
    store.prune([p])
    assert list(store) == [p]


def _module(store: WeightStore, weight: AffineWeight | PaletteWeight) -> ModuleOp:
    block = Block(arg_types=[tensor((2, 5))])
    const = make_compressed_const(weight, "fc.weight", store, f32)
    mm = ane.MatmulOp(block.args[0], const.result)
    block.add_ops([const, mm, ReturnOp(mm.result)])
    return ModuleOp([FuncOp("main", ([block.args[0].type], [mm.result.type]), Region(block))])


def _print(module: ModuleOp) -> str:
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    return out.getvalue()


def test_a_compressed_constant_prints_its_form_and_round_trips_with_its_weights(tmp_path: Path) -> None:
    store = WeightStore()
    weight = _affine()
    module = _module(store, weight)
    attach(module, store)
    text = _print(module)
    assert 'ane.const "fc.weight" stored "int8/channel" : tensor<5x4xf32>' in text
    module.attributes[WEIGHTS_FILE_ATTR] = StringAttr("m.weights.npz")
    store.save(tmp_path / "m.weights.npz")
    (tmp_path / "m.mlir").write_text(_print(module))
    loaded = load_module(tmp_path / "m.mlir")
    const = next(op for op in loaded.walk() if isinstance(op, ane.ConstOp))
    assert isinstance(compressed_of(const), AffineWeight) and _print(loaded) == _print(module)
    value = const_value(const)
    assert value.dtype == np.float32 and value.tolist() == weight.fp16().astype(np.float32).tolist()
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    (y,) = interpret(loaded, [x])
    np.testing.assert_allclose(y, x @ weight.fp16().astype(np.float32), rtol=1e-5)


def test_a_constant_whose_store_entry_disagrees_with_its_form_is_refused() -> None:
    store = WeightStore()
    module = _module(store, _affine())
    attach(module, store)
    const = next(op for op in module.walk() if isinstance(op, ane.ConstOp))
    const.properties["stored"] = StringAttr("palette4")
    with pytest.raises(AnecError, match="stored int8/channel, the IR says palette4"):
        const_value(const)


@pytest.mark.parametrize("move", [
    lambda a: a.reshape((1, 5, 4)), lambda a: a.transpose((1, 0)), lambda a: a[(slice(1, 4), slice(None))],
    lambda a: a[(slice(None), slice(0, 2))], lambda a: a.reshape((5, 4, 1, 1)).transpose((1, 0, 2, 3)),
], ids=["lift", "transpose", "rows", "columns", "as-kernel"])
@pytest.mark.parametrize("make", [_affine, lambda: PaletteWeight(RNG.integers(0, 16, (5, 4)).astype(np.uint8),
                                                                  RNG.standard_normal(16).astype(np.float16), 4),
                                  lambda: quantize_int8_block(RNG.standard_normal((5, 4)).astype(np.float32), 0, 1, block=4),
                                  lambda: prune(RNG.standard_normal((5, 4)).astype(np.float32))],
                         ids=["affine", "palette", "block", "sparse"])
def test_moving_a_compressed_weight_moves_its_value(move, make) -> None:
    weight = make()
    assert move(weight).fp16().tobytes() == np.ascontiguousarray(move(weight.fp16())).tobytes()


def test_a_reshape_that_splits_the_scaled_axis_is_refused() -> None:
    with pytest.raises(KeptOnlyExpanded, match="splits the scaled axis 0"):
        _affine((6, 4)).reshape((2, 3, 4))


def _block() -> BlockAffineWeight:
    """Scales per row and per two columns of a 4×6 weight, with uint8 zero points."""
    return BlockAffineWeight(RNG.integers(0, 256, (4, 6)).astype(np.uint8), RNG.uniform(1e-3, 1e-2, (4, 3)).astype(np.float32),
                             RNG.integers(100, 156, (4, 3)).astype(np.uint8))


def test_a_blockwise_weight_scales_each_block_by_its_own_scale() -> None:
    w = _block()
    assert w.form == "uint8/block1x2" and w.stored_nbytes == 24 + 5 * 12
    for r, c in ((0, 0), (3, 5), (2, 3)):
        expected = np.float16((np.float32(w.quantized[r, c]) - np.float32(w.zero_point[r, c // 2])) * w.scale[r, c // 2])
        assert w.fp16()[r, c] == expected
    with pytest.raises(AnecError, match="grid of its rank whose extents divide"):
        BlockAffineWeight(w.quantized, np.ones((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(KeptOnlyExpanded, match="cuts its blocks of 2"):
        w[(slice(None), slice(1, 3))]
    with pytest.raises(KeptOnlyExpanded, match="moves values across scale blocks"):
        w.reshape((2, 12))


def test_int8_block_keeps_each_blocks_peak_at_127() -> None:
    w = RNG.standard_normal((8, 64, 3, 3)).astype(np.float32)
    q = quantize_int8_block(w, axis=0, block_axis=1)
    assert q.scale.shape == (8, 2, 1, 1) and not q.zero_point.any()
    assert (np.abs(q.quantized.reshape(8, 2, -1)).max(axis=2) == 127).all()
    assert quantize_int8_block(w[:, :48], axis=0, block_axis=1).scale.shape == (8, 1, 1, 1)  # 48 is no multiple of 32: one block


def test_a_sparse_weight_keeps_the_larger_half_and_packs_its_mask_lsb_first() -> None:
    w = np.array([[0.5, -3.0, 0.1, 2.0], [-0.2, 1.0, 4.0, -0.05]], np.float32)
    s = prune(w)
    assert s.mask.tolist() == [[False, True, False, True], [False, True, True, False]]
    assert s.values.tolist() == [-3.0, 2.0, 1.0, 4.0] and s.fp16()[0, 0] == 0
    assert s.parts()["mask"].tolist() == [0b01101010] and s.stored_nbytes == 1 + 8
    with pytest.raises(AnecError, match="4 set mask bits needs as many values, got 3"):
        SparseWeight(s.mask, s.values[:3])


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("sorted where a selection does")


def test_pruning_drops_what_a_stable_sort_would_but_selects_instead_of_sorting(monkeypatch: pytest.MonkeyPatch) -> None:
    """`smallest_dropped` is a stable argsort's first `drop` indices (ties dropped first by position),
    found in linear time: numpy's sorts are not called."""
    rng = np.random.default_rng(3)
    cases = []
    for n in (1, 2, 7, 64, 301):
        magnitude = np.abs(np.round(rng.standard_normal(n) * 2)).astype(np.float32)  # few distinct values: many ties
        for drop in sorted({0, 1, n // 2, n - 1, n}):
            expected = np.ones(n, np.bool_)
            expected[np.argsort(magnitude, kind="stable")[:drop]] = False
            cases.append((magnitude, drop, expected))
    monkeypatch.setattr(np, "argsort", _refuse)
    monkeypatch.setattr(np, "sort", _refuse)
    for magnitude, drop, expected in cases:
        assert smallest_dropped(magnitude, drop).tolist() == expected.tolist(), (magnitude.tolist(), drop)
    assert prune(np.array([[0.5, -3.0], [0.1, 2.0]], np.float32)).mask.tolist() == [[False, True], [False, True]]


def lloyd_reference(sample: np.ndarray, bits: int, iterations: int = 1000) -> np.ndarray:
    """Lloyd's algorithm by brute force: every value assigned its nearest center, each center moved to
    its values' mean (an empty cluster keeps its center), from the same quantiles, to the same tolerance."""
    values = np.sort(sample.astype(np.float64))
    centers = np.quantile(values, (np.arange(1 << bits) + 0.5) / (1 << bits))
    for _ in range(iterations):
        nearest = np.argmin(np.abs(values[:, None] - centers[None, :]), axis=1)
        updated = np.array([values[nearest == k].mean() if (nearest == k).any() else c for k, c in enumerate(centers)])
        if np.abs(updated - centers).max() <= 1e-7 * np.abs(values).max():
            break
        centers = np.sort(updated)
    return centers.astype(np.float16)


def test_palette_fit_is_lloyds_algorithm_and_widths_fitted_together_match_each_fitted_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sorted-values Lloyd (`fit_palette`) moves the centers as brute-force Lloyd does; fitting 4, 6
    and 8 bits together gives each width's codebook alone, with one search an iteration for all three
    (as many as the slowest width alone takes), not one per width."""
    sample = RNG.standard_normal(400).astype(np.float32) ** 3  # heavy tails, like trained weights
    for bits in (2, 4):
        np.testing.assert_allclose(fit_palette(sample, bits).astype(np.float32), lloyd_reference(sample, bits), rtol=2e-3, atol=1e-6)
    searches = 0
    search = np.searchsorted

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        nonlocal searches
        searches += 1
        return search(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(np, "searchsorted", counted)
    alone = {}
    iterations = []
    for bits in (4, 6, 8):
        searches = 0
        alone[bits] = fit_palette(sample, bits)
        iterations.append(searches)
    searches = 0
    together = fit_palettes(sample, (4, 6, 8))
    assert all(together[b].tolist() == alone[b].tolist() for b in (4, 6, 8))
    assert min(iterations) < max(iterations) and searches == max(iterations)


@pytest.mark.parametrize(("make", "form"), [(_block, "uint8/block1x2"), (lambda: prune(RNG.standard_normal((5, 4)).astype(np.float32)), "sparse"),
                                            (lambda: PaletteWeight(RNG.integers(0, 64, (5, 4)).astype(np.uint8),
                                                                   RNG.standard_normal(64).astype(np.float16), 6), "palette6")],
                         ids=["block", "sparse", "palette6"])
def test_each_new_form_prints_parses_and_round_trips_through_the_weights_file(make, form: str, tmp_path: Path) -> None:
    weight = make()
    module = compressed_linear(weight)
    store = store_of(module)
    assert f'ane.const "fc.weight" stored "{form}"' in _print(module)
    module.attributes[WEIGHTS_FILE_ATTR] = StringAttr("m.weights.npz")
    store.save(tmp_path / "m.weights.npz")
    (tmp_path / "m.mlir").write_text(_print(module))
    loaded = load_module(tmp_path / "m.mlir")
    again = compressed_of(next(op for op in loaded.walk() if isinstance(op, ane.ConstOp)))
    assert type(again) is type(weight) and again.form == form and again.fp16().tobytes() == weight.fp16().tobytes()
    assert _print(loaded) == _print(module)
    x = RNG.standard_normal((2, weight.shape[0])).astype(np.float32)
    np.testing.assert_allclose(interpret(loaded, [x])[0], x @ weight.fp16().astype(np.float32), rtol=1e-5)
