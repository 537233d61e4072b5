"""Secrets kbak is given (SASL passwords, key passwords, AWS keys): taken off the command line, never shown.

A secret may be given as ``-X sasl.password=@/path/to/file`` (the file's first line), from the
environment (``KBAK_SASL_PASSWORD`` and friends, see ``ENV_SETTINGS``), or through ``${VAR}`` in the
YAML, so it need not appear in ``ps``. Every secret value kbak learns is remembered, and
``redact`` replaces it wherever text leaves the process: error lines, log records (including
librdkafka's debug lines), JSON summaries.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from pipeline.core.errors import KbakError

MASK = "***"

# librdkafka settings whose values are secrets (matched on the key).
_SECRET_KEY = re.compile(r"password|secret|token|(^|\.)jaas\.config$|sasl\.oauthbearer\.config$", re.I)

# Environment variables that fill a librdkafka setting the command line and YAML left unset.
ENV_SETTINGS = {
    "KBAK_SASL_USERNAME": "sasl.username",
    "KBAK_SASL_PASSWORD": "sasl.password",
    "KBAK_SSL_KEY_PASSWORD": "ssl.key.password",
}
# Secrets read from the environment: AWS credentials (not the access key id), kbak's HMAC keys.
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "KBAK_ERASURE_KEY", "KBAK_ACCESS_LOG_KEY")

_known: set[str] = set()
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def remember(value: str | None) -> None:
    """Mark ``value`` as a secret that ``redact`` must hide (short values are ignored: too common)."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def remember_environment() -> None:
    for name in (*_SECRET_ENV, *(k for k, v in ENV_SETTINGS.items() if is_secret_key(v))):
        remember(os.environ.get(name))


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by ``***``."""
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


def read_secret_file(key: str, path: str) -> str:
    """The first line of ``path``: the value of ``-X key=@path``."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise KbakError(f"cannot read {key} from @{path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise KbakError(f"{key} file @{path} is empty")
    return lines[0]


def _decode(key: str, value: str) -> str:
    """A secret setting's value: ``@path`` is the file's first line, ``@@text`` is ``@text`` itself."""
    if value.startswith("@@"):
        return value[1:]
    if value.startswith("@"):
        return read_secret_file(key, value[1:])
    return value


def _literal(value: str) -> str:
    """``value`` in the form ``_decode`` gives back unchanged (a leading @ doubled)."""
    return "@" + value if value.startswith("@") else value


def read_secret_files(conf: dict[str, str]) -> dict[str, str]:
    """Settings with each secret given as ``@/path`` replaced by the file's first line; all remembered."""
    out = dict(conf)
    for key, value in conf.items():
        if is_secret_key(key) and isinstance(value, str):
            out[key] = _decode(key, value)
            remember(out[key])
    return out


def resolve_settings(conf: dict[str, str], env_prefix: str = "KBAK_") -> dict[str, str]:
    """Settings with unset credentials taken from the environment, and ``@file`` secrets read now.

    ``env_prefix`` names the variables: ``KBAK_SASL_PASSWORD`` for the source cluster,
    ``KBAK_TARGET_SASL_PASSWORD`` for a replay's target. Reading files here makes a missing file fail
    before any work; values stay in the form ``read_secret_files`` (in ``client_config``) takes, so
    a secret that itself starts with ``@`` is never taken for a path. Every secret is remembered.
    """
    out = dict(conf)
    for key, value in conf.items():
        if is_secret_key(key) and isinstance(value, str):
            plain = _decode(key, value)
            remember(plain)
            out[key] = _literal(plain)
    for name, key in ENV_SETTINGS.items():
        var = env_prefix + name.removeprefix("KBAK_")
        if key not in out and os.environ.get(var):
            if is_secret_key(key):
                remember(os.environ[var])
            out[key] = _literal(os.environ[var]) if is_secret_key(key) else os.environ[var]
    return out


class RedactingFilter(logging.Filter):
    """Rewrites each log record's message with secrets masked (attach to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is logging's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
