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
import zlib
from collections.abc import Hashable, Iterable, Iterator, Mapping
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
    f32,
)
from xdsl.ir import Attribute, Operation
from xdsl.utils.hints import isa

from anec.compression import KINDS, CompressedWeight
from anec.context import make_context
from anec.dialects.ane import ConstOp, element_type_of, shape_of, tensor
from anec.dialects.discardable import WEIGHTS_FILE_ATTR
from anec.errors import AnecError
from anec.types import numpy_dtype, xdsl_element_type

PART_SEPARATOR = "~"
"""Separates a compressed weight's handle, kind and part in a saved store."""


BLOCK_ELEMENTS = 1 << 16
"""Elements per block of a strided copy (`contiguous`): 256 KB of float32 stays in the L2 cache."""


def contiguous(array: np.ndarray) -> np.ndarray:
    """`array` in C order. A transposed weight (the layout pass's (K, N) → (N, K)) is copied in blocks
    along the axis read with the widest stride: numpy's own copy walks the source column by column
    and is ~10x slower for a 768 × 3072 matrix."""
    if array.flags.c_contiguous or array.ndim < 2 or array.size < BLOCK_ELEMENTS:
        return np.ascontiguousarray(array)
    out = np.empty(array.shape, array.dtype)
    source, target = array.squeeze(), out.squeeze()  # unit axes would keep numpy's copy from blocking
    axis = max(range(source.ndim), key=lambda a: abs(source.strides[a]))
    step = max(1, BLOCK_ELEMENTS // (source.size // source.shape[axis]))
    for start in range(0, source.shape[axis], step):
        block = (slice(None),) * axis + (slice(start, start + step),)
        target[block] = source[block]
    return out


class WeightStore:
    """Named, read-only numpy arrays (views, not copies, of what was added). Handles are readable,
    unique and stable."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._compressed: dict[str, CompressedWeight] = {}
        """Handles stored compressed; `_arrays` caches their fp16 expansion once read."""
        self._next_suffix: dict[str, int] = {}
        self._derivations: dict[tuple[str, Hashable], tuple[str, str | None, tuple[int, ...]]] = {}
        """(source handle, transform) -> (handle, stored form, shape) of what `OpBuilder.derive` made of it."""
        self._by_content: dict[tuple[str, tuple[int, ...], int], str] = {}
        """The handle `add` gave each distinct array (dtype, shape, CRC-32 of its bytes; a match is confirmed byte for byte)."""
        """Per name, where `_fresh` resumes counting (a thousand weights named alike cost no rescans)."""

    def _fresh(self, name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.:/-]", "_", name) or "w"
        handle, n = base, self._next_suffix.get(base, 1)
        while handle in self:
            handle, n = f"{base}#{n}", n + 1
        self._next_suffix[base] = n
        return handle

    def add(self, array: np.ndarray, name: str = "w") -> str:
        """Store `array` under a handle derived from `name`; returns the handle. An array equal to one
        added before (dtype, shape and bytes) gets that one's handle, so the weights an unrolled recurrence
        repeats at every step, and the copies passes derive from them, are stored once."""
        # a view: read-only here, the caller's array untouched (reshape: ascontiguousarray makes 0-d arrays 1-d)
        array = contiguous(np.asarray(array)).reshape(np.shape(array)).view()
        data = array.reshape(-1).view(np.uint8)
        key = (array.dtype.str, array.shape, zlib.crc32(data.data))  # 5x blake2b's speed; a match is confirmed byte for byte
        if (same := self._by_content.get(key)) is not None and same in self._arrays \
                and np.array_equal(self._arrays[same].reshape(-1).view(np.uint8), data):
            return same
        handle = self._fresh(name)
        array.flags.writeable = False
        self._arrays[handle] = array
        self._by_content[key] = handle
        return handle

    def derivation(self, source: str, key: Hashable) -> tuple[str, str | None, tuple[int, ...]] | None:
        """What `source` transformed by `key` was stored as (handle, compressed form, shape), if it still is."""
        known = self._derivations.get((source, key))
        return known if known is not None and known[0] in self else None

    def remember_derivation(self, source: str, key: Hashable, handle: str, stored: str | None, shape: tuple[int, ...]) -> None:
        self._derivations[(source, key)] = (handle, stored, shape)

    def add_compressed(self, weight: CompressedWeight, name: str = "w") -> str:
        """Store a compressed weight; reading its handle gives its fp16 value."""
        handle = self._fresh(name)
        self._compressed[handle] = weight
        return handle

    def compressed(self, handle: str) -> CompressedWeight | None:
        """The stored form of `handle` when it is compressed, else None."""
        return self._compressed.get(handle)

    def stored_nbytes(self, handle: str) -> int:
        """The bytes `handle` occupies as stored (compressed or not)."""
        weight = self._compressed.get(handle)
        return weight.stored_nbytes if weight is not None else self[handle].nbytes

    def __getitem__(self, handle: str) -> np.ndarray:
        if handle not in self._arrays and handle in self._compressed:
            self._arrays[handle] = self._compressed[handle].fp16()
        try:
            return self._arrays[handle]
        except KeyError:
            raise AnecError(f"weight {handle!r} is not in the weight store", why="the IR refers to a weight that was never loaded",
                            hint="pass the module's .weights.npz file (anec opt --weights) or re-import the model") from None

    def __contains__(self, handle: object) -> bool:
        return handle in self._arrays or handle in self._compressed

    def __len__(self) -> int:
        return len(self._arrays.keys() | self._compressed.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._arrays, *self._compressed]))

    @property
    def nbytes(self) -> int:
        """The bytes the weights occupy as stored."""
        return sum(self.stored_nbytes(h) for h in self)

    def copy(self) -> WeightStore:
        """A store holding the same (read-only, shared) arrays that can be pruned on its own."""
        other = WeightStore()
        other._arrays = dict(self._arrays)
        other._compressed = dict(self._compressed)
        other._next_suffix = dict(self._next_suffix)
        other._by_content = dict(self._by_content)
        other._derivations = dict(self._derivations)
        return other

    def prune(self, keep: Iterable[str]) -> None:
        """Drop every array not named in `keep` (after passes replaced constants)."""
        wanted = set(keep)
        for table in (self._arrays, self._compressed):
            for handle in [h for h in table if h not in wanted]:
                del table[handle]

    def save(self, path: str | Path) -> None:
        """Write an uncompressed `.npz`, arrays in handle order, so equal stores give equal files. A
        compressed weight is stored as its parts, `HANDLE~KIND~PART` (`~` never occurs in a handle)."""
        entries = {h: a for h, a in self._arrays.items() if h not in self._compressed}
        for handle, weight in self._compressed.items():
            entries |= {f"{handle}{PART_SEPARATOR}{weight.KIND}{PART_SEPARATOR}{part}": array
                        for part, array in weight.parts().items()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for handle in sorted(entries):
                info = zipfile.ZipInfo(f"{handle}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w") as f:
                    np.lib.format.write_array(f, entries[handle], allow_pickle=False)

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
        parts: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        try:
            with np.load(path, allow_pickle=False) as data:
                for entry in data.files:
                    array = data[entry]
                    array.flags.writeable = False
                    if PART_SEPARATOR in entry:
                        handle, kind, part = entry.split(PART_SEPARATOR)
                        parts.setdefault((handle, kind), {})[part] = array
                    else:
                        store._arrays[entry] = array
            for (handle, kind), arrays in parts.items():
                store._compressed[handle] = KINDS[kind].from_parts(arrays)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
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
    store = store if store is not None else store_of(op)
    array = store[op.handle.data]
    if tuple(array.shape) != shape_of(op.result):
        raise AnecError(f"weight {op.handle.data!r} has shape {list(array.shape)}, the IR expects {list(shape_of(op.result))}")
    weight = store.compressed(op.handle.data)
    stored = op.stored.data if op.stored is not None else None
    if (weight.form if weight is not None else None) != stored:
        raise AnecError(f"weight {op.handle.data!r} is stored {weight.form if weight is not None else 'uncompressed'}, "
                        f"the IR says {stored or 'uncompressed'}", hint="the .weights.npz file belongs to another module")
    return array.astype(numpy_dtype(element_type_of(op.result)), copy=False) if weight is not None else array


def compressed_of(op: ConstOp, store: WeightStore | None = None) -> CompressedWeight | None:
    """The stored form of a constant that is kept compressed, else None."""
    if op.stored is None or op.handle is None:
        return None
    return (store if store is not None else store_of(op)).compressed(op.handle.data)


def make_compressed_const(weight: CompressedWeight, name: str, store: WeightStore, element_type: Attribute) -> ConstOp:
    """A constant whose weight is stored compressed; passes read its (fp16-exact) value as `element_type`."""
    return ConstOp(tensor(weight.shape, element_type), handle=store.add_compressed(weight, name), stored=weight.form)


INLINE_LIMIT = 16
"""Constants with at most this many elements are printed inline; larger ones go to the store."""


def make_const(array: np.ndarray | CompressedWeight, name: str, store: WeightStore, element_type: Attribute | None = None) -> ConstOp:
    """A constant for `array`: inline when tiny and finite, otherwise a handle into `store`; a
    compressed weight stays compressed (`make_compressed_const`, f32 unless `element_type` says).

    Non-finite values stay out of line because xDSL 0.74 prints them in `dense<…>` as hex bit
    patterns but parses those back as integers (xdslproject/xdsl#3370), so they would not round-trip.
    """
    if isinstance(array, CompressedWeight):
        return make_compressed_const(array, name, store, element_type or f32)
    element_type = element_type or xdsl_element_type(array.dtype)
    array = np.asarray(array, dtype=numpy_dtype(element_type))
    typ = tensor(array.shape, element_type)
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
