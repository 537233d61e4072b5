"""What an erasure request selects: ``--key``, ``--json-field FIELD=VALUE``, ``--header NAME=VALUE`` (OR'ed).

A selector is turned into a SQL predicate for the scan (never stored) and into a keyed hash for the
manifest (``pipeline.core.subject``): the lake records *that* a selector was erased, not what it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.errors import KbakError
from pipeline.core.parsing import parse_key
from pipeline.core.subject import HEADER, JSON_FIELD, KEY, selector_hmac
from pipeline.query.engine import sql_literal


@dataclass(frozen=True)
class Selector:
    kind: str  # KEY | JSON_FIELD | HEADER
    value: bytes
    name: str = ""  # the JSON field path or the header name

    def hmac(self, secret: bytes) -> str:
        return selector_hmac(secret, self.kind, self.value, self.name)

    def predicate(self) -> str:
        """A DuckDB predicate over the ``records`` columns (needs the engine's macros and decoding functions)."""
        blob = f"unhex('{self.value.hex()}')"
        if self.kind == KEY:
            return f"key = {blob}"
        if self.kind == JSON_FIELD:
            # field(): JSON values, and Avro/Protobuf/JSON Schema payloads the lake's kept schemas decode
            # (``pipeline.query.decoding``); may_hold() skips decoding payloads that cannot hold the value.
            value, name = sql_literal(self.value.decode()), sql_literal(self.name)
            return (
                f"CASE WHEN is_framed(value) THEN may_hold(value, {value}) AND field(value, {name}) = {value} "
                f"ELSE json_field(value, {name}) = {value} END"
            )
        return f"len(list_filter(headers, lambda h: h.key = {sql_literal(self.name)} AND h.value = {blob})) > 0"


def parse_selectors(keys: list[str], json_fields: list[str], headers: list[str]) -> list[Selector]:
    """The request's selectors; a ``FIELD=VALUE`` without ``=`` is an error."""
    out = [Selector(KEY, parse_key(k) or b"") for k in keys]
    for flag, kind, items in (("--json-field", JSON_FIELD, json_fields), ("--header", HEADER, headers)):
        for text in items:
            name, sep, value = text.partition("=")
            if not sep or not name:
                raise KbakError(f"{flag} {_redacted(text)}: use NAME=VALUE")
            out.append(Selector(kind, value.encode(), name))
    return out


def _redacted(text: str) -> str:
    """Errors never echo a subject's identifier in full (terminals and CI logs are kept too)."""
    return repr(text[:2] + "…") if len(text) > 2 else repr(text)
