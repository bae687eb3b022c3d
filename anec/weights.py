"""Out-of-line weights: IR holds a short handle (`ane.const "conv1.weight"`), arrays live here.

Keeping weights out of the IR keeps BERT-size modules fast to build, print and transform. A store is
bound to the module that uses it (`attach` / `store_of`); passes that make new constants (folded
batch-norm, fp16 copies, split kernels) add them to the same store. A store can be saved next to a
textual module (`.weights.npz`) so printed IR can be parsed and run again.
"""

from __future__ import annotations

import re
import weakref
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import (
    AnyFloat,
    BytesAttr,
    DenseIntOrFPElementsAttr,
    IntegerType,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Operation
from xdsl.utils.hints import isa

from anec.context import make_context
from anec.dialects.ane import ConstOp, shape_of
from anec.dialects.discardable import WEIGHTS_FILE_ATTR
from anec.errors import AnecError
from anec.types import numpy_dtype, xdsl_element_type

"""Module attribute naming the `.npz` file that holds a parsed module's weights."""


class WeightStore:
    """Named, read-only numpy arrays (views, not copies, of what was added). Handles are readable,
    unique and stable."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def add(self, array: np.ndarray, name: str = "w") -> str:
        """Store `array` under a handle derived from `name`; returns the handle."""
        base = re.sub(r"[^A-Za-z0-9_.:/-]", "_", name) or "w"
        handle, n = base, 1
        while handle in self._arrays:
            handle, n = f"{base}#{n}", n + 1
        # a view: read-only here, the caller's array untouched (reshape: ascontiguousarray makes 0-d arrays 1-d)
        array = np.ascontiguousarray(array).reshape(np.shape(array)).view()
        array.flags.writeable = False
        self._arrays[handle] = array
        return handle

    def __getitem__(self, handle: str) -> np.ndarray:
        try:
            return self._arrays[handle]
        except KeyError:
            raise AnecError(f"weight {handle!r} is not in the weight store", why="the IR refers to a weight that was never loaded",
                            hint="pass the module's .weights.npz file (anec opt --weights) or re-import the model") from None

    def __contains__(self, handle: object) -> bool:
        return handle in self._arrays

    def __len__(self) -> int:
        return len(self._arrays)

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def copy(self) -> WeightStore:
        """A store holding the same (read-only, shared) arrays that can be pruned on its own."""
        other = WeightStore()
        other._arrays = dict(self._arrays)
        return other

    def prune(self, keep: Iterable[str]) -> None:
        """Drop every array not named in `keep` (after passes replaced constants)."""
        wanted = set(keep)
        for handle in [h for h in self._arrays if h not in wanted]:
            del self._arrays[handle]

    def save(self, path: str | Path) -> None:
        """Write an uncompressed `.npz`, arrays in handle order, so equal stores give equal files."""
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for handle in sorted(self._arrays):
                info = zipfile.ZipInfo(f"{handle}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w") as f:
                    np.lib.format.write_array(f, self._arrays[handle], allow_pickle=False)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> WeightStore:
        """A store holding `arrays` under exactly the given handles (a decoded artifact's weights)."""
        store = cls()
        for handle, array in arrays.items():
            store._arrays[handle] = np.asarray(array)
            store._arrays[handle].flags.writeable = False
        return store

    @classmethod
    def load(cls, path: str | Path) -> WeightStore:
        store = cls()
        try:
            with np.load(path, allow_pickle=False) as data:
                for handle in data.files:
                    store._arrays[handle] = data[handle]
                    store._arrays[handle].flags.writeable = False
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise AnecError(f"cannot read weights from {path}", why=str(e), hint="the file must be a .npz written by anec") from None
        return store


_STORES: weakref.WeakKeyDictionary[ModuleOp, WeightStore] = weakref.WeakKeyDictionary()


def attach(module: ModuleOp, store: WeightStore) -> WeightStore:
    """Bind `store` to `module`; every later `store_of` on the module or its ops finds it."""
    _STORES[module] = store
    return store


def store_of(op: Operation) -> WeightStore:
    """The weight store of the module that holds `op` (loading `ane.weights_file` if needed)."""
    module = op if isinstance(op, ModuleOp) else op.get_toplevel_object()
    if not isinstance(module, ModuleOp):
        raise AnecError(f"{op.name} is not inside a module, so it has no weight store")
    if module not in _STORES:
        path = module.attributes.get(WEIGHTS_FILE_ATTR)
        _STORES[module] = WeightStore.load(path.data) if isinstance(path, StringAttr) else WeightStore()
    return _STORES[module]


def clone_module(module: ModuleOp) -> ModuleOp:
    """A deep copy of `module` that shares its weight store (for before/after comparisons)."""
    copy = module.clone()
    attach(copy, store_of(module))
    return copy


def copy_module(module: ModuleOp) -> ModuleOp:
    """A deep copy of `module` with its own weight store (passes prune and add weights), to be
    lowered on its own: for another chip, or by the runtime without touching the caller's module."""
    copy = module.clone()
    attach(copy, store_of(module).copy())
    return copy


def const_value(op: ConstOp, store: WeightStore | None = None) -> np.ndarray:
    """The array a constant holds, from its inline value or the weight store."""
    if op.value is not None:
        return dense_to_numpy(op.value)
    assert op.handle is not None
    array = (store or store_of(op))[op.handle.data]
    if tuple(array.shape) != shape_of(op.result):
        raise AnecError(f"weight {op.handle.data!r} has shape {list(array.shape)}, the IR expects {list(shape_of(op.result))}")
    return array


INLINE_LIMIT = 16
"""Constants with at most this many elements are printed inline; larger ones go to the store."""


def make_const(array: np.ndarray, name: str, store: WeightStore, element_type: Attribute | None = None) -> ConstOp:
    """A constant for `array`: inline when tiny and finite, otherwise a handle into `store`.

    Non-finite values stay out of line because xDSL 0.74 prints them in `dense<…>` as hex bit
    patterns but parses those back as integers (xdslproject/xdsl#3370), so they would not round-trip.
    """
    element_type = element_type or xdsl_element_type(array.dtype)
    array = np.asarray(array, dtype=numpy_dtype(element_type))
    typ = TensorType(element_type, list(array.shape))
    if array.size <= INLINE_LIMIT and (array.dtype.kind != "f" or np.isfinite(array).all()):
        return ConstOp(typ, value=numpy_to_dense(array, typ))
    return ConstOp(typ, handle=store.add(array, name))


def numpy_to_dense(array: np.ndarray, typ: TensorType) -> DenseIntOrFPElementsAttr:
    if not isa(typ, TensorType[IntegerType | AnyFloat]):
        raise AnecError(f"no inline constant of type {typ}", hint="constants hold integers or floats")
    data = np.ascontiguousarray(array, dtype=numpy_dtype(typ.element_type))
    if data.dtype == np.bool_:
        data = data.astype(np.int8)
    return DenseIntOrFPElementsAttr(typ, BytesAttr(data.astype(data.dtype.newbyteorder("<")).tobytes()))


def dense_to_numpy(attr: DenseIntOrFPElementsAttr) -> np.ndarray:
    dtype = numpy_dtype(attr.get_element_type())
    raw_dtype = np.int8 if dtype == np.bool_ else dtype
    flat = np.frombuffer(attr.data.data, dtype=np.dtype(raw_dtype).newbyteorder("<")).astype(raw_dtype)
    shape = attr.get_shape()
    if flat.size == 1 and int(np.prod(shape)) != 1:
        flat = np.broadcast_to(flat, (int(np.prod(shape)),))
    return flat.reshape(shape).astype(dtype)


def load_module(path: str | Path, ctx=None) -> ModuleOp:
    """Parse a textual module and attach its weights (`ane.weights_file`, relative to the file)."""
    from xdsl.parser import Parser

    path = Path(path)
    module = Parser(ctx or make_context(), path.read_text(), str(path)).parse_module()
    attach_weights_file(module, path.parent)
    return module


def attach_weights_file(module: ModuleOp, base: Path) -> None:
    """Bind the store that `ane.weights_file` names, resolved relative to `base`."""
    name = module.attributes.get(WEIGHTS_FILE_ATTR)
    if isinstance(name, StringAttr) and module not in _STORES:
        attach(module, WeightStore.load(base / name.data))
