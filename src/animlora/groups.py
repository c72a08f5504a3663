"""Union-find: which items a set of pairs joins into groups (segment's shot pass, the dataset's
parts of one character)."""

from __future__ import annotations

from collections.abc import Iterable


def join_groups(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Union-find over ``range(n)``: the groups that ``pairs`` join, each in ascending order,
    ordered by their first member (every index in exactly one group)."""
    parent = list(range(n))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in pairs:
        parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).append(k)
    return sorted(groups.values(), key=lambda m: m[0])
