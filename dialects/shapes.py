"""Shape algebra of reshapes and transposes: composing them, and when the two can trade places.

All functions are pure (shapes and permutations in, shapes and permutations out), so the movement
ops' canonicalization patterns and the layout pass can ask them without touching IR, and tests can
check them against numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

Shape = tuple[int, ...]
Perm = tuple[int, ...]


def inverse(perm: Sequence[int]) -> Perm:
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def compose(first: Sequence[int], then: Sequence[int]) -> Perm:
    """The permutation of transposing by `first` and then by `then`."""
    return tuple(first[p] for p in then)


def is_identity(perm: Sequence[int]) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


def swaps_last_two(perm: Sequence[int]) -> bool:
    """True for the transpose a matmul absorbs as a flag: batch axes fixed, the last two swapped."""
    n = len(perm)
    return n >= 2 and tuple(perm) == (*range(n - 2), n - 1, n - 2)


def moves_data(perm: Sequence[int], shape: Sequence[int]) -> bool:
    """False when transposing `shape` by `perm` keeps the order of its non-unit axes (a reshape)."""
    kept = [a for a in perm if shape[a] != 1]
    return kept != sorted(kept)


def permuted(shape: Sequence[int], perm: Sequence[int]) -> Shape:
    return tuple(shape[p] for p in perm)


def reshape_groups(a: Sequence[int], b: Sequence[int]) -> list[tuple[list[int], list[int]]] | None:
    """Pair runs of consecutive non-unit axes of `a` and `b` whose sizes multiply to the same
    product: the finest grouping a row-major reshape from `a` to `b` respects."""
    ia = [i for i, d in enumerate(a) if d != 1]
    ib = [j for j, d in enumerate(b) if d != 1]
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(ia) and j < len(ib):
        ga, gb = [ia[i]], [ib[j]]
        pa, pb = a[ia[i]], b[ib[j]]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                if i == len(ia):
                    return None
                ga.append(ia[i])
                pa *= a[ia[i]]
                i += 1
            else:
                if j == len(ib):
                    return None
                gb.append(ib[j])
                pb *= b[ib[j]]
                j += 1
        groups.append((ga, gb))
    return groups if i == len(ia) and j == len(ib) else None


def _with_units(groups: list[list[int]], rank: int) -> list[list[int]]:
    """Extend groups of non-unit output axes to consecutive ranges from the first group on: unit
    axes join the group after them (trailing ones the last), so a moved group never ends in 1."""
    starts = [groups[0][0]] + [g[-1] + 1 for g in groups[:-1]]
    ends = [g[-1] + 1 for g in groups[:-1]] + [rank]
    return [list(range(a, b)) for a, b in zip(starts, ends)]


def reshape_after_transpose(x: Sequence[int], perm: Sequence[int], out: Sequence[int]) -> tuple[Shape, Perm] | None:
    """(mid, perm2) with reshape(transpose(x, perm), out) == transpose(reshape(x, mid), perm2),
    or None when the reshape merges or splits axes the transpose separates."""
    y = permuted(x, perm)
    groups = reshape_groups(y, out)
    if groups is None:
        return None
    x_nonunit = [i for i, d in enumerate(x) if d != 1]
    position = {axis: k for k, axis in enumerate(x_nonunit)}
    starts = []
    for gy, _ in groups:
        xs = [position[perm[i]] for i in gy]
        if xs != list(range(xs[0], xs[0] + len(xs))):
            return None
        starts.append(xs[0])
    if not groups:
        return tuple(out), tuple(range(len(out)))
    z_groups = _with_units([gz for _, gz in groups], len(out))
    order = sorted(range(len(z_groups)), key=lambda k: starts[k])
    mid_axes = list(range(z_groups[0][0])) + [axis for k in order for axis in z_groups[k]]  # leading units stay
    mid = tuple(out[a] for a in mid_axes)
    where = {axis: i for i, axis in enumerate(mid_axes)}
    return mid, tuple(where[j] for j in range(len(out)))


def transpose_after_reshape(y: Sequence[int], z: Sequence[int], perm: Sequence[int]) -> tuple[Perm, Shape] | None:
    """(perm2, mid) with transpose(reshape(y, z), perm) == reshape(transpose(y, perm2), z[perm]),
    where mid = y[perm2], or None when the transpose splits a group the reshape formed."""
    w = permuted(z, perm)
    found = reshape_after_transpose(w, inverse(perm), y)
    if found is None:
        return None
    mid, perm2 = found  # y == transpose(reshape(w, mid), perm2)
    return inverse(perm2), mid
