"""The device certificate, its SPKI pin, and real TLS 1.3 handshakes over loopback."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from crypto.keys import DeviceIdentity
from crypto.tls import (
    PinMismatch,
    PinnedSSLContext,
    client_context,
    load_certificate,
    make_certificate,
    server_context,
    spki_fingerprint,
    write_certificate,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass
class Device:
    identity: DeviceIdentity
    cert: x509.Certificate
    cert_path: Path
    key_path: Path

    @property
    def fingerprint(self) -> str:
        return spki_fingerprint(self.cert)


def make_device(directory: Path) -> Device:
    identity = DeviceIdentity.generate()
    key_path = directory / "keys" / "device.ed25519"
    identity.save(key_path)
    cert = make_certificate(identity.private_key, identity.device_id, now=NOW)
    cert_path = directory / "tls" / "cert.pem"
    write_certificate(cert_path, cert)
    return Device(identity, cert, cert_path, key_path)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return make_device(tmp_path)


def test_certificate_names_the_device_and_signs_itself(device: Device) -> None:
    cert = device.cert
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == device.identity.device_id
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.not_valid_before_utc == NOW - timedelta(days=1)
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert load_certificate(device.cert_path) == cert


def test_fingerprint_is_stable_across_certificates_of_the_same_key(device: Device) -> None:
    other = make_certificate(
        device.identity.private_key,
        device.identity.device_id,
        now=NOW + timedelta(days=400),
        dns_names=["doorbell.local"],
        ip_addresses=["192.168.1.20"],
    )
    fp = spki_fingerprint(device.cert)
    assert len(fp) == 43
    assert spki_fingerprint(other) == fp
    assert spki_fingerprint(device.identity.public_key) == fp
    assert spki_fingerprint(device.cert.public_bytes(Encoding.DER)) == fp
    assert spki_fingerprint(Ed25519PrivateKey.generate().public_key()) != fp


def test_fingerprint_matches_openssl(device: Device) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is part of the base system"
    spki = subprocess.run(
        [openssl, "x509", "-in", str(device.cert_path), "-noout", "-pubkey"],
        check=True,
        capture_output=True,
    ).stdout
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"], input=spki, check=True, capture_output=True
    ).stdout
    digest = subprocess.run(
        [openssl, "dgst", "-sha256", "-binary"], input=der, check=True, capture_output=True
    ).stdout
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == device.fingerprint


def test_certificate_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match=r"^now must be timezone-aware, got a naive datetime$"):
        make_certificate(Ed25519PrivateKey.generate(), "x", now=datetime(2026, 1, 1))


@pytest.mark.parametrize("bad", ["", "AAAA", "A" * 44, "+" * 43])
def test_pinned_context_refuses_malformed_pins(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^pinned fingerprint") as info:
        client_context(bad)
    assert str(info.value) == (
        f"pinned fingerprint must be 43 characters of unpadded base64url (SHA-256), got {bad!r}"
    )


def test_pinned_context_is_tls13_only_and_keeps_its_pin(device: Device) -> None:
    context = client_context(device.fingerprint)
    assert isinstance(context, PinnedSSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.pinned_fingerprint == device.fingerprint


@dataclass
class Served:
    url: str
    port: int
    seen: list[str]


@pytest_asyncio.fixture
async def https_server(device: Device) -> AsyncIterator[Served]:
    seen: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(request.path)
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        version = ssl_object.version() if ssl_object else "none"
        return web.json_response({"tls": version})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0, ssl_context=server_context(device.cert_path, device.key_path)
    )
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(f"https://127.0.0.1:{port}/hello", port, seen)
    finally:
        await runner.cleanup()


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_pinned_aiohttp_client_talks_tls13_with_ed25519(
    device: Device, https_server: Served
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(https_server.url, ssl=client_context(device.fingerprint)) as response,
    ):
        assert response.status == 200
        assert await response.json() == {"tls": "TLSv1.3"}
    assert https_server.seen == ["/hello"]


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_aiohttp_client_with_another_pin_refuses_before_sending(
    tmp_path: Path, device: Device, https_server: Served
) -> None:
    stranger = make_device(tmp_path / "stranger")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
            async with session.get(https_server.url, ssl=client_context(stranger.fingerprint)):
                pass
    error = info.value.certificate_error
    assert isinstance(error, PinMismatch)
    assert str(error) == (
        f"the server's TLS key {device.fingerprint} is not the pinned {stranger.fingerprint}: "
        "this is not the paired doorbell, or someone is intercepting the connection; "
        "pair again only if you reset the doorbell"
    )
    assert https_server.seen == []


@dataclass
class Observed:
    handshake_done: bool = False
    plaintext: bytes = b""


async def observe_tls_peer(
    context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Observed:
    """Run the server end of TLS by hand over a TCP stream; record what the client sent.

    Returns at end of stream or after the first full line of plaintext.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    seen = Observed()
    while data := await reader.read(65536):
        incoming.write(data)
        try:
            if not seen.handshake_done:
                tls.do_handshake()
                seen.handshake_done = True
            while chunk := tls.read(65536):
                seen.plaintext += chunk
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        writer.write(outgoing.read())
        await writer.drain()
        if seen.plaintext.endswith(b"\n"):
            break  # one full line is all the tests send
    writer.close()
    return seen


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_mismatching_client_never_finishes_the_handshake(
    tmp_path: Path, device: Device
) -> None:
    results: asyncio.Queue[Observed] = asyncio.Queue()
    server_ctx = server_context(device.cert_path, device.key_path)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await results.put(await observe_tls_peer(server_ctx, reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stranger = make_device(tmp_path / "stranger")
    try:
        with pytest.raises(PinMismatch):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(stranger.fingerprint)
            )
        # The client stopped before its Finished message: the server's handshake never
        # completed and not one byte of application data reached it.
        assert await asyncio.wait_for(results.get(), 10) == Observed(False, b"")

        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(device.fingerprint)
        )
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.3"
        assert x509.load_der_x509_certificate(ssl_object.getpeercert(True)) == device.cert
        writer.write(b"ding\n")
        await writer.drain()
        assert await asyncio.wait_for(results.get(), 10) == Observed(True, b"ding\n")
        writer.transport.abort()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
def test_blocking_sockets_are_pinned_too(tmp_path: Path, device: Device) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server_ctx = server_context(device.cert_path, device.key_path)

    def serve_twice() -> None:
        for _ in range(2):
            conn, _addr = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, ConnectionError):
                pass

    thread = threading.Thread(target=serve_twice)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context(device.fingerprint).wrap_socket(raw) as tls,
        ):
            assert tls.version() == "TLSv1.3"
            assert tls.recv(2) == b"ok"
        stranger = make_device(tmp_path / "stranger")
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(PinMismatch),
        ):
            client_context(stranger.fingerprint).wrap_socket(raw)
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_server_refuses_tls12(device: Device, https_server: Served) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    # The server answers a TLS 1.2-only hello with an alert or by dropping the connection.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", https_server.port, ssl=old)
    assert https_server.seen == []
