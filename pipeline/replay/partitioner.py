"""Target partitions for ``--repartition``: the Java client's murmur2 placement, or round-robin.

kbak computes the partition itself (rather than letting librdkafka do it) so that it knows, before
producing, which target partition each record goes to: delivery reports are then matched to
records by their order within a partition, which keeps per-record bookkeeping cheap. Java
compatibility is checked against Kafka's own ``UtilsTest.testMurmur2`` vectors in the tests.
"""

from __future__ import annotations

import struct
from functools import lru_cache

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the 32-bit MurmurHash2 of ``data`` as a signed Java int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=65_536)
def murmur2_partition(key: bytes, partitions: int) -> int:
    """Where the Java client's default partitioner puts a keyed record: ``toPositive(murmur2) % n``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Partitioner:
    """Picks the target partition per record; None mode keeps the source partition."""

    def __init__(self, mode: str | None) -> None:
        self.mode = mode
        self._next: dict[str, int] = {}

    def __call__(self, topic: str, partitions: int, source_partition: int, key: bytes | None) -> int:
        if self.mode is None:
            return source_partition
        if self.mode == "murmur2" and key is not None:
            return murmur2_partition(key, partitions)
        # round-robin, and records without a key under murmur2 (the Java client spreads those too)
        i = self._next.get(topic, 0)
        self._next[topic] = i + 1
        return i % partitions
