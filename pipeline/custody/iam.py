"""Least-privilege IAM policies for a lake: just the S3 (and KMS) actions each kind of user needs.

Roles:
- ``query``: read the table, kbak's files and Object Lock state (``kbak query``, ``describe``,
  ``validate``, ``report``).
- ``replay``: the same reads (the Kafka side is not IAM's business).
- ``ingest``: reads, writes anywhere under the prefix, deletes only staged custody manifests
  (``_kbak/custody/staged/``: ingest removes them once sealed), Object Lock retention on what it writes.
- ``custody``: reads, writes under ``_kbak/`` (holds, manifests; removes staged manifest bodies on
  ``validate --repair``), legal holds and retention.
- ``admin``: everything above, plus deletes under the prefix (vacuum, erasure, retention).

With SSE configured, every ``s3:PutObject`` statement carries the encryption condition (the
algorithm, and the key ARN when given), so the role itself cannot write an unencrypted object.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.errors import KbakError
from pipeline.core.storage import SSE_ALGORITHMS, Lake

ROLES = ("ingest", "query", "replay", "custody", "admin")

_READ = ["s3:GetObject"]
_LIST = ["s3:ListBucket"]
_LOCK_READ = ["s3:GetBucketObjectLockConfiguration", "s3:GetObjectRetention", "s3:GetObjectLegalHold"]
_KMS_READ = ["kms:Decrypt"]
_KMS_WRITE = ["kms:Decrypt", "kms:GenerateDataKey"]


def iam_policy(lake: Lake, role: str, kms_key_arn: str | None = None, sse: str | None = None) -> dict[str, Any]:
    """The IAM policy document for ``role`` on ``lake`` (an ``s3://bucket/prefix``)."""
    if role not in ROLES:
        raise KbakError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if not lake.is_s3:
        raise KbakError(f"IAM policies are for S3 lakes; {lake.uri} is a local path")
    if kms_key_arn and not kms_key_arn.startswith("arn:"):
        raise KbakError(f"--kms-key-arn must be a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not {kms_key_arn!r}")
    sse = sse or ("aws:kms" if kms_key_arn else None)
    if sse is not None and sse not in SSE_ALGORITHMS:
        raise KbakError(f"--sse must be one of {', '.join(SSE_ALGORITHMS)}, not {sse!r}")
    if sse == "AES256" and kms_key_arn:
        raise KbakError("--kms-key-arn goes with --sse aws:kms, not AES256")

    bucket_arn = f"arn:aws:s3:::{lake.bucket}"
    under = f"{lake.prefix}/" if lake.prefix else ""
    objects = f"{bucket_arn}/{under}*"
    writes = role in ("ingest", "custody", "admin")

    statements: list[dict[str, Any]] = [
        _statement("ListLakePrefix", _LIST, bucket_arn, _prefix_condition(lake.prefix)),
        _statement("ReadLake", _READ, objects),
        # Reports show what is held until when; ingest checks the bucket can lock before writing.
        _statement("ReadObjectLock", _LOCK_READ, [bucket_arn, objects]),
    ]
    if writes:
        put_target = f"{bucket_arn}/{under}_kbak/*" if role == "custody" else objects
        statements.append(_statement("WriteLake", ["s3:PutObject"], put_target, _sse_condition(sse, kms_key_arn)))
    if role in ("ingest", "custody"):  # sealing removes staged bodies; custody's validate --repair too
        staged = f"{bucket_arn}/{under}_kbak/custody/staged/*"
        statements.append(_statement("RemoveSealedStagedManifests", ["s3:DeleteObject"], staged))
    if role == "ingest":
        statements.append(_statement("LockWhatItWrites", ["s3:PutObjectRetention"], objects))
    if role in ("custody", "admin"):
        statements.append(_statement("HoldsAndRetention", ["s3:PutObjectLegalHold", "s3:PutObjectRetention"], objects))
    if role == "admin":
        statements.append(_statement("DeleteUnderPrefix", ["s3:DeleteObject"], objects))
    if kms_key_arn:
        statements.append(_statement("UseArchiveKey", _KMS_WRITE if writes else _KMS_READ, kms_key_arn))
    return {"Version": "2012-10-17", "Statement": statements}


def _statement(sid: str, actions: list[str], resource: str | list[str], condition: dict | None = None) -> dict:
    out: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        out["Condition"] = condition
    return out


def _prefix_condition(prefix: str) -> dict | None:
    if not prefix:
        return None
    return {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}


def _sse_condition(sse: str | None, kms_key_arn: str | None) -> dict | None:
    if not sse:
        return None
    cond = {"s3:x-amz-server-side-encryption": sse}
    if kms_key_arn:
        cond["s3:x-amz-server-side-encryption-aws-kms-key-id"] = kms_key_arn
    return {"StringEquals": cond}
