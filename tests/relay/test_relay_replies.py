"""Quick replies from away: through a real Mosquitto relay, an owner stores an Opus reply and plays
it on the doorbell's simulated speaker, as on the LAN; a file too large for one sealed relay
message is refused by the owner's client before anything is sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.client.api import ApiError
from hub.relay.client import RelayCallFailed
from hub.server import appkeys
from tests.hub.soundkit import opus_tone, wav_tone
from tests.relay.eventkit import event_rig

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


async def test_an_owner_away_stores_and_plays_a_reply_through_the_relay(tmp_path: Path) -> None:
    ada = KeyBundle.generate("x25519")
    async with event_rig(tmp_path, [ada]) as rig, rig.transport(ada) as relay:
        api = rig.relayed(ada, relay)
        opus = opus_tone(610.0, 2.0)
        assert len(opus) < 90 * 1024
        reply = await api.add_reply("away", opus)
        since = time.monotonic()
        played = await api.play_reply("away")
        with pytest.raises(ApiError) as unknown:
            await api.play_reply("nobody")
        speaker = rig.running.speakers.simulated("front")
        with pytest.raises(RelayCallFailed) as too_big:
            await api.add_reply("long", wav_tone(610.0, 10.0))  # 960 KB of WAV
    assert (reply.codec, played.camera) == ("opus", "front")
    assert speaker.peak_hz(since) == pytest.approx(610.0, abs=3.0)
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")
    assert str(too_big.value).endswith(
        "bytes sealed, more than one relay message carries (129024); send the body on the LAN"
    )
    assert [r.name for r in rig.running.app[appkeys.REPLIES].list()] == ["away"]
