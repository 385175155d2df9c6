"""Large bodies through the relay: chunked answers paced by the client's acknowledgements, what an
adversarial relay gets away with (nothing but delay), and presigned URLs of the backup store."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest
import pytest_asyncio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from crypto import age
from crypto.keys import KeyBundle, key_id
from hub.client.api import DoorwardClient
from hub.offsite.layout import segment_name
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer, write_credentials_file
from hub.offsite.target import BucketAddress
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayStreamBroken, RelayTimeout, RelayTransport
from hub.relay.device import WINDOW_CHUNKS
from hub.server import appkeys
from hub.server.backup import OffsiteBackup
from hub.server.backup_queue import BackupQueue
from hub.server.config import BackupConfig
from hub.server.release_offsite import OffsiteReleases, offsite_releases
from hub.server.segment_links import SegmentLinks
from hub.server.state import Device
from hub.wire import ohttp, ohttp_chunked
from hub.wire.bhttp import Request
from hub.wire.bhttp_stream import RESPONSE_END, encode_content, encode_response_head
from hub.wire.httpsig import RequestSigner
from hub.wire.relay_keys import RelayKeys
from tests.device.kit import write_clip
from tests.hub.hubkit import Running
from tests.hub.test_approve_hostile import _approve, _opened
from tests.offsite.conftest import bucket, seaweed  # noqa: F401 - fixtures
from tests.relay.relaykit import client, inbox, next_message, request_properties, responses
from tests.relay.test_relay_calls import Rig, relay_client, relay_rig

_MIB = 1024 * 1024


def _segment(running: Running, owner: KeyBundle, size: int) -> tuple[str, bytes, str]:
    """A one-segment clip of ``size`` random bytes: (segment id, plaintext, payload hash)."""
    plaintext = os.urandom(size)
    clip_id = write_clip(
        running.device.store, owner.age_identity, start_s=time.time() - 600, payloads=[plaintext]
    )
    segment = running.device.store.segment(f"{clip_id}.000000")
    return segment.segment_id, plaintext, segment.payload_sha256


async def _lan_bytes(running: Running, owner: KeyBundle, segment_id: str) -> bytes:
    out = io.BytesIO()
    async with running.client(owner) as lan:
        await lan.download_segment(segment_id, out)
    return out.getvalue()


@pytest.mark.asyncio
async def test_a_multi_mib_segment_over_the_relay_equals_the_lan_download(tmp_path: Path) -> None:
    async with relay_rig(tmp_path) as rig:
        segment_id, plaintext, _ = _segment(rig.running, rig.owner, 3 * _MIB)
        direct = await _lan_bytes(rig.running, rig.owner, segment_id)
        async with rig.transport(rig.owner) as transport:
            api = relay_client(rig, transport)
            size = await api.download_segment(segment_id, tmp_path / "seg.age")
            streamed = io.BytesIO()
            await api.download_segment(segment_id, streamed)
            assert await api.health()  # the transport goes on after two transfers
        relayed = (tmp_path / "seg.age").read_bytes()
        assert relayed == direct
        assert streamed.getvalue() == direct
        assert size == len(direct) > 3 * _MIB
        assert age.decrypt_bytes([rig.owner.age_identity], relayed) == plaintext
        # Two transfers of ~50 chunks each, never more than the window ahead of the acks.
        assert rig.relay_device.chunks_sent > 2 * (3 * _MIB // (64 * 1024))
        assert rig.relay_device.high_water <= WINDOW_CHUNKS
        assert not (tmp_path / "seg.age.part").exists()


@pytest.mark.asyncio
async def test_a_release_bundle_fetched_over_the_relay_verifies(tmp_path: Path) -> None:
    requester = KeyBundle.generate("x25519")
    async with relay_rig(tmp_path, clients=[requester]) as rig:
        clip_id, plaintexts = _big_clip(rig)
        wanted = [f"{clip_id}.000000", f"{clip_id}.000002"]
        request_id, approval = await _approve(rig.running, rig.owner, requester, wanted, tmp_path)
        assert not isinstance(approval, Exception)
        async with rig.transport(requester) as transport:
            agency = relay_client(rig, transport, requester)
            [release_id] = (await agency.request_status(request_id)).release_ids
            size = await agency.fetch_release(release_id, tmp_path / "release.tar")
        assert size == (tmp_path / "release.tar").stat().st_size
        assert size > 128 * 1024  # more than one broker packet: it came in chunks
        video = _opened(tmp_path / "release.tar", requester, rig.running, tmp_path / "out")
        assert video == plaintexts[0] + plaintexts[2]


def _big_clip(rig: Rig) -> tuple[str, list[bytes]]:
    plaintexts = [os.urandom(400_000), os.urandom(3000), os.urandom(300_000)]
    clip_id = write_clip(
        rig.running.device.store,
        rig.owner.age_identity,
        start_s=time.time() - 600,
        payloads=plaintexts,
    )
    return clip_id, plaintexts


# -- an adversarial relay ---------------------------------------------------------------------

_BODY = os.urandom(300_000)
Mutation = Callable[[list[tuple[int, bytes]]], list[tuple[int, bytes]]]


def _genuine(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return chunks


def _twice(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return [c for chunk in chunks for c in (chunk, chunk)]


def _altered(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    seq, payload = chunks[2]
    return [*chunks[:2], (seq, payload[:-1] + bytes([payload[-1] ^ 1])), *chunks[3:]]


def _dropped(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return [*chunks[:2], *chunks[3:]]


def _reordered(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return [*chunks[:2], chunks[3], chunks[2], *chunks[4:]]


def _relabelled(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Chunk 3 sent as chunk 2: the sequence numbers look right, the seal does not."""
    return [*chunks[:2], (2, chunks[3][1]), (3, chunks[2][1]), *chunks[4:]]


def _cut(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return chunks[:-1]


async def _fake_device(
    mqtt: aiomqtt.Client, key: ohttp.GatewayKey, mutate: Mutation, device: str
) -> None:
    """Answer the next request with genuinely sealed chunks of ``_BODY``, as the relay then
    delivers them after ``mutate``: published on the response topic with the device's login."""
    message = await next_message(mqtt)
    assert isinstance(message.payload, bytes)
    _, exchange = ohttp_chunked.decapsulate_request(key, message.payload)
    sealer = exchange.sealer()
    head = encode_response_head(200, (("content-length", str(len(_BODY))),))
    plains = [head + encode_content(_BODY[:60_000])]
    plains += [encode_content(_BODY[i : i + 60_000]) for i in range(60_000, len(_BODY), 60_000)]
    chunks = [(0, sealer.nonce + sealer.seal(plains[0]))]
    chunks += [(i, sealer.seal(p)) for i, p in enumerate(plains[1:], start=1)]
    chunks.append((len(chunks), sealer.seal(RESPONSE_END, final=True)))
    correlation = message.properties.CorrelationData  # type: ignore[union-attr]
    sender = str(message.topic).rsplit("/", 1)[-1]
    for seq, payload in mutate(chunks):
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = correlation
        properties.UserProperty = [("seq", str(seq))]
        await mqtt.publish(responses(sender, device), payload, qos=1, properties=properties)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_genuine, None),
        (_twice, None),
        (_altered, "altered on the way .*chunk 2 does not open"),
        (_dropped, "delivered chunk 3 where chunk 2 was due"),
        (_reordered, "delivered chunk 3 where chunk 2 was due"),
        (_relabelled, "chunk 2 does not open"),
        (_cut, "did not come through the relay"),
    ],
    ids=["genuine", "duplicated", "altered", "dropped", "reordered", "relabelled", "cut"],
)
async def test_an_adversarial_relay_is_detected_and_duplicates_are_tolerated(
    broker: MosquittoBroker, tmp_path: Path, mutate: Mutation, expected: str | None
) -> None:
    device, owner = "alpha", "owner"
    key = ohttp.GatewayKey.generate(1)
    transport = RelayTransport(
        host=broker.host,
        port=broker.client_port,
        tls=broker.tls_context(),
        client_id=owner,
        password=broker.credentials(owner).password,
        device_id=device,
        key_config=bytes(key.config()),
        timeout_s=2.0,
    )
    api = DoorwardClient(
        "https://doorbell.invalid:8443",
        fingerprint="A" * 43,
        device_id=device,
        key=KeyBundle.generate("x25519").signing_key,
        relay=transport,
    )
    # The attacker controls the broker: it logs in as the device and publishes what it likes.
    async with client(broker, device, device=True) as attacker, transport:
        await attacker.subscribe(inbox(device, "+"), qos=1)
        answering = asyncio.ensure_future(_fake_device(attacker, key, mutate, device))
        dst = tmp_path / "seg.age"
        try:
            if expected is None:
                assert await api.download_segment("x", dst, offsite=False) == len(_BODY)
                assert dst.read_bytes() == _BODY
            else:
                with pytest.raises((RelayStreamBroken, RelayTimeout), match=expected):
                    await api.download_segment("x", dst, offsite=False)
                assert not dst.exists()
                assert not (tmp_path / "seg.age.part").exists()
        finally:
            await answering


# -- the device's side: bounded, concurrent ---------------------------------------------------


def _chunked_request(
    rig: Rig, keys: KeyBundle, path: str
) -> tuple[bytes, ohttp_chunked.ChunkedClientExchange]:
    url = rig.running.url + path
    signer = RequestSigner(
        keys.signing_key,
        key_id=key_id(keys.signing_key.public_key()),
        device_id=rig.device_id,
        now_s=time.time,
    )
    fields = tuple((k.lower(), v) for k, v in signer.headers("GET", url).items())
    request = Request("GET", "https", rig.running.url.removeprefix("https://"), path, fields)
    return ohttp_chunked.encapsulate_request(
        RelayKeys.parse(rig.key_config).classic, [request.encode()]
    )


async def _publish_chunked(mqtt: aiomqtt.Client, rig: Rig, sender: str, sealed: bytes) -> bytes:
    correlation = secrets.token_bytes(16)
    properties = request_properties(responses(sender, rig.device_id), correlation)
    properties.ContentType = ohttp_chunked.REQUEST_MEDIA_TYPE
    await mqtt.publish(inbox(rig.device_id, sender), sealed, qos=1, properties=properties)
    return correlation


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for another task's counter (no event to await); fail after 20 s naming ``what``."""
    try:
        async with asyncio.timeout(20):
            while not condition():  # noqa: ASYNC110 - polling a counter another task moves
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not reached within 20 s: {what}") from None


@pytest.mark.asyncio
async def test_a_client_that_stops_acking_holds_a_window_then_is_abandoned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stalled = KeyBundle.generate("x25519")
    stalled_id = key_id(stalled.signing_key.public_key())
    options = {"ack_timeout_s": 1.0}
    async with relay_rig(tmp_path, clients=[stalled], device_options=options) as rig:
        rig.running.add_owner(stalled, name="stalled")
        segment_id, _, _ = _segment(rig.running, rig.owner, 4 * _MIB)
        caplog.set_level(logging.WARNING, logger="hub.relay.device")
        async with client(rig.broker, stalled_id) as mqtt:
            await mqtt.subscribe(responses(stalled_id, rig.device_id), qos=1)
            sealed, _ = _chunked_request(rig, stalled, f"/segments/{segment_id}")
            transfer = await _publish_chunked(mqtt, rig, stalled_id, sealed)
            first = await next_message(mqtt)
            assert first.properties.CorrelationData == transfer  # type: ignore[union-attr]

            # A call made while the transfer is stuck on its window is answered.
            async with rig.transport(rig.owner) as transport:
                health = await relay_client(rig, transport).health()
            assert health["status"] == "ok"

            await _until(lambda: rig.relay_device.abandoned == 1, "the transfer abandoned")
            assert not rig.relay_device._transfers
            # Nothing follows the window: a later answer on the same topic comes right after it.
            sealed, _ = _chunked_request(rig, stalled, "/health")
            marker = await _publish_chunked(mqtt, rig, stalled_id, sealed)
            seen = [first]
            while (message := await next_message(mqtt)).properties.CorrelationData != marker:  # type: ignore[union-attr]
                seen.append(message)
        assert len(seen) == WINDOW_CHUNKS
        assert [m.properties.UserProperty for m in seen] == [  # type: ignore[union-attr]
            [("seq", str(i))] for i in range(WINDOW_CHUNKS)
        ]
        assert rig.relay_device.high_water == WINDOW_CHUNKS
        lines = [r.getMessage() for r in caplog.records if "transfer_abandoned" in r.getMessage()]
        assert lines == [f"relay.transfer_abandoned from={stalled_id} sent=8 acked=0 after_s=1"]


# -- presigned URLs of the backup store --------------------------------------------------------


def _uploader(
    server: SeaweedServer, address: BucketAddress, tmp_path: Path
) -> Callable[[Device], OffsiteBackup]:
    credentials = write_credentials_file(tmp_path / "device.credentials", server.identities.device)
    config = BackupConfig(
        endpoint=address.endpoint,
        bucket=address.bucket,
        prefix=address.prefix,
        credentials_file=credentials,
    )

    def make(device: Device) -> OffsiteBackup:
        return OffsiteBackup(
            config,
            data_dir=device.data_dir,
            store=device.store,
            audit=device.audit,
            owners=device.owners,
            device_key=device.identity.private_key,
            retention_days=36500,
            audit_every_s=0.05,
        )

    return make


@pytest_asyncio.fixture
async def device_store(
    seaweed: SeaweedServer,  # noqa: F811 - the fixture
    bucket: BucketAddress,  # noqa: F811 - the fixture
) -> AsyncIterator[ObjectStore]:
    async with ObjectStore(bucket, seaweed.identities.device) as store:
        yield store


@pytest.mark.asyncio
async def test_with_a_backup_store_a_segment_comes_by_presigned_url_and_is_checked(
    tmp_path: Path,
    seaweed: SeaweedServer,  # noqa: F811 - the fixture
    bucket: BucketAddress,  # noqa: F811 - the fixture
    device_store: ObjectStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with relay_rig(
        tmp_path,
        backup=_uploader(seaweed, bucket, tmp_path),
        segment_links=lambda backup: SegmentLinks(device_store, backup.queue),
    ) as rig:
        segment_id, plaintext, payload_sha256 = _segment(rig.running, rig.owner, 2 * _MIB)
        direct = await _lan_bytes(rig.running, rig.owner, segment_id)
        queue = _backup_queue(rig)
        await _until(lambda: queue.uploaded(segment_name(payload_sha256)), "the segment uploaded")

        async with rig.transport(rig.owner) as transport:
            api = relay_client(rig, transport)
            sent = rig.relay_device.chunks_sent
            size = await api.download_segment(segment_id, tmp_path / "seg.age")
            # One relayed message: the redirect. The body came from the store.
            assert rig.relay_device.chunks_sent == sent + 1
            assert (tmp_path / "seg.age").read_bytes() == direct
            assert size == len(direct)
            assert age.decrypt_bytes([rig.owner.age_identity], direct) == plaintext

            # The store serves something else under that name: refused, and the segment comes
            # from the device in chunks after all.
            async with ObjectStore(bucket, seaweed.identities.admin) as admin:
                other = direct[:-1] + bytes([direct[-1] ^ 1])
                await admin.put_bytes(segment_name(payload_sha256), other)
            caplog.set_level(logging.WARNING, logger="hub.client.api")
            sent = rig.relay_device.chunks_sent
            await api.download_segment(segment_id, tmp_path / "again.age")
            assert (tmp_path / "again.age").read_bytes() == direct
            assert rig.relay_device.chunks_sent > sent + 30
        assert any(
            r.getMessage().startswith(f"segment.link_failed segment_id={segment_id} error=")
            and "payload hash" in r.getMessage()
            for r in caplog.records
        )


def _backup_queue(rig: Rig) -> BackupQueue:
    backup = rig.running.app[appkeys.DEPS].backup
    assert backup is not None
    return backup.queue


@pytest.mark.asyncio
async def test_with_a_backup_store_a_release_comes_by_presigned_url_and_verifies(
    tmp_path: Path,
    device_store: ObjectStore,
) -> None:
    requester = KeyBundle.generate("x25519")
    async with relay_rig(
        tmp_path,
        clients=[requester],
        offsite=lambda device: offsite_releases(device, device_store),
    ) as rig:
        clip_id, plaintexts = _big_clip(rig)
        wanted = [f"{clip_id}.000000", f"{clip_id}.000002"]
        request_id, approval = await _approve(rig.running, rig.owner, requester, wanted, tmp_path)
        assert not isinstance(approval, Exception)
        offsite = rig.running.app[appkeys.DEPS].offsite_releases
        assert offsite is not None
        async with rig.transport(requester) as transport:
            agency = relay_client(rig, transport, requester)
            [release_id] = (await agency.request_status(request_id)).release_ids
            await _until_uploaded(offsite, release_id)
            sent = rig.relay_device.chunks_sent
            size = await agency.fetch_release(release_id, tmp_path / "release.tar")
            # One relayed message: the link. The bundle came from the store.
            assert rig.relay_device.chunks_sent == sent + 1
        assert size > 128 * 1024
        video = _opened(tmp_path / "release.tar", requester, rig.running, tmp_path / "out")
        assert video == plaintexts[0] + plaintexts[2]


async def _until_uploaded(offsite: OffsiteReleases, release_id: str) -> None:
    async with asyncio.timeout(30):
        while not await offsite.uploaded(release_id):
            await asyncio.wait_for(offsite.idle.wait(), 30)
            await asyncio.sleep(0.05)
