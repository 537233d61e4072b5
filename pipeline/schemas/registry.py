"""Fetching schemas from a Schema Registry with confluent-kafka's own ``SchemaRegistryClient``.

Only reads: a schema by id (``GET /schemas/ids/{id}``), the subject/version pairs that use it,
and each reference by subject/version. Errors fall in two kinds the ingest treats differently:
``UnknownSchema`` (the registry answered that it has no such id: the records are kept and counted)
and ``RegistryUnavailable`` (anything else: down, refused, 5xx, bad credentials: the ingest stops
before committing records whose schema it could not keep).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass

from pipeline.core.errors import KbakError, first_line
from pipeline.core.timefmt import now_iso
from pipeline.schemas.store import KeptSchema, Reference

NOT_FOUND_CODES = {40403, 40401, 40402}  # schema, subject, version not found


class UnknownSchema(KbakError):
    """The registry answered that it does not know this id."""


class RegistryUnavailable(KbakError):
    """The registry could not answer (down, refusing, erroring or rejecting credentials)."""


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach a registry: its URL(s), basic auth and TLS, as confluent-kafka names them."""

    url: str
    basic_auth: str | None = None  # "user:password"
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None
    key_password: str | None = None
    timeout_s: int = 10
    max_retries: int = 2

    def client_conf(self) -> dict:
        conf: dict = {"url": self.url, "timeout": self.timeout_s, "max.retries": self.max_retries}
        if self.basic_auth:
            conf["basic.auth.user.info"] = self.basic_auth
        for key, value in (
            ("ssl.ca.location", self.ca_location),
            ("ssl.certificate.location", self.certificate_location),
            ("ssl.key.location", self.key_location),
            ("ssl.key.password", self.key_password),
        ):
            if value:
                conf[key] = value
        return conf

    @property
    def display(self) -> str:
        """The URL without credentials, for messages and the kept schema's ``source``."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url.split(",")[0].strip())
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def client(options: RegistryOptions):
    """A confluent-kafka SchemaRegistryClient for ``options`` (a bad URL or TLS file is a KbakError)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    try:
        return SchemaRegistryClient(options.client_conf())
    except (ValueError, TypeError, OSError) as exc:
        raise KbakError(f"schema registry {options.display}: {first_line(exc)}") from None


class RegistryReader:
    """Fetches a schema id and its references, as ``KeptSchema`` documents ready to store."""

    def __init__(self, options: RegistryOptions) -> None:
        self.options = options
        self.client = client(options)
        # confluent-kafka caches schemas by id whatever format was asked for, so Protobuf's
        # serialized descriptor (what decoding needs) is fetched through a second client.
        self._serialized = client(options)

    def fetch(self, schema_id: int, known: set[int] | None = None) -> list[KeptSchema]:
        """The schema ``schema_id`` and the references it needs that are not in ``known``, references first."""
        known = set(known or ())
        out: list[KeptSchema] = []
        self._fetch(schema_id, known, out)
        return out

    def _fetch(self, schema_id: int, known: set[int], out: list[KeptSchema]) -> None:
        schema = self._call(lambda: self.client.get_schema(schema_id), f"schema {schema_id}")
        schema_type = (schema.schema_type or "AVRO").upper()
        refs: list[Reference] = []
        for ref in schema.references or []:
            registered = self._call(
                lambda r=ref: self.client.get_version(r.subject, r.version), f"reference {ref.name}"
            )
            refs.append(Reference(ref.name, ref.subject, ref.version, registered.schema_id))
            if registered.schema_id not in known:
                known.add(registered.schema_id)
                self._fetch(registered.schema_id, known, out)
        subject, version = self._first_use(schema_id)
        extra = {}
        if schema_type == "PROTOBUF" and not is_serialized_descriptor(schema.schema_str):
            serialized = self._call(
                lambda: self._serialized.get_schema(schema_id, fmt="serialized"), f"schema {schema_id}"
            )
            extra["serialized"] = serialized.schema_str
        known.add(schema_id)
        out.append(
            KeptSchema(
                id=schema_id,
                schema_type=schema_type,
                schema=schema.schema_str,
                references=tuple(refs),
                subject=subject,
                version=version,
                source=f"registry {self.options.display}",
                kept_at=now_iso(),
                extra=extra,
            )
        )

    def _first_use(self, schema_id: int) -> tuple[str | None, int | None]:
        """The first subject/version registered with this id (None where the registry cannot say)."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            versions = self.client.get_schema_versions(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code in (404, 405, 501):  # older registries lack the endpoint
                return None, None
            raise RegistryUnavailable(self._message(exc, f"schema {schema_id}")) from None
        except Exception as exc:  # transport errors: httpx's, which confluent-kafka re-raises
            raise RegistryUnavailable(self._message(exc, f"schema {schema_id}")) from None
        if not versions:
            return None, None
        first = sorted(versions, key=lambda v: (v.subject or "", v.version or 0))[0]
        return first.subject, first.version

    def _call(self, fn, what: str):
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return fn()
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 and exc.error_code in NOT_FOUND_CODES:
                raise UnknownSchema(f"schema registry {self.options.display} has no {what}") from None
            raise RegistryUnavailable(self._message(exc, what)) from None
        except Exception as exc:
            raise RegistryUnavailable(self._message(exc, what)) from None

    def _message(self, exc: BaseException, what: str) -> str:
        return f"schema registry {self.options.display} failed to return {what}: {first_line(exc)}"

    def close(self) -> None:
        for c in (self.client, self._serialized):
            with contextlib.suppress(Exception):  # closing is best effort
                c.close()


def is_serialized_descriptor(text: str | None) -> bool:
    """Whether a Protobuf schema string is a base64 FileDescriptorProto (not ``.proto`` source)."""
    if not text or "{" in text or ";" in text:
        return False
    try:
        base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True
