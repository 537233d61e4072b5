"""Consumer group offsets: snapshotted by ``kbak ingest --snapshot-groups``, restored by ``kbak replay``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from support.kbak_testing import consume_all, produce, run_json, run_kbak

from pipeline.dev.sample import create_topics

GROUP_CONF = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    c.close()


def first_record_per_partition(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, bytes]:
    """What a consumer of ``group`` reads first on each partition when it subscribes (resumes)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", **GROUP_CONF})
    c.subscribe([topic])
    first: dict[int, bytes] = {}
    deadline = time.monotonic() + 60
    while len(first) < partitions and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            first.setdefault(m.partition(), m.value())
    c.close()
    return first


def test_group_offsets_restored_make_a_consumer_resume_at_the_right_record(kafka, tmp_path, topic_name):
    source, target, group = topic_name("grp-src"), topic_name("grp-dst"), topic_name("audit-app")
    create_topics(kafka.bootstrap, {source: 2, target: 2})
    produce(kafka.bootstrap, [{"topic": source, "partition": i % 2, "value": b"src-%d" % i} for i in range(40)])
    commit(kafka.bootstrap, group, {(source, 0): 5, (source, 1): 12})  # the app had read 5 and 12 records
    # the target already holds other records, so target offsets differ from source offsets
    produce(kafka.bootstrap, [{"topic": target, "partition": p, "value": b"old"} for p in (0, 0, 0, 1)])
    lake = tmp_path / "lake"

    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", str(lake), "--once", "--snapshot-groups")
    snaps = sorted((lake / "_kbak" / "groups").glob("*.json"))
    assert len(snaps) == 1
    snap = json.loads(snaps[0].read_text())
    assert snap["groups"][group] == {source: {"0": 5, "1": 12}} and snap["read_at"].endswith("Z")
    assert set(snap["groups"]) == {group}  # not ingest's own group (its offsets only serve lag monitoring)

    summary = run_json(
        "replay",
        "--lake",
        str(lake),
        "-b",
        kafka.bootstrap,
        "--topic-map",
        f"{source}={target}",
        "--restore-groups",
        group,
    )
    mapping = {
        (r["source_partition"], r["source_offset"]): r["target_offset"] for r in summary["groups"][group]["committed"]
    }
    assert mapping == {(0, 5): 3 + 5, (1, 12): 1 + 12}

    src = {(r.partition, r.offset): r.value for r in consume_all(kafka.bootstrap, source, 2)}
    assert first_record_per_partition(kafka.bootstrap, group, target, 2) == {0: src[(0, 5)], 1: src[(1, 12)]}


def test_group_position_past_the_window_and_unknown_group(kafka, tmp_path, topic_name):
    source, target, group = topic_name("grp2-src"), topic_name("grp2-dst"), topic_name("done-app")
    create_topics(kafka.bootstrap, {source: 1})
    produce(kafka.bootstrap, [{"topic": source, "value": b"r-%d" % i} for i in range(10)])
    commit(kafka.bootstrap, group, {(source, 0): 8})
    lake = str(tmp_path / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", lake, "--once", "--snapshot-groups")
    args = ("replay", "--lake", lake, "-b", kafka.bootstrap, "--topic-map", f"{source}={target}", "--create-topics")

    unknown = run_kbak(*args, "--restore-groups", "nobody")
    assert unknown.returncode == 1
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"kbak: error: consumer group 'nobody' is not in any group snapshot in {Path(lake).resolve()} "
        f"(snapshotted groups: "
    )
    assert group in lines[0] and lines[0].endswith("ingest with --snapshot-groups records them)")
    assert target not in AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics

    # replay only offsets 0..5: the group had consumed all of them, so it resumes after the last one
    summary = run_json(*args, "--offsets", "0:0-5", "--restore-groups", group)
    assert summary["groups"][group]["committed"] == [
        {
            "target_topic": target,
            "target_partition": 0,
            "target_offset": 6,
            "source_topic": source,
            "source_partition": 0,
            "source_offset": 8,
        }
    ]
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group})
    assert [tp.offset for tp in c.committed([TopicPartition(target, 0)], timeout=10)] == [6]
    c.close()
