"""What whoever runs the broker sees of a whole consent story through the relay: a requester away
from the LAN asks, the owner at work gets the event, looks at the footage, approves two segments,
and the requester downloads and verifies the release. An operator subscribed to ``#`` records
every message; none holds video, names, contacts, reasons, case references or ids in the clear."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiomqtt
import pytest

from consent.models import RequesterIdentity
from consent.owner import approve
from consent.requester import open_bundle
from consent.requests import sign_request, verify_request
from crypto.keys import KeyBundle, key_id
from hub.cli.request_footage import ApiFootage
from hub.client import EventMessage
from hub.relay.broker import MosquittoBroker
from hub.relay.client import RelayTransport
from hub.wire.ohttp_pq import PQ_CHUNKED_REQUEST_MEDIA_TYPE, PQ_KEM_ID
from tests.hub.hubkit import audited_seals, running_device
from tests.relay.relaykit import client, device_id_of, messages_until, need_mosquitto
from tests.relay.test_relay_faults import Rig, _record_one_clip

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

OPERATOR = "operator"
NAME = "Officer Adaline Quimby"
ORGANISATION = "Springfield Police Department"
CONTACT = "adaline.quimby@pd.example"
CASE = "CASE-2026-4711"
REASON = "A parcel was taken from the porch by a person in a red coat."
OWNER_NAME = "Grace's phone"


def _transport(broker: MosquittoBroker, keys: KeyBundle, device_id: str, config: bytes, **kw):  # type: ignore[no-untyped-def]
    cid = key_id(keys.signing_key.public_key())
    return RelayTransport(
        host=broker.host,
        port=broker.client_port,
        tls=broker.tls_context(),
        client_id=cid,
        password=broker.credentials(cid).password,
        device_id=device_id,
        key_config=config,
        timeout_s=20.0,
        **kw,
    )


async def test_the_operator_sees_nothing_of_a_whole_consent_story(tmp_path: Path) -> None:
    need_mosquitto()
    data = tmp_path / "data"
    device_id = device_id_of(data)
    owner, requester = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    owner_id = key_id(owner.signing_key.public_key())
    requester_id = key_id(requester.signing_key.public_key())
    broker = MosquittoBroker(
        tmp_path / "broker",
        devices=[device_id],
        clients=[owner_id, requester_id],
        owners={owner_id: [device_id]},
        operators=[OPERATOR],
    )
    await asyncio.to_thread(broker.start)
    start_s = time.time() - 900
    seen: list[aiomqtt.Message] = []
    try:
        async with running_device(data) as running, client(broker, OPERATOR) as spy:
            await spy.subscribe("#", qos=1)
            running.device.owners.add(owner.public(), name=OWNER_NAME, now=int(time.time()))
            await _record_one_clip(running, start_s)
            assert running.device.relay_key is not None
            config = running.device.relay_keys() or b""
            rig = Rig(running, broker, owner, requester, config, start_s)
            await rig.relay_up()
            device = running.device
            phone_relay = _transport(broker, owner, device_id, config, identity=owner.age_identity)
            agency_relay = _transport(broker, requester, device_id, config)
            async with phone_relay, agency_relay:
                phone = rig.api(owner, phone_relay)
                agency = rig.api(requester, agency_relay)
                events: asyncio.Queue[EventMessage] = asyncio.Queue()

                async def listen() -> None:
                    async for event in phone.events(("request.pending",)):
                        await events.put(event)

                listener = asyncio.ensure_future(listen())
                token = sign_request(
                    requester.signing_key,
                    str(requester.recipient),
                    RequesterIdentity(NAME, ORGANISATION, "local_agency", "Springfield", CONTACT),
                    camera="front",
                    window_start_s=int(start_s) - 60,
                    window_end_s=int(start_s) + 600,
                    category="package_theft",
                    case_reference=CASE,
                    reason=REASON,
                    legal_basis="voluntary",
                    issued_at_s=int(time.time()),
                    expires_at_s=int(time.time()) + 86400,
                    nonce=secrets.token_urlsafe(16),
                )
                submitted = await agency.submit_request(token)
                pending = await asyncio.wait_for(events.get(), 20)
                assert pending.data["request_id"] == submitted.request_id
                listener.cancel()

                # The owner, at work, reads the request, looks at the footage and approves two
                # segments: every call and every segment through the relay.
                [listed] = await phone.requests("pending")
                request = verify_request(listed.token or "", int(time.time()))
                assert (request.identity.name, request.reason) == (NAME, REASON)
                [clip] = (await phone.clips()).clips
                chosen = (await phone.clip(clip.clip_id)).segments[:2]
                workdir = tmp_path / "phone"
                workdir.mkdir()
                footage = await ApiFootage.load(
                    phone, request, [s.segment_id for s in chosen], workdir=workdir
                )
                names = [o.name for o in await phone.owners()]
                assert OWNER_NAME in names
                now = int(time.time())
                release = await phone.consent(
                    request.request_id,
                    approve(
                        owner.signing_key,
                        [owner.age_identity],
                        request,
                        list(chosen),
                        footage,
                        device_id=device_id,
                        device_key=device.identity.public_key,
                        sealed=await audited_seals(running, phone, owner, [clip.clip_id]),
                        token_id=secrets.token_urlsafe(16),
                        now=now,
                        expires_at_s=now + 3600,
                    ),
                )
                # The requester downloads the release through the relay and verifies it.
                bundle = tmp_path / "release.tar"
                await agency.fetch_release(release.release_id, bundle)
                report = open_bundle(
                    bundle,
                    [requester.age_identity],
                    tmp_path / "out",
                    requester_key_id=requester.key_id,
                    device_key=device.identity.public_key,
                )
                assert report.ok
                assert [s.segment_id for s in report.segments] == [s.segment_id for s in chosen]
                assert report.video is not None
                video = await asyncio.to_thread(Path(report.video).read_bytes)
            marker = b"end-" + secrets.token_bytes(8)
            async with client(broker, owner_id) as owner_mqtt:
                await owner_mqtt.publish(
                    f"doorward/v1/dev/{device_id}/in/{owner_id}", marker, qos=1
                )
            seen = await messages_until(spy, marker)
            await rig.relay_down()
    finally:
        await asyncio.to_thread(broker.stop)

    topics = {str(m.topic) for m in seen}
    kinds = {
        level for t in topics for level in t.split("/")[3:] if level in ("in", "res", "ev", "avail")
    }
    assert {"in", "res", "ev", "avail"} <= kinds  # calls, answers, events and availability
    # Every call of the story (a dozen: ask, list, clips, segments, owners, consent, fetch...) and
    # its answer crossed the broker.
    assert sum(1 for m in seen if str(m.topic).split("/")[-2] == "res") >= 12
    needles = [
        NAME,
        ORGANISATION,
        CONTACT,
        CASE,
        REASON,
        "red coat",
        OWNER_NAME,
        "package_theft",
        "local_agency",
        "Springfield",
        submitted.request_id,
        release.release_id,
        clip.clip_id,
        *(s.segment_id for s in chosen),
        "request.pending",
        "/requests",
        "/segments",
        "/releases",
    ]
    # Video: the MP4 boxes of the released clip, and stretches of its bytes.
    video_pieces = [
        video[i : i + 48] for i in range(1024, len(video) - 48, max(1, len(video) // 16))
    ]
    for message in seen:
        payload = message.payload
        assert isinstance(payload, bytes | bytearray)
        lowered = bytes(payload).lower()
        for needle in needles:
            assert needle.lower().encode() not in lowered, (str(message.topic), needle)
        if str(message.topic).split("/")[-2] != "ev":  # events are age files, by design
            # Segments (age files) and bundles travel inside the sealed answers, never bare.
            assert b"age-encryption.org" not in payload, str(message.topic)
        for box in (b"ftyp", b"moof", b"mdat", b"ustar"):
            assert box not in payload, (str(message.topic), box)
        for piece in video_pieces:
            assert piece not in payload, str(message.topic)
    # Every call was sealed to the doorbell's hybrid key (ML-KEM-768+X25519): a recording of
    # this traffic stays closed to whoever breaks X25519 later.
    calls = [m for m in seen if str(m.topic).split("/")[-2] == "in" and m.payload != marker]
    calls = [m for m in calls if m.payload]  # acknowledgements of chunks are empty
    assert len(calls) >= 10
    for message in calls:
        assert message.properties.ContentType == PQ_CHUNKED_REQUEST_MEDIA_TYPE  # type: ignore[union-attr]
        assert bytes(message.payload)[1:3] == PQ_KEM_ID.to_bytes(2, "big")  # type: ignore[arg-type]
    # The topics themselves name only the doorbell and the two broker logins.
    for topic in topics:
        for needle in needles[:7]:
            assert needle not in topic
        assert set(topic.split("/")) <= {
            "doorward",
            "v1",
            "dev",
            "cli",
            "in",
            "res",
            "ev",
            "avail",
        } | {
            device_id,
            owner_id,
            requester_id,
        }, topic
