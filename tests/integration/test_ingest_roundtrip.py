"""Byte-exact round trip of tricky records through ``kbak ingest`` against the real broker."""

from __future__ import annotations

from support.kbak_testing import archive_rows, consume_all, produce, run_json, run_kbak

from pipeline.dev.sample import create_topics

PARTITIONS = 12


def tricky_records(topic: str) -> list[dict]:
    base = 1_700_000_000_000
    recs = [
        {"topic": topic, "partition": 0, "key": b"\x00\xff\x10binary", "value": b"\x00\x01\x02"},
        {"topic": topic, "partition": 0, "key": None, "value": b"no key"},
        {"topic": topic, "partition": 1, "key": b"k", "value": None},  # tombstone
        {"topic": topic, "partition": 1, "key": b"k", "value": b""},  # empty, not null
        {"topic": topic, "partition": 2, "key": b"", "value": b"empty key"},
        {
            "topic": topic,
            "partition": 2,
            "key": b"h",
            "value": b"headers",
            "headers": [("dup", b"1"), ("dup", b"2"), ("null", None), ("empty", b""), ("\u00e9t\u00e9", b"\xff")],
        },
        {"topic": topic, "partition": 3, "key": b"late", "value": b"x", "timestamp": base + 10_000},
        {"topic": topic, "partition": 3, "key": b"early", "value": b"y", "timestamp": base},  # out of order
        {"topic": topic, "partition": 3, "key": b"prev-day", "value": b"z", "timestamp": base - 86_400_000},
    ]
    for i in range(300):
        recs.append(
            {"topic": topic, "partition": i % PARTITIONS, "key": str(i).encode(), "value": bytes([i % 256]) * i}
        )
    return recs


def test_round_trip_is_byte_exact(kafka, tmp_path, topic_name):
    topic = topic_name("tricky")
    create_topics(kafka.bootstrap, {topic: PARTITIONS})
    produce(kafka.bootstrap, tricky_records(topic))
    lake = tmp_path / "lake"

    summary = run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once")

    source = consume_all(kafka.bootstrap, topic, PARTITIONS)
    archived = archive_rows(str(lake), topic=topic)
    assert summary["records"] == len(source) == 309
    assert archived == source  # every field: key, value, headers (order, dups, nulls), timestamp, offset


def test_rerun_archives_only_new_records(kafka, tmp_path, topic_name):
    topic = topic_name("rerun")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 3, "value": b"a%d" % i} for i in range(30)])
    lake = str(tmp_path / "lake")
    args = ("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", lake, "--once")

    assert run_json(*args)["records"] == 30
    assert run_json(*args)["records"] == 0
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 3, "value": b"b%d" % i} for i in range(9)])
    assert run_json(*args)["records"] == 9

    assert archive_rows(lake, topic=topic) == consume_all(kafka.bootstrap, topic, 3)


def test_flush_records_bounds_each_commit(kafka, tmp_path, topic_name):
    from deltalake import DeltaTable

    topic = topic_name("flush")
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 2, "value": b"%d" % i} for i in range(95)])
    lake = str(tmp_path / "lake")
    summary = run_json(
        "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", lake, "--once", "--flush-records", "10"
    )
    assert summary["records"] == 95 and summary["commits"] == 10
    commits = [h for h in DeltaTable(lake).history() if h.get("kbak.operation") == "ingest"]
    assert sorted(h["kbak.records"] for h in commits) == [5] + [10] * 9


def test_text_summary_and_last_progress_line(kafka, tmp_path, topic_name):
    """Issue 14.15: singulars, no ``versions None..None``, and a last progress line with the final count."""
    topic = topic_name("text")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"v%d" % i} for i in range(7)])
    args = ("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(tmp_path / "lake"), "--once")

    first = run_kbak(*args, check=True)
    assert first.stdout.startswith("archived 7 records (") and "from 1 topic in 1 commit (version 1)" in first.stdout
    progress = [line for line in first.stderr.splitlines() if "(consumed)" in line]
    assert progress and ": 7 records," in progress[-1], first.stderr

    again = run_kbak(*args, check=True)
    assert again.stdout.startswith("archived 0 records (") and "(nothing new to commit)" in again.stdout
    assert "None" not in again.stdout


def test_target_file_size_bounds_every_file(kafka, tmp_path, topic_name):
    """Issue 14.10: ``--target-file-size`` is a cap on each Parquet file, not a per-row-group check."""
    import random

    topic = topic_name("fsize")
    create_topics(kafka.bootstrap, {topic: 1})
    rnd = random.Random(7)
    produce(kafka.bootstrap, [{"topic": topic, "value": rnd.randbytes(400)} for _ in range(8000)])
    lake = tmp_path / "lake"
    cap = 1 << 20
    run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once",
             "--target-file-size", str(cap))  # fmt: skip
    sizes = [p.stat().st_size for p in lake.rglob("*.parquet")]
    assert len(sizes) >= 3 and max(sizes) <= cap, sizes
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 1)
