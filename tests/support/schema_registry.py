"""A small Schema Registry REST server for the tests (like moto for S3): the subset kbak and
confluent-kafka's serializers call, in memory, on a loopback port.

No Confluent Schema Registry or Karapace installs here, so this stands in for one. It speaks the
registry's JSON (ids, subjects, versions, references, error codes) and, like the real one, can
write every registration to a ``_schemas``-style topic on the real broker (``schemas_topic``).
Schemas are kept as registered (Protobuf arrives as a base64 descriptor from confluent-kafka and
is returned the same way for any ``format``). ``fail_with(status)`` makes every request fail.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class _Entry:
    id: int
    schema: str
    schema_type: str
    references: list[dict]


@dataclass
class _State:
    by_id: dict[int, _Entry] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids by version
    next_id: int = 1
    failing: int | None = None
    requests: list[str] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)  # each request's Authorization header
    lock: threading.Lock = field(default_factory=threading.Lock)


class FixtureRegistry:
    """``with FixtureRegistry(first_id=100) as sr: sr.url``; ``sr.stop()`` takes it away for good."""

    def __init__(self, first_id: int = 1, schemas_topic: str | None = None, bootstrap: str | None = None) -> None:
        self.state = _State(next_id=first_id)
        self.schemas_topic = schemas_topic
        self.bootstrap = bootstrap
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FixtureRegistry:
        registry = self

        class Handler(_Handler):
            owner = registry

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FixtureRegistry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this HTTP status (None: work again)."""
        self.state.failing = status

    def register(
        self, subject: str, schema: str, schema_type: str = "AVRO", references: list[dict] | None = None
    ) -> int:
        with self.state.lock:
            return self._register(subject, schema, schema_type.upper(), references or [])

    def _register(self, subject: str, schema: str, schema_type: str, references: list[dict]) -> int:
        s = self.state
        found = next(
            (
                e
                for e in s.by_id.values()
                if (e.schema, e.schema_type, e.references) == (schema, schema_type, references)
            ),
            None,
        )
        entry = found or _Entry(s.next_id, schema, schema_type, references)
        if found is None:
            s.by_id[entry.id] = entry
            s.next_id += 1
        versions = s.subjects.setdefault(subject, [])
        if entry.id not in versions:
            versions.append(entry.id)
            self._publish(subject, len(versions), entry)
        return entry.id

    def _publish(self, subject: str, version: int, entry: _Entry) -> None:
        """Write the registration as Confluent Schema Registry writes it to its ``_schemas`` topic."""
        if not self.schemas_topic:
            return
        from confluent_kafka import Producer

        key = {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
        value = {"subject": subject, "version": version, "id": entry.id, "schema": entry.schema, "deleted": False}
        if entry.schema_type != "AVRO":
            value["schemaType"] = entry.schema_type
        if entry.references:
            value["references"] = entry.references
        p = Producer({"bootstrap.servers": self.bootstrap})
        p.produce(self.schemas_topic, key=json.dumps(key).encode(), value=json.dumps(value).encode())
        p.flush(30)


class _Handler(BaseHTTPRequestHandler):
    owner: FixtureRegistry

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        s = self.owner.state
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        s.requests.append(f"{method} {path}")
        s.authorization.append(self.headers.get("Authorization"))
        if s.failing:
            return self._send(s.failing, {"error_code": s.failing * 100, "message": "fixture failure"})
        body = None
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
        for pattern, handler in _ROUTES:
            m = re.fullmatch(pattern, path)
            if m and handler.__name__.startswith(method.lower()):
                with s.lock:
                    status, payload = handler(self.owner, *m.groups(), query=query, body=body)
                return self._send(status, payload)
        self._send(404, {"error_code": 404, "message": f"no route {method} {path}"})

    def _send(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _schema_json(e: _Entry) -> dict:
    out: dict = {"schema": e.schema}
    if e.schema_type != "AVRO":
        out["schemaType"] = e.schema_type
    if e.references:
        out["references"] = e.references
    return out


def _no_schema(schema_id) -> tuple[int, dict]:
    return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}


def get_schema(reg: FixtureRegistry, schema_id: str, query, body):
    e = reg.state.by_id.get(int(schema_id))
    return (200, {"id": e.id, **_schema_json(e)}) if e else _no_schema(schema_id)


def get_schema_versions(reg: FixtureRegistry, schema_id: str, query, body):
    sid = int(schema_id)
    if sid not in reg.state.by_id:
        return _no_schema(schema_id)
    pairs = [
        {"subject": s, "version": i + 1} for s, ids in reg.state.subjects.items() for i, x in enumerate(ids) if x == sid
    ]
    return 200, pairs


def get_subjects(reg: FixtureRegistry, query, body):
    return 200, sorted(reg.state.subjects)


def get_versions(reg: FixtureRegistry, subject: str, query, body):
    ids = reg.state.subjects.get(subject)
    if ids is None:
        return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
    return 200, list(range(1, len(ids) + 1))


def get_version(reg: FixtureRegistry, subject: str, version: str, query, body):
    ids = reg.state.subjects.get(subject)
    if ids is None:
        return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
    n = len(ids) if version == "latest" else int(version)
    if not 1 <= n <= len(ids):
        return 404, {"error_code": 40402, "message": f"Version {version} not found."}
    e = reg.state.by_id[ids[n - 1]]
    return 200, {"subject": subject, "version": n, "id": e.id, **_schema_json(e)}


def post_register(reg: FixtureRegistry, subject: str, query, body):
    schema_id = reg._register(
        subject, body["schema"], (body.get("schemaType") or "AVRO").upper(), body.get("references") or []
    )
    version = reg.state.subjects[subject].index(schema_id) + 1
    return 200, {"id": schema_id, "subject": subject, "version": version}


def post_lookup(reg: FixtureRegistry, subject: str, query, body):
    for i, sid in enumerate(reg.state.subjects.get(subject, [])):
        e = reg.state.by_id[sid]
        if e.schema == body["schema"]:
            return 200, {"subject": subject, "version": i + 1, "id": sid, **_schema_json(e)}
    return 404, {"error_code": 40403, "message": "Schema not found"}


_ROUTES = [
    (r"/schemas/ids/(\d+)", get_schema),
    (r"/schemas/ids/(\d+)/versions", get_schema_versions),
    (r"/subjects", get_subjects),
    (r"/subjects/([^/]+)/versions", get_versions),
    (r"/subjects/([^/]+)/versions/(\w+)", get_version),
    (r"/subjects/([^/]+)/versions", post_register),
    (r"/subjects/([^/]+)", post_lookup),
]
