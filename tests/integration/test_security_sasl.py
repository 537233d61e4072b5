"""SASL to Kafka: the right password works, a wrong one fails with one line naming authentication, fast.

Tansu's in-memory broker cannot hold SCRAM users (``tansu user create`` needs an authenticated
connection to a broker started with ``--authentication``, which has no user yet), so the success
cases run where ``KBAK_TEST_SASL_BOOTSTRAP`` names an Apache Kafka SASL listener with the user
``KBAK_TEST_SASL_USERNAME`` / ``KBAK_TEST_SASL_PASSWORD`` (PLAIN and SCRAM-SHA-512 enabled).
Tansu without ``--authentication`` does refuse every SASL handshake, which is a real
authentication failure the fast-failure test uses.
"""

from __future__ import annotations

import os
import time

import pytest
from support.kbak_testing import one_line_error, produce, run_json, run_kbak

from pipeline.dev.sample import create_topics

SASL = os.environ.get("KBAK_TEST_SASL_BOOTSTRAP")
SASL_REASON = (
    "needs a SASL listener (KBAK_TEST_SASL_BOOTSTRAP, KBAK_TEST_SASL_USERNAME, KBAK_TEST_SASL_PASSWORD): "
    "the Tansu test broker cannot hold SCRAM users in its memory store"
)


def test_authentication_failure_is_reported_as_such_and_fast(kafka, tmp_path):
    if not kafka.is_tansu:
        pytest.skip("uses Tansu's refusal of SASL on a plain listener; on Apache Kafka see the SASL tests below")
    lake = tmp_path / "lake"
    started = time.monotonic()
    proc = run_kbak(
        "ingest",
        "-b",
        kafka.bootstrap,
        "--topics",
        ".*",
        "--once",
        "--lake",
        str(lake),
        "--connect-timeout",
        "20",
        "-X",
        "security.protocol=sasl_plaintext",
        "-X",
        "sasl.mechanism=PLAIN",
        "-X",
        "sasl.username=alice",
        env={"KBAK_SASL_PASSWORD": "not-the-password-42"},
    )
    line = one_line_error(proc)
    assert f"authentication to Kafka broker {kafka.bootstrap} failed" in line, line
    assert "cannot reach" not in line
    assert time.monotonic() - started < 15
    assert not lake.exists()
    assert "not-the-password-42" not in proc.stdout + proc.stderr


@pytest.mark.skipif(not SASL, reason=SASL_REASON)
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_sasl_right_password_ingests_wrong_one_fails_fast(mechanism, tmp_path, topic_name):
    user, password = os.environ["KBAK_TEST_SASL_USERNAME"], os.environ["KBAK_TEST_SASL_PASSWORD"]
    conf = {
        "security.protocol": os.environ.get("KBAK_TEST_SASL_PROTOCOL", "sasl_plaintext"),
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    topic = topic_name("sasl")
    create_topics(SASL, {topic: 1}, conf)
    produce(SASL, [{"topic": topic, "value": b"v%d" % i} for i in range(5)], **conf)
    pw_file = tmp_path / "pw"
    pw_file.write_text(password + "\n")
    args = ["-X", f"security.protocol={conf['security.protocol']}", "-X", f"sasl.mechanism={mechanism}"]
    args += ["-X", f"sasl.username={user}"]
    ok = run_json(
        "ingest",
        "-b",
        SASL,
        "--topics",
        topic,
        "--once",
        "--lake",
        str(tmp_path / "ok"),
        *args,
        "-X",
        f"sasl.password=@{pw_file}",
    )
    assert ok["records"] == 5
    started = time.monotonic()
    proc = run_kbak(
        "ingest",
        "-b",
        SASL,
        "--topics",
        topic,
        "--once",
        "--lake",
        str(tmp_path / "bad"),
        *args,
        env={"KBAK_SASL_PASSWORD": "wrong-" + password},
    )
    assert "authentication to Kafka broker" in one_line_error(proc)
    assert time.monotonic() - started < 15 and not (tmp_path / "bad").exists()
