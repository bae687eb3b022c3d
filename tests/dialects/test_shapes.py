"""The reshape/transpose commutation rules agree with numpy on random shapes."""

from __future__ import annotations

import itertools

import numpy as np

from anec.dialects.shapes import reshape_after_transpose, transpose_after_reshape

SHAPES = [(1, 12, 64, 128), (2, 3, 4), (1, 768, 128), (4, 1, 6), (2, 1, 3, 1, 5), (1, 1, 1)]


def _reshapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """A few row-major reshapes of `shape`: merges of neighbours, splits, unit insertions."""
    out = [shape, (int(np.prod(shape)),), (*shape, 1), (1, *shape)]
    for i in range(len(shape) - 1):
        out.append((*shape[:i], shape[i] * shape[i + 1], *shape[i + 2:]))
    for i, d in enumerate(shape):
        for f in (2, 3, 4, 12, 64):
            if d % f == 0 and d != f:
                out.append((*shape[:i], f, d // f, *shape[i + 1:]))
    return out


CASES = [(x, p, z) for x in SHAPES for p in itertools.permutations(range(len(x))) for z in _reshapes(tuple(np.array(x)[list(p)]))]


def test_reshape_after_transpose_commutes_like_numpy() -> None:
    commuted = 0
    for x, perm, out in CASES:
        data = np.arange(np.prod(x)).reshape(x)
        found = reshape_after_transpose(x, perm, out)
        if found is not None:
            mid, perm2 = found
            np.testing.assert_array_equal(np.transpose(data.reshape(mid), perm2), np.transpose(data, perm).reshape(out))
            commuted += 1
    assert commuted > len(CASES) // 3


def test_transpose_after_reshape_commutes_like_numpy() -> None:
    commuted = 0
    for y in SHAPES:
        for z, t in ((shape, t) for shape in _reshapes(y) for t in itertools.islice(itertools.permutations(range(len(shape))), 24)):
            data = np.arange(np.prod(y)).reshape(y)
            found = transpose_after_reshape(y, z, t)
            if found is not None:
                perm2, mid = found
                expected = np.transpose(data.reshape(z), t)
                np.testing.assert_array_equal(np.transpose(data, perm2).reshape(expected.shape), expected)
                assert tuple(np.transpose(data, perm2).shape) == mid
                commuted += 1
    assert commuted > 100


def test_attention_head_split_commutes() -> None:
    # (1,768,128) seen as (1,128,768) and split into heads: no data movement needed before the transpose.
    mid, perm = reshape_after_transpose((1, 768, 128), (0, 2, 1), (1, 128, 12, 64))
    assert mid == (1, 12, 64, 128) and perm == (0, 3, 1, 2)
    assert reshape_after_transpose((1, 12, 128, 64), (0, 2, 1, 3), (1, 128, 768)) is None
