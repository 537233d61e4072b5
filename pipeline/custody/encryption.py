"""Server-side encryption as S3 reports it: recorded in custody manifests, checked by ``kbak validate``.

What kbak asked for is not proof; a HEAD of each object says what S3 actually applied (the
algorithm and, for SSE-KMS, the key). Local lakes have no server-side encryption to observe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from pipeline.core.storage import Lake

HEAD_THREADS = 8


def object_encryption(lake: Lake, client, relative: str) -> tuple[str | None, str | None]:
    """(algorithm, KMS key id) of one object, from a HEAD; (None, None) when unencrypted."""
    head = client.head_object(Bucket=lake.bucket, Key=lake.key(relative))
    return head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")


def observed(lake: Lake, paths: Iterable[str]) -> list[dict] | None:
    """The encryption S3 applied to ``paths``: one entry per (algorithm, key) with its object count.

    None for a local lake. Goes into each custody manifest body as ``encryption``.
    """
    paths = list(paths)
    if not lake.is_s3 or not paths:
        return None
    client = lake.boto3_client()
    with ThreadPoolExecutor(HEAD_THREADS) as pool:
        seen = Counter(pool.map(lambda p: object_encryption(lake, client, p), paths))
    return [{"sse": sse, "kms_key_id": key, "objects": n} for (sse, key), n in sorted(seen.items(), key=str)]


def unencrypted(lake: Lake, sse: str, kms_key_id: str | None) -> list[tuple[str, str | None, str | None]]:
    """Objects of the lake lacking ``sse`` (or, with ``kms_key_id``, that key): (path, what S3 reports)."""
    client = lake.boto3_client()
    paths = lake.list_files()

    def check(path: str):
        got_sse, got_key = object_encryption(lake, client, path)
        key_ok = kms_key_id is None or (got_key is not None and _same_key(got_key, kms_key_id))
        return None if got_sse == sse and key_ok else (path, got_sse, got_key)

    with ThreadPoolExecutor(HEAD_THREADS) as pool:
        return [r for r in pool.map(check, paths) if r is not None]


def _same_key(reported: str, configured: str) -> bool:
    """S3 reports the key ARN; the lake may be configured with the bare id, the ARN or an alias."""
    return reported == configured or reported.endswith(f"/{configured}") or configured.endswith(f"/{reported}")
