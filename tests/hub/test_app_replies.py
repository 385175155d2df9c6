"""Quick replies through a real device over TLS: owners store WAV or Ogg Opus messages, list and
remove them, and play one on a camera's (simulated) speaker; every upload, removal and use is
audited and published. Bad input (not audio, too big, too long, odd rates and channels, unknown
names and cameras, a camera without a speaker, a held floor) gets a clear error and changes
nothing."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consent.audit_verify import AuditVerifier
from crypto.keys import KeyBundle
from hardware import SimulatedSpeaker, WavSink
from hub.client import ApiError, DoorwardClient, EventMessage
from hub.client.audit import check_audit
from hub.server import appkeys
from hub.server.replies import MAX_REPLY_BYTES, ReplyBook
from hub.server.speakers import Speakers
from hub.wire.errors import Conflict
from hub.wire.httpsig import sign_http_request
from tests.hub.attackkit import closed_by_server, open_tls
from tests.hub.hubkit import Running, owner_profile, run_owner_cli, running_device
from tests.hub.soundkit import opus_tone, wav_tone
from tests.hub.test_app_openapi import _validator

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

EVENT_KINDS = ("reply.added", "reply.removed", "reply.played")


@dataclass
class Rig:
    running: Running
    owner: KeyBundle
    speaker: SimulatedSpeaker

    def client(self, keys: KeyBundle | None = None) -> DoorwardClient:
        return self.running.client(keys or self.owner)

    def audit(self, kind: str) -> list[dict[str, Any]]:
        entries = [json.loads(e.leaf) for e in self.running.device.audit.entries()]
        return [entry for entry in entries if entry["kind"] == kind]


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    owner = KeyBundle.generate("x25519")
    speaker = SimulatedSpeaker()
    speakers = Speakers({"front": speaker, "back": None})
    async with running_device(tmp_path / "data", speakers=speakers) as running:
        running.add_owner(owner)
        yield Rig(running, owner, speaker)


async def _events(api: DoorwardClient, running: Running) -> tuple[Any, asyncio.Future[Any]]:
    """An open event stream of the reply kinds, and the wait for its first event."""
    stream = api.events(EVENT_KINDS)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.wait_for(running.app[appkeys.BUS].wait_for_subscriber(), 10)
    return stream, first


async def test_a_stored_reply_plays_on_the_speaker_and_every_step_is_on_the_record(
    rig: Rig,
) -> None:
    uploaded = wav_tone(700.0, 1.0, rate=44_100, channels=2)
    async with rig.client() as api:
        stream, first = await _events(api, rig.running)
        reply = await api.add_reply("away", uploaded)
        assert (reply.name, reply.source_format, reply.sample_rate, reply.channels) == (
            "away",
            "wav",
            44_100,
            2,
        )
        assert reply.duration_s == pytest.approx(1.0, abs=0.01)
        assert [r.name for r in await api.replies()] == ["away"]

        since = time.monotonic()
        played = await api.play_reply("away")
        assert (played.name, played.camera) == ("away", "front")
        assert rig.speaker.peak_hz(since) == pytest.approx(700.0, abs=3.0)
        assert len(rig.speaker.samples(since)) == pytest.approx(48_000, abs=960)
        assert rig.running.app[appkeys.SPEAKERS].floor("front").holder is None

        removed = await api.remove_reply("away")
        assert removed.sha256 == reply.sha256
        assert await api.replies() == []
        events: list[EventMessage] = [await asyncio.wait_for(first, 10)]
        events += [await asyncio.wait_for(anext(stream), 10) for _ in range(2)]
        await stream.aclose()

    key_id = rig.owner.key_id
    assert [(e.kind, e.data) for e in events] == [
        ("reply.added", {"name": "away", "owner_key_id": key_id, "duration": 1.0}),
        (
            "reply.played",
            {
                "name": "away",
                "camera": "front",
                "owner_key_id": key_id,
                "played_ms": 1000,
                "complete": True,
            },
        ),
        ("reply.removed", {"name": "away", "owner_key_id": key_id}),
    ]
    [added] = rig.audit("reply.added")
    assert {k: added[k] for k in ("name", "owner_key_id", "duration_ms", "bytes", "sha256")} == {
        "name": "away",
        "owner_key_id": key_id,
        "duration_ms": 1000,
        "bytes": len(uploaded),
        "sha256": reply.sha256,
    }
    [use] = rig.audit("reply.played")
    assert (use["name"], use["camera"], use["owner_key_id"], use["complete"]) == (
        "away",
        "front",
        key_id,
        True,
    )
    assert [(e["name"], e["owner_key_id"]) for e in rig.audit("reply.removed")] == [
        ("away", key_id)
    ]
    # The phone's own audit check accepts the log with the new kinds in it.
    device = rig.running.device
    verifier = AuditVerifier(device.identity.public_key, device.audit.origin)
    async with rig.client() as api:
        await check_audit(api, verifier, signing_key=rig.owner.signing_key, now=int(time.time()))


async def test_an_opus_reply_plays_its_own_tone_on_a_named_camera(rig: Rig) -> None:
    async with rig.client() as api:
        reply = await api.add_reply("leave-parcel", opus_tone(523.0, 1.5))
        assert (reply.source_format, reply.codec) == ("ogg", "opus")
        since = time.monotonic()
        played = await api.play_reply("leave-parcel", camera="front")
    assert played.duration_s == pytest.approx(1.5, abs=0.03)
    assert rig.speaker.peak_hz(since) == pytest.approx(523.0, abs=3.0)
    stored = sorted(p.name for p in (rig.running.device.data_dir / "replies").iterdir())
    assert stored == ["leave-parcel.json", "leave-parcel.wav"]


async def test_a_held_floor_refuses_the_reply_naming_the_holder(rig: Rig) -> None:
    floor = rig.running.app[appkeys.SPEAKERS].floor("front")
    async with rig.client() as api:
        await api.add_reply("away", wav_tone(700.0, 0.5))
        with floor.hold("owner 3f2a talking"), pytest.raises(ApiError) as busy:
            await api.play_reply("away")
        assert (busy.value.status, busy.value.code) == (409, "speaker_busy")
        assert busy.value.detail == (
            "the speaker of camera 'front' is in use by owner 3f2a talking; try again when they "
            "finish"
        )
        assert rig.speaker.played == []
        assert rig.audit("reply.played") == []
        await api.play_reply("away")  # once the talker is done, it plays
    assert rig.speaker.peak_hz() == pytest.approx(700.0, abs=3.0)


@pytest.mark.parametrize(
    ("upload", "status", "code", "message"),
    [
        (
            b"Dear visitor, we are out.",
            415,
            "unsupported_audio",
            "the quick reply 'away' is not a WAV (PCM) or Ogg Opus file (its first bytes are "
            "neither RIFF/WAVE nor OggS)",
        ),
        (
            b"RIFF\x00\x00\x00\x00WAVE" + secrets.token_bytes(2000),
            415,
            "unsupported_audio",
            "the quick reply 'away' is not a readable WAV file: Invalid data found when "
            "processing input",
        ),
        (
            wav_tone(700.0, 16.0, rate=8_000),
            400,
            "audio_too_long",
            "the quick reply 'away' plays for more than 15 s; the limit is 15 s",
        ),
        (
            opus_tone(700.0, 20.0),  # 20 s of Opus is far below the byte cap
            400,
            "audio_too_long",
            "the quick reply 'away' plays for more than 15 s; the limit is 15 s",
        ),
        (
            wav_tone(700.0, 0.5, rate=4_000),
            415,
            "unsupported_audio",
            "the quick reply 'away' has a sample rate of 4000 Hz; the doorbell resamples "
            "anything from 8000 to 192000 Hz (48000 is best)",
        ),
        (
            b"",
            400,
            "bad_request",
            "the body must be the quick reply's sound file (WAV or Ogg Opus)",
        ),
    ],
    ids=["text", "broken-wav", "too-long-wav", "too-long-opus", "rate-4k", "empty"],
)
async def test_unplayable_uploads_are_refused_and_store_nothing(
    rig: Rig, upload: bytes, status: int, code: str, message: str
) -> None:
    async with rig.client() as api:
        with pytest.raises(ApiError) as refused:
            await api.add_reply("away", upload)
        assert (refused.value.status, refused.value.code, refused.value.detail) == (
            status,
            code,
            message,
        )
        assert await api.replies() == []
    assert list((rig.running.device.data_dir / "replies").iterdir()) == []
    assert rig.audit("reply.added") == []


async def test_odd_rates_and_channel_counts_are_resampled(rig: Rig) -> None:
    async with rig.client() as api:
        reply = await api.add_reply("six", wav_tone(300.0, 1.0, rate=11_025, channels=6))
        since = time.monotonic()
        await api.play_reply("six")
    assert (reply.sample_rate, reply.channels) == (11_025, 6)
    assert rig.speaker.peak_hz(since) == pytest.approx(300.0, abs=3.0)


async def test_a_body_past_the_cap_is_refused_from_its_length(rig: Rig) -> None:
    """413 from the declared length, before the device reads it (it never reads 3 MiB)."""
    running, owner = rig.running, rig.owner
    path = "/replies/away"
    length = MAX_REPLY_BYTES + 1
    headers = sign_http_request(
        "PUT",
        running.url + path,
        b"\0" * length,
        key=owner.signing_key,
        key_id=owner.key_id,
        tag=running.device.identity.device_id,
        created_s=int(time.time()),
        nonce=secrets.token_urlsafe(18),
    )
    lines = [f"PUT {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    port = int(running.url.rsplit(":", 1)[1])
    reader, writer = await open_tls(port, running.device.fingerprint)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + b"x" * 1024)
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(
            line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if line
        )
        error = json.loads(await reader.readexactly(int(fields["content-length"])))["error"]
        closed = await closed_by_server(reader, within_s=20)
    finally:
        writer.transport.abort()
    assert int(head.split(b" ", 2)[1]) == 413
    assert error == {
        "code": "too_large",
        "message": f"the body of PUT /replies/{{name}} may be at most {MAX_REPLY_BYTES} bytes, "
        f"got {length}",
    }
    assert closed


async def test_names_cameras_and_speakers_that_do_not_fit_are_refused(rig: Rig) -> None:
    async with rig.client() as api:
        await api.add_reply("away", wav_tone(700.0, 0.3))
        cases: list[tuple[Callable[[], Awaitable[Any]], int, str, str]] = [
            (
                lambda: api.add_reply("Away", wav_tone(700.0, 0.3)),
                400,
                "bad_request",
                "a quick reply's name must be 1 to 32 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit (like away or leave-parcel), got 'Away'",
            ),
            (
                lambda: api.add_reply("away", wav_tone(500.0, 0.3)),
                409,
                "reply_exists",
                "a quick reply named 'away' exists; remove it first (doorward owner replies "
                "remove away) or choose another name",
            ),
            (
                lambda: api.play_reply("gone"),
                404,
                "not_found",
                "no quick reply named 'gone'; GET /replies lists them (doorward owner replies "
                "list)",
            ),
            (
                lambda: api.remove_reply("gone"),
                404,
                "not_found",
                "no quick reply named 'gone'; GET /replies lists them (doorward owner replies "
                "list)",
            ),
            (
                lambda: api.play_reply("away", camera="garage"),
                404,
                "not_found",
                "no camera named 'garage'; GET /cameras lists them",
            ),
            (
                lambda: api.play_reply("away", camera="back"),
                409,
                "no_speaker",
                "camera 'back' has no speaker, so it cannot play a quick reply; cameras with "
                "one: front",
            ),
        ]
        for call, status, code, message in cases:
            with pytest.raises(ApiError) as refused:
                await call()
            assert (refused.value.status, refused.value.code, refused.value.detail) == (
                status,
                code,
                message,
            )
        [kept] = await api.replies()
    assert kept.sha256 == rig.audit("reply.added")[0]["sha256"]  # the first upload stands
    assert rig.speaker.played == []
    assert rig.audit("reply.played") == []
    assert rig.audit("reply.removed") == []


async def test_a_device_without_speakers_says_so(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        async with running.client(owner) as api:
            await api.add_reply("away", wav_tone(700.0, 0.3))
            with pytest.raises(ApiError) as refused:
                await api.play_reply("away")
    assert (refused.value.status, refused.value.code, refused.value.detail) == (
        409,
        "no_speaker",
        "no camera of this doorbell has a speaker to play a quick reply on; name one under "
        "[speakers] in the config (sim, wav:PATH or alsa:DEVICE)",
    )


async def test_a_removed_owner_can_no_longer_play_or_store(rig: Rig) -> None:
    other = KeyBundle.generate("x25519")
    rig.running.add_owner(other, name="old phone")
    async with rig.client() as api:
        await api.add_reply("away", wav_tone(700.0, 0.3))
        await api.remove_owner(other.key_id)
    async with rig.client(other) as gone:
        for call in (
            lambda: gone.play_reply("away"),
            lambda: gone.add_reply("mine", wav_tone(700.0, 0.3)),
        ):
            with pytest.raises(ApiError) as refused:
                await call()
            assert (refused.value.status, refused.value.code) == (403, "unknown_key")
    assert rig.speaker.played == []


async def test_the_device_keeps_at_most_its_cap_of_replies(tmp_path: Path) -> None:
    from hub.server.sound import decode_sound

    book = ReplyBook(tmp_path / "replies", max_replies=2)
    sound = decode_sound(wav_tone(700.0, 0.2), max_s=15.0)
    for name in ("one", "two"):
        book.add(name, sound, size=1, sha256="0" * 64, owner_key_id="k", now_s=1)
    with pytest.raises(Conflict) as full:
        book.add("three", sound, size=1, sha256="0" * 64, owner_key_id="k", now_s=1)
    assert (
        str(full.value) == "the doorbell holds 2 quick replies, the most it keeps; remove one first"
    )
    assert full.value.code == "too_many_replies"
    assert [r.name for r in ReplyBook(tmp_path / "replies").list()] == ["one", "two"]
    assert book.sound("two").duration_s == pytest.approx(0.2)


async def test_answers_conform_to_the_openapi_document(rig: Rig) -> None:
    async with rig.client() as api:
        session = api._ensure_session()

        async def call(method: str, path: str, body: bytes, kind: str) -> tuple[int, Any]:
            url = api._url(path)
            headers = api._signer.headers(method, str(url), body)
            if body:
                headers["Content-Type"] = kind
            async with session.request(
                method, url, data=body, headers=headers, ssl=api._ssl
            ) as response:
                return response.status, json.loads(await response.read())

        checks = [
            ("put", "/replies/{name}", "/replies/away", wav_tone(700.0, 0.2), "audio/wav", 201),
            ("put", "/replies/{name}", "/replies/bad", b"text", "audio/wav", 415),
            ("get", "/replies", "/replies", b"", "", 200),
            ("post", "/replies/{name}/play", "/replies/away/play", b"{}", "application/json", 200),
            ("post", "/replies/{name}/play", "/replies/none/play", b"", "", 404),
            ("delete", "/replies/{name}", "/replies/away", b"", "", 200),
        ]
        for method, template, path, body, kind, status in checks:
            got, answer = await call(method.upper(), path, body, kind)
            assert got == status, path
            errors = list(_validator(template, method, status).iter_errors(answer))
            assert errors == [], (path, [e.message for e in errors])


async def test_the_owner_command_line_stores_lists_plays_and_removes(
    rig: Rig, tmp_path: Path
) -> None:
    profile = owner_profile(rig.running, rig.owner, tmp_path / "phone")
    sound = tmp_path / "away.ogg"
    sound.write_bytes(opus_tone(650.0, 1.0))
    base = ["--profile", str(profile.directory)]

    async def cli(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_owner_cli, [*argv, *base])

    code, out, err = await cli("replies", "add", str(sound), "--name", "away")
    assert (code, err) == (0, "")
    assert out == "stored away (1.0 s); play it: doorward owner reply away\n"
    code, out, _ = await cli("replies", "list", "--json")
    [row] = json.loads(out)["replies"]
    assert (code, row["name"], row["format"], row["codec"]) == (0, "away", "ogg", "opus")
    since = time.monotonic()
    code, out, _ = await cli("reply", "away", "--camera", "front")
    assert (code, out) == (0, "played away on front (1.0 s)\n")
    assert rig.speaker.peak_hz(since) == pytest.approx(650.0, abs=3.0)
    code, out, err = await cli("reply", "away", "--camera", "back")
    assert code == 1
    assert err == (
        "doorward: error: camera 'back' has no speaker, so it cannot play a quick reply; "
        "cameras with one: front (no_speaker, HTTP 409)\n"
    )
    code, out, err = await cli("replies", "add", str(tmp_path / "missing.wav"), "--name", "x")
    assert code == 1
    assert "missing.wav: No such file or directory" in err
    code, out, _ = await cli("replies", "remove", "away")
    assert (code, out) == (0, "removed away\n")
    code, out, _ = await cli("replies", "list")
    assert out == "no quick replies (add one: doorward owner replies add FILE --name NAME)\n"


async def test_a_failing_speaker_is_503_and_the_attempt_is_still_on_the_record(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    sink = WavSink(tmp_path / "speaker.wav")
    await sink.close()  # the speaker stops working: every chunk is refused
    async with running_device(tmp_path / "data", speakers=Speakers({"front": sink})) as running:
        running.add_owner(owner)
        async with running.client(owner) as api:
            await api.add_reply("away", wav_tone(700.0, 0.3))
            with pytest.raises(ApiError) as failed:
                await api.play_reply("away")
            assert await api.health()  # the device answers on
            assert running.app[appkeys.SPEAKERS].floor("front").holder is None
        entries = [json.loads(e.leaf) for e in running.device.audit.entries()]
    assert (failed.value.status, failed.value.code, failed.value.detail) == (
        503,
        "speaker_failed",
        "the speaker of camera 'front' failed while playing 'away': the speaker is closed",
    )
    [use] = [e for e in entries if e["kind"] == "reply.played"]
    assert (use["complete"], use["played_ms"], use["owner_key_id"]) == (False, 0, owner.key_id)
