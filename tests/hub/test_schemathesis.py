"""schemathesis against the live server: every operation of docs/openapi.yaml, generated requests
(valid ones and ones that break the document) signed with RFC 9421 as a paired owner or as a
requester, over real TLS 1.3 with the device's pin. No answer is a server error and every answer
conforms to the document: status code, content type, headers and body schema. Each operation with
path parameters also gets one case with real identifiers (a recorded clip and its segments, a
pending request, owners) so success answers are checked too, not only 4xx ones."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode, checks

from consent.models import RequesterIdentity
from consent.requests import sign_request
from crypto.keys import KeyBundle
from crypto.tls import client_context
from device import CameraPipeline, RecorderConfig
from hub.server.config import ServeConfig
from hub.wire.httpsig import RequestSigner
from tests.hub.hubkit import Running, running_device, small_camera
from tests.hub.soundkit import wav_tone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
MAX_EXAMPLES = 6
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


class _Signed(requests.auth.AuthBase):
    """Signs each prepared request (the exact URL and body sent) with RFC 9421."""

    def __init__(self, signer: RequestSigner) -> None:
        self._signer = signer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert request.method is not None
        assert request.url is not None
        request.headers.update(self._signer.headers(request.method, request.url, bytes(body)))
        return request


class _Pinned(HTTPAdapter):
    """A transport that accepts only the device whose SPKI fingerprint is pinned."""

    def __init__(self, fingerprint: str) -> None:
        self._context = client_context(fingerprint)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # The pinned context checks the SPKI pin on every handshake. The chain check must stay
        # off (the certificate is self-signed), or urllib3 would re-enable it on the context.
        kwargs["verify"] = False
        return super().send(request, **kwargs)


def _session(url: str, fingerprint: str, device_id: str, keys: KeyBundle) -> requests.Session:
    session = requests.Session()
    session.mount(url, _Pinned(fingerprint))
    signer = RequestSigner(
        keys.signing_key, key_id=keys.key_id, device_id=device_id, now_s=time.time
    )
    session.auth = _Signed(signer)
    return session


@dataclass
class Live:
    url: str
    fingerprint: str
    owner: requests.Session
    requester: requests.Session
    ids: dict[str, str]


def _request_token(requester: KeyBundle, start_s: float) -> str:
    now = int(time.time())
    return sign_request(
        requester.signing_key,
        str(requester.recipient),
        RequesterIdentity("Officer Ada", "Springfield PD", "local_agency", "Springfield", "a@x.y"),
        camera="front",
        window_start_s=int(start_s) - 60,
        window_end_s=int(start_s) + 600,
        category="package_theft",
        case_reference="CASE-1",
        reason="A parcel was taken from the porch.",
        legal_basis="voluntary",
        issued_at_s=now,
        expires_at_s=now + 86400,
        nonce=secrets.token_urlsafe(16),
    )


async def _prepare(running: Running, owner: KeyBundle, requester: KeyBundle) -> dict[str, str]:
    """Record one small clip and submit one request; the real ids for the path parameters.
    Deleting operations get their own targets (an empty clip, a second owner) so the cases
    that follow still find what they read."""
    running.add_owner(owner)
    spare = KeyBundle.generate("x25519")
    running.add_owner(spare, name="spare")
    start_s = time.time() - 600
    source = small_camera(start_s, seconds=3.0)
    pipeline = CameraPipeline(
        "front",
        source,
        running.device.store,
        running.device.owners.recipients,
        config=RecorderConfig(
            pre_roll_s=1.0, post_roll_s=1.0, segment_s=1.0, keyframe_interval_s=1.0
        ),
        button=source.button,
    )
    await pipeline.run()
    async with running.client(owner) as phone:
        clip = (await phone.clips()).clips[0]
        segments = (await phone.clip(clip.clip_id)).segments
        await phone.add_reply("away", wav_tone(700.0, 0.2))
    async with running.client(requester) as agency:
        request = await agency.submit_request(_request_token(requester, start_s))
    return {
        "clip_id": clip.clip_id,
        "segment_id": segments[0].segment_id,
        "request_id": request.request_id,
        "release_id": "none",
        "key_id": owner.key_id,
        "name": "away",
        "DELETE /clips/{clip_id}": running.device.store.open_clip("back", start_s + 60),
        "DELETE /owners/{key_id}": spare.key_id,
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The device's app served from an event loop in a background thread (requests is sync)."""
    data = tmp_path_factory.mktemp("schemathesis") / "data"
    owner = KeyBundle.generate("x25519")
    requester = KeyBundle.generate("x25519")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started: Future[tuple[Running, dict[str, str]]] = Future()
    stop = asyncio.Event()
    # Generous rate limits: the test is about conformance, and 429s would hide the routes.
    config = ServeConfig(data_dir=data, rate_per_s=1000.0, rate_burst=1000)

    async def serve() -> None:
        try:
            async with running_device(data, config=config, live_cameras=("front",)) as running:
                started.set_result((running, await _prepare(running, owner, requester)))
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    served = asyncio.run_coroutine_threadsafe(serve(), loop)
    running, ids = started.result(timeout=60)
    device_id = running.device.identity.device_id
    fp = running.device.fingerprint
    try:
        yield Live(
            running.url,
            fp,
            _session(running.url, fp, device_id, owner),
            _session(running.url, fp, device_id, requester),
            ids,
        )
    finally:
        loop.call_soon_threadsafe(stop.set)
        served.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@schemathesis.serializer("application/jose")
def _compact_jws(ctx: Any, value: Any) -> bytes:
    """A request token is a compact JWS: sent as its text."""
    return str(value).encode()


@schemathesis.serializer("audio/wav", "audio/ogg")
def _sound_file(ctx: Any, value: Any) -> bytes:
    """A quick reply is the sound file's bytes (generated ones are not audio: refused, 415)."""
    return value if isinstance(value, bytes) else str(value).encode()


SCHEMA = schemathesis.openapi.from_path(DOC_PATH)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def _requester_route(operation: Any) -> bool:
    security = operation.definition.raw.get("security")
    return security is not None and any("requesterSignature" in s for s in security)


def _check(live: Live, operation: Any, case: Any) -> Any:
    session = live.requester if _requester_route(operation) else live.owner
    response = case.call(base_url=live.url, session=session, timeout=30)
    case.validate_response(response, checks=CHECKS)
    return response


def _breakable(operation: Any) -> bool:
    """Whether a request can break the document: it has parameters, a body or a signature to get
    wrong (the page's static files have none of them)."""
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody") or raw.get("security") != [])


CASES = [
    pytest.param(operation, mode, id=f"{operation.label}-{mode}")
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _breakable(operation)
]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_generated_requests_conform(live: Live, operation: Any, mode: GenerationMode) -> None:
    """Valid requests (positive) and requests that break the document (negative) alike."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        _check(live, operation, case)

    run()


# What each operation answers with the real identifiers and no body.
REAL_ID_STATUS = {
    "GET /clips/{clip_id}": 200,
    "DELETE /clips/{clip_id}": 200,
    "GET /clips/{clip_id}/manifest": 200,
    "GET /segments/{segment_id}": 200,
    "GET /segments/{segment_id}/header": 200,
    "GET /requests/{request_id}": 200,
    "POST /requests/{request_id}/consent": 400,
    "POST /requests/{request_id}/decline": 400,
    "GET /requests/{request_id}/status": 200,
    "GET /releases/{release_id}": 404,
    "POST /releases/{release_id}/revoke": 400,
    "DELETE /owners/{key_id}": 200,
    "GET /events": 400,  # not a WebSocket upgrade
    "PUT /replies/{name}": 400,  # no sound file in the body
    "POST /replies/{name}/play": 409,  # this device has no speaker
    "DELETE /replies/{name}": 200,
}


@pytest.mark.parametrize("label", sorted(REAL_ID_STATUS, key=lambda label: "DELETE" in label))
def test_real_identifiers_conform(live: Live, label: str) -> None:
    operation = next(op for op in OPERATIONS if op.label == label)
    names = [p.name for p in operation.path_parameters]
    case = operation.Case(path_parameters={n: live.ids.get(label, live.ids[n]) for n in names})
    response = _check(live, operation, case)
    assert response.status_code == REAL_ID_STATUS[label], response.text


def test_the_transport_is_pinned(live: Live) -> None:
    other = KeyBundle.generate("x25519")
    session = _session(live.url, "A" * 43, "aaaaaaaaaaaaaaaa", other)
    with pytest.raises(requests.exceptions.SSLError) as caught:
        session.get(live.url + "/health", timeout=30)
    assert "is not the pinned " + "A" * 43 in str(caught.value)


def test_unsigned_owner_requests_are_refused(live: Live) -> None:
    session = requests.Session()
    session.mount(live.url, _Pinned(live.fingerprint))
    response = session.get(live.url + "/cameras", timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unsigned"


def test_events_without_a_websocket_upgrade_is_a_json_400(live: Live) -> None:
    response = live.owner.get(live.url + "/events", timeout=30)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "bad_request",
            "message": "GET /events must be a WebSocket upgrade request",
        }
    }
