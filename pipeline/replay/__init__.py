"""Replay: archived records back into a Kafka cluster, byte for byte (``kbak replay``).

``replay(ReplayOptions(...)) -> ReplaySummary`` is the Python API; the CLI is a thin layer over it.
Modules: ``options`` (what to replay, flag parsing), ``select`` (reading the rows), ``target``
(target topics), ``partitioner`` (murmur2 / round-robin), ``produce`` (the producer loop),
``checkpoint`` (resumable progress), ``offsets`` (consumer group positions), ``ratelimit``,
``summary``, ``run`` (the orchestration). Consumer group snapshots live in ``pipeline.ingest.groups``.
"""

from pipeline.replay.options import OffsetRange, ReplayOptions, parse_key, parse_offsets, parse_time, parse_topic_map
from pipeline.replay.run import ReplayFailed, replay
from pipeline.replay.summary import ReplaySummary

__all__ = [
    "OffsetRange",
    "ReplayFailed",
    "ReplayOptions",
    "ReplaySummary",
    "parse_key",
    "parse_offsets",
    "parse_time",
    "parse_topic_map",
    "replay",
]
