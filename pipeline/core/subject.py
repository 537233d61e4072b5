"""Keyed hashes of data-subject identifiers, so the lake can name a subject without holding it.

Erasure manifests and case holds record selectors (a key, a JSON field's value, a header's value) only
as HMAC-SHA-256 under a per-lake secret that is never written to the Delta log: ``KBAK_ERASURE_KEY``
(any text, used as is) when set, else ``_kbak/erasure.key`` in the lake (32 random bytes, hex, created
on first use). Whoever holds the secret and an identifier can prove the identifier was erased (``kbak
erase --status``); the lake alone reveals nothing about it. Losing the secret loses that proof, not data.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from pipeline.core.secrets import remember
from pipeline.core.storage import Lake

KEY_ENV = "KBAK_ERASURE_KEY"
KEY_FILE = "_kbak/erasure.key"

# Selector kinds, as the manifests name them.
KEY, JSON_FIELD, HEADER = "key", "json-field", "header"


def lake_secret(lake: Lake, create: bool = True) -> bytes:
    """The lake's HMAC secret: ``KBAK_ERASURE_KEY``, else the key file (created when ``create``)."""
    env = os.environ.get(KEY_ENV)
    if env:
        remember(env)  # never shown in errors, logs or JSON output
        return env.encode()
    if lake.exists(KEY_FILE):
        return bytes.fromhex(lake.read_bytes(KEY_FILE).decode().strip())
    if not create:
        return b""
    fresh = secrets.token_hex(32)
    lake.write_bytes(KEY_FILE, fresh.encode() + b"\n")
    return bytes.fromhex(fresh)


def selector_hmac(secret: bytes, kind: str, value: bytes, name: str = "") -> str:
    """HMAC-SHA-256 (hex) of one selector: its kind, the field/header name, and the value's bytes."""
    msg = kind.encode() + b"\x00" + name.encode() + b"\x00" + value
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()
