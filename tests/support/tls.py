"""A real TLS endpoint for the tests: a test CA, and stunnel (Debian's stunnel4) in front of Tansu.

Tansu's own TLS options did not serve TLS when tried, so a Tansu broker advertises the stunnel
port and stunnel terminates TLS (optionally requiring a client certificate: mTLS) and forwards
plain Kafka to it. Certificates are made with the ``cryptography`` package.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.dev.servers import LocalBroker, _Server, _wait_port, free_port

STUNNEL_MISSING = "stunnel4 is not installed (Debian package stunnel4; `make test` installs it when run as root)"


def stunnel_binary() -> str | None:
    return shutil.which("stunnel4") or shutil.which("stunnel")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(pem, pkcs8, serialization.NoEncryption())


@dataclass
class CA:
    """A throwaway certificate authority that signs server and client certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "kbak test CA") -> CA:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, cert)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, directory: Path, name: str, dns: list[str] = (), ips: list[str] = (), client: bool = False):
        """Write ``name.crt`` and ``name.key`` signed by this CA; returns (cert path, key path)."""
        key = _key()
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        crt, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(_pem_key(key))
        os.chmod(keyfile, 0o600)
        return crt, keyfile


class Stunnel(_Server):
    """stunnel in server mode: TLS on ``port`` (loopback), plain TCP forwarded to ``backend``."""

    def __init__(self, directory: Path, cert: Path, key: Path, backend_port: int, client_ca: Path | None = None):
        self.directory, self.cert, self.key = directory, cert, key
        self.backend_port = backend_port
        self.client_ca = client_ca
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Stunnel:
        exe = stunnel_binary()
        if not exe:
            raise RuntimeError(STUNNEL_MISSING)
        lines = [
            "foreground = yes",
            f"pid = {self.directory / f'stunnel-{self.port}.pid'}",
            "debug = 4",
            f"output = {self.directory / f'stunnel-{self.port}.log'}",
            "[kafka]",
            f"accept = 127.0.0.1:{self.port}",
            f"connect = 127.0.0.1:{self.backend_port}",
            f"cert = {self.cert}",
            f"key = {self.key}",
        ]
        if self.client_ca:
            lines += [f"CAfile = {self.client_ca}", "verifyChain = yes", "requireCert = yes"]
        conf = self.directory / f"stunnel-{self.port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([exe, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "stunnel")
        return self


@dataclass
class TlsKafka:
    """A Tansu broker reachable only through TLS at ``bootstrap`` (``localhost:PORT``)."""

    bootstrap: str
    ca: Path
    directory: Path
    client_cert: Path | None = None
    client_key: Path | None = None

    def settings(self, **extra: str) -> dict[str, str]:
        """librdkafka settings that trust the test CA (and present the client certificate if any)."""
        conf = {"security.protocol": "ssl", "ssl.ca.location": str(self.ca)}
        if self.client_cert:
            conf.update({"ssl.certificate.location": str(self.client_cert), "ssl.key.location": str(self.client_key)})
        conf.update(extra)
        return conf


class TlsBroker:
    """Tansu + stunnel: ``with TlsBroker(tmp, mtls=True) as tk: ...``.

    The broker advertises ``localhost:<stunnel port>``; the server certificate names ``localhost``
    only, so connecting to ``127.0.0.1`` is a hostname mismatch.
    """

    def __init__(self, directory: Path, mtls: bool = False) -> None:
        self.directory = directory
        self.mtls = mtls
        self.servers: list[_Server] = []

    def __enter__(self) -> TlsKafka:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        ca = CA.create()
        ca_path = ca.write(d / "ca.crt")
        crt, key = ca.issue(d, "broker", dns=["localhost"])
        tls_port = free_port()
        broker = LocalBroker(advertised=f"tcp://localhost:{tls_port}", log=d / "tansu.log")
        try:
            self.servers.append(broker.start())
            tunnel = Stunnel(d, crt, key, broker.port, client_ca=ca_path if self.mtls else None)
            tunnel.port = tls_port
            self.servers.append(tunnel.start())
        except BaseException:
            self.__exit__()
            raise
        out = TlsKafka(f"localhost:{tls_port}", ca_path, d)
        if self.mtls:
            out.client_cert, out.client_key = ca.issue(d, "kbak-client", client=True)
        return out

    def __exit__(self, *exc) -> None:
        for s in reversed(self.servers):
            s.stop()
        self.servers.clear()


def other_ca(directory: Path) -> Path:
    """A CA that signed nothing the broker presents: trusting only it must fail the handshake."""
    return CA.create("some other CA").write(directory / "other-ca.crt")
