"""Where a lake lives: a local directory or ``s3://bucket/prefix``, seen through one file API.

deltalake talks to storage through its own object store (``storage_options``); kbak's own files
(data files it writes, custody manifests, checkpoints) go through a pyarrow FileSystem built from
the same settings, so both always point at the same place.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.core.errors import KbakError, StorageError, UsageError, aws_code, aws_message, first_line

if TYPE_CHECKING:
    import pyarrow.fs as pafs

SSE_ALGORITHMS = ("aws:kms", "AES256")


class StorageAccessError(StorageError):
    """The lake's storage refused us or is not there: no credentials, access denied, no such bucket.

    Raised in one form whichever library hit it (pyarrow, deltalake, boto3), so every command prints
    the same line; ``kbak validate`` exits 3 ("could not check") on it, never 1 ("invalid").
    """


_DENIED = re.compile(
    r"INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|SIGNATURE_DOES_NOT_MATCH|SignatureDoesNotMatch|ACCESS_DENIED|"
    r"AccessDenied|lacked the necessary privileges|Forbidden|\b403\b|ExpiredToken|InvalidToken|InvalidClientTokenId|"
    r"UnrecognizedClientException|NoCredentialsError|Unable to locate credentials",
)
_NO_BUCKET = re.compile(r"NoSuchBucket|NO_SUCH_BUCKET|bucket does not exist|specified bucket does not exist", re.I)


_UNREACHABLE = re.compile(
    r"NETWORK_CONNECTION|Could not connect|Connection refused|error sending request|dns error|"
    r"Name or service not known|Could not resolve host|timed out",
    re.I,
)


def storage_error(
    lake: Lake, exc: BaseException, probe: bool = True, unreachable: bool = True
) -> StorageAccessError | None:
    """The one-line error for a credential, permission, missing-bucket or unreachable-endpoint failure; else None.

    deltalake often says only "Generic S3 error": then one listing through pyarrow (whose errors
    carry the S3 error code) tells which it is (``probe``). ``unreachable=False`` leaves network
    failures alone (they may pass: a caller that retries, such as ingest's commit, sees the OSError).
    """
    if not lake.is_s3 or isinstance(exc, (FileNotFoundError, KbakError)):
        return None
    text = " ".join(str(exc).split()) + " " + type(exc).__name__
    text += f" {aws_code(exc)}"
    if _NO_BUCKET.search(text):
        return StorageAccessError(f"bucket {lake.bucket} of lake {lake.uri} does not exist")
    if unreachable and _UNREACHABLE.search(text):
        where = lake.s3.endpoint or "AWS S3"
        return StorageAccessError(f"cannot reach {where} for lake {lake.uri}: {_reason(exc)}")
    denied = _DENIED.search(text)
    generic = "Generic S3 error" in text or "INTERNAL_FAILURE" in text
    if (denied or generic) and not lake.has_credentials():
        return StorageAccessError(
            f"no AWS credentials found for {lake.uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if denied:
        return StorageAccessError(f"access denied to {lake.uri}: check AWS credentials ({_reason(exc)})")
    if generic and probe:
        try:
            if lake.bucket_missing():
                return StorageAccessError(f"bucket {lake.bucket} of lake {lake.uri} does not exist")
            lake.list_files("_delta_log")
        except StorageAccessError as again:  # named already, by list_files
            return again
        except Exception as again:
            return storage_error(lake, again, probe=False, unreachable=unreachable)
    return None


def _reason(exc: BaseException) -> str:
    """What the storage said, in one short line (boto3, pyarrow and deltalake word it differently)."""
    if getattr(exc, "response", None):
        return aws_message(exc).rstrip(":")
    m = re.search(r"AWS Error (\w+) during (\w+) operation: ([^(]*)", str(exc))
    if m:
        return f"{m[1]} during {m[2]}: {m[3].strip()}"
    chain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split("↳")  # deltalake: the innermost cause is last
    return " ".join(chain[-1].split())[:200] if len(chain) > 1 else first_line(exc, 200)


def _synced_tmp(full: str, data: bytes) -> str:
    """``data`` written and fsynced to a temporary file next to ``full`` (for an atomic rename or link)."""
    Path(full).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{full}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def translate_storage_errors(fn: Callable) -> Callable:
    """Lake file helpers: credential/permission/bucket failures become ``StorageAccessError``.

    Network failures stay OSError here (callers retry them); ``load_chain`` and ``open_table`` name
    an unreachable endpoint once nothing will retry.
    """

    @functools.wraps(fn)
    def wrapper(self: Lake, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except (FileNotFoundError, KbakError):
            raise
        except Exception as exc:
            err = storage_error(self, exc, probe=False, unreachable=False)
            if err is None:
                raise
            raise err from None

    return wrapper


@dataclass(frozen=True)
class S3Settings:
    """S3 connection settings; anything left None comes from the usual AWS environment."""

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    # Server-side encryption of every object kbak writes: "aws:kms" (with an optional key id or ARN;
    # none means the account's aws/s3 key) or "AES256". Default from KBAK_SSE / KBAK_SSE_KMS_KEY_ID.
    sse: str | None = None
    sse_kms_key_id: str | None = None

    def resolved(self) -> S3Settings:
        env = os.environ
        out = S3Settings(
            endpoint=self.endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            region=self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=self.access_key_id or env.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=self.secret_access_key or env.get("AWS_SECRET_ACCESS_KEY"),
            session_token=self.session_token or env.get("AWS_SESSION_TOKEN"),
            sse=self.sse or env.get("KBAK_SSE") or None,
            sse_kms_key_id=self.sse_kms_key_id or env.get("KBAK_SSE_KMS_KEY_ID") or None,
        )
        out.check_encryption()
        return out

    def check_encryption(self) -> None:
        if self.sse_kms_key_id and not self.sse:
            raise KbakError("--sse-kms-key-id needs --sse aws:kms")
        if self.sse is None:
            return
        if self.sse not in SSE_ALGORITHMS:
            raise KbakError(f"--sse must be one of {', '.join(SSE_ALGORITHMS)}, not {self.sse!r}")
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise KbakError(f"--sse-kms-key-id goes with --sse aws:kms, not --sse {self.sse}")

    def put_object_args(self) -> dict[str, str]:
        """The encryption arguments of a boto3 ``put_object`` (empty when no SSE is configured)."""
        args = {"ServerSideEncryption": self.sse} if self.sse else {}
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args


# Where the write check writes (and at once removes) its object: the staging area of custody
# manifests, which the ingest role may already delete from and which holds and reports skip.
WRITE_CHECK = "_kbak/custody/staged/write-check"


def is_access_denied(exc: BaseException) -> bool:
    """A 403 from S3, as boto3 (ClientError) or pyarrow (OSError text) reports it."""
    code = aws_code(exc)
    return code in ("AccessDenied", "403", "Forbidden") or "ACCESS_DENIED" in str(exc) or "AccessDenied" in str(exc)


@dataclass(frozen=True)
class Lake:
    """A lake location. ``Lake.at("s3://b/p", s3=S3Settings(endpoint=...))`` or ``Lake.at("./lake")``."""

    uri: str
    s3: S3Settings = field(default_factory=S3Settings)

    @classmethod
    def at(cls, uri: str | Path | Lake, s3: S3Settings | None = None) -> Lake:
        if isinstance(uri, Lake):
            return uri
        text = str(uri)
        if not text:
            raise KbakError("--lake is required (a directory or s3://bucket/prefix)")
        parsed = urlparse(text)
        if parsed.scheme in ("s3", "s3a"):
            if not parsed.netloc:
                raise KbakError(f"lake URI {text!r} names no bucket")
            prefix = parsed.path.strip("/")
            return cls(uri=f"s3://{parsed.netloc}/{prefix}".rstrip("/"), s3=(s3 or S3Settings()).resolved())
        if parsed.scheme not in ("", "file"):
            raise KbakError(f"unsupported lake URI scheme {parsed.scheme!r}: use a path or s3://bucket/prefix")
        if s3 is not None and (s3.sse or s3.sse_kms_key_id):
            # Silently writing plaintext where encryption was asked for would be worse than refusing.
            raise UsageError(f"--sse applies to s3:// lakes; {text} is a local directory (encrypt its disk instead)")
        path = Path(parsed.path if parsed.scheme == "file" else text).expanduser().resolve()
        return cls(uri=str(path))

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def bucket(self) -> str:
        return urlparse(self.uri).netloc if self.is_s3 else ""

    @property
    def prefix(self) -> str:
        return urlparse(self.uri).path.strip("/") if self.is_s3 else ""

    @property
    def storage_options(self) -> dict[str, str]:
        """Options for deltalake's object store."""
        if not self.is_s3:
            return {}
        s3 = self.s3
        opts = {"AWS_REGION": s3.region or "us-east-1"}
        if s3.endpoint:
            opts["AWS_ENDPOINT_URL"] = s3.endpoint
            if s3.endpoint.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        if s3.access_key_id:
            opts["AWS_ACCESS_KEY_ID"] = s3.access_key_id
        if s3.secret_access_key:
            opts["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key
        if s3.session_token:
            opts["AWS_SESSION_TOKEN"] = s3.session_token
        if s3.sse:  # every object deltalake writes (log commits, checkpoints, _last_checkpoint)
            opts["AWS_SERVER_SIDE_ENCRYPTION"] = s3.sse
        if s3.sse_kms_key_id:
            opts["AWS_SSE_KMS_KEY_ID"] = s3.sse_kms_key_id
        return opts

    @cached_property
    def fs(self) -> pafs.FileSystem:
        import pyarrow.fs as pafs  # here, not at import: a local query never needs it (pyarrow loads in ~55 ms)

        if not self.is_s3:
            return pafs.LocalFileSystem()
        s3 = self.s3
        kwargs: dict = {"region": s3.region or "us-east-1", "retry_strategy": pafs.AwsStandardS3RetryStrategy(5)}
        if s3.endpoint:
            parsed = urlparse(s3.endpoint)
            kwargs["endpoint_override"] = parsed.netloc or s3.endpoint
            kwargs["scheme"] = parsed.scheme or "https"
        if s3.access_key_id:
            kwargs.update(access_key=s3.access_key_id, secret_key=s3.secret_access_key, session_token=s3.session_token)
        return pafs.S3FileSystem(**kwargs)

    @property
    def root(self) -> str:
        """The lake's root as a path inside ``fs``."""
        return f"{self.bucket}/{self.prefix}".rstrip("/") if self.is_s3 else self.uri

    def key(self, relative: str) -> str:
        """The S3 object key of a path relative to the lake root."""
        return f"{self.prefix}/{relative.lstrip('/')}".lstrip("/")

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative.lstrip('/')}"

    def has_credentials(self) -> bool:
        """Whether any AWS credentials are configured (options, environment, profile, instance role)."""
        if self.s3.access_key_id:
            return True
        try:
            import botocore.session

            return botocore.session.get_session().get_credentials() is not None
        except Exception:  # a broken profile still counts as "configured": let the real error speak
            return True

    @cached_property
    def _put_client(self):
        return self.boto3_client()

    def check_writable(self) -> None:
        """Write (and remove) a small object as every object will be written; a refusal is one clear line.

        Run before a command writes anything real, so a bucket policy that requires encryption (or a
        role without ``s3:PutObject``) stops the run at its start rather than half-way.
        """
        if not self.is_s3:
            return
        try:
            self.write_bytes(WRITE_CHECK, b"kbak write check\n")
            with contextlib.suppress(Exception):  # left behind, it is only an orphan validate --repair removes
                self.delete(WRITE_CHECK)
        except Exception as exc:
            if not is_access_denied(exc):
                raise
            hint = (
                "does the bucket policy require server-side encryption? pass --sse aws:kms --sse-kms-key-id KEY"
                if not self.s3.sse
                else f"is s3:PutObject (with {self.s3.sse}) allowed, and kms:GenerateDataKey on the key?"
            )
            raise KbakError(f"access denied writing to {self.uri} ({WRITE_CHECK}): {hint}") from None

    def boto3_client(self):
        """A boto3 S3 client for the calls pyarrow does not offer (Object Lock, versions)."""
        import boto3

        s3 = self.s3
        return boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            region_name=s3.region,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
            aws_session_token=s3.session_token,
        )

    # -- small file helpers over ``fs`` ------------------------------------------------------

    @translate_storage_errors
    def write_bytes(self, relative: str, data: bytes | memoryview) -> None:
        full = self.path(relative)
        if not self.is_s3:
            os.replace(_synced_tmp(full, data), full)
            return
        if self.s3.sse:  # pyarrow cannot ask for SSE-KMS: boto3 sends the encryption headers
            body = data if isinstance(data, bytes) else bytes(data)  # boto3 takes bytes, not a memoryview
            self._put(relative, body)
            return
        with self.fs.open_output_stream(full) as out:
            out.write(data)

    @translate_storage_errors
    def write_new(self, relative: str, data: bytes) -> bool:
        """Write a file only if it does not exist yet; False (nothing written) when it does.

        Atomic, as a Delta log entry must be written: locally a hard link of the written temporary file
        fails if the name exists; on S3 a conditional PUT (``If-None-Match: *``) does, as delta-rs's own.
        """
        full = self.path(relative)
        if self.is_s3:
            # 412: the name exists; 409: another conditional write of it is in flight, and will have written it
            return self._put(relative, data, IfNoneMatch="*") is None
        tmp = _synced_tmp(full, data)
        try:
            os.link(tmp, full)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def _put(self, relative: str, body: bytes, **conditions: str) -> str | None:
        """A boto3 PUT with the lake's encryption; None, or the code of a failed condition.

        Any other S3 error is raised as pyarrow raises them, an OSError (callers retry those), unless it
        is a refusal (``translate_storage_errors`` names those).
        """
        import botocore.exceptions

        try:
            args = {**self.s3.put_object_args(), **conditions}
            self._put_client.put_object(Bucket=self.bucket, Key=self.key(relative), Body=body, **args)
        except botocore.exceptions.ClientError as exc:
            code = aws_code(exc)
            if conditions and code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return code
            if is_access_denied(exc):
                raise
            raise OSError(f"S3 PUT of {relative}: {aws_message(exc)}") from None
        except botocore.exceptions.BotoCoreError as exc:  # connection failures, timeouts
            raise OSError(f"S3 PUT of {relative}: {first_line(exc)}") from None
        return None

    # Reads of a local lake go straight to the OS, as its writes do: same results as through ``fs``,
    # without loading pyarrow for a command that only reads a few small files (``kbak query``).

    @translate_storage_errors
    def read_bytes(self, relative: str) -> bytes:
        if not self.is_s3:
            return Path(self.path(relative)).read_bytes()
        with self.fs.open_input_stream(self.path(relative)) as src:
            return src.read()

    def bucket_missing(self) -> bool:
        """Whether an S3 lake's bucket does not exist (never, for a local lake)."""
        if not self.is_s3:
            return False
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.bucket).type == pafs.FileType.NotFound

    @translate_storage_errors
    def exists(self, relative: str) -> bool:
        if not self.is_s3:
            return os.path.exists(self.path(relative))
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    @translate_storage_errors
    def size(self, relative: str) -> int | None:
        if not self.is_s3:
            full = self.path(relative)
            return os.path.getsize(full) if os.path.isfile(full) else None
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path(relative))
        return None if info.type == pafs.FileType.NotFound else info.size

    @translate_storage_errors
    def list_files(self, relative: str = "") -> list[str]:
        """Files below ``relative``, as paths relative to the lake root."""
        base = self.path(relative) if relative else self.root
        cut = len(self.root) + 1
        if not self.is_s3:
            found = (os.path.join(d, f) for d, _dirs, files in os.walk(base) for f in files)
            return sorted(path[cut:].replace(os.sep, "/") for path in found)
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return []
        return sorted(i.path[cut:] for i in infos if i.type == pafs.FileType.File)

    @translate_storage_errors
    def delete(self, relative: str) -> None:
        if self.s3.sse:  # pyarrow re-creates the emptied "directory" as an object, unencrypted: not this way
            self._put_client.delete_object(Bucket=self.bucket, Key=self.key(relative))
            return
        self.fs.delete_file(self.path(relative))
