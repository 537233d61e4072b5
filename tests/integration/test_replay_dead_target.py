"""A target broker that dies mid-replay: SIGINT still stops in seconds (exit 130, checkpoint written),
and without a signal the run fails within ``--delivery-timeout`` naming the broker (issue 14.4).

The target is a second Tansu broker of its own, killed outright while kbak produces to it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from support.kbak_testing import KBAK, produce, run_json

from pipeline.dev.sample import create_topics
from pipeline.dev.servers import LocalBroker

RECORDS = 3000


@pytest.fixture(scope="module")
def lake(kafka, tmp_path_factory):
    import uuid

    source = f"dead-src-{uuid.uuid4().hex[:8]}"
    create_topics(kafka.bootstrap, {source: 2})
    produce(kafka.bootstrap, [{"topic": source, "partition": i % 2, "value": b"v%d" % i} for i in range(RECORDS)])
    path = str(tmp_path_factory.mktemp("dead") / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", path, "--once")
    return path, source


@pytest.fixture()
def target(tmp_path):
    broker = LocalBroker(log=tmp_path / "target.log").start()
    yield broker
    broker.stop()


def _start(lake, target, ckpt, *extra: str) -> subprocess.Popen:
    path, source = lake
    args = ["replay", "--lake", path, "-b", target.bootstrap, "--topic-map", f"{source}=restored", "--create-topics"]
    args += ["--checkpoint", str(ckpt), "--rate-limit", "200", "--json", *extra]
    return subprocess.Popen([KBAK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_target_after_some_deliveries(target: LocalBroker, ckpt) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ckpt.exists() and json.loads(ckpt.read_text())["records_delivered"] >= 100:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the replay delivered nothing within 60s")
    target.proc.kill()
    target.proc.wait(10)


def test_sigint_with_a_dead_target_stops_within_seconds(lake, target, tmp_path):
    ckpt = tmp_path / "replay.ckpt"
    proc = _start(lake, target, ckpt)
    _kill_target_after_some_deliveries(target, ckpt)
    time.sleep(5)  # kbak keeps producing into its queue, retrying the dead broker
    assert proc.poll() is None
    asked = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - asked

    assert proc.returncode == 130, err
    assert took < 10, f"SIGINT took {took:.1f}s to stop the replay"
    summary = json.loads(out)
    assert summary["status"] == "interrupted" and 100 <= summary["records"] < RECORDS
    saved = json.loads(ckpt.read_text())
    assert saved["records_delivered"] == summary["records"] and saved["complete"] is False
    assert err.strip().splitlines() == [
        f"kbak: error: replay interrupted; {summary['records']} records were delivered and are recorded in "
        f"checkpoint {ckpt}"
    ]


def test_dead_target_fails_within_the_delivery_timeout_naming_the_broker(lake, target, tmp_path):
    ckpt = tmp_path / "replay.ckpt"
    proc = _start(lake, target, ckpt, "--delivery-timeout", "4")
    _kill_target_after_some_deliveries(target, ckpt)
    killed = time.monotonic()
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - killed

    assert proc.returncode == 1, err
    assert took < 4 + 10, f"a dead target took {took:.1f}s to fail the replay"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"kbak: error: replay stopped: the target {target.bootstrap} did not take ")
    assert "within the delivery timeout (4s, --delivery-timeout)" in lines[0]
    summary = json.loads(out)
    assert summary["status"] == "failed" and json.loads(ckpt.read_text())["records_delivered"] == summary["records"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_before_producing_ends_the_run_in_seconds(lake, tmp_path, sig):
    """While kbak still waits for an unreachable target (--connect-timeout 30), a signal ends it: exit 130,
    one line, nothing written."""
    from pipeline.dev.servers import free_port

    path, _source = lake
    args = ["replay", "--lake", path, "-b", f"127.0.0.1:{free_port()}", "--connect-timeout", "30"]
    proc = subprocess.Popen([KBAK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    asked = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - asked
    assert (proc.returncode, err.strip(), out) == (130, "kbak: error: interrupted", "")
    assert took < 10, f"the signal took {took:.1f}s to end the run"
