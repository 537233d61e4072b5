"""``kbak replay`` through the CLI against the real broker: fidelity, selection, mapping, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from support.kbak_testing import JAVA_MURMUR2, consume_all, content, produce, run_json, run_kbak

from pipeline.core.storage import Lake
from pipeline.dev.sample import create_topics
from pipeline.dev.servers import free_port
from pipeline.replay import ReplayOptions
from pipeline.replay.select import Selection

DAY = 86_400_000
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
PARTITIONS = 4


def source_records(topic: str) -> list[dict]:
    """Tricky records over four days; timestamps jump back and forth so one partition spans days."""
    recs = [
        {"topic": topic, "partition": 0, "key": b"\x00\xff\x10binary", "value": b"\x00\x01\x02", "timestamp": T0 + DAY},
        {"topic": topic, "partition": 0, "key": None, "value": b"no key", "timestamp": T0 + 2 * DAY},
        {"topic": topic, "partition": 1, "key": b"k", "value": None, "timestamp": T0 + DAY + 5},  # tombstone
        {"topic": topic, "partition": 1, "key": b"k", "value": b"", "timestamp": T0 + DAY + 6},  # empty, not null
        {"topic": topic, "partition": 2, "key": b"", "value": b"empty key", "timestamp": T0 + DAY + 7},
        {
            "topic": topic,
            "partition": 2,
            "key": b"h",
            "value": b"headers",
            "headers": [("dup", b"1"), ("dup", b"2"), ("null", None), ("empty", b""), ("\u00e9t\u00e9", b"\xff")],
            "timestamp": T0 + DAY + 8,
        },
        {"topic": topic, "partition": 3, "key": b"edge-from", "value": b"x", "timestamp": T0 + DAY},  # == --from
        {"topic": topic, "partition": 3, "key": b"edge-to", "value": b"y", "timestamp": T0 + 3 * DAY - 1},  # == --to
        {"topic": topic, "partition": 3, "key": b"after", "value": b"z", "timestamp": T0 + 3 * DAY},  # excluded
        {"topic": topic, "partition": 3, "key": b"before", "value": b"w", "timestamp": T0 + DAY - 1},  # excluded
    ]
    for i in range(240):
        day = (i * 7) % 4  # back and forth between days: a partition's offsets spread over date files
        recs.append(
            {
                "topic": topic,
                "partition": i % PARTITIONS,
                "key": f"customer-{i % 13:04d}".encode(),
                "value": json.dumps({"customer_id": f"customer-{i % 13:04d}", "n": i}).encode(),
                "headers": [("trace", str(i).encode()), ("trace", None)] if i % 3 else [],
                "timestamp": T0 + day * DAY + i * 1000,
            }
        )
    return recs


@pytest.fixture(scope="module")
def archive(kafka, tmp_path_factory):
    """One archived source topic (ingested in small flushes: several files per partition and day)."""
    topic = f"src-{tmp_path_factory.mktemp('n').name[-6:]}"
    create_topics(kafka.bootstrap, {topic: PARTITIONS})
    produce(kafka.bootstrap, source_records(topic))
    lake = str(tmp_path_factory.mktemp("replay") / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", lake, "--once", "--flush-records", "60")
    source = consume_all(kafka.bootstrap, topic, PARTITIONS)
    return {"topic": topic, "lake": lake, "source": source}


def replay(archive, *args: str) -> dict:
    return run_json("replay", "--lake", archive["lake"], "--topic", archive["topic"], *args)


def test_window_replay_is_byte_exact(kafka, archive, topic_name):
    target = topic_name("window")
    frm, to = T0 + DAY, T0 + 3 * DAY - 1
    summary = replay(
        archive,
        "-b",
        kafka.bootstrap,
        "--from",
        str(frm),
        "--to",
        "2024-06-03T23:59:59.999Z",  # the same instant as ISO-8601
        "--topic-map",
        f"{archive['topic']}={target}",
        "--create-topics",
    )
    expected = [r for r in archive["source"] if frm <= r.timestamp_ms <= to]
    got = consume_all(kafka.bootstrap, target, PARTITIONS)

    assert summary["status"] == "complete"
    assert summary["created_topics"] == [target]
    created = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(target, timeout=10).topics[target]
    assert len(created.partitions) == PARTITIONS  # like the source
    assert summary["records"] == len(expected) == len(got)
    assert content(got) == content(expected)  # key, value, headers (order, dups, nulls), timestamp, partition, order
    assert {r.key for r in got} >= {b"edge-from", b"edge-to"} and not {b"after", b"before"} & {r.key for r in got}
    assert summary["first_timestamp"] == "2024-06-02T00:00:00.000Z"
    assert summary["last_timestamp"] == "2024-06-03T23:59:59.999Z"
    per_partition = {int(p): s["records"] for p, s in summary["topics"][target].items()}
    assert per_partition == {p: sum(1 for r in expected if r.partition == p) for p in range(PARTITIONS)}


def test_filters_key_where_offsets_and_partition(kafka, archive, topic_name):
    target = topic_name("filters")
    create_topics(kafka.bootstrap, {target: PARTITIONS})
    common = ("-b", kafka.bootstrap, "--topic-map", f"{archive['topic']}={target}")
    src = archive["source"]

    by_key = replay(archive, *common, "--key", "customer-0003")
    by_hex = replay(archive, *common, "--key", "hex:00ff1062696e617279")  # b"\x00\xff\x10binary"
    by_where = replay(archive, *common, "--where", "value LIKE '%customer-0007%'", "--partition", "2")
    by_offsets = replay(archive, *common, "--offsets", "1:3-5")

    got = consume_all(kafka.bootstrap, target, PARTITIONS)
    groups = [
        [r for r in src if r.key == b"customer-0003"],
        [r for r in src if r.key == b"\x00\xff\x10binary"],
        [r for r in src if r.partition == 2 and b"customer-0007" in (r.value or b"")],
        [r for r in src if r.partition == 1 and 3 <= r.offset <= 5],
    ]
    assert [s["records"] for s in (by_key, by_hex, by_where, by_offsets)] == [len(g) for g in groups]
    assert [len(g) > 0 for g in groups] == [True] * 4 and len(groups[3]) == 3
    # the four runs appended to the same target, each in source offset order per partition
    expected = [t for p in range(PARTITIONS) for g in groups for t in content([r for r in g if r.partition == p])]
    assert content(got) == expected


def test_selection_reads_each_partition_in_offset_order_in_small_chunks(archive):
    """The sort runs per chunk of a topic (an offset range of each partition); tiny chunks and batches
    must still give every selected row once, in offset order per partition (rows of one partition
    span several date files)."""
    options = ReplayOptions(
        lake=Lake.at(archive["lake"]),
        topics=[archive["topic"]],
        dry_run=True,
        chunk_rows=7,
        batch_rows=5,
        where='"offset" % 3 <> 1',
    )
    selection = Selection(options)
    try:
        got = [
            (t, p, o)
            for b in selection.batches()
            for t, p, o in zip(b["topic"].to_pylist(), b["partition"].to_pylist(), b["offset"].to_pylist(), strict=True)
        ]
    finally:
        selection.close()
    expected = [(r.topic, r.partition, r.offset) for r in archive["source"] if r.offset % 3 != 1]
    assert sorted(got) == sorted(expected) and len(set(got)) == len(got)  # every selected row, once
    for partition in {p for _t, p, _o in expected}:
        mine = [row for row in got if row[1] == partition]
        assert mine == sorted(mine)  # each partition in offset order
    # a topic that fits in one chunk comes out in (partition, offset) order
    options.chunk_rows = len(expected)
    selection = Selection(options)
    try:
        whole = [
            (t, p, o)
            for b in selection.batches()
            for t, p, o in zip(*(b[c].to_pylist() for c in ("topic", "partition", "offset")), strict=True)
        ]
    finally:
        selection.close()
    assert whole == sorted(expected)


def test_offset_headers_add_provenance(kafka, archive, topic_name):
    target = topic_name("prov")
    summary = replay(
        archive,
        "-b",
        kafka.bootstrap,
        "--topic-map",
        f"{archive['topic']}={target}",
        "--create-topics",
        "--partition",
        "2",
        "--offset-headers",
    )
    got = consume_all(kafka.bootstrap, target, PARTITIONS)
    src = [r for r in archive["source"] if r.partition == 2]
    assert summary["records"] == len(got) == len(src)
    cluster = got[0].headers[-1][1]
    for g, s in zip(got, src, strict=True):
        assert g.headers[: len(s.headers)] == s.headers  # originals first, untouched
        assert g.headers[len(s.headers) :] == (
            ("kbak.source.topic", archive["topic"].encode()),
            ("kbak.source.partition", b"2"),
            ("kbak.source.offset", str(s.offset).encode()),
            ("kbak.source.timestamp", str(s.timestamp_ms).encode()),
            ("kbak.source.cluster", cluster),
        )
    assert cluster


def test_repartition_murmur2_places_keys_like_the_java_client(kafka, tmp_path, topic_name):
    source, target = topic_name("m2src"), topic_name("m2dst")
    create_topics(kafka.bootstrap, {source: 6, target: 5})
    keys = list(JAVA_MURMUR2)
    produce(
        kafka.bootstrap,
        [{"topic": source, "partition": i % 6, "key": k, "value": b"v%d" % i} for i, k in enumerate(keys * 3)],
    )
    lake = str(tmp_path / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", lake, "--once")

    summary = run_json(
        "replay", "--lake", lake, "-b", kafka.bootstrap, "--topic-map", f"{source}={target}", "--repartition", "murmur2"
    )
    got = consume_all(kafka.bootstrap, target, 5)
    assert summary["records"] == len(got) == 21
    for r in got:
        assert r.partition == (JAVA_MURMUR2[r.key] & 0x7FFFFFFF) % 5, r.key
    src = consume_all(kafka.bootstrap, source, 6)
    for k in keys:  # each key's records keep their relative order (they came from one source partition each)
        assert [r.value for r in got if r.key == k] == [r.value for r in src if r.key == k]


def test_repartition_round_robin_and_too_few_partitions(kafka, archive, topic_name):
    target = topic_name("rr")
    create_topics(kafka.bootstrap, {target: 3})
    args = ("-b", kafka.bootstrap, "--topic-map", f"{archive['topic']}={target}")

    refused = run_kbak("replay", "--lake", archive["lake"], "--topic", archive["topic"], *args)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"kbak: error: target topic '{target}' has 3 partition(s) but the replay keeps source partitions up to 3 "
        f"of '{archive['topic']}'; pass --repartition murmur2 or --repartition round-robin"
    ]
    assert consume_all(kafka.bootstrap, target, 3) == []  # nothing produced

    summary = replay(archive, *args, "--repartition", "round-robin", "--partition", "0")
    got = consume_all(kafka.bootstrap, target, 3)
    src = [r for r in archive["source"] if r.partition == 0]
    assert summary["records"] == len(got) == len(src)
    counts = [sum(1 for r in got if r.partition == p) for p in range(3)]
    assert max(counts) - min(counts) <= 1
    # round-robin deals records out in source order: record i goes to partition i % 3
    placed = sorted(got, key=lambda r: (r.offset, r.partition))
    assert [r.value for r in placed] == [r.value for r in src]


def test_dry_run_produces_nothing(kafka, archive, topic_name):
    target = topic_name("dry")
    summary = replay(
        archive,
        "-b",
        kafka.bootstrap,
        "--dry-run",
        "--from",
        str(T0 + DAY),
        "--to",
        str(T0 + 3 * DAY - 1),
        "--topic-map",
        f"{archive['topic']}={target}",
        "--create-topics",
    )
    expected = [r for r in archive["source"] if T0 + DAY <= r.timestamp_ms <= T0 + 3 * DAY - 1]
    assert summary["dry_run"] is True and summary["records"] == len(expected)
    plan = {p["partition"]: p for p in summary["plan"]}
    for part, info in plan.items():
        mine = [r for r in expected if r.partition == part]
        assert info["records"] == len(mine)
        assert (info["first_offset"], info["last_offset"]) == (min(r.offset for r in mine), max(r.offset for r in mine))
        assert info["bytes"] == sum(len(r.key or b"") + len(r.value or b"") for r in mine)
    assert target not in AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics

    text = run_kbak("replay", "--lake", archive["lake"], "--topic", archive["topic"], "--dry-run", check=True).stdout
    assert "nothing was produced" in text and f"{archive['topic']}[3]:" in text


BAD_INPUT = [
    (["--from", "2024-06-03", "--to", "2024-06-02"], "the window ends before it starts"),
    (["--from", "last tuesday"], "--from 'last tuesday' is neither epoch milliseconds nor an ISO-8601 time"),
    (["--to", "2024-13-45"], "--to '2024-13-45' is neither epoch milliseconds nor an ISO-8601 time"),
    (["--topic", "no-such-topic"], "--topic: topic 'no-such-topic' is not in the archive"),
    (["--where", "value LIKE"], "--where is not valid SQL"),
    (["--where", "no_such_column = 1"], "--where names an unknown column"),
    (["--as-of", "999"], "has no version '999'"),
]


def test_bad_input_fails_before_producing(kafka, archive, topic_name):
    target = topic_name("bad")
    create_topics(kafka.bootstrap, {target: PARTITIONS})
    for args, message in BAD_INPUT:
        topic_args = [] if "--topic" in args else ["--topic", archive["topic"]]
        mapping = ["--topic-map", f"{archive['topic']}={target}"]
        proc = run_kbak("replay", "--lake", archive["lake"], "-b", kafka.bootstrap, *topic_args, *mapping, *args)
        assert proc.returncode == 1, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kbak: error: ") and message in lines[0], (args, proc.stderr)
        assert proc.stdout == "", args
    assert consume_all(kafka.bootstrap, target, PARTITIONS) == []  # none of them produced anything


def test_unreachable_target_fails_before_producing(archive, tmp_path):
    ckpt = tmp_path / "ckpt.json"
    unreachable = f"127.0.0.1:{free_port()}"
    proc = run_kbak(
        "replay", "--lake", archive["lake"], "-b", unreachable, "--checkpoint", str(ckpt), "--connect-timeout", "2"
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kbak: error: cannot reach Kafka at {unreachable} within 2s")
    assert not ckpt.exists()  # nothing started, nothing recorded


def test_as_of_reads_the_table_as_it_was(kafka, tmp_path, topic_name):
    source, target = topic_name("asof"), topic_name("asofdst")
    create_topics(kafka.bootstrap, {source: 1})
    lake = str(tmp_path / "lake")
    ingest = ("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", lake, "--once")
    produce(kafka.bootstrap, [{"topic": source, "value": b"first-%d" % i} for i in range(5)])
    first = run_json(*ingest)["versions"][1]
    produce(kafka.bootstrap, [{"topic": source, "value": b"second-%d" % i} for i in range(4)])
    run_json(*ingest)

    summary = run_json(
        "replay",
        "--lake",
        lake,
        "-b",
        kafka.bootstrap,
        "--as-of",
        str(first),
        "--topic-map",
        f"{source}={target}",
        "--create-topics",
    )
    assert summary["table_version"] == first
    assert [r.value for r in consume_all(kafka.bootstrap, target, 1)] == [b"first-%d" % i for i in range(5)]

    # Issue 14.13: a time with a space (as people type it) and a bare date work as for --from
    entry = (Path(lake) / "_delta_log" / f"{first:020d}.json").read_text().splitlines()
    committed = next(json.loads(x)["commitInfo"]["timestamp"] for x in entry if "commitInfo" in x)
    typed = datetime.fromtimestamp(committed / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    dry = ("replay", "--lake", lake, "--dry-run", "--as-of")
    assert run_json(*dry, typed)["table_version"] == first
    later = run_kbak(*dry, "2099-01-01", "--json", check=True)
    assert json.loads(later.stdout)["table_version"] == first + 1
    assert later.stderr.startswith("kbak: note: --as-of 2099-01-01 is after the newest version")


def test_config_file_in_the_oso_restore_shape(kafka, archive, topic_name, tmp_path):
    target = topic_name("cfg")
    cfg = tmp_path / "restore.yaml"
    cfg.write_text(
        f"""
mode: restore
target:
  bootstrap_servers: ["${{TARGET_BOOTSTRAP}}"]
storage:
  backend: filesystem
  path: {archive["lake"]}
restore:
  time_window_start: {T0 + DAY}
  time_window_end: {T0 + 2 * DAY}
  topics: [{archive["topic"]}]
  topic_mapping:
    {archive["topic"]}: {target}
  create_topics: true
"""
    )
    summary = run_json("replay", "--config", str(cfg), env={"TARGET_BOOTSTRAP": kafka.bootstrap})
    expected = [r for r in archive["source"] if T0 + DAY <= r.timestamp_ms <= T0 + 2 * DAY]
    assert summary["records"] == len(expected)
    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(expected)

    cfg.write_text(cfg.read_text().replace("create_topics: true", "create_topic: true"))
    proc = run_kbak("replay", "--config", str(cfg), env={"TARGET_BOOTSTRAP": kafka.bootstrap})
    assert proc.returncode == 1 and "unknown key 'restore.create_topic'" in proc.stderr
