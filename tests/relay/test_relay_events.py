"""The doorbell's events through a real Mosquitto broker: each owner gets its own copy, an age file
only that owner opens (the ``age`` tool too), in the order of the LAN WebSocket stream; an offline
owner finds them in its persistent session; a removed owner gets nothing more; the operator sees
sizes and timing only."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import aiomqtt
import pytest

from crypto import age
from crypto.keys import KeyBundle
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayCallFailed, RelayTransport
from hub.relay.events import PAD_BYTES, RelayEvents, event_topic, pad, seal_event
from hub.server import appkeys
from hub.server.events import QUEUE_LENGTH, EventBus
from hub.wire import ohttp
from hub.wire.events import Event
from tests.relay.eventkit import EventRig, event_rig
from tests.relay.relaykit import (
    OPERATOR,
    client,
    inbox,
    messages_until,
    next_message,
    responses,
)

pytestmark = pytest.mark.timeout(90)

WAIT_S = 20.0


T = TypeVar("T")


async def _next(stream: AsyncIterator[T]) -> T:
    async with asyncio.timeout(WAIT_S):
        return await anext(stream)


async def _mark(rig: EventRig, owner: KeyBundle) -> bytes:
    """Publish a marker (as ``owner``, into the device's inbox, which drops it) that an operator
    watching ``#`` receives after everything the broker routed before it."""
    marker = b"marker-" + secrets.token_bytes(8)
    async with client(rig.broker, owner.key_id) as mqtt:
        await mqtt.publish(inbox(rig.device_id, owner.key_id), marker, qos=1)
    return marker


def _age_decrypt(
    age_cli: str, keys: KeyBundle, payload: bytes, tmp_path: Path
) -> subprocess.CompletedProcess[bytes]:
    identity = tmp_path / f"{keys.key_id[:8]}.key"
    identity.write_text(keys.age_identity.to_secret_string() + "\n")
    identity.chmod(0o600)
    return subprocess.run(
        [age_cli, "-d", "-i", str(identity)],
        input=payload,
        capture_output=True,
        timeout=30,
        check=False,
    )


@pytest.mark.asyncio
async def test_a_press_reaches_each_owner_as_its_own_age_file(tmp_path: Path, age_cli: str) -> None:
    ada, bob = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with event_rig(tmp_path, [ada, bob]) as rig:
        async with (
            client(rig.broker, OPERATOR) as spy,
            rig.transport(ada) as ada_relay,
            rig.transport(bob) as bob_relay,
            rig.lan(ada) as ada_lan,
        ):
            await spy.subscribe("#", qos=1)
            bus = rig.running.app[appkeys.BUS]
            subscribers = bus.subscriber_count
            kinds = ("doorbell.pressed",)
            lan_stream = ada_lan.events(kinds)
            lan_first = asyncio.ensure_future(_next(lan_stream))
            await asyncio.wait_for(bus.wait_for_subscriber(subscribers + 1), WAIT_S)
            ada_stream = rig.relayed(ada, ada_relay).events(kinds)
            bob_stream = rig.relayed(bob, bob_relay).events(kinds)

            rig.camera.button.press()
            ada_event, bob_event = await _next(ada_stream), await _next(bob_stream)
            lan_event = await lan_first
            # The same event object as the LAN WebSocket carries, for each owner.
            assert lan_event.kind == "doorbell.pressed"
            assert lan_event.data == {"camera": "front"}
            assert ada_event == lan_event
            assert bob_event == lan_event
            await lan_stream.aclose()
            await ada_stream.aclose()
            await bob_stream.aclose()
            seen = await messages_until(spy, await _mark(rig, ada))

        copies: dict[str, list[bytes]] = {ada.key_id: [], bob.key_id: []}
        for message in seen:
            for cid in copies:
                if str(message.topic) == event_topic(cid, rig.device_id):
                    assert isinstance(message.payload, bytes)
                    copies[cid].append(message.payload)
        assert copies[ada.key_id]
        assert copies[bob.key_id]
        sizes = set()
        for cid, owner, other in ((ada.key_id, ada, bob), (bob.key_id, bob, ada)):
            for payload in copies[cid]:
                sizes.add(len(payload))
                assert payload.startswith(b"age-encryption.org/v1\n")
                # The operator reads no kind, field or JSON in any copy.
                for needle in (b"doorbell", b"pressed", b"camera", b"front", b'"kind"', b"seq"):
                    assert needle not in payload
                opened = _age_decrypt(age_cli, owner, payload, tmp_path)
                assert opened.returncode == 0, opened.stderr
                assert len(opened.stdout) % PAD_BYTES == 0
                event = json.loads(opened.stdout)
                assert set(event) == {"seq", "kind", "time", "data"}
                refused = _age_decrypt(age_cli, other, payload, tmp_path)
                assert refused.returncode != 0
                assert b"no identity matched" in refused.stderr
        pressed = [json.loads(age.decrypt_bytes([ada.age_identity], p)) for p in copies[ada.key_id]]
        assert "doorbell.pressed" in [e["kind"] for e in pressed]
        # Every copy (a press, the clip it started) is one size: the kind does not show.
        assert len(sizes) == 1


async def _flush(
    spy: aiomqtt.Client, rig: EventRig, owner: KeyBundle, transport: RelayTransport
) -> list[aiomqtt.Message]:
    """Every message the operator sees until the device's answer to a call ``owner`` makes now
    through ``transport``: the device publishes in order, so that answer comes after whatever
    the device published before it."""
    await rig.relayed(owner, transport).health()
    answers = responses(owner.key_id, rig.device_id)
    seen = []
    while str((message := await next_message(spy)).topic) != answers:
        seen.append(message)
    return seen


async def _copies_seen(
    spy: aiomqtt.Client, rig: EventRig, owners: list[KeyBundle], kind: str
) -> list[Event]:
    """Wait until the operator has seen the device publish each owner's copy of an event of
    ``kind`` (so the broker has routed it, to a waiting session too); those events, by owner."""
    topics = {event_topic(o.key_id, rig.device_id): o for o in owners}
    found: dict[str, Event] = {}
    async with asyncio.timeout(WAIT_S):
        async for message in spy.messages:
            owner = topics.get(str(message.topic))
            if owner is None:
                continue
            assert isinstance(message.payload, bytes)
            data = json.loads(age.decrypt_bytes([owner.age_identity], message.payload))
            if data["kind"] == kind:
                found[owner.key_id] = Event(data["seq"], data["kind"], data["time"], data["data"])
                if len(found) == len(owners):
                    break
    return [found[o.key_id] for o in owners]


@pytest.mark.asyncio
async def test_an_offline_owner_finds_the_press_in_its_persistent_session(tmp_path: Path) -> None:
    ada, bob = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with event_rig(tmp_path, [ada, bob]) as rig, client(rig.broker, OPERATOR) as spy:
        await spy.subscribe("#", qos=1)
        # Both phones have been online once: Ada's session persists for an hour, Bob's does not.
        async with rig.transport(ada, session_expiry_s=3600), rig.transport(bob):
            pass
        # Both are offline when the doorbell rings.
        rig.camera.button.press()
        pressed, _ = await _copies_seen(spy, rig, [ada, bob], "doorbell.pressed")

        async with rig.transport(ada, session_expiry_s=3600) as ada_relay:
            stream = rig.relayed(ada, ada_relay).events(("doorbell.pressed",))
            got = await _next(stream)
            await stream.aclose()
        assert (got.seq, got.kind, got.data) == (pressed.seq, pressed.kind, pressed.data)

        # Without a persistent session the press is lost to Bob: only a later one arrives.
        async with rig.transport(bob) as bob_relay:
            stream = rig.relayed(bob, bob_relay).events(("doorbell.pressed",))
            waiter = asyncio.ensure_future(_next(stream))
            rig.running.app[appkeys.BUS].publish("doorbell.pressed", camera="later")
            later = await waiter
            await stream.aclose()
        assert later.data == {"camera": "later"}


@pytest.mark.asyncio
async def test_a_removed_owner_gets_no_event_after_its_removal(tmp_path: Path) -> None:
    # Owners with post-quantum hybrid age keys (the default kind) this time.
    ada, bob = KeyBundle.generate("hybrid"), KeyBundle.generate("hybrid")
    async with event_rig(tmp_path, [ada, bob]) as rig:
        bus = rig.running.app[appkeys.BUS]
        async with (
            client(rig.broker, OPERATOR) as spy,
            rig.transport(ada) as ada_relay,
            rig.transport(bob) as bob_relay,
            rig.lan(ada) as admin,
        ):
            await spy.subscribe("#", qos=1)
            ada_stream = rig.relayed(ada, ada_relay).events()
            bob_stream = rig.relayed(bob, bob_relay).events()
            bus.publish("doorbell.pressed", camera="before")
            assert (await _next(bob_stream)).data == {"camera": "before"}
            assert (await _next(ada_stream)).data == {"camera": "before"}
            await _flush(spy, rig, ada, ada_relay)  # the operator's view so far

            await admin.remove_owner(bob.key_id)
            rig.camera.button.press()
            after = []
            while (event := await _next(ada_stream)).kind != "doorbell.pressed":
                after.append(event.kind)
            assert after[0] == "owner.removed"
            bus.publish("motion", camera="last", score=1.0)
            while (await _next(ada_stream)).data.get("camera") != "last":
                pass
            # Every copy of the events before the last was acknowledged before the last was
            # sealed: whatever the broker routed since the removal is in the operator's view
            # before the marker.
            seen = await _flush(spy, rig, ada, ada_relay)
            to_ada = [m for m in seen if str(m.topic) == event_topic(ada.key_id, rig.device_id)]
            to_bob = [m for m in seen if str(m.topic) == event_topic(bob.key_id, rig.device_id)]
            assert len(to_ada) >= 3  # owner.removed, the press, the last
            assert to_bob == []
            assert bob_relay.events_dropped == 0
            await ada_stream.aclose()
            await bob_stream.aclose()


@pytest.mark.asyncio
async def test_events_wait_out_a_broker_outage_without_holding_up_the_camera(
    tmp_path: Path,
) -> None:
    ada = KeyBundle.generate("x25519")
    async with event_rig(tmp_path, [ada]) as rig, rig.lan(ada) as lan:
        bus = rig.running.app[appkeys.BUS]
        stream = lan.events(("doorbell.pressed",))
        first = asyncio.ensure_future(_next(stream))
        await asyncio.wait_for(bus.wait_for_subscriber(2), WAIT_S)  # the relay's and this one
        async with rig.transport(ada, session_expiry_s=3600) as relay:
            events = rig.relayed(ada, relay).events(("doorbell.pressed",))
            waiting = asyncio.ensure_future(_next(events))
            await asyncio.to_thread(rig.broker.stop)
            # The doorbell rings while the relay is down: the LAN stream and the recording go on.
            rig.camera.button.press()
            assert (await first).kind == "doorbell.pressed"
            await stream.aclose()
            assert not waiting.done()
            # The phone's stream outlives the outage: its transport logs in again, and the
            # press, queued on the doorbell meanwhile, arrives.
            await asyncio.to_thread(rig.broker.start)
            assert (await waiting).data == {"camera": "front"}
            assert relay.reconnects >= 1
            await events.aclose()


@pytest.mark.asyncio
async def test_the_relay_subscribes_again_if_the_bus_drops_it() -> None:
    bus = EventBus(clock=lambda: 1.0)
    relay = RelayEvents(device_id="dev", source=bus.subscribe, owners=list, queue_length=1000)
    feeding = asyncio.ensure_future(relay.feed())
    await asyncio.wait_for(bus.wait_for_subscriber(), WAIT_S)
    for _ in range(QUEUE_LENGTH + 1):  # in one turn of the loop: more than the bus holds
        bus.publish("motion", camera="front", score=0.5)
    assert bus.subscriber_count == 0
    await asyncio.wait_for(bus.wait_for_subscriber(), WAIT_S)
    later = bus.publish("doorbell.pressed", camera="front")
    bus.close()
    await asyncio.wait_for(feeding, WAIT_S)  # the bus closed: the feed ends once drained
    # What the bus had queued, then (the burst's last event lost) what came after.
    assert relay.queued == QUEUE_LENGTH + 1
    assert list(relay._queue)[-1] == later


def test_the_queue_keeps_the_newest_events_when_full() -> None:
    relay = RelayEvents(device_id="dev", source=lambda: None, owners=list, queue_length=2)
    for seq in range(1, 6):
        relay.offer(Event(seq, "motion", 1.0, {}))
    assert relay.dropped == 3
    assert relay.queued == 2
    assert [e.seq for e in relay._queue] == [4, 5]
    with pytest.raises(ValueError, match="queue_length must be at least 1, got 0"):
        RelayEvents(device_id="dev", source=lambda: None, owners=list, queue_length=0)


def test_every_ordinary_event_seals_to_one_size() -> None:
    owner = KeyBundle.generate("hybrid")
    assert pad(b"{}") == b"{}" + b" " * (PAD_BYTES - 2)
    assert pad(b"x" * PAD_BYTES) == b"x" * PAD_BYTES
    key = "k" * 43
    events = [
        Event(1, "doorbell.pressed", 1764748800.123456, {"camera": "front"}),
        Event(22, "motion", 1764748800.5, {"camera": "front", "score": 0.1234}),
        Event(
            333,
            "clip.started",
            1764748801.0,
            {"camera": "front", "clip_id": "c" * 26, "start": 1.5},
        ),
        Event(
            4444, "request.pending", 1764748802.0, {"request_id": "r" * 26, "requester_key_id": key}
        ),
        Event(55555, "owner.added", 1764748803.0, {"key_id": key, "admin": False}),
    ]
    sealed = [seal_event(e, owner.recipient) for e in events]
    assert len({len(s) for s in sealed}) == 1
    for event, payload in zip(events, sealed, strict=True):
        text = age.decrypt_bytes([owner.age_identity], payload)
        assert len(text) == PAD_BYTES
        assert json.loads(text) == event.to_json()


@pytest.mark.asyncio
async def test_the_client_skips_what_does_not_open_or_parse(
    broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The device's login publishes on the owner's event topic: a copy sealed to another key,
    a file that is not age, a sealed text that is not an event, then a real one."""
    owner, stranger = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    transport = RelayTransport(
        host=broker.host,
        port=broker.client_port,
        tls=broker.tls_context(),
        client_id="owner",
        password=broker.credentials("owner").password,
        device_id="alpha",
        key_config=bytes(ohttp.GatewayKey.generate(1).config()),
        timeout_s=10.0,
        identity=owner.age_identity,
    )
    good = Event(7, "doorbell.pressed", 1764748800.0, {"camera": "front"})
    payloads = [
        seal_event(good, stranger.recipient),
        b"not an age file",
        age.encrypt_bytes([owner.recipient], pad(b'{"seq": 1}')),
        age.encrypt_bytes([owner.recipient], b"\xff\xfe"),
        seal_event(good, owner.recipient),
        seal_event(good, owner.recipient),  # a QoS 1 repeat
        seal_event(Event(8, "motion", 1764748801.0, {"camera": "front"}), owner.recipient),
    ]
    async with transport, client(broker, "alpha", device=True) as device:
        stream = transport.events()
        for payload in payloads:
            await device.publish(event_topic("owner", "alpha"), payload, qos=1)
        assert await _next(stream) == good
        assert (await _next(stream)).seq == 8
        await stream.aclose()
    assert transport.events_dropped == 4
    reasons = [r.getMessage() for r in caplog.records if "relay.event_dropped" in r.getMessage()]
    assert [r.rsplit("reason=", 1)[1] for r in reasons] == [
        "does_not_open",
        "does_not_open",
        "malformed",
        "malformed",
    ]
    # After close the stream ends; a transport without an identity has none.
    bare = RelayTransport(
        host=broker.host,
        port=broker.client_port,
        tls=broker.tls_context(),
        client_id="owner",
        password=broker.credentials("owner").password,
        device_id="alpha",
        key_config=bytes(ohttp.GatewayKey.generate(1).config()),
    )
    with pytest.raises(RelayCallFailed, match="no age identity"):
        await anext(bare.events())


@pytest.mark.timeout(120)
def test_the_latency_bench_reports_both_series() -> None:
    bench = Path(__file__).resolve().parents[2] / "bench" / "_relay_events.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--json", "--presses", "3"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("press_p50_ms", "press_p95_ms", "press_max_ms", "bus_p50_ms", "bus_p95_ms"):
        assert isinstance(result[key], float), key
        assert result[key] > 0, key
    assert (result["presses"], result["fps"]) == (3, 15)
