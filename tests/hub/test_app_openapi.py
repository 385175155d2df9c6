"""docs/openapi.yaml is a valid OpenAPI 3.1 document that describes exactly the app's routes, every
error code and event kind, and the live server's answers conform to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from consent.audit import AuditLog
from crypto.keys import KeyBundle
from hub.server import errors as _errors
from hub.server.config import ServeConfig
from hub.wire.events import EVENT_KINDS
from hub.wire.httpsig import SignatureRejected
from tests.hub.hubkit import running_device

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
# Codes raised by hub.server.routes (pairing, events, requester) as HubError(code=...).
ROUTE_CODES = {
    "pairing_locked",
    "pairing_busy",
    "no_pairing",
    "no_setup_code",
    "approval_required",
    "busy",
    "http_error",
    "not_offsite",
    "link_unusable",
    # Quick replies (hub.server.replies, hub.server.sound, hub.server.speakers).
    "unsupported_audio",
    "audio_too_long",
    "reply_exists",
    "too_many_replies",
    "no_speaker",
    "speaker_busy",
}


def test_document_is_valid_openapi_31() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


@pytest.mark.asyncio
async def test_document_describes_exactly_the_app_routes(tmp_path: Path) -> None:
    async with running_device(tmp_path / "data", live_cameras=("front",)) as running:
        served = {
            (route.method.lower(), route.resource.canonical)
            for route in running.app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
    documented = {
        (method, path)
        for path, item in DOC["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented


def test_every_error_code_and_event_kind_is_documented() -> None:
    codes = set(DOC["components"]["schemas"]["ErrorCode"]["enum"])
    raised = {code for _, code in _errors._TABLE.values()}
    raised |= {cls.code for cls in _errors.HubError.__subclasses__()} | {"bad_request"}
    raised |= set(SignatureRejected.STATUS)
    raised |= set(_errors._HTTP_CODES.values())
    raised |= ROUTE_CODES
    assert raised - codes == set()
    kinds = DOC["components"]["schemas"]["Event"]["properties"]["kind"]["enum"]
    assert set(kinds) == EVENT_KINDS


def _validator(path: str, method: str, status: int) -> Draft202012Validator:
    responses = DOC["paths"][path][method]["responses"]
    response = responses[str(status)]
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": DOC["components"]})


@pytest.mark.asyncio
async def test_live_answers_conform(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    data = tmp_path / "data"
    async with running_device(data, config=ServeConfig(data_dir=data)) as running:
        running.add_owner(owner)
        audit: AuditLog = running.device.audit
        audit.append("clip.deleted", clip_id="c0", owner="o")
        clip_id = running.device.store.open_clip("front", 1_790_000_000.0)
        checks = [
            ("/cameras", "/cameras", 200),
            ("/clips", "/clips?limit=5", 200),
            ("/clips/{clip_id}", f"/clips/{clip_id}", 200),
            ("/clips/{clip_id}", "/clips/missing", 404),
            ("/clips", "/clips?limit=0", 400),
            ("/policy", "/policy", 200),
            ("/requests", "/requests", 200),
            ("/requests", "/requests?status=maybe", 400),
            ("/requests/{request_id}", "/requests/none", 404),
            ("/owners", "/owners?removed=true", 200),
            ("/audit/entries", "/audit/entries", 200),
            ("/audit/proof/inclusion", "/audit/proof/inclusion?index=0&size=1", 200),
            ("/audit/proof/consistency", "/audit/proof/consistency?old=0&new=1", 200),
            ("/audit/proof/inclusion", "/audit/proof/inclusion?index=5&size=1", 400),
            ("/health", "/health", 200),
            ("/metrics", "/metrics", 200),
            ("/backup", "/backup", 200),
        ]
        async with running.client(owner) as api:
            for template, path, status in checks:
                query = dict(p.split("=") for p in path.partition("?")[2].split("&") if p)
                url = api._url(path.split("?")[0], query)
                headers = api._signer.headers("GET", str(url), b"")
                session = api._ensure_session()
                async with session.get(url, headers=headers, ssl=api._ssl) as response:
                    assert response.status == status, path
                    body = json.loads(await response.read())
                errors = list(_validator(template, "get", status).iter_errors(body))
                assert errors == [], (path, [e.message for e in errors])
