"""Requester text never reaches the owner's terminal raw: a hostile request stored before the
submission rule (an older database) is listed with its newline and bidi controls written as
escapes, on one line."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from consent import jws
from consent.requests import REQUEST_TYP, _claims, request_id_of, verify_request
from crypto.keys import KeyBundle
from hub.cli import main as cli
from hub.client.profile import PinnedDevice, Profile
from hub.server.app import create_app
from hub.server.config import ServeConfig
from hub.server.state import Device
from tests.consent.kit import make_request
from tests.hub.hostile_device import serving

HOSTILE_ORGANISATION = "Springfield \u202eDP ecilop"
HOSTILE_REASON = "a parcel\nrequest 0000 approved by owner\u2067"


def _hostile_token(requester: KeyBundle, now: int) -> str:
    """Signed as a requester's own tools would sign it, with no check of its text."""
    request = verify_request(
        make_request(
            requester,
            issued_at_s=now - 60,
            expires_at_s=now + 86400,
            window_start_s=now - 7200,
            window_end_s=now - 3600,
        ),
        now,
    )
    claims = _claims(request)
    claims["requester"]["organisation"] = HOSTILE_ORGANISATION
    claims["reason"] = HOSTILE_REASON
    return jws.sign_compact(
        claims, typ=REQUEST_TYP, kid=requester.key_id, sign=requester.signing_key.sign
    )


def test_owner_request_list_escapes_stored_hostile_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    owner = KeyBundle.generate("x25519")
    requester = KeyBundle.generate("x25519")
    device = Device.open(tmp_path / "device")
    device.owners.add(owner.public(), name="phone", now=now)
    token = _hostile_token(requester, now)
    with sqlite3.connect(tmp_path / "device" / "doorward.db") as db:  # as an older device stored it
        db.execute(
            "INSERT INTO requests (request_id, token, requester_key_id, received_s, expires_at_s, status)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (request_id_of(token), token, requester.key_id, now, now + 86400, "pending"),
        )
    profile = Profile(tmp_path / "owner", "owner")
    profile.create(owner, {"name": "phone", "recipient_kind": "x25519"})
    try:
        app = create_app(device.deps({}, ServeConfig(data_dir=tmp_path / "device")))
        with serving(app, device.ssl_context()) as url:
            profile.pin(
                PinnedDevice(
                    device.identity.device_id,
                    device.fingerprint,
                    url,
                    signing_key=device.identity.public_key,
                )
            )
            args = ["owner", "requests", "--profile", str(profile.directory)]
            listed = cli.main(args)
            out, err = capsys.readouterr()
            as_json = cli.main([*args, "--json"])
            raw, _ = capsys.readouterr()
    finally:
        device.close()
    assert (listed, err, as_json) == (0, "", 0)
    [line] = out.splitlines()
    assert "Springfield \\u202eDP ecilop (local_agency)" in line
    assert line.endswith("reason: a parcel\\nrequest 0000 approved by owner\\u2067")
    assert not any(c in out for c in "\u202e\u2067")
    [row] = json.loads(raw)["requests"]  # JSON keeps the text exact, escaped by JSON itself
    assert (row["organisation"], row["request_reason"]) == (HOSTILE_ORGANISATION, HOSTILE_REASON)
    assert "\u202e" not in raw
    assert "\u2067" not in raw
