"""Pure pieces of replay: flag parsing, murmur2, delivery bookkeeping, rate limiting, group mapping."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import KafkaError
from support.kbak_testing import JAVA_MURMUR2

from pipeline.core.errors import KbakError
from pipeline.core.kafka import with_logger
from pipeline.core.timefmt import iso_ms
from pipeline.replay.checkpoint import Progress
from pipeline.replay.masks import in_ranges, not_done
from pipeline.replay.offsets import GroupMapper
from pipeline.replay.options import OffsetRange, parse_key, parse_offsets, parse_rate, parse_time
from pipeline.replay.partitioner import Partitioner, murmur2, murmur2_partition
from pipeline.replay.produce import Sender, too_large_hint
from pipeline.replay.ratelimit import RateLimiter
from pipeline.replay.select import _File


def test_murmur2_matches_the_java_client():
    assert {k: murmur2(k) for k in JAVA_MURMUR2} == JAVA_MURMUR2
    assert murmur2_partition(b"foobar", 50) == (-790332482 & 0x7FFFFFFF) % 50


def test_partitioner_modes():
    keep, rr, m2 = Partitioner(None), Partitioner("round-robin"), Partitioner("murmur2")
    assert keep("t", 3, 7, b"k") == 7
    assert [rr("t", 3, 0, b"k") for _ in range(5)] == [0, 1, 2, 0, 1]
    assert m2("t", 5, 0, b"21") == (-973932308 & 0x7FFFFFFF) % 5
    assert [m2("t", 3, 0, None) for _ in range(4)] == [0, 1, 2, 0]  # keyless records are spread


def test_parse_time():
    assert parse_time("1717200000000", "--from") == 1717200000000
    assert parse_time("2024-06-01", "--from") == 1717200000000
    assert parse_time("2024-06-01", "--to", end=True) == 1717200000000 + 86_400_000 - 1
    assert parse_time("2024-06-01T00:00:00.123Z", "--from") == 1717200000123
    assert parse_time("2024-06-01T02:00:00+02:00", "--from") == 1717200000000
    assert parse_time("2024-06-01T00:00:00", "--from") == 1717200000000  # naive means UTC
    assert parse_time("2024-06-01 00:00:00.123", "--as-of") == 1717200000123  # a space, as people type it
    with pytest.raises(KbakError, match="--to 'soon' is neither epoch milliseconds nor an ISO-8601 time"):
        parse_time("soon", "--to")


def test_one_time_format_out():
    assert iso_ms(1717200000123) == "2024-06-01T00:00:00.123Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z" and iso_ms(None) is None
    assert parse_time(iso_ms(1717200000123), "--from") == 1717200000123


def test_parse_key_offsets_rate():
    assert parse_key("customer-42") == b"customer-42"
    assert parse_key("hex:00ff") == b"\x00\xff"
    with pytest.raises(KbakError, match="not valid hex"):
        parse_key("hex:zz")
    assert parse_offsets(["0:10-20", "3:5-"]) == [OffsetRange(0, 10, 20), OffsetRange(3, 5, None)]
    for bad in ("10-20", "0:20-10", "x:1-2"):
        with pytest.raises(KbakError, match="--offsets"):
            parse_offsets([bad])
    assert (parse_rate("500", "r"), parse_rate("2k", "r"), parse_rate("5MB", "r"), parse_rate("1.5m/s", "r")) == (
        500,
        2000,
        5e6,
        1.5e6,
    )


def test_progress_watermark_with_out_of_order_and_failed_deliveries():
    p = Progress()
    tp = ("t", 0)
    p.produced(tp, [10, 11, 12, 13, 14])
    p.delivered_many(tp, [10, 11])
    assert p.state() == {tp: (11, [])}
    p.delivered(tp, 13)  # 12 still in flight (another target partition)
    assert p.state() == {tp: (11, [13])}
    p.delivered(tp, 12)
    assert p.state() == {tp: (13, [])}
    p.produced(tp, [15])
    p.delivered(tp, 15)  # 14 failed (never reported delivered): 15 is recorded as delivered beyond the gap
    assert p.state() == {tp: (13, [15])}  # a rerun produces 14 again, and not 15


def test_progress_resumes_from_a_checkpoint_state():
    tp = ("t", 1)
    p = Progress({tp: (20, [23])})
    p.produced(tp, [21, 22, 24])  # 23 was delivered before: the resumed run does not produce it
    p.delivered_many(tp, [21, 22])
    assert p.state() == {tp: (22, [23])}
    p.delivered(tp, 24)
    assert p.state() == {tp: (24, [])}


def test_rate_limiter_spaces_out_records():
    now = [0.0]
    rl = RateLimiter(100, None, clock=lambda: now[0])
    assert rl.chunk(5000) == 5
    waits = [rl.delay(5, 0) for _ in range(21)]
    assert waits[0] == pytest.approx(0.05) and waits[-1] == pytest.approx(1.05)  # 105 records at 100/s
    now[0] = 60.0  # a long pause banks at most a tenth of a second of credit
    assert rl.delay(20, 0) == pytest.approx(0.1)
    bytes_only = RateLimiter(None, 1000, clock=lambda: 0.0)
    assert bytes_only.chunk(5000) == 5000 and bytes_only.delay(1, 3000) == pytest.approx(3.0)


def test_group_mapper_resumes_at_the_first_unconsumed_record():
    src, dst = ("orders", 0), ("orders-restored", 0)
    m = GroupMapper({"app": {src: 5}})
    for source_offset, target_offset in zip(range(3, 9), range(100, 106), strict=True):
        m.delivered(src, source_offset, dst, target_offset)
    assert m.offsets("app") == {dst: 102}  # source offset 5 became target offset 102
    done = GroupMapper({"app": {src: 50}})
    done.delivered(src, 3, dst, 100)
    done.delivered(src, 4, dst, 101)
    assert done.offsets("app") == {dst: 102}  # everything replayed was consumed: resume after it
    restored = GroupMapper({"app": {src: 5}}, state=m.state())
    assert restored.offsets("app") == {dst: 102}


def _sender(**conf) -> Sender:
    """A Sender whose producer never connects (nothing is produced): for its messages."""
    import threading

    return Sender(
        with_logger({"bootstrap.servers": "127.0.0.1:9", **conf}),  # its connection attempts stay quiet
        {},
        Progress(),
        repartition=None,
        offset_headers=False,
        limiter=RateLimiter(None, None),
        groups=None,
        stop=threading.Event(),
        delivery_timeout_s=12,
    )


def test_broker_side_too_large_names_the_settings():
    """The Tansu test broker accepts any record size, so the broker's refusal is built here (issue 14.14);
    the producer-side refusal is tested through the CLI (test_failed_delivery_stops_reports_and_resumes)."""
    err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    line = _sender()._delivery_failure(("src", 0), 7, 1_048_600, ("dst", 0), err)
    assert line.startswith("delivery of src[0] offset 7 to dst[0] failed: Broker: Message size too large (")
    assert "key+value is 1048600 bytes" in line and "-X message.max.bytes=N" in line
    assert "the topic's max.message.bytes" in line
    assert too_large_hint(KafkaError(KafkaError._MSG_TIMED_OUT), 5) == ""


def test_delivery_timeout_names_the_broker_and_the_setting():
    sender = _sender()
    assert sender.delivery_timeout_s == 12
    sender.broker_error = "1/1 brokers are down"
    line = sender._delivery_failure(("src", 1), 3, 10, ("dst", 1), KafkaError(KafkaError._MSG_TIMED_OUT))
    assert line == (
        "the target 127.0.0.1:9 did not take src[1] offset 3 within the delivery timeout (12s, --delivery-timeout): "
        "1/1 brokers are down"
    )
    assert _sender(**{"delivery.timeout.ms": "2500"}).delivery_timeout_s == 2.5  # -X wins over the flag


def test_file_pruning_on_partition_and_offset_statistics():
    f = _File("topic=t/date=2024-01-01/a.parquet", date(2024, 1, 1), partitions=(0, 1), offsets=(100, 200))
    assert f.overlaps([(1, 150, 160)]) and f.overlaps([(0, 0, 100)]) and f.overlaps([(1, 200, 300)])
    assert not f.overlaps([(2, 0, 1000)])  # a partition the file does not hold
    assert not f.overlaps([(0, 201, 300), (1, 0, 99)])  # offsets outside the file's range
    unknown = _File("x.parquet", date(2024, 1, 1), partitions=None, offsets=None)  # no statistics: always read
    assert unknown.overlaps([(7, 0, 0)])


def test_row_masks_for_chunks_and_resume():
    t = pa.table(
        {
            "partition": pa.array([0, 0, 1, 1, 2, 5], pa.int32()),
            "offset": pa.array([1, 9, 3, 20, 4, 4], pa.int64()),
        }
    )
    chunk = in_ranges([(0, 0, 5), (1, 3, 20)])  # partitions without a range (2, 5) keep nothing
    assert pc.indices_nonzero(chunk(t)).to_pylist() == [0, 2, 3]
    resume = not_done(1, 3, [20])  # partition 1 delivered up to 3, and 20 out of order
    assert pc.indices_nonzero(resume(t)).to_pylist() == [0, 1, 4, 5]
    assert pc.indices_nonzero(not_done(0, None, [9])(t)).to_pylist() == [0, 2, 3, 4, 5]
