"""Faults on the way through the relay: a broker restarted mid-request, a doorbell offline for ten
minutes, QoS 1 duplicates, a captured message replayed, oversized and malformed encapsulations,
and callers pretending to be the relay. Every call is recorded exactly once or refused clearly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from consent.owner import approve
from consent.requests import verify_request
from crypto.keys import KeyBundle, key_id
from crypto.tls import client_context
from device import CameraPipeline, RecorderConfig
from hub.cli.request_footage import ApiFootage
from hub.client import DoorwardClient
from hub.client.api import ApiError
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayTransport
from hub.relay.device import MAX_MESSAGE_BYTES, RelayDevice, RelayLogin
from hub.relay.events import RelayEvents
from hub.server import appkeys
from hub.server.events import device_event
from hub.wire import bhttp, ohttp
from hub.wire.httpsig import RequestSigner
from hub.wire.relay_hop import HOP_CLIENT, HOP_TOKEN
from hub.wire.relay_keys import RelayKeys
from tests.hub.hubkit import Running, audited_seals, request_token, running_device, small_camera
from tests.relay.relaykit import (
    client,
    device_id_of,
    need_mosquitto,
    next_message,
    request_properties,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

TEN_MINUTES_S = 600


@dataclass
class Rig:
    """A recorded device, its relay connection (which the test can cut), a broker, an owner
    and a requester with broker logins."""

    running: Running
    broker: MosquittoBroker
    owner: KeyBundle
    requester: KeyBundle
    key_config: bytes
    start_s: float
    relay: RelayDevice | None = None
    _task: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def device_id(self) -> str:
        return self.running.device.identity.device_id

    async def relay_up(self) -> RelayDevice:
        """Connect the doorbell to the relay (a new connection, as after a reboot)."""
        login = RelayLogin(
            self.broker.host,
            self.broker.device_port,
            self.device_id,
            self.broker.credentials(self.device_id).password,
            self.broker.tls_context(),
        )
        device = self.running.device
        assert device.relay_key is not None
        events = RelayEvents(  # as doorward serve wires them
            device_id=self.device_id,
            source=self.running.app[appkeys.BUS].subscribe,
            owners=lambda: [(o.key_id, o.recipient) for o in device.owners.list_owners()],
        )
        self.relay = RelayDevice(
            login,
            device_id=self.device_id,
            gateway_key=device.relay_key,
            pq_key=device.relay_pq_key,
            api_url=self.running.url,
            fingerprint=device.fingerprint,
            events=events,
        )
        self._task = asyncio.ensure_future(self.relay.run())
        async with asyncio.timeout(20):
            await self.relay.connected.wait()
        return self.relay

    async def relay_down(self) -> None:
        """Cut the doorbell's relay connection: what is sent now waits at the broker."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def transport(self, keys: KeyBundle, *, timeout_s: float = 10.0) -> RelayTransport:
        cid = key_id(keys.signing_key.public_key())
        return RelayTransport(
            host=self.broker.host,
            port=self.broker.client_port,
            tls=self.broker.tls_context(),
            client_id=cid,
            password=self.broker.credentials(cid).password,
            device_id=self.device_id,
            key_config=self.key_config,
            timeout_s=timeout_s,
        )

    def api(
        self,
        keys: KeyBundle,
        transport: RelayTransport,
        *,
        clock: Callable[[], float] = time.time,
    ) -> DoorwardClient:
        device = self.running.device
        return DoorwardClient(
            self.running.url,
            fingerprint=device.fingerprint,
            device_id=self.device_id,
            key=keys.signing_key,
            relay=transport,
            clock=clock,
        )

    def kinds(self) -> list[str]:
        return [e.body()["kind"] for e in self.running.device.audit.entries()]


@contextlib.asynccontextmanager
async def fault_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    need_mosquitto()
    data = tmp_path / "data"
    device_id = device_id_of(data)
    owner, requester = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    clients = [key_id(k.signing_key.public_key()) for k in (owner, requester)]
    broker = MosquittoBroker(tmp_path / "broker", devices=[device_id], clients=clients)
    await asyncio.to_thread(broker.start)
    start_s = time.time() - 900
    try:
        async with running_device(data) as running:
            running.add_owner(owner)
            await _record_one_clip(running, start_s)
            async with running.client(owner) as lan:
                key_config = await lan.relay_key_config()
            rig = Rig(running, broker, owner, requester, key_config, start_s)
            # The doorbell has been on the relay before: its session (inbox subscription) is
            # kept at the broker while it is away.
            await rig.relay_up()
            await rig.relay_down()
            try:
                yield rig
            finally:
                await rig.relay_down()
    finally:
        await asyncio.to_thread(broker.stop)


async def _record_one_clip(running: Running, start_s: float) -> None:
    bus = running.app[appkeys.BUS]
    source = small_camera(start_s, seconds=4.0)
    pipeline = CameraPipeline(
        "front",
        source,
        running.device.store,
        running.device.owners.recipients,
        config=RecorderConfig(
            pre_roll_s=1.0, post_roll_s=1.0, segment_s=1.0, keyframe_interval_s=1.0
        ),
        on_event=lambda e: (m := device_event(e)) and bus.publish(m[0], **m[1]),
        button=source.button,
    )
    assert (await pipeline.run()).clips == 1


def _request(rig: Rig) -> str:
    window = (int(rig.start_s) - 60, int(rig.start_s) + 600)
    return request_token(rig.requester, window=window, contact="ada@pd.example")


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (up to 20 s) until ``condition`` holds: a counter kept by the code under test."""
    async with asyncio.timeout(20):
        while not condition():  # noqa: ASYNC110 - polls counters that have no event to wait on
            await asyncio.sleep(0.02)


async def _published(transport: RelayTransport, count: int = 1) -> None:
    """Wait until the broker has acknowledged ``count`` requests of ``transport``."""
    await _until(lambda: transport.published >= count)


async def test_a_broker_restart_mid_request_delivers_it_and_records_it_once(
    tmp_path: Path,
) -> None:
    async with fault_rig(tmp_path) as rig:
        async with rig.transport(rig.requester, timeout_s=90) as transport:
            agency = rig.api(rig.requester, transport)
            # The doorbell is away: the request waits in its session at the broker.
            call = asyncio.ensure_future(agency.submit_request(_request(rig)))
            await _published(transport)
            await asyncio.to_thread(rig.broker.stop)  # SIGTERM: the broker saves its sessions
            await asyncio.to_thread(rig.broker.start)
            # The phone logs in again and publishes the waiting request once more.
            await _published(transport, 2)
            assert transport.reconnects == 1
            relay = await rig.relay_up()
            submitted = await call
        assert submitted.status == "pending"
        # The saved message and the resent one both reached the doorbell: one was handled,
        # the other answered from memory.
        await _until(lambda: relay.repeats >= 1)
        assert rig.kinds().count("request.received") == 1
        assert rig.kinds().count("request.pending") == 1
        async with rig.running.client(rig.owner) as lan:
            assert [r.request_id for r in await lan.requests("pending")] == [submitted.request_id]


async def test_a_request_and_an_approval_wait_ten_minutes_for_an_offline_doorbell(
    tmp_path: Path,
) -> None:
    """Signed ten minutes before the doorbell gets them (its clock says so): both are taken.
    A call older than the relay's maximum wait is refused and changes nothing."""
    async with fault_rig(tmp_path) as rig:

        def ten_minutes_ago() -> float:
            return time.time() - TEN_MINUTES_S

        async with (
            rig.transport(rig.requester, timeout_s=60) as agency_relay,
            rig.transport(rig.owner, timeout_s=60) as phone_relay,
            rig.running.client(rig.owner) as lan,
        ):
            agency = rig.api(rig.requester, agency_relay, clock=ten_minutes_ago)
            asked = asyncio.ensure_future(agency.submit_request(_request(rig)))
            await _published(agency_relay)
            await rig.relay_up()
            submitted = await asked
            assert submitted.status == "pending"

            # The owner approves from work while the doorbell is away again.
            await rig.relay_down()
            approval = await _approval(rig, lan, submitted.request_id)
            phone = rig.api(rig.owner, phone_relay, clock=ten_minutes_ago)
            approving = asyncio.ensure_future(phone.consent(submitted.request_id, approval))
            await _published(phone_relay)
            await rig.relay_up()
            release = await approving
            assert len(release.segment_ids) == 2
            assert rig.kinds().count("request.approved") == 1

            # Past the relay's maximum wait (30 minutes), a call is stale: refused, not recorded.
            entries = rig.running.device.audit.size
            too_old = rig.api(rig.requester, agency_relay, clock=lambda: time.time() - 1900)
            with pytest.raises(ApiError) as refused:
                await too_old.submit_request(_request(rig))
            assert (refused.value.status, refused.value.code) == (401, "stale")
            assert "a relayed call may wait" in str(refused.value)
            assert rig.running.device.audit.size == entries
            # On the LAN the usual window holds: ten minutes is too old there.
            async with rig.running.client(rig.requester, clock=ten_minutes_ago) as direct:
                with pytest.raises(ApiError) as direct_refused:
                    await direct.submit_request(_request(rig))
            assert direct_refused.value.code == "stale"


async def _approval(rig: Rig, lan: DoorwardClient, request_id: str) -> str:
    request = verify_request((await lan.request(request_id)).token or "", int(time.time()))
    [clip] = (await lan.clips()).clips
    segments = (await lan.clip(clip.clip_id)).segments[:2]
    workdir = Path(rig.running.device.data_dir).parent / f"phone-{secrets.token_hex(4)}"
    workdir.mkdir()
    footage = await ApiFootage.load(lan, request, [s.segment_id for s in segments], workdir=workdir)
    now = int(time.time()) - TEN_MINUTES_S
    return approve(
        rig.owner.signing_key,
        [rig.owner.age_identity],
        request,
        list(segments),
        footage,
        device_id=rig.device_id,
        device_key=rig.running.device.identity.public_key,
        sealed=await audited_seals(rig.running, lan, rig.owner, [clip.clip_id]),
        token_id=secrets.token_urlsafe(16),
        now=now,
        expires_at_s=now + 3600,
    )


def _sealed_submit(rig: Rig, token: str) -> tuple[bytes, ohttp.ClientExchange]:
    url = rig.running.url + "/requests"
    signer = RequestSigner(
        rig.requester.signing_key,
        key_id=key_id(rig.requester.signing_key.public_key()),
        device_id=rig.device_id,
        now_s=time.time,
    )
    body = token.encode()
    fields = tuple((k.lower(), v) for k, v in signer.headers("POST", url, body).items())
    inner = bhttp.Request("POST", "https", url.split("/")[2], "/requests", fields, body)
    return ohttp.encapsulate_request(RelayKeys.parse(rig.key_config).classic, inner.encode())


async def _raw(mqtt, rig: Rig, sender: str, payload: bytes) -> bytes | None:  # type: ignore[no-untyped-def]
    """Publish ``payload`` as ``sender``'s request; the answer's payload, or None if none came."""
    correlation = secrets.token_bytes(16)
    await mqtt.publish(
        f"doorward/v1/dev/{rig.device_id}/in/{sender}",
        payload,
        qos=1,
        properties=request_properties(f"doorward/v1/cli/{sender}/res/{rig.device_id}", correlation),
    )
    try:
        message = await next_message(mqtt)
    except TimeoutError:
        return None
    assert message.properties.CorrelationData == correlation  # type: ignore[union-attr]
    assert isinstance(message.payload, bytes)
    return message.payload


async def test_duplicates_and_replays_of_a_request_are_never_recorded_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fault_rig(tmp_path) as rig:
        relay = await rig.relay_up()
        sender = key_id(rig.requester.signing_key.public_key())
        sealed, exchange = _sealed_submit(rig, _request(rig))
        async with client(rig.broker, sender) as mqtt:
            await mqtt.subscribe(f"doorward/v1/cli/{sender}/res/{rig.device_id}", qos=1)
            first = await _raw(mqtt, rig, sender, sealed)
            assert first is not None
            answer = bhttp.parse_response(exchange.open_response(first))
            assert answer.status == 201
            # QoS 1 delivers at least once: the same message again gets the same bytes back.
            assert await _raw(mqtt, rig, sender, sealed) == first
            assert relay.repeats == 1
            # A captured message replayed once the doorbell no longer remembers it: the API
            # refuses the nonce.
            relay.forget_answers()
            entries = rig.running.device.audit.size
            with caplog.at_level(logging.WARNING):
                replayed = await _raw(mqtt, rig, sender, sealed)
            assert replayed is not None
            refused = bhttp.parse_response(exchange.open_response(replayed))
            assert refused.status == 401
            assert b'"replayed"' in refused.content
            assert "httpsig.replayed" in caplog.text
        assert rig.kinds().count("request.received") == 1
        assert rig.running.device.audit.size == entries


async def test_oversized_and_malformed_encapsulations_are_dropped_unrecorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fault_rig(tmp_path) as rig:
        relay = await rig.relay_up()
        sender = key_id(rig.requester.signing_key.public_key())
        config = RelayKeys.parse(rig.key_config).classic
        sealed, _ = _sealed_submit(rig, _request(rig))
        not_binary_http, _ = ohttp.encapsulate_request(config, b"\x07not a binary request")
        cases = {
            "too_large": secrets.token_bytes(MAX_MESSAGE_BYTES + 1),
            "does_not_open": sealed[:-1] + bytes([sealed[-1] ^ 1]),  # one bit of the tag
            "malformed": not_binary_http,
            "truncated_header": sealed[:5],
            "unknown_key": bytes([config.key_id ^ 1]) + sealed[1:],
            "empty": b"",
        }
        entries = rig.running.device.audit.size
        async with client(rig.broker, sender) as mqtt:
            await mqtt.subscribe(f"doorward/v1/cli/{sender}/res/{rig.device_id}", qos=1)
            for name, payload in cases.items():
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="hub.relay.device"):
                    assert await _raw(mqtt, rig, sender, payload) is None, name
                [line] = [r.getMessage() for r in caplog.records if "relay.dropped" in r.msg]
                reason = line.rsplit("reason=", 1)[1]
                assert reason == {
                    "truncated_header": "does_not_open",
                    "empty": "does_not_open",
                }.get(name, name)
        assert relay.dropped == len(cases)
        assert rig.running.device.audit.size == entries
        assert "request.received" not in rig.kinds()


async def test_relayed_callers_are_limited_each_by_their_own_login(tmp_path: Path) -> None:
    """Requests that came through the relay reach the API from loopback, but per-address limits
    count them by broker login: one flooding requester does not lock out another, nor the LAN."""
    async with fault_rig(tmp_path) as rig:
        await rig.relay_up()
        other = KeyBundle.generate("x25519")
        async with (
            rig.transport(rig.requester) as mine,
            rig.transport(rig.owner) as theirs,
        ):
            flood = rig.api(rig.requester, mine)
            codes: list[str] = []
            while "rate_limited" not in codes and len(codes) < 200:
                with pytest.raises(ApiError) as refused:
                    await flood.request_status("a" * 43)
                codes.append(refused.value.code)
            assert codes[-1] == "rate_limited"
            assert len(codes) > rig.running.app[appkeys.DEPS].rate_burst  # the burst, then 429
            # Another broker login, and a LAN caller on the very address the relay uses.
            with pytest.raises(ApiError) as unknown:
                await rig.api(rig.owner, theirs).request_status("a" * 43)
            assert unknown.value.code == "not_found"
        async with rig.running.client(other) as lan:
            with pytest.raises(ApiError) as direct:
                await lan.request_status("a" * 43)
            assert direct.value.code == "not_found"


async def test_a_caller_cannot_pass_itself_off_as_the_relay(tmp_path: Path) -> None:
    async with fault_rig(tmp_path) as rig:
        ssl = client_context(rig.running.device.fingerprint)
        forged = {HOP_TOKEN: "0" * 64, HOP_CLIENT: "someone"}
        async with aiohttp.ClientSession() as session:
            for headers in (forged, {HOP_CLIENT: "someone"}, {HOP_TOKEN: "0" * 64}):
                async with session.get(
                    rig.running.url + "/requests/" + "a" * 43 + "/status", headers=headers, ssl=ssl
                ) as answer:
                    assert answer.status == 400
                    body = await answer.json()
                    assert (
                        "set only by the device's own relay connection" in body["error"]["message"]
                    )
