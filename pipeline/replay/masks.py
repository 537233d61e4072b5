"""Row filters of a replay, as vectorised masks over a file's rows (no Python per row).

A ``Mask`` takes a table of a data file's columns and returns the boolean array of the rows it keeps;
replay combines them (``all_of``) for a chunk's offset ranges, ``--offsets`` and a resumed run.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

Mask = Callable[[pa.Table], pa.Array]  # a row filter: the rows of a table it keeps


def in_range(t: pa.Table, partition: int, start: int, end: int | None) -> pa.Array:
    mask = pc.and_(pc.equal(t["partition"], partition), pc.greater_equal(t["offset"], start))
    return pc.and_(mask, pc.less_equal(t["offset"], end)) if end is not None else mask


def in_ranges(ranges: list[tuple[int, int, int]]) -> Mask:
    """Rows within a chunk's (partition, first, last) offset ranges: two lookups by partition, two comparisons."""
    size = max(p for p, _lo, _hi in ranges) + 1
    low, high = [1 << 62] * size, [-1] * size  # a partition without a range keeps nothing
    for p, lo, hi in ranges:
        low[p], high[p] = lo, hi
    lows, highs = pa.array(low, pa.int64()), pa.array(high, pa.int64())

    def mask(t: pa.Table) -> pa.Array:
        parts = pc.if_else(pc.less(t["partition"], size), t["partition"], 0)  # out of the lookup: no range
        inside = pc.and_(
            pc.greater_equal(t["offset"], pc.take(lows, parts)), pc.less_equal(t["offset"], pc.take(highs, parts))
        )
        return pc.and_(inside, pc.less(t["partition"], size))

    return mask


def not_done(partition: int, last: int | None, extra: list[int]) -> Mask:
    """Resuming: not a record of ``partition`` that the checkpoint says was delivered."""
    done_set = pa.array([int(x) for x in extra], pa.int64())

    def mask(t: pa.Table) -> pa.Array:
        done = [pc.less_equal(t["offset"], int(last))] if last is not None else []
        if extra:
            done.append(pc.is_in(t["offset"], value_set=done_set))
        return pc.invert(pc.and_(pc.equal(t["partition"], partition), any_of(done)))

    return mask


def any_of(masks) -> pa.Array:
    masks = list(masks)
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_kleene(out, m)
    return out


def all_of(parts: list) -> Mask | None:
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]

    def mask(t: pa.Table) -> pa.Array:
        out = parts[0](t)
        for p in parts[1:]:
            out = pc.and_kleene(out, p(t))
        return out

    return mask
