"""Prefect's API clients share one verifying TLS context per CA bundle (dsar.prefect_tls).

Against a real HTTPS server on loopback whose certificate a test CA issued: the shared context
still verifies (the wrong bundle is refused), two clients get the same context, a replaced bundle
file is loaded again, and an unverified context (PREFECT_API_TLS_INSECURE_SKIP_VERIFY) is not shared.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    PREFECT_API_URL,
    temporary_settings,
)

from dsar.prefect_tls import share_api_tls_contexts


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(folder: Path, label: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate it issued for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"test CA {label}"))
        .issuer_name(_name(f"test CA {label}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / f"ca-{label}.pem", folder / f"server-{label}.pem", folder / f"server-{label}.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"true"
        self.send_response(200 if self.path in {"/api/hello", "/api/health"} else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


class HttpsServer:
    """A loopback HTTPS server answering Prefect's hello, its certificate replaceable."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
        self.httpd.socket = self.context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/api"

    def reissue(self, cert: Path, key: Path) -> None:
        self.context.load_cert_chain(cert, key)  # new handshakes present the new certificate


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    return issue(tmp_path, "a")


@pytest.fixture
def server(ca: tuple[Path, Path, Path]) -> Iterator[HttpsServer]:
    https = HttpsServer(ca[1], ca[2])
    thread = threading.Thread(target=https.httpd.serve_forever, daemon=True)
    thread.start()
    yield https
    https.httpd.shutdown()
    https.httpd.server_close()


def _context(client: Any) -> ssl.SSLContext:
    """The context a Prefect client's connections use (httpx keeps it on the pool)."""
    context: ssl.SSLContext = client._client._transport._pool._ssl_context
    return context


def _hello(url: str, cafile: Path | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """Prefect's health check through a fresh client; the context its connection used."""
    updates: dict[Any, Any] = {PREFECT_API_URL: url, PREFECT_API_TLS_INSECURE_SKIP_VERIFY: insecure}
    if cafile is not None:
        updates[PREFECT_API_SSL_CERT_FILE] = str(cafile)
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        client.hello().raise_for_status()
        return _context(client)


@pytest.fixture(autouse=True)
def _shared() -> None:
    share_api_tls_contexts()


def test_clients_share_one_context_that_still_verifies(server: HttpsServer, ca: tuple[Path, ...]) -> None:
    first = _hello(server.url, ca[0])
    second = _hello(server.url, ca[0])
    assert first is second
    assert first.verify_mode == ssl.CERT_REQUIRED
    assert first.check_hostname


def test_a_bundle_without_the_servers_ca_is_refused(server: HttpsServer, tmp_path: Path) -> None:
    stranger = issue(tmp_path, "stranger")[0]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _hello(server.url, stranger)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _hello(server.url)  # certifi's public CAs did not issue a test certificate


def test_a_replaced_bundle_file_is_loaded_again(
    server: HttpsServer, ca: tuple[Path, ...], tmp_path: Path
) -> None:
    before = _hello(server.url, ca[0])
    renewed = issue(tmp_path, "b")
    server.reissue(renewed[1], renewed[2])
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _hello(server.url, ca[0])  # still the old CA: refused
    ca[0].write_bytes(renewed[0].read_bytes())  # the operator rotates the bundle in place
    stat = ca[0].stat()
    os.utime(ca[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock
    after = _hello(server.url, ca[0])
    assert after is not before


def test_an_unverified_context_is_built_for_each_client(server: HttpsServer) -> None:
    first = _hello(server.url, insecure=True)
    second = _hello(server.url, insecure=True)
    assert first is not second
    assert first.verify_mode == ssl.CERT_NONE
