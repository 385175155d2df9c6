"""RFC 9421 request signatures: the RFC's Ed25519 vector, the Doorward profile, every error code,
and a real aiohttp client and server."""

from __future__ import annotations

import base64
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from hub.wire.httpsig import (
    RequestSigner,
    RequestVerifier,
    SignatureRejected,
    content_digest,
    sign_http_request,
)
from hub.wire.replay import ReplayCache

# RFC 9421 Appendix B.1.4 (test-key-ed25519) and B.2.6.
RFC_PRIVATE = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
    b"-----END PRIVATE KEY-----\n"
)
RFC_PUBLIC = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n"
    b"-----END PUBLIC KEY-----\n"
)
RFC_B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)

DEVICE = "abcdefghijklmnop"
URL = "https://192.168.1.20:8443/clips?camera=front&limit=10"
NOW = 1_800_000_000
NONCE = "n0nce-0123456789abcdef"


@dataclass
class RfcMessage:
    method: str
    url: str
    headers: dict[str, str]


def rfc_test_request() -> RfcMessage:
    return RfcMessage(
        "POST",
        "https://example.com/foo?param=Value&Pet=dog",
        {
            "Host": "example.com",
            "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
            "Content-Type": "application/json",
            "Content-Digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIi"
            "Yllu7BNNyealdVLvRwEmTHWXvJwew==:",
            "Content-Length": "18",
        },
    )


def test_rfc9421_b26_ed25519_vector_reproduces() -> None:
    key = load_pem_private_key(RFC_PRIVATE, None)
    assert isinstance(key, Ed25519PrivateKey)
    message = rfc_test_request()
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"test-key-ed25519": key}),
    )
    prepared = signer.prepare(
        message,
        key_id="test-key-ed25519",
        created=datetime.datetime.fromtimestamp(1618884473, tz=datetime.UTC),
        label="sig-b26",
        include_alg=False,
        covered_component_ids=(
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ),
        use_existing_digest=True,
    )
    assert prepared.signature_base.decode() == RFC_B26_BASE
    # Ed25519 is deterministic: the same key and base give the RFC's exact bytes.
    assert base64.b64encode(key.sign(prepared.signature_base)).decode() == RFC_B26_SIGNATURE
    public = load_pem_public_key(RFC_PUBLIC)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(RFC_B26_SIGNATURE), prepared.signature_base)


def test_content_digest_is_rfc9530_sha256() -> None:
    # RFC 9530 §2 example body {"hello": "world"} with a trailing newline.
    assert content_digest(b'{"hello": "world"}\n') == (
        "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    )
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@dataclass
class Setup:
    key: Ed25519PrivateKey
    verifier: RequestVerifier
    replay: ReplayCache

    def sign(
        self, method: str = "POST", url: str = URL, body: bytes = b'{"a":1}', **kw: object
    ) -> dict[str, str]:
        args: dict[str, object] = {
            "key": self.key,
            "key_id": "owner-1",
            "tag": DEVICE,
            "created_s": NOW,
            "nonce": NONCE,
        }
        args.update(kw)
        return sign_http_request(method, url, body, **args)  # type: ignore[arg-type]

    def verify(
        self,
        headers: dict[str, str],
        method: str = "POST",
        url: str = URL,
        body: bytes = b'{"a":1}',
        now_s: float = NOW,
    ) -> object:
        return self.verifier.verify(method, url, headers, body, now_s=now_s)


@pytest.fixture
def setup(key: Ed25519PrivateKey) -> Setup:
    replay = ReplayCache(window_s=60, max_per_key=3)
    keys = {"owner-1": key.public_key()}
    verifier = RequestVerifier(device_id=DEVICE, lookup_key=keys.get, replay=replay)
    return Setup(key, verifier, replay)


def rejected(setup: Setup, headers: dict[str, str], code: str, message: str, **kw: object) -> None:
    with pytest.raises(SignatureRejected) as info:
        setup.verify(headers, **kw)  # type: ignore[arg-type]
    assert (info.value.code, str(info.value)) == (code, message)


def test_signed_request_verifies_and_names_its_signer(setup: Setup) -> None:
    headers = setup.sign()
    assert headers["Signature-Input"] == (
        'doorward=("@method" "@target-uri" "content-digest");created=1800000000;'
        f'keyid="owner-1";alg="ed25519";nonce="{NONCE}";tag="{DEVICE}"'
    )
    assert headers["Content-Digest"] == content_digest(b'{"a":1}')
    verified = setup.verify(headers)
    assert verified.key_id == "owner-1"  # type: ignore[attr-defined]
    assert verified.created_s == NOW  # type: ignore[attr-defined]
    assert verified.nonce == NONCE  # type: ignore[attr-defined]


def test_header_names_are_case_insensitive(setup: Setup) -> None:
    headers = {k.lower(): v for k, v in setup.sign().items()}
    assert setup.verify(headers).key_id == "owner-1"  # type: ignore[attr-defined]


def test_unsigned(setup: Setup) -> None:
    rejected(setup, {}, "unsigned", "the request is not signed; sign it with your paired key")


def test_half_signed(setup: Setup) -> None:
    headers = setup.sign()
    del headers["Signature"]
    rejected(setup, headers, "bad_signature", "Signature and Signature-Input must come together")


def test_unknown_key(setup: Setup) -> None:
    headers = setup.sign(key_id="stranger")
    rejected(setup, headers, "unknown_key", "key stranger is not known to this device; pair first")


@pytest.mark.parametrize("offset", [-60, 0, 60])
def test_window_edges_are_accepted(setup: Setup, offset: int) -> None:
    assert setup.verify(setup.sign(), now_s=NOW + offset).created_s == NOW  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("now_s", "message"),
    [
        (
            NOW + 61,
            "the signature was created 61 s behind the device clock, outside ±60 s; "
            "check the signer's clock",
        ),
        (
            NOW - 61,
            "the signature was created 61 s ahead of the device clock, outside ±60 s; "
            "check the signer's clock",
        ),
    ],
)
def test_stale(setup: Setup, now_s: int, message: str) -> None:
    rejected(setup, setup.sign(), "stale", message, now_s=now_s)


def test_replayed(setup: Setup) -> None:
    headers = setup.sign()
    setup.verify(headers)
    rejected(
        setup,
        headers,
        "replayed",
        "this signed request was already received; sign it again",
        now_s=NOW + 30,
    )


def test_nonce_is_forgotten_only_when_the_signature_is_stale(setup: Setup) -> None:
    headers = setup.sign()
    setup.verify(headers, now_s=NOW - 60)
    rejected(
        setup,
        headers,
        "replayed",
        "this signed request was already received; sign it again",
        now_s=NOW + 60,
    )
    assert len(setup.replay) == 1


def test_busy_when_one_key_floods(setup: Setup) -> None:
    for i in range(3):
        setup.verify(setup.sign(nonce=f"{NONCE}-{i}"))
    rejected(
        setup,
        setup.sign(nonce=f"{NONCE}-x"),
        "busy",
        "too many signed requests in the last minute; retry later",
    )


def test_digest_mismatch(setup: Setup) -> None:
    rejected(
        setup,
        setup.sign(),
        "digest_mismatch",
        "the Content-Digest does not match the request body",
        body=b'{"a":2}',
    )


BAD = "the request signature does not verify"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", URL),
        ("POST", URL.replace("/clips", "/owners")),
        ("POST", URL.replace("limit=10", "limit=1000")),
        ("POST", URL.replace("192.168.1.20", "192.168.1.21")),
        ("POST", URL.replace("https", "http")),
    ],
)
def test_changed_method_or_target_uri(setup: Setup, method: str, url: str) -> None:
    rejected(setup, setup.sign(), "bad_signature", BAD, method=method, url=url)


def test_changed_digest_header(setup: Setup) -> None:
    headers = setup.sign()
    headers["Content-Digest"] = content_digest(b'{"a":2}')
    rejected(setup, headers, "bad_signature", BAD, body=b'{"a":2}')


def test_flipped_signature_bytes(setup: Setup) -> None:
    headers = setup.sign()
    raw = bytearray(base64.b64decode(headers["Signature"].split(":")[1]))
    raw[0] ^= 1
    headers["Signature"] = f"doorward=:{base64.b64encode(bytes(raw)).decode()}:"
    rejected(setup, headers, "bad_signature", BAD)


def test_signed_by_another_key(setup: Setup) -> None:
    headers = setup.sign(key=Ed25519PrivateKey.generate())
    rejected(setup, headers, "bad_signature", BAD)


def test_request_for_another_device(setup: Setup) -> None:
    rejected(
        setup,
        setup.sign(tag="qrstuvwxyz234567"),
        "bad_signature",
        "the signature is for another device",
    )


def test_nonce_too_short(setup: Setup) -> None:
    rejected(setup, setup.sign(nonce="short"), "bad_signature", "nonce must be 16-128 characters")


def resign(setup: Setup, **kw: object) -> dict[str, str]:
    """A signature made with the library directly, outside the Doorward profile."""
    message = RfcMessage("POST", URL, {})
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"owner-1": setup.key}),
    )
    args: dict[str, object] = {
        "key_id": "owner-1",
        "created": datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC),
        "nonce": NONCE,
        "tag": DEVICE,
        "label": "doorward",
        "covered_component_ids": ("@method", "@target-uri", "content-digest"),
        "body": b'{"a":1}',
    }
    args.update(kw)
    signer.sign(message, **args)  # type: ignore[arg-type]
    return message.headers


def test_profile_signature_made_by_the_library_verifies(setup: Setup) -> None:
    assert setup.verify(resign(setup)).key_id == "owner-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"covered_component_ids": ("@method", "@target-uri"), "body": None},
            "the signature must cover exactly @method @target-uri content-digest",
        ),
        (
            {"covered_component_ids": ("@method", "@path", "content-digest")},
            "the signature must cover exactly @method @target-uri content-digest",
        ),
        ({"nonce": None}, "the signature must have exactly created, keyid, nonce, tag, alg"),
        ({"tag": None}, "the signature must have exactly created, keyid, nonce, tag, alg"),
        (
            {"expires": datetime.datetime.fromtimestamp(NOW + 5, tz=datetime.UTC)},
            "the signature must have exactly created, keyid, nonce, tag, alg",
        ),
        ({"label": "other"}, "the request must carry exactly one 'doorward' signature"),
    ],
)
def test_signatures_outside_the_profile(
    setup: Setup, changes: dict[str, object], message: str
) -> None:
    rejected(setup, resign(setup, **changes), "bad_signature", message)


def test_two_signatures(setup: Setup) -> None:
    headers = setup.sign()
    headers["Signature-Input"] += ", " + headers["Signature-Input"].replace("doorward=", "b=")
    headers["Signature"] += ", " + headers["Signature"].replace("doorward=", "b=")
    rejected(
        setup, headers, "bad_signature", "the request must carry exactly one 'doorward' signature"
    )


@pytest.mark.parametrize("value", ['doorward=("@method"', "doorward=(é)", "=x"])
def test_malformed_signature_input(setup: Setup, value: str) -> None:
    headers = setup.sign()
    headers["Signature-Input"] = value
    rejected(setup, headers, "bad_signature", "Signature-Input is not a structured field")


def test_wrong_algorithm_parameter(setup: Setup) -> None:
    headers = setup.sign()
    headers["Signature-Input"] = headers["Signature-Input"].replace('"ed25519"', '"hmac-sha256"')
    rejected(setup, headers, "bad_signature", "the signature algorithm must be ed25519")


def test_oversized_header(setup: Setup) -> None:
    headers = setup.sign()
    headers["Signature"] = "doorward=:" + "A" * 5000 + ":"
    rejected(setup, headers, "bad_signature", "signature is longer than 4096 characters")


def test_status_codes() -> None:
    assert SignatureRejected("unsigned", "x").status == 401
    assert SignatureRejected("unknown_key", "x").status == 403
    assert SignatureRejected("digest_mismatch", "x").status == 400
    assert SignatureRejected("busy", "x").status == 503


class FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Server:
    base: str
    seen: list[str]
    clock: FakeClock


@pytest_asyncio.fixture
async def server(key: Ed25519PrivateKey) -> AsyncIterator[Server]:
    clock = FakeClock(NOW)
    keys = {"owner-1": key.public_key()}
    verifier = RequestVerifier(
        device_id=DEVICE, lookup_key=keys.get, replay=ReplayCache(window_s=60)
    )
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        try:
            verified = await verifier.verify_aiohttp(request, now_s=clock())
        except SignatureRejected as exc:
            return web.json_response({"code": exc.code}, status=exc.status)
        seen.append(f"{request.method} {request.path_qs} {verified.key_id}")
        return web.json_response({"ok": True, "body": (await request.read()).decode()})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(f"http://127.0.0.1:{port}", seen, clock)
    finally:
        await runner.cleanup()


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_aiohttp_client_middleware_signs_and_server_verifies(
    key: Ed25519PrivateKey, server: Server
) -> None:
    signer = RequestSigner(key, key_id="owner-1", device_id=DEVICE, now_s=server.clock)
    async with aiohttp.ClientSession(middlewares=(signer,)) as session:
        async with session.get(f"{server.base}/clips?camera=front&limit=2") as response:
            assert response.status == 200
        async with session.post(
            f"{server.base}/policy", json={"refuse": ["federal_agency"]}
        ) as response:
            assert response.status == 200
            assert (await response.json())["body"] == '{"refuse": ["federal_agency"]}'
        async with session.delete(f"{server.base}/clips/c1", data=b"") as response:
            assert response.status == 200
    assert server.seen == [
        "GET /clips?camera=front&limit=2 owner-1",
        "POST /policy owner-1",
        "DELETE /clips/c1 owner-1",
    ]


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_aiohttp_server_rejections(key: Ed25519PrivateKey, server: Server) -> None:
    url = f"{server.base}/clips"
    signer = RequestSigner(key, key_id="owner-1", device_id=DEVICE, now_s=server.clock)
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert (response.status, await response.json()) == (401, {"code": "unsigned"})
        headers = signer.headers("GET", url)
        async with session.get(url, headers=headers) as response:
            assert response.status == 200
        async with session.get(url, headers=headers) as response:
            assert (response.status, await response.json()) == (401, {"code": "replayed"})
        async with session.post(
            url, headers=signer.headers("POST", url, b"x"), data=b"y"
        ) as response:
            assert (response.status, await response.json()) == (400, {"code": "digest_mismatch"})
        server.clock.now_s = NOW + 61
        stale = RequestSigner(key, key_id="owner-1", device_id=DEVICE, now_s=lambda: NOW)
        async with session.get(url, headers=stale.headers("GET", url)) as response:
            assert (response.status, await response.json()) == (401, {"code": "stale"})
    assert server.seen == ["GET /clips owner-1"]


def test_signer_repr_hides_the_key(key: Ed25519PrivateKey) -> None:
    signer = RequestSigner(key, key_id="owner-1", device_id=DEVICE, now_s=lambda: NOW)
    assert repr(signer) == f"RequestSigner(key_id='owner-1', device_id='{DEVICE}')"


def test_signer_draws_a_fresh_nonce_per_request(key: Ed25519PrivateKey) -> None:
    tokens = iter(["a" * 24, "b" * 24])
    signer = RequestSigner(
        key,
        key_id="owner-1",
        device_id=DEVICE,
        now_s=lambda: NOW + 0.9,
        token=lambda n: next(tokens),
    )
    first = signer.headers("GET", URL)["Signature-Input"]
    second = signer.headers("GET", URL)["Signature-Input"]
    assert f'nonce="{"a" * 24}"' in first
    assert f'nonce="{"b" * 24}"' in second
    assert "created=1800000000;" in first


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_middleware_refuses_streaming_bodies(key: Ed25519PrivateKey, server: Server) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"part"

    signer = RequestSigner(key, key_id="owner-1", device_id=DEVICE, now_s=server.clock)
    async with aiohttp.ClientSession(middlewares=(signer,)) as session:
        with pytest.raises(
            TypeError, match=r"^cannot sign a streaming AsyncIterablePayload body; pass bytes$"
        ):
            await session.post(f"{server.base}/upload", data=chunks())
    assert server.seen == []
