"""Zeroconf advertisement on loopback, found by a browser in another process; strict TXT parsing."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hub.wire.discovery import (
    PROTOCOL_VERSION,
    SERVICE_TYPE,
    Advertiser,
    DiscoveredDevice,
    DiscoveryError,
    NameConflictError,
    browse,
)

REPO = Path(__file__).resolve().parents[2]
FP = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
LOOPBACK = ["127.0.0.1"]

# Runs in a fresh interpreter: browse on loopback until the device shows up (in the expected
# pairing state: mDNS responders may still be sending the previous record for a moment after
# an update), then print what it saw.
BROWSER = """
import asyncio, json, sys
from hub.wire.discovery import browse
device_id, expected_pair = sys.argv[1], sys.argv[2]
for _ in range(5):
    devices = asyncio.run(browse(20, interfaces=["127.0.0.1"], until_found=[device_id]))
    ours = [d for d in devices if d.device_id == device_id]
    if [d.pairing for d in ours] == [expected_pair]:
        break
print(json.dumps([
    {"id": d.device_id, "name": d.name, "port": d.port, "pair": d.pairing, "fp": d.fingerprint,
     "v": d.version, "addresses": list(d.addresses)}
    for d in ours
]))
"""


def random_device_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(16))


def device(**changes: object) -> DiscoveredDevice:
    fields: dict[str, object] = {
        "device_id": random_device_id(),
        "name": "Front door",
        "port": 8443,
        "pairing": "open",
        "fingerprint": FP,
    }
    fields.update(changes)
    return DiscoveredDevice(**fields)  # type: ignore[arg-type]


async def browse_in_another_process(device_id: str, pair: str) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BROWSER,
        device_id,
        pair,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, stderr.decode()
    return json.loads(stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
@pytest.mark.asyncio
@pytest.mark.slow
async def test_browser_in_another_process_finds_the_device_and_its_updates() -> None:
    ad = device(name="Front door ✓")
    async with Advertiser(ad, interfaces=LOOPBACK) as advertiser:
        seen = await browse_in_another_process(ad.device_id, "open")
        assert seen == [
            {
                "id": ad.device_id,
                "name": "Front door ✓",
                "port": 8443,
                "pair": "open",
                "fp": FP,
                "v": "1",
                "addresses": ["127.0.0.1"],
            }
        ]
        await advertiser.update(pairing="locked")
        seen = await browse_in_another_process(ad.device_id, "locked")
        assert [d["pair"] for d in seen] == ["locked"]
    assert advertiser.device.pairing == "locked"


@pytest.mark.timeout(60)
@pytest.mark.asyncio
@pytest.mark.slow
async def test_browse_in_process_returns_early_once_found() -> None:
    ads = [device(name="Back door"), device(name="Garage")]
    advertisers = [Advertiser(ad, interfaces=LOOPBACK) for ad in ads]
    await asyncio.gather(*(advertiser.start() for advertiser in advertisers))
    try:
        found = await browse(20, interfaces=LOOPBACK, until_found=[ad.device_id for ad in ads])
    finally:
        await asyncio.gather(*(advertiser.close() for advertiser in advertisers))
    ours = [d for d in found if d.device_id in {ad.device_id for ad in ads}]
    assert [d.name for d in ours] == ["Back door", "Garage"]
    assert ours[0] == DiscoveredDevice(
        ads[0].device_id, "Back door", 8443, "open", FP, ("127.0.0.1",)
    )


def test_txt_round_trip() -> None:
    ad = device()
    assert ad.txt() == {
        "id": ad.device_id,
        "name": "Front door",
        "port": "8443",
        "v": PROTOCOL_VERSION,
        "pair": "open",
        "fp": FP,
    }
    raw = {k.encode(): v.encode() for k, v in ad.txt().items()}
    assert DiscoveredDevice.from_txt(raw, srv_port=8443) == ad
    assert ad.instance_name == f"doorward-{ad.device_id}.{SERVICE_TYPE}"


def txt(**changes: bytes | None) -> dict[bytes, bytes | None]:
    base: dict[bytes, bytes | None] = {
        b"id": b"abcdefghijklmnop",
        b"name": b"Front door",
        b"port": b"8443",
        b"v": b"1",
        b"pair": b"open",
        b"fp": FP.encode(),
    }
    for key, value in changes.items():
        if value is None and key.startswith("drop_"):
            base.pop(key[5:].encode())
        else:
            base[key.encode()] = value
    return base


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (txt(extra=b"1"), "unknown TXT key 'extra'"),
        (txt(drop_fp=None, drop_v=None), "TXT record is missing fp, v"),
        (txt(name=None), "TXT key 'name' has no value"),
        (txt(name=b"\xff"), "TXT keys must be ASCII and values UTF-8"),
        (txt(v=b"2"), "v must be 1, got '2'"),
        (txt(port=b"08443"), "port must be 1-65535, got '08443'"),
        (txt(port=b"x"), "port must be 1-65535, got 'x'"),
        (txt(port=b"70000"), "port must be 1-65535, got 70000"),
        (txt(pair=b"maybe"), "pair must be open, closed or locked, got 'maybe'"),
        (
            txt(id=b"ABCDEFGHIJKLMNOP"),
            "id must be 16 lowercase base32 characters, got 'ABCDEFGHIJKLMNOP'",
        ),
        (txt(fp=b"short"), "fp must be 43 characters of base64url (SHA-256), got 'short'"),
        (txt(name=b"a\nb"), "name must be 1-63 bytes of printable text, got 'a\\nb'"),
        (txt(name=b"x" * 64), f"name must be 1-63 bytes of printable text, got {'x' * 64!r}"),
    ],
)
def test_txt_parsing_is_strict(properties: dict[bytes, bytes | None], message: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        DiscoveredDevice.from_txt(properties)
    assert str(info.value) == message


def test_txt_port_must_match_srv() -> None:
    with pytest.raises(DiscoveryError, match=r"^TXT port 8443 does not match the SRV port 9000$"):
        DiscoveredDevice.from_txt(txt(), srv_port=9000)


def test_advertiser_needs_addresses_for_all_interfaces() -> None:
    with pytest.raises(ValueError, match=r"^addresses must be given when interfaces is not a list"):
        Advertiser(device())


@pytest.mark.timeout(60)
@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_second_advertiser_for_the_same_device_finds_the_name_taken() -> None:
    ad = device(name="Front door")
    async with Advertiser(ad, interfaces=LOOPBACK):
        impostor = Advertiser(replace(ad, name="Impostor", port=9443), interfaces=LOOPBACK)
        try:
            with pytest.raises(NameConflictError) as caught:
                await impostor.start()
        finally:
            await impostor.close()
    instance = f"doorward-{ad.device_id}.{SERVICE_TYPE}"
    host = f"doorward-{ad.device_id}.local."
    assert str(caught.value) == f"another host on the LAN answers for {instance} or {host}"


@pytest.mark.timeout(60)
@pytest.mark.asyncio
@pytest.mark.slow
async def test_devices_with_different_ids_both_claim_their_names() -> None:
    ads = [device(name="Front door"), device(name="Front door")]
    advertisers = [Advertiser(ad, interfaces=LOOPBACK) for ad in ads]
    await advertisers[0].start()
    try:
        await advertisers[1].start()  # same display name, another device: no conflict
        found = await browse(20, interfaces=LOOPBACK, until_found=[ad.device_id for ad in ads])
    finally:
        await asyncio.gather(*(advertiser.close() for advertiser in advertisers))
    assert {d.device_id for d in found} >= {ad.device_id for ad in ads}
