"""Deleting a data file from storage for good, or saying why not (S3 Object Lock).

On a versioned S3 bucket (every bucket with Object Lock is one) a plain DELETE only adds a delete
marker and the bytes stay: ``kbak vacuum`` deletes every version of the key instead. A version under
Object Lock retention (until a future date) or a legal hold cannot be deleted by anyone; vacuum
checks first and reports the file as retained, with its retain-until date, rather than half-delete it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from pipeline.core.errors import KbakError
from pipeline.core.errors import aws_code as _code
from pipeline.core.errors import aws_message as _msg
from pipeline.core.storage import Lake


@dataclass(frozen=True)
class Lock:
    """Why a file cannot be deleted now."""

    retain_until: datetime | None  # None: a legal hold (no date)
    mode: str | None
    legal_hold: bool


class Deleter:
    """Lock checks and permanent deletes for one lake."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    @cached_property
    def _client(self):
        return self.lake.boto3_client()

    @cached_property
    def _versioned(self) -> bool:
        status = self._client.get_bucket_versioning(Bucket=self.lake.bucket).get("Status")
        return status in ("Enabled", "Suspended")

    def _key(self, rel: str) -> str:
        return f"{self.lake.prefix}/{rel}" if self.lake.prefix else rel

    def _versions(self, rel: str) -> list[str | None]:
        """Every version id of the key (objects and delete markers); [None] on an unversioned bucket."""
        if not self._versioned:
            return [None]
        key = self._key(rel)
        out: list[str | None] = []
        for page in self._client.get_paginator("list_object_versions").paginate(Bucket=self.lake.bucket, Prefix=key):
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if v["Key"] == key:
                    out.append(v["VersionId"])
        return out

    def lock(self, rel: str, now: datetime) -> Lock | None:
        """The lock that keeps any version of the file from deletion now, if there is one."""
        if not self.lake.is_s3:
            return None
        found: Lock | None = None
        for version in self._versions(rel):
            kwargs = {"VersionId": version} if version else {}
            try:
                h = self._client.head_object(Bucket=self.lake.bucket, Key=self._key(rel), **kwargs)
            except Exception as exc:
                if _code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "405", "MethodNotAllowed"):
                    continue  # gone already, or a delete marker
                raise KbakError(f"cannot read the lock state of {rel}: {_msg(exc)}") from None
            until = h.get("ObjectLockRetainUntilDate")
            until = until.astimezone(UTC) if until else None
            legal = h.get("ObjectLockLegalHoldStatus") == "ON"
            if legal or (until is not None and until > now):
                latest = found.retain_until if found else None
                if found is None or (until and latest and until > latest) or legal:
                    found = Lock(until if until and until > now else None, h.get("ObjectLockMode"), legal)
        return found

    def delete(self, rel: str) -> None:
        """Delete the file, every version of it on S3; a refusal is raised as one line."""
        if not self.lake.is_s3:
            with contextlib.suppress(FileNotFoundError):
                self.lake.delete(rel)
            return
        for version in self._versions(rel):
            kwargs = {"VersionId": version} if version else {}
            try:
                self._client.delete_object(Bucket=self.lake.bucket, Key=self._key(rel), **kwargs)
            except Exception as exc:
                raise KbakError(f"cannot delete {rel}: {_msg(exc)}") from None
