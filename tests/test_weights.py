"""The out-of-line weight store: handles, saving and loading, and constants that refer into it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, StringAttr, f16, i1, i32
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Region
from xdsl.printer import Printer

from anec.dialects import ane
from anec.dialects.ane import tensor
from anec.errors import AnecError
from anec.interpreter import interpret
from anec.weights import (
    INLINE_LIMIT,
    WEIGHTS_FILE_ATTR,
    WeightStore,
    attach,
    clone_module,
    const_value,
    contiguous,
    dense_to_numpy,
    load_module,
    make_const,
    store_of,
)

RNG = np.random.default_rng(1)


def test_handles_are_readable_and_unique() -> None:
    store = WeightStore()
    a = store.add(np.zeros(3), "conv1.weight")
    b = store.add(np.ones(3), "conv1.weight")
    c = store.add(np.full(3, 2.0), "conv1.weight")
    d = store.add(np.ones(2), "/encoder/layer 0/Add:0")
    assert (a, b, c) == ("conv1.weight", "conv1.weight#1", "conv1.weight#2")
    assert d == "/encoder/layer_0/Add:0"
    assert store.add(np.ones(1), "") == "w"
    assert len(store) == 5 and list(store) == [a, b, c, d, "w"]
    assert store[b].tolist() == [1.0, 1.0, 1.0]


def test_equal_arrays_are_stored_once_under_the_first_handle() -> None:
    store = WeightStore()
    first = store.add(np.arange(6.0).reshape(2, 3), "step0.recurrence")
    assert store.add(np.arange(6.0).reshape(2, 3), "step1.recurrence") == first
    assert store.add(np.arange(6.0).reshape(3, 2), "other_shape") != first
    assert store.add(np.arange(6.0, dtype=np.float16).reshape(2, 3), "other_dtype") != first
    assert store.add(np.arange(1.0, 7.0).reshape(2, 3), "other_bytes") != first
    assert len(store) == 4
    store.prune([h for h in store if h != first])
    assert store.add(np.arange(6.0).reshape(2, 3), "again") == "again"


def test_stored_arrays_are_read_only_without_freezing_the_callers_array() -> None:
    store = WeightStore()
    source = np.arange(4.0)
    handle = store.add(source, "w")
    assert source.flags.writeable and not store[handle].flags.writeable
    with pytest.raises(ValueError):
        store[handle][1] = 5


def test_unknown_handle_is_an_anec_error_with_a_hint() -> None:
    with pytest.raises(AnecError, match="weight 'nope' is not in the weight store") as caught:
        WeightStore()["nope"]
    assert "--weights" in caught.value.hint


def make_store() -> WeightStore:
    store = WeightStore()
    store.add(RNG.standard_normal((3, 4)).astype(np.float32), "b.weight")
    store.add(RNG.integers(0, 9, (5,)).astype(np.int64), "a.index")
    store.add(RNG.standard_normal((2, 2)).astype(np.float16), "c/half")
    return store


def test_save_and_load_round_trip_with_deterministic_bytes(tmp_path: Path) -> None:
    store = make_store()
    first, second = tmp_path / "one.npz", tmp_path / "two.npz"
    store.save(first)
    reordered = WeightStore()
    for handle in reversed(list(store)):
        reordered.add(store[handle], handle)
    reordered.save(second)
    assert first.read_bytes() == second.read_bytes()
    loaded = WeightStore.load(first)
    assert sorted(loaded) == sorted(store) and loaded.nbytes == store.nbytes
    for handle in store:
        assert loaded[handle].dtype == store[handle].dtype and np.array_equal(loaded[handle], store[handle])
        assert not loaded[handle].flags.writeable


def test_loading_a_bad_file_is_an_anec_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(AnecError, match="cannot read weights from"):
        WeightStore.load(bad)
    with pytest.raises(AnecError, match="cannot read weights from"):
        WeightStore.load(tmp_path / "missing.npz")


def test_prune_keeps_only_named_arrays() -> None:
    store = make_store()
    store.prune(["a.index"])
    assert list(store) == ["a.index"]


def test_make_const_inlines_tiny_constants_and_stores_the_rest() -> None:
    store = WeightStore()
    tiny = np.arange(INLINE_LIMIT, dtype=np.float32)
    big = np.arange(INLINE_LIMIT + 1, dtype=np.float32)
    inline, handled = make_const(tiny, "tiny", store), make_const(big, "big", store)
    assert inline.handle is None and inline.value is not None and "tiny" not in store
    assert handled.value is None and handled.handle.data == "big" and np.array_equal(store["big"], big)
    assert np.array_equal(const_value(inline), tiny) and np.array_equal(const_value(handled, store), big)
    inline.verify()
    handled.verify()


@pytest.mark.parametrize("array, element_type", [
    (np.array([[1.5, -2.25]], np.float32), None),
    (np.array([True, False, True]), None),
    (np.array([-3, 7], np.int32), None),
    (np.array([0.1, 0.2], np.float64), f16),
])
def test_inline_constants_keep_values_and_types(array: np.ndarray, element_type) -> None:
    op = make_const(array, "c", WeightStore(), element_type)
    op.verify()
    expected = array if element_type is None else array.astype(np.float16)
    value = const_value(op)
    assert value.dtype == expected.dtype and np.array_equal(value, expected)


def test_element_type_of_make_const_converts_stored_arrays() -> None:
    store = WeightStore()
    op = make_const(np.ones((5, 5), np.float64), "w", store, i32)
    assert op.result.type == tensor((5, 5), i32) and store["w"].dtype == np.int32


def test_splat_inline_constant_broadcasts() -> None:
    attr = DenseIntOrFPElementsAttr.from_list(tensor((2, 3), i1), [True])
    assert dense_to_numpy(attr).tolist() == [[True] * 3] * 2


def test_const_value_checks_the_stored_shape() -> None:
    store = WeightStore()
    store.add(np.ones((2, 2), np.float32), "w")
    with pytest.raises(AnecError, match=r"weight 'w' has shape \[2, 2\], the IR expects \[4\]"):
        const_value(ane.ConstOp(tensor((4,)), handle="w"), store)


def weighted_module(store: WeightStore) -> ModuleOp:
    """main(x) = x @ W + b with W out of line and b inline."""
    w = make_const(RNG.standard_normal((4, 5)).astype(np.float32), "fc.weight", store)
    b = make_const(np.arange(5, dtype=np.float32), "fc.bias", store)
    block = Block(arg_types=[tensor((2, 4))])
    mm = ane.MatmulOp(block.args[0], w.result, b.result)
    block.add_ops([w, b, mm, ReturnOp(mm.result)])
    return ModuleOp([FuncOp("main", ([tensor((2, 4))], [mm.result.type]), Region(block))])


def test_store_of_finds_the_attached_store_from_any_op_and_clones_share_it() -> None:
    store = WeightStore()
    module = weighted_module(store)
    attach(module, store)
    op = next(o for o in module.walk() if isinstance(o, ane.MatmulOp))
    assert store_of(op) is store and store_of(module) is store
    assert store_of(clone_module(module)) is store


def test_store_of_a_detached_op_is_an_anec_error() -> None:
    with pytest.raises(AnecError, match="not inside a module"):
        store_of(ane.ConstOp(tensor((2,)), handle="w"))


def test_load_module_reads_weights_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = WeightStore()
    module = weighted_module(store)
    module.attributes[WEIGHTS_FILE_ATTR] = StringAttr("model.weights.npz")
    (tmp_path / "model.mlir").write_text(_print(module))
    store.save(tmp_path / "model.weights.npz")
    monkeypatch.chdir(tmp_path.parent)  # the relative path must resolve beside the .mlir, not in the cwd
    loaded = load_module(tmp_path / "model.mlir")
    assert sorted(store_of(loaded)) == ["fc.weight"]
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    (actual,) = interpret(loaded, [x])
    np.testing.assert_allclose(actual, x @ store["fc.weight"] + np.arange(5), rtol=1e-6)


def test_load_module_without_a_weights_file_gets_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "m.mlir"
    path.write_text('func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {\n  %0 = ane.relu %x : tensor<2xf32>\n  func.return %0 : tensor<2xf32>\n}\n')
    module = load_module(path)
    assert len(store_of(module)) == 0
    assert interpret(module, [np.array([-1.0, 2.0], np.float32)])[0].tolist() == [0.0, 2.0]


def _print(module: ModuleOp) -> str:
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    return out.getvalue()


@pytest.mark.parametrize("array", [
    np.random.default_rng(2).standard_normal(16).astype(np.float32),
    np.random.default_rng(3).standard_normal(16).astype(np.float16),
    np.random.default_rng(4).standard_normal(7),
    np.array([np.inf, -np.inf, np.nan, -0.0, 1e-40, 3.4e38], np.float32),
    np.array([-(2**31), 2**31 - 1, 0], np.int32),
    np.array([True, False]),
], ids=["f32", "f16", "f64", "f32-specials", "i32", "bool"])
def test_small_constants_survive_printing_and_parsing_bit_exactly(array: np.ndarray, tmp_path: Path) -> None:
    store = WeightStore()
    const = make_const(array, "c", store)
    block = Block()
    block.add_ops([const, ReturnOp(const.result)])
    module = ModuleOp([FuncOp("main", ([], [const.result.type]), Region(block))])
    module.attributes[WEIGHTS_FILE_ATTR] = StringAttr("m.weights.npz")
    store.save(tmp_path / "m.weights.npz")
    (tmp_path / "m.mlir").write_text(_print(module))
    (value,) = interpret(load_module(tmp_path / "m.mlir"), [])
    assert value.dtype == array.dtype and value.tobytes() == array.tobytes()
    assert (const.value is None) == (array.dtype.kind == "f" and not np.isfinite(array).all())


@pytest.mark.parametrize(("shape", "axes"), [((3072, 768), (1, 0)), ((768, 3072, 1, 1), (1, 0, 2, 3)),
                                             ((12, 64, 768), (2, 0, 1)), ((300, 400), (1, 0))])
def test_a_strided_weight_is_copied_in_blocks_to_the_same_values(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32).transpose(axes)
    for view in (array, array[::-1], array[1::3]):
        copied = contiguous(view)
        assert copied.flags.c_contiguous and copied.dtype == view.dtype
        np.testing.assert_array_equal(copied, view)


def test_arrays_whose_checksums_collide_are_still_stored_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    import anec.weights

    monkeypatch.setattr(anec.weights.zlib, "crc32", lambda data: 0)  # every array collides
    store = WeightStore()
    a = store.add(np.arange(6, dtype=np.float32).reshape(2, 3), "a")
    again = store.add(np.arange(6, dtype=np.float32).reshape(2, 3), "c")
    b = store.add(np.arange(6, dtype=np.float32).reshape(2, 3) + 1, "b")
    assert again == a and b != a  # equal bytes share one handle; equal checksums alone do not
    np.testing.assert_array_equal(store[b], np.arange(6).reshape(2, 3) + 1)
