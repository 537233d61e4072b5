"""Pure parts of the security work: secret handling, Kafka failure classification, IAM policies."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from pipeline.core import secrets
from pipeline.core.errors import KbakError
from pipeline.core.kafka import connection_failure
from pipeline.core.storage import Lake, S3Settings, is_access_denied
from pipeline.custody.iam import iam_policy


def test_at_file_values_are_read_and_remembered(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("Hunter2-from-file\nignored second line\n")
    monkeypatch.setenv("KBAK_SASL_USERNAME", "bob")
    monkeypatch.setenv("KBAK_TARGET_SASL_PASSWORD", "target-Pass-99")
    conf = secrets.read_secret_files(
        secrets.resolve_settings({"sasl.password": f"@{f}", "ssl.ca.location": "@not-a-secret-key"})
    )
    assert conf == {
        "sasl.password": "Hunter2-from-file",
        "ssl.ca.location": "@not-a-secret-key",
        "sasl.username": "bob",
    }
    target = secrets.read_secret_files(secrets.resolve_settings({}, env_prefix="KBAK_TARGET_"))
    assert target == {"sasl.password": "target-Pass-99"}
    assert secrets.redact("a Hunter2-from-file b target-Pass-99") == "a *** b ***"


def test_a_secret_starting_with_at_is_never_taken_for_a_path(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("@tricky-Secret\n")
    monkeypatch.setenv("KBAK_SASL_PASSWORD", "@from-env-Secret")
    from_file = secrets.read_secret_files(secrets.resolve_settings({"sasl.password": f"@{f}"}))
    from_env = secrets.read_secret_files(secrets.resolve_settings({}))
    literal = secrets.read_secret_files(secrets.resolve_settings({"sasl.password": "@@at-the-start"}))
    assert from_file["sasl.password"] == "@tricky-Secret"
    assert from_env["sasl.password"] == "@from-env-Secret"
    assert literal["sasl.password"] == "@at-the-start"


def test_env_never_overrides_a_given_setting(monkeypatch):
    monkeypatch.setenv("KBAK_SASL_PASSWORD", "from-env-123")
    assert secrets.resolve_settings({"sasl.password": "given-456"})["sasl.password"] == "given-456"


def test_missing_or_empty_secret_file(tmp_path):
    with pytest.raises(KbakError, match="cannot read sasl.password from @"):
        secrets.resolve_settings({"sasl.password": f"@{tmp_path / 'none'}"})
    (tmp_path / "empty").write_text("")
    with pytest.raises(KbakError, match="is empty"):
        secrets.resolve_settings({"sasl.password": f"@{tmp_path / 'empty'}"})


def test_log_records_are_redacted():
    secrets.remember("Logged-Secret-77")
    args = ("sasl.password", "Logged-Secret-77")
    record = logging.LogRecord("kbak", logging.DEBUG, __file__, 1, "conf %s=%s", args, None)
    secrets.RedactingFilter().filter(record)
    assert record.getMessage() == "conf sasl.password=***"


def _err(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


def test_connection_failures_are_classified():
    ssl = _err(
        KafkaError._SSL,
        "ssl://kafka-1:9093/bootstrap: SSL handshake failed: certificate verify failed"
        " (after 1ms in state SSL_HANDSHAKE)",
    )
    line = connection_failure([_err(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), ssl])
    assert line.startswith("TLS handshake with Kafka broker kafka-1:9093 failed: SSL handshake failed: certificate")
    assert "names kafka-1" in line and "after 1ms" not in line
    mtls = _err(
        KafkaError._TRANSPORT, "ssl://k:9093/bootstrap: Receive failed: SSL routines::tlsv13 alert certificate required"
    )
    assert "refused the client certificate" in connection_failure([mtls])
    auth = _err(KafkaError._AUTHENTICATION, "sasl_ssl://k:9094/bootstrap: SASL authentication error: bad password")
    expected = "authentication to Kafka broker k:9094 failed: SASL authentication error: bad password"
    assert connection_failure([auth]) == expected
    refused = _err(KafkaError._TRANSPORT, "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: refused")
    assert connection_failure([refused]) is None  # unreachable: retried until the timeout


def test_sse_settings_are_checked():
    with pytest.raises(KbakError, match="--sse must be one of"):
        S3Settings(sse="aws:fancy").resolved()
    s = S3Settings(sse="aws:kms", sse_kms_key_id="arn:aws:kms:us-east-1:1:key/k").resolved()
    assert s.put_object_args() == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:us-east-1:1:key/k"}
    opts = Lake.at("s3://b/p", s).storage_options
    assert opts["AWS_SERVER_SIDE_ENCRYPTION"] == "aws:kms" and opts["AWS_SSE_KMS_KEY_ID"].endswith("key/k")


def test_access_denied_is_recognised():
    class Boto(Exception):
        response = {"Error": {"Code": "AccessDenied"}}

    assert is_access_denied(Boto()) and is_access_denied(OSError("AWS Error ACCESS_DENIED during PutObject"))
    assert not is_access_denied(OSError("connection reset"))


def test_roles_without_a_prefix_cover_the_bucket():
    p = iam_policy(Lake.at("s3://whole-bucket"), "replay")
    assert [s["Sid"] for s in p["Statement"]] == ["ListLakePrefix", "ReadLake", "ReadObjectLock"]
    assert "Condition" not in p["Statement"][0] and p["Statement"][1]["Resource"] == "arn:aws:s3:::whole-bucket/*"
