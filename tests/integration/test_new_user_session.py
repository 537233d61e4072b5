"""A new user's session at the shell: interrupts, reruns, redirections, bad values, through the real CLI.

Each test is a problem a first session with the README and docs/ hit; the servers are the suite's
real broker and S3 server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.kbak_testing import KBAK, one_line_error, produce, run_kbak

from pipeline.dev.sample import create_topics
from pipeline.dev.servers import LocalS3


@pytest.fixture()
def small_lake(kafka, tmp_path, topic_name) -> tuple[Path, str]:
    """A local lake with a few records of one topic, archived with ``kbak ingest --once``."""
    topic = topic_name("newuser")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "key": b"k%d" % i, "value": b'{"n": %d}' % i} for i in range(5)])
    lake = tmp_path / "lake"
    run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", "--quiet", check=True)
    return lake, topic


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_ctrl_c_during_a_query_is_interrupted_not_a_traceback(small_lake):
    """SIGINT while DuckDB runs: DuckDB turns it into "RuntimeError: Query interrupted"; the user sees
    one line and exit 130, as for an interrupt anywhere else."""
    lake, _ = small_lake
    forever = "SELECT sum(hash(range)) FROM range(100000000000)"  # minutes; DuckDB checks interrupts per chunk
    proc = subprocess.Popen(
        [KBAK, "query", "--lake", str(lake), "--sql", forever],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _cpu_seconds(proc.pid) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # startup takes ~1 s of CPU; beyond that DuckDB is running the join
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert err.strip().splitlines() == ["kbak: error: interrupted"], err
    assert proc.returncode == 130
    assert out == ""


def test_an_s3_server_that_went_away_is_one_line_for_every_command(kafka, topic_name, tmp_path):
    """The S3 server dies after the archive was made: each command says so in one line, exit 1."""
    topic = topic_name("gone")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"v%d" % i} for i in range(3)])
    server = LocalS3().start()
    try:
        server.create_bucket("gone-lake")
        env = server.env()
        lake = "s3://gone-lake/archive"
        run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", lake, "--once", env=env, check=True)
    finally:
        server.stop()
    for command in (
        ["list"],
        ["describe"],
        ["report", "--period", "2024-07"],
        ["retention", "show"],
        ["query", "topic_inventory"],
        ["ingest", "-b", kafka.bootstrap, "--topics", topic, "--once"],
    ):
        proc = run_kbak(*command, "--lake", lake, env=env, timeout=120)
        line = one_line_error(proc)
        assert proc.returncode == 1, (command, proc.stderr)
        assert "gone-lake" in line or "archive" in line, (command, line)


def test_an_interrupted_export_leaves_the_old_file_and_nothing_else(small_lake, tmp_path):
    """Ctrl-C during ``--output FILE``: FILE keeps its old content and no partial file is left
    (DuckDB's own ``tmp_FILE`` used to stay behind, hundreds of MB after a few seconds)."""
    lake, _ = small_lake
    out_dir = tmp_path / "evidence"
    out_dir.mkdir()
    (out_dir / "export.csv").write_text("the previous export\n")
    big = "SELECT hash(range) AS h FROM range(100000000000)"
    proc = subprocess.Popen(
        [KBAK, "query", "--lake", str(lake), "--sql", big, "--format", "csv", "--output", str(out_dir / "export.csv")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _cpu_seconds(proc.pid) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["export.csv"]
    assert (out_dir / "export.csv").read_text() == "the previous export\n"


def test_output_dev_stdout_into_a_pipe(small_lake):
    """``--output /dev/stdout | ...``: written through (the resolved name of a pipe is no path)."""
    lake, topic = small_lake
    proc = subprocess.run(
        f"{KBAK} query topic_inventory --lake {lake} --format csv --output /dev/stdout | cat",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith(f"{topic},0,5,"), proc.stdout
