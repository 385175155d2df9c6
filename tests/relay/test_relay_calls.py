"""One API, two transports: a real device answers signed calls through a real Mosquitto broker
(OHTTP + Binary HTTP over MQTT 5) exactly as it answers them on the LAN."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import stat
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from crypto.keys import KeyBundle, key_id
from crypto.tls import client_context
from hub.client import DoorwardClient
from hub.client.api import ApiError
from hub.client.profile import PinnedDevice
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayTransport
from hub.relay.device import RelayDevice, RelayLogin
from hub.server.config import ConfigError, RelayConfig, load_config
from hub.server.state import Device
from hub.wire import bhttp, ohttp
from hub.wire.httpsig import RequestSigner
from hub.wire.relay_keys import RelayKeys
from tests.hub.hubkit import Running, running_device, write_big_clip
from tests.relay.relaykit import (
    client,
    device_id_of,
    messages_until,
    need_mosquitto,
    next_message,
    request_properties,
)

OPERATOR = "operator"


@dataclass
class Rig:
    running: Running
    broker: MosquittoBroker
    owner: KeyBundle
    relay_device: RelayDevice
    key_config: bytes

    @property
    def device_id(self) -> str:
        return self.running.device.identity.device_id

    def transport(self, keys: KeyBundle) -> RelayTransport:
        cid = key_id(keys.signing_key.public_key())
        return RelayTransport(
            host=self.broker.host,
            port=self.broker.client_port,
            tls=self.broker.tls_context(),
            client_id=cid,
            password=self.broker.credentials(cid).password,
            device_id=self.device_id,
            key_config=self.key_config,
            timeout_s=5.0,
        )


@contextlib.asynccontextmanager
async def relay_rig(
    tmp_path: Path,
    *,
    clients: Sequence[KeyBundle] = (),
    device_options: Mapping[str, Any] | None = None,
    **running_options: Any,
) -> AsyncIterator[Rig]:
    """A broker, a running device with one owner, and the device's relay connection; ``clients``
    get broker logins too, ``device_options`` go to RelayDevice, the rest to running_device."""
    need_mosquitto()
    data = tmp_path / "data"
    device_id = device_id_of(data)
    owner = KeyBundle.generate("x25519")
    owner_id = key_id(owner.signing_key.public_key())
    client_ids = [owner_id, *(key_id(k.signing_key.public_key()) for k in clients)]
    broker = MosquittoBroker(
        tmp_path / "broker", devices=[device_id], clients=client_ids, operators=[OPERATOR]
    )
    broker.start()
    try:
        async with running_device(data, **running_options) as running:
            running.add_owner(owner)
            # The owner fetches the relay key configuration over the pinned LAN API.
            async with running.client(owner) as lan:
                key_config = await lan.relay_key_config()
            login = RelayLogin(
                broker.host,
                broker.device_port,
                device_id,
                broker.credentials(device_id).password,
                broker.tls_context(),
            )
            assert running.device.relay_key is not None
            relay_device = RelayDevice(
                login,
                device_id=device_id,
                gateway_key=running.device.relay_key,
                pq_key=running.device.relay_pq_key,
                api_url=running.url,
                fingerprint=running.device.fingerprint,
                **(device_options or {}),
            )
            task = asyncio.ensure_future(relay_device.run())
            try:
                async with asyncio.timeout(10):
                    await relay_device.connected.wait()
                yield Rig(running, broker, owner, relay_device, key_config)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        broker.stop()


def relay_client(
    rig: Rig, transport: RelayTransport, keys: KeyBundle | None = None
) -> DoorwardClient:
    device = rig.running.device
    return DoorwardClient(
        rig.running.url,
        fingerprint=device.fingerprint,
        device_id=device.identity.device_id,
        key=(keys or rig.owner).signing_key,
        relay=transport,
    )


@pytest.mark.asyncio
async def test_key_config_is_served_to_owners_and_kept_in_the_profile(tmp_path: Path) -> None:
    owner, stranger = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        key_file = tmp_path / "data" / "keys" / "relay.x25519"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        async with running.client(owner) as lan:
            served = await lan.relay_key_config()
        async with running.client(stranger) as other:
            with pytest.raises(ApiError) as refused:
                await other.relay_key_config()
        assert refused.value.code == "unknown_key"
        assert running.device.relay_key is not None
        keys = RelayKeys.parse(served)
        assert keys.classic == running.device.relay_key.config()
        assert running.device.relay_pq_key is not None
        assert keys.hybrid == running.device.relay_pq_key.config()
        pq_file = tmp_path / "data" / "keys" / "relay-pq.seed"
        assert stat.S_IMODE(pq_file.stat().st_mode) == 0o600
        assert secrets.compare_digest(
            key_file.read_bytes(), running.device.relay_key.private_bytes()
        )
        pin = PinnedDevice("dev", "fp", running.url, relay_key_config=served)
        assert PinnedDevice.from_json(pin.to_json()) == pin
    # The same key after a restart.
    again = Device.open(tmp_path / "data")
    try:
        assert again.relay_key is not None
        assert again.relay_keys() == served
    finally:
        again.close()


@pytest.mark.asyncio
async def test_signed_calls_over_the_relay_answer_as_on_the_lan(tmp_path: Path) -> None:
    async with relay_rig(tmp_path) as rig:
        write_big_clip(rig.running, rig.owner, segments=2)
        async with rig.running.client(rig.owner) as lan, rig.transport(rig.owner) as transport:
            api = relay_client(rig, transport)
            for path in ("/health", "/clips"):
                direct = await lan._json("GET", path)
                relayed = await api._json("GET", path)
                direct.pop("uptime_s", None)
                relayed.pop("uptime_s", None)
                assert relayed == direct
            assert len((await api.clips()).clips) == 1
            with pytest.raises(ApiError) as unknown:
                await api.download_segment("x", tmp_path / "seg")
            assert unknown.value.code == "not_found"
        assert rig.relay_device.answered == 4


async def _raw_call(mqtt: aiomqtt.Client, rig: Rig, sender: str, sealed: bytes) -> bytes | None:
    """Publish ``sealed`` as ``sender``'s request; the sealed answer, or None if none comes."""
    correlation = secrets.token_bytes(16)
    reply = f"doorward/v1/cli/{sender}/res/{rig.device_id}"
    await mqtt.publish(
        f"doorward/v1/dev/{rig.device_id}/in/{sender}",
        sealed,
        qos=1,
        properties=request_properties(reply, correlation),
    )
    try:
        message = await next_message(mqtt)
    except TimeoutError:
        return None
    assert message.properties.CorrelationData == correlation  # type: ignore[union-attr]
    assert isinstance(message.payload, bytes)
    return message.payload


def _sealed(rig: Rig, request: bhttp.Request) -> tuple[bytes, ohttp.ClientExchange]:
    return ohttp.encapsulate_request(RelayKeys.parse(rig.key_config).classic, request.encode())


def _answer(exchange: ohttp.ClientExchange, sealed: bytes | None) -> bhttp.Response:
    assert sealed is not None, "the device did not answer"
    return bhttp.parse_response(exchange.open_response(sealed))


async def _lan(rig: Rig, headers: dict[str, str]) -> tuple[int, str]:
    ssl = client_context(rig.running.device.fingerprint)
    async with (
        aiohttp.ClientSession() as session,
        session.get(rig.running.url + "/health", headers=headers, ssl=ssl) as response,
    ):
        return response.status, (await response.json())["error"]["code"]


@pytest.mark.asyncio
async def test_unsigned_wrongly_signed_and_replayed_calls_are_refused(tmp_path: Path) -> None:
    async with relay_rig(tmp_path) as rig:
        owner_id = key_id(rig.owner.signing_key.public_key())
        authority = rig.running.url.removeprefix("https://")
        url = rig.running.url + "/health"
        stranger = KeyBundle.generate("x25519")
        signer = RequestSigner(
            rig.owner.signing_key, key_id=owner_id, device_id=rig.device_id, now_s=time.time
        )
        foreign = RequestSigner(
            stranger.signing_key,
            key_id=key_id(stranger.signing_key.public_key()),
            device_id=rig.device_id,
            now_s=time.time,
        )
        cases = {
            "unsigned": {},
            "stranger": foreign.headers("GET", url),
            "tampered": {**signer.headers("GET", url), "signature": "sig1=:" + "A" * 86 + "==:"},
        }
        async with client(rig.broker, owner_id) as mqtt:
            await mqtt.subscribe(f"doorward/v1/cli/{owner_id}/res/{rig.device_id}", qos=1)
            for name, headers in cases.items():
                fields = tuple((k.lower(), v) for k, v in headers.items())
                sealed, exchange = _sealed(
                    rig, bhttp.Request("GET", "https", authority, "/health", fields)
                )
                relayed = _answer(exchange, await _raw_call(mqtt, rig, owner_id, sealed))

                code = json.loads(relayed.content)["error"]["code"]
                assert (relayed.status, code) == await _lan(rig, headers), name
                assert relayed.status in (401, 403)

            # A captured relay message sent again gets the very bytes answered the first time
            # (which only the sender can open) from the device's memory of handled calls: the
            # API does not see it twice.
            fields = tuple((k.lower(), v) for k, v in signer.headers("GET", url).items())
            sealed, exchange = _sealed(
                rig, bhttp.Request("GET", "https", authority, "/health", fields)
            )
            first_raw = await _raw_call(mqtt, rig, owner_id, sealed)
            assert _answer(exchange, first_raw).status == 200
            assert await _raw_call(mqtt, rig, owner_id, sealed) == first_raw
            assert rig.relay_device.repeats == 1
            # Once that memory is gone, the API refuses the signature's nonce, as on the LAN.
            rig.relay_device.forget_answers()
            second = _answer(exchange, await _raw_call(mqtt, rig, owner_id, sealed))
            assert second.status == 401
            assert b'"replayed"' in second.content


@pytest.mark.asyncio
async def test_a_message_to_another_key_gets_no_answer_and_no_audit(tmp_path: Path) -> None:
    async with relay_rig(tmp_path) as rig:
        owner_id = key_id(rig.owner.signing_key.public_key())
        url = rig.running.url + "/health"
        signer = RequestSigner(
            rig.owner.signing_key, key_id=owner_id, device_id=rig.device_id, now_s=time.time
        )
        fields = tuple((k.lower(), v) for k, v in signer.headers("GET", url).items())
        request = bhttp.Request("GET", "https", url.split("/")[2], "/health", fields).encode()
        wrong_id = ohttp.GatewayKey.generate(7).config()
        wrong_key = ohttp.GatewayKey.generate(1).config()  # right id, another key
        audited = rig.running.device.audit.size
        async with client(rig.broker, owner_id) as mqtt:
            await mqtt.subscribe(f"doorward/v1/cli/{owner_id}/res/{rig.device_id}", qos=1)
            for config in (wrong_id, wrong_key):
                sealed, _ = ohttp.encapsulate_request(config, request)
                assert await _raw_call(mqtt, rig, owner_id, sealed) is None
            assert await _raw_call(mqtt, rig, owner_id, b"\x01not ohttp at all") is None
        assert rig.relay_device.dropped == 3
        assert rig.relay_device.answered == 0
        assert rig.running.device.audit.size == audited


@pytest.mark.asyncio
async def test_the_operator_sees_no_path_header_or_body(tmp_path: Path) -> None:
    async with relay_rig(tmp_path) as rig:
        write_big_clip(rig.running, rig.owner, segments=2)
        owner_id = key_id(rig.owner.signing_key.public_key())
        async with client(rig.broker, OPERATOR) as spy:
            await spy.subscribe("#", qos=1)
            async with rig.transport(rig.owner) as transport:
                api = relay_client(rig, transport)
                clips = (await api.clips()).clips
                await api._json("GET", "/health")
            marker = b"marker-" + secrets.token_bytes(8)
            async with client(rig.broker, owner_id) as owner_mqtt:
                await owner_mqtt.publish(
                    f"doorward/v1/dev/{rig.device_id}/in/{owner_id}", marker, qos=1
                )
            seen = await messages_until(spy, marker)
        payloads = [m.payload for m in seen if str(m.topic).split("/")[-2] in ("in", "res")]
        assert len(payloads) == 4  # two requests, two answers
        secrets_in_clear = [
            b"/health",
            b"/clips",
            b"signature",
            b"content-digest",
            b"application/json",
            b"device_id",
            b"uptime_s",
            clips[0].clip_id.encode(),
            rig.running.url.removeprefix("https://").encode(),
        ]
        for payload in payloads:
            assert isinstance(payload, bytes)
            for needle in secrets_in_clear:
                assert needle not in payload.lower(), needle


def test_relay_config_table(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(
        '[relay]\nurl = "mqtts://relay.example.net:8883"\ncredentials_file = "/etc/pw"\n'
    )
    assert load_config(path).relay == RelayConfig("mqtts://relay.example.net:8883", Path("/etc/pw"))
    path.write_text("[relay]\n")
    assert load_config(path).relay is None
    path.write_text('[relay]\nurl = "mqtt://relay.example.net"\ncredentials_file = "/etc/pw"\n')
    with pytest.raises(ConfigError, match="TLS only"):
        load_config(path)
    path.write_text('[relay]\nurl = "mqtts://relay.example.net"\n')
    with pytest.raises(ConfigError, match="relay needs credentials_file"):
        load_config(path)
    path.write_text('[relay]\nurl = "mqtts://r"\ncredentials_file = "/p"\npassword = "x"\n')
    with pytest.raises(ConfigError, match="unknown relay option"):
        load_config(path)


@pytest.mark.asyncio
async def test_an_answer_larger_than_one_relay_message_comes_in_chunks(tmp_path: Path) -> None:
    async with relay_rig(tmp_path) as rig:
        for index in range(2000):  # a page of audit entries far above one broker packet
            rig.running.device.audit.append("clip.deleted", clip_id=f"c{index:04d}", reason="test")
        async with rig.running.client(rig.owner) as lan, rig.transport(rig.owner) as transport:
            api = relay_client(rig, transport)
            relayed = await api.audit_entries(0)
            direct = await lan.audit_entries(0)
        assert relayed == direct
        assert sum(len(leaf) for leaf in relayed.leaves) > 128 * 1024
        assert rig.relay_device.chunks_sent > 2


@pytest.mark.asyncio
async def test_a_plain_rfc_9458_request_still_gets_one_message_and_413_past_it(
    tmp_path: Path,
) -> None:
    async with relay_rig(tmp_path) as rig:
        for index in range(800):
            rig.running.device.audit.append("clip.deleted", clip_id=f"c{index:04d}", reason="test")
        owner_id = key_id(rig.owner.signing_key.public_key())
        authority = rig.running.url.removeprefix("https://")
        signer = RequestSigner(
            rig.owner.signing_key, key_id=owner_id, device_id=rig.device_id, now_s=time.time
        )
        async with client(rig.broker, owner_id) as mqtt:
            await mqtt.subscribe(f"doorward/v1/cli/{owner_id}/res/{rig.device_id}", qos=1)
            answers = []
            for path in ("/health", "/audit/entries?start=0"):
                headers = signer.headers("GET", rig.running.url + path)
                fields = tuple((k.lower(), v) for k, v in headers.items())
                sealed, exchange = _sealed(
                    rig, bhttp.Request("GET", "https", authority, path, fields)
                )
                answers.append(_answer(exchange, await _raw_call(mqtt, rig, owner_id, sealed)))
        assert answers[0].status == 200
        assert answers[1].status == 413
        assert json.loads(answers[1].content)["error"]["code"] == "relay_too_large"


def test_serve_starts_the_relay_only_with_usable_files(tmp_path: Path) -> None:
    import socket

    from hub.server.config import ServeConfig
    from hub.server.runtime import _relay_device

    secret = tmp_path / "relay-password"
    secret.write_text("hunter2-not-logged\n")
    secret.chmod(0o644)
    config = ServeConfig(
        data_dir=tmp_path / "data", relay=RelayConfig("mqtts://127.0.0.1:8883", secret)
    )
    device = Device.open(config.data_dir)
    try:
        with socket.socket() as api:
            api.bind(("0.0.0.0", 0))  # noqa: S104
            assert _relay_device(config, device, api) is None  # others may read the password
            secret.chmod(0o600)
            relay = _relay_device(config, device, api)
            assert isinstance(relay, RelayDevice)
            assert "hunter2" not in repr(relay)
            assert relay._api_url == f"https://127.0.0.1:{api.getsockname()[1]}"
    finally:
        device.close()


def test_reconnects_back_off_with_jitter() -> None:
    from hub.relay.device import backoff_s

    steps = (1.0, 2.0, 5.0)
    for attempt, step in [(0, 1.0), (1, 2.0), (2, 5.0), (9, 5.0)]:
        delays = {backoff_s(attempt, steps) for _ in range(50)}
        assert all(step * 0.5 <= d <= step * 1.5 for d in delays)
        assert len(delays) > 40  # spread, not one instant for every doorbell
