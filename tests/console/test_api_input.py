"""The console's API refuses bad input from the page with a clear message, before any call to
the doorbell (the pinned doorbell here listens nowhere); a doorbell not paired is a 404."""

from __future__ import annotations

import json

import pytest

from crypto.keys import KeyBundle
from hub.client.profile import PinnedDevice
from tests.console.consolekit import Console, cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

DOOR = "abcdefghijklmnop"
BASE = f"/api/doorbells/{DOOR}/requests/r1"


def _pin(console: Console) -> None:
    # Port 9 on loopback: nothing answers, so a handler that reached the doorbell would fail
    # with a connection error instead of the input error asserted.
    key = KeyBundle.generate("x25519").signing_key.public_key()
    console.profile.pin(PinnedDevice(DOOR, "A" * 43, "https://127.0.0.1:9", signing_key=key))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "choose at least one segment to release"),
        ({"segments": []}, "choose at least one segment to release"),
        ({"segments": [3]}, "choose at least one segment to release"),
        (
            {"segments": ["a.000001"], "expires": "soon"},
            "duration must be a positive number with s, m, h or d (7d), got 'soon'",
        ),
        (
            {"segments": ["a.000001"], "max_downloads": 0},
            "the download count must be at least 1, got 0",
        ),
        (
            {"segments": ["a.000001"], "max_downloads": "2"},
            "the download count must be a whole number, got '2'",
        ),
        (
            {"segments": ["a.000001"], "max_downloads": True},
            "the download count must be a whole number, got True",
        ),
    ],
)
async def test_approve_refuses_bad_choices(
    console: Console, body: dict[str, object], message: str
) -> None:
    _pin(console)
    status, headers, text = await console.post(f"{BASE}/approve", body)
    assert status == 400
    assert json.loads(text) == {"error": {"code": "bad_input", "message": message}}
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 501, 7])
async def test_decline_needs_a_reason(console: Console, reason: object) -> None:
    _pin(console)
    status, _, text = await console.post(f"{BASE}/decline", {"reason": reason})
    assert status == 400
    assert json.loads(text)["error"]["message"] == (
        "give a reason for declining (1 to 500 characters); the requester sees it"
    )


async def test_a_body_that_is_not_a_json_object_is_refused(console: Console) -> None:
    _pin(console)
    for body in ([1, 2], "text", None):
        status, _, text = await console.post(f"{BASE}/decline", body)
        assert status == 400
        assert json.loads(text)["error"]["message"] == "the request body must be a JSON object"


async def test_a_doorbell_not_paired_here_is_a_404_that_says_what_to_do(console: Console) -> None:
    status, _, text = await console.post(f"{BASE}/approve", {"segments": ["a.000001"]})
    assert status == 404
    assert json.loads(text)["error"] == {
        "code": "not_paired",
        "message": f"doorbell '{DOOR}' is not paired with this profile; pair it on the "
        "Doorbells page",
    }


async def test_a_doorbell_that_does_not_answer_is_shown_offline(console: Console) -> None:
    _pin(console)
    status, _, text = await console.get("/api/doorbells", **cookie())
    assert status == 200
    [row] = json.loads(text)["doorbells"]
    assert (row["device_id"], row["online"]) == (DOOR, False)
    assert row["error"].startswith(f"cannot connect to device {DOOR} (")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "the policy is not a valid policy: policy must be an object with exactly "),
        (
            {"policy": {"refused_kinds": []}},
            "the policy is not a valid policy: policy must be an object with exactly ",
        ),
    ],
)
async def test_a_policy_the_device_would_refuse_is_refused_before_signing(
    console: Console, body: dict[str, object], message: str
) -> None:
    _pin(console)
    status, _, text = await console.post(f"/api/doorbells/{DOOR}/policy", body)
    assert status == 400
    assert json.loads(text)["error"]["message"].startswith(message)


@pytest.mark.parametrize("key_id", [None, "", "  ", "k" * 129, 5])
async def test_letting_a_phone_pair_needs_its_key_id(console: Console, key_id: object) -> None:
    _pin(console)
    status, _, text = await console.post(
        f"/api/doorbells/{DOOR}/owners/approve", {"key_id": key_id}
    )
    assert status == 400
    assert json.loads(text)["error"]["message"] == (
        "paste the new phone's key id (its 'doorward owner init' or 'owner status' shows it)"
    )


async def test_a_live_link_names_a_camera_or_none(console: Console) -> None:
    _pin(console)
    status, _, text = await console.post(f"/api/doorbells/{DOOR}/live-link", {"camera": ["front"]})
    assert status == 400
    assert json.loads(text)["error"]["message"] == (
        "name one of the doorbell's cameras, or none for the first"
    )
