"""Write-once storage: S3 Object Lock retention and legal holds on the archive's objects.

Object Lock protects object *versions*: a PUT to a held key adds a new version and the held one stays
readable by its VersionId; deleting a held version is refused. Staged manifest bodies are never held
(``seal`` removes them). Mode: ``GOVERNANCE`` unless asked (``COMPLIANCE`` cannot be shortened or
removed by anyone, root included, until it expires); ``lock_commit`` uses the bucket's default
retention mode when it has one.
"""

from __future__ import annotations

import functools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

from pipeline.core.errors import KbakError, UsageError
from pipeline.core.errors import aws_code as _code
from pipeline.core.errors import aws_message as _msg
from pipeline.core.storage import Lake, storage_error
from pipeline.custody.manifest import STAGED_DIR, checkpoint_path, log_path, manifest_path
from pipeline.custody.verified import POINT

MODES = ("GOVERNANCE", "COMPLIANCE")
THREADS = 16
_LOCK_CONFIG: dict[tuple[str | None, str], dict] = {}


def require_s3(lake: Lake) -> None:
    if not lake.is_s3:
        raise KbakError(
            f"write-once storage needs S3 Object Lock: {lake.uri} is a local lake (use an s3:// lake on a bucket "
            "created with Object Lock enabled)"
        )


def lock_configuration(lake: Lake, client=None) -> dict:
    """The bucket's Object Lock configuration; a clear error when the bucket has none."""
    require_s3(lake)
    key = (lake.s3.endpoint, lake.bucket)
    if key in _LOCK_CONFIG:
        return _LOCK_CONFIG[key]
    client = client or lake.boto3_client()
    try:
        conf = client.get_object_lock_configuration(Bucket=lake.bucket).get("ObjectLockConfiguration", {})
    except Exception as exc:
        code = _code(exc)
        if code in ("ObjectLockConfigurationNotFoundError", "InvalidRequest"):
            conf = {}
        else:
            err = storage_error(lake, exc)
            if err is not None:
                raise err from None
            raise KbakError(f"cannot read the Object Lock configuration of bucket {lake.bucket}: {_msg(exc)}") from None
    if conf.get("ObjectLockEnabled") != "Enabled":
        raise KbakError(
            f"bucket {lake.bucket} has no Object Lock: create the bucket with Object Lock enabled "
            "(aws s3api create-bucket --object-lock-enabled-for-bucket) or enable it on the versioned bucket "
            "(aws s3api put-object-lock-configuration)"
        )
    _LOCK_CONFIG[key] = conf
    return conf


def table_objects(lake: Lake) -> list[str]:
    """Every object of the table (data files, Delta log and checkpoints, manifests), lake-relative.

    Staged bodies and the verified point (a cache ``kbak validate`` rewrites) are not records: left out.
    """
    objects = [p for p in lake.list_files() if not p.startswith(f"{STAGED_DIR}/") and p != POINT]
    if not any(p.startswith("_delta_log/") for p in objects):
        raise KbakError(f"no kbak archive at {lake.uri} (no Delta log there)")
    return objects


def hold(lake: Lake, until: datetime, mode: str) -> dict:
    """Retain every object of the table until ``until`` in ``mode``; objects held longer are left as they are."""
    mode = _mode(mode)
    until = _aware(until)
    if until <= datetime.now(UTC):
        raise UsageError(f"--until {until.date()} is not in the future")
    client = lake.boto3_client()
    lock_configuration(lake, client)
    objects = table_objects(lake)

    def one(rel: str) -> str:
        state = _head(client, lake, rel)
        held = state["retain_until"]
        if held is not None and held >= until and (state["mode"] == mode or state["mode"] == "COMPLIANCE"):
            return "already-held"
        _put_retention(client, lake, rel, mode, until)
        return "held"

    counts = Counter(_pool(one, objects))
    return {"lake": lake.uri, "mode": mode, "until": until.isoformat(), "objects": len(objects), **counts}


def legal_hold(lake: Lake, on: bool) -> dict:
    """Set (or clear) a legal hold on every object of the table: no expiry, removable only explicitly."""
    lock_configuration(lake)  # a bucket without Object Lock is named before anything else
    objects = table_objects(lake)
    set_legal_hold(lake, objects, on)
    return {"lake": lake.uri, "legal_hold": "ON" if on else "OFF", "objects": len(objects)}


def set_legal_hold(lake: Lake, objects: list[str], on: bool) -> None:
    """Set (or clear) the legal hold on these lake-relative objects (case holds use it per file)."""
    client = lake.boto3_client()
    lock_configuration(lake, client)
    status = "ON" if on else "OFF"

    def one(rel: str) -> None:
        try:
            client.put_object_legal_hold(Bucket=lake.bucket, Key=lake.key(rel), LegalHold={"Status": status})
        except Exception as exc:
            raise KbakError(f"cannot set legal hold {status} on {rel}: {_msg(exc)}") from None

    _pool(one, objects)


def hold_status(lake: Lake) -> dict:
    """What is held until when: objects per (mode, retain-until day), legal holds, unprotected objects."""
    client = lake.boto3_client()
    conf = lock_configuration(lake, client)
    objects = table_objects(lake)
    states = _pool(lambda rel: (rel, _head(client, lake, rel)), objects)
    now = datetime.now(UTC)
    retention: Counter = Counter()
    legal = 0
    unprotected: list[str] = []
    earliest: datetime | None = None
    for rel, s in states:
        in_force = s["retain_until"] is not None and s["retain_until"] > now
        if in_force:
            retention[(s["mode"], s["retain_until"].date().isoformat())] += 1
            earliest = s["retain_until"] if earliest is None else min(earliest, s["retain_until"])
        if s["legal_hold"]:
            legal += 1
        if not in_force and not s["legal_hold"]:
            unprotected.append(rel)
    rule = conf.get("Rule", {}).get("DefaultRetention")
    return {
        "lake": lake.uri,
        "bucket": lake.bucket,
        "default_retention": rule,
        "objects": len(objects),
        "retention": [{"mode": m, "until": d, "objects": n} for (m, d), n in sorted(retention.items())],
        "all_held_until": earliest.isoformat() if earliest and not unprotected and legal == 0 else None,
        "legal_hold": legal,
        "unprotected": len(unprotected),
        "unprotected_objects": unprotected[:20],
    }


@functools.lru_cache(maxsize=8)
def _client(lake: Lake):
    return lake.boto3_client()


def lock_commit(lake: Lake, version: int | None, data_files: list[str], days: int) -> int:
    """Retain what one commit wrote (its data files, log entry, manifest, checkpoint) for ``days`` days."""
    if version is None:
        return 0
    client = _client(lake)  # called after every commit of a long-running ingest: one client per lake
    conf = lock_configuration(lake, client)
    mode = conf.get("Rule", {}).get("DefaultRetention", {}).get("Mode", "GOVERNANCE")
    until = datetime.now(UTC) + timedelta(days=days)
    v = version
    rels = [*data_files, log_path(v), manifest_path(v)]
    if lake.exists(checkpoint_path(v)):
        rels.append(checkpoint_path(v))
    _pool(lambda rel: _put_retention(client, lake, rel, mode, until), rels)
    return len(rels)


def parse_until(text: str) -> datetime:
    """``YYYY-MM-DD`` (end of that day, UTC) or an ISO date-time."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.max.time().replace(microsecond=0), UTC)
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise UsageError(f"--until {text!r} is not a date (YYYY-MM-DD) or ISO date-time") from None


def _mode(mode: str) -> str:
    m = str(mode).upper()
    if m not in MODES:
        raise UsageError(f"--mode {mode!r}: use GOVERNANCE or COMPLIANCE")
    return m


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _put_retention(client, lake: Lake, rel: str, mode: str, until: datetime) -> None:
    try:
        client.put_object_retention(
            Bucket=lake.bucket, Key=lake.key(rel), Retention={"Mode": mode, "RetainUntilDate": until}
        )
    except Exception as exc:
        raise KbakError(f"cannot hold {rel} until {until.date()} ({mode}): {_msg(exc)}") from None


def _head(client, lake: Lake, rel: str) -> dict:
    """Retention and legal hold of an object's current version (HeadObject carries both)."""
    try:
        h = client.head_object(Bucket=lake.bucket, Key=lake.key(rel))
    except Exception as exc:
        raise KbakError(f"cannot read the lock state of {rel}: {_msg(exc)}") from None
    until = h.get("ObjectLockRetainUntilDate")
    return {
        "mode": h.get("ObjectLockMode"),
        "retain_until": until.astimezone(UTC) if until else None,
        "legal_hold": h.get("ObjectLockLegalHoldStatus") == "ON",
    }


def _pool(fn, items: list) -> list:
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(fn, items))
