"""Statements handled a chunk at a time: forecast refresh reads and writes REFRESH_CHUNK of them at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

REFRESH_CHUNK = 2000


def sorted_chunks(queryids: Sequence[int]) -> Iterator[list[int]]:
    """Contiguous runs of the sorted ids: each chunk's ids span a key range no other chunk overlaps."""
    ids = sorted(queryids)
    for i in range(0, len(ids), REFRESH_CHUNK):
        yield ids[i : i + REFRESH_CHUNK]


def in_chunk(alias: str, ids: str = "$2") -> str:
    """A filter on ``alias``.queryid to the ids of a bigint[] parameter that a (server_id, queryid) key can
    scan: the range from the smallest id to the largest, then the ids themselves. With sorted chunks each
    chunk reads its own statements. A plain "= ANY" filter, or a join to the ids, read every statement of
    the server for every chunk: quadratic in the statements tracked (bench_statements)."""
    return (
        f"{alias}.queryid BETWEEN (SELECT min(i) FROM unnest({ids}::bigint[]) i)"
        f" AND (SELECT max(i) FROM unnest({ids}::bigint[]) i) AND {alias}.queryid = ANY ({ids}::bigint[])"
    )
