"""Hold-to-talk on the live-view page in headless Chromium: the browser's fake microphone plays a
tone file the test writes; holding the page's talk button sends it to the doorbell, whose
simulated speaker must play that tone, while the visitor's sound (the simulated microphone's
440 Hz) keeps playing on the page. A second owner pressing talk meanwhile is told the speaker is
in use. Chromium is driven over the DevTools protocol as in ``test_live_browser``."""

from __future__ import annotations

import asyncio
import base64
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crypto.keys import KeyBundle
from crypto.signed import b64url_decode
from hub.server import appkeys
from hub.server.live.page_tls import page_spki_sha256
from tests.browserkit import DevTools, chromium
from tests.hub.test_live_kit import LiveDevice, live_device

pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(120)]

TONE_HZ = 700.0  # the owner's voice (the tone file Chromium's fake microphone plays)
VISITOR_HZ = 440.0  # the simulated camera's microphone
_WAIT_S = 40.0

# Waits until the page is live and its talk button shows; returns what the page shows.
_READY = """
(async () => {
  const button = document.getElementById("talk");
  const deadline = Date.now() + 40000;
  while ((document.body.dataset.state !== "live" || button.hidden) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    state: document.body.dataset.state, hidden: button.hidden, label: button.textContent,
    pressed: button.getAttribute("aria-pressed"),
  };
})()
"""

# The page's audio stats: what arrives from the doorbell and what goes to it, and the talk
# button's state.
_AUDIO_STATS = """
(async () => {
  const stats = await window.liveView.peer.getStats();
  const out = {received: 0, energy: 0, sent: 0};
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.received = s.packetsReceived;
      out.energy = s.totalAudioEnergy || 0;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.sent = s.packetsSent;
  });
  const talk = window.liveView.talk;
  out.pressed = document.getElementById("talk").getAttribute("aria-pressed");
  out.track = talk.sender && talk.sender.track ? talk.sender.track.readyState : null;
  out.status = document.getElementById("talk-status").textContent;
  return out;
})()
"""

# Turns the page's sound on (its button, as a visitor would) and listens to the doorbell's sound
# as it plays on the page, through an analyser on the received audio track.
_LISTEN = """
(async () => {
  document.getElementById("sound").click();
  const video = document.getElementById("video");
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  const track = video.srcObject.getAudioTracks()[0];
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  window.visitorSound = {context: context, analyser: analyser};
  return video.muted;
})()
"""

# The strongest frequency of the doorbell's sound on the page now, and its level (dB).
_VISITOR_PEAK = """
(() => {
  const {context, analyser} = window.visitorSound;
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return {hz: best * context.sampleRate / analyser.fftSize, db: bins[best]};
})()
"""


def write_tone(path: Path, hz: float, *, seconds: float = 1.0, rate: int = 48_000) -> None:
    """A mono 16-bit WAV of a steady ``hz`` tone (Chromium's fake capture loops it)."""
    t = np.arange(round(seconds * rate)) / rate
    samples = (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def _microphone_flags(tone: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone}",
    ]


async def _stats(tools: DevTools, page: str) -> dict[str, Any]:
    return dict(await tools.evaluate(page, _AUDIO_STATS))


async def _until(tools: DevTools, page: str, done: Any, what: str) -> dict[str, Any]:
    """Page audio stats once ``done(stats)`` holds; polls them until ``_WAIT_S``."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        stats = await _stats(tools, page)
        if done(stats):
            return stats
        assert time.monotonic() < deadline, f"{what}: {stats}"
        await asyncio.sleep(0.05)


async def _key(tools: DevTools, page: str, kind: str, key: str) -> None:
    code, vk = {" ": ("Space", 32), "Enter": ("Enter", 13)}[key]
    await tools.call(
        "Input.dispatchKeyEvent",
        page,
        type=kind,
        key=key,
        code=code,
        windowsVirtualKeyCode=vk,
        nativeVirtualKeyCode=vk,
    )


async def _open(live: LiveDevice, tools: DevTools, owner: KeyBundle) -> str:
    # Each page in a window of its own: a hidden page lets go of its talk button.
    page = await tools.open_page(await live.link_url(owner), new_window=True)
    ready = await tools.evaluate(page, _READY)
    assert ready == {
        "state": "live",
        "hidden": False,
        "label": "Hold to talk",
        "pressed": "false",
    }
    return page


async def _visitor_heard(tools: DevTools, page: str, what: str) -> None:
    """Wait until the doorbell's sound on the page peaks at the visitor's 440 Hz."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        peak = await tools.evaluate(page, _VISITOR_PEAK)
        if abs(peak["hz"] - VISITOR_HZ) <= 10.0 and peak["db"] > -80:
            return
        assert time.monotonic() < deadline, f"{what}: {peak}"
        await asyncio.sleep(0.05)


async def test_holding_talk_plays_the_owners_microphone_on_the_doorbell(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    tone = tmp_path / "owner-voice.wav"
    write_tone(tone, TONE_HZ)
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        pin = base64.b64encode(b64url_decode(page_spki_sha256(tmp_path / "data" / "keys")))
        async with chromium(tmp_path, pin.decode(), _microphone_flags(tone)) as tools:
            page = await _open(live, tools, owner)
            # The visitor's sound plays on the page before anyone talks, and nothing goes to
            # the door.
            assert await tools.evaluate(page, _LISTEN) is False  # the sound button unmuted it
            await _visitor_heard(tools, page, "the visitor's sound never played")
            before = await _stats(tools, page)
            assert before["energy"] > 0
            assert (before["sent"], before["track"], live.speaker.played) == (0, None, [])

            # Hold Space on the focused button: the microphone goes to the doorbell.
            await tools.evaluate(page, "document.getElementById('talk').focus()")
            since = time.monotonic()
            await _key(tools, page, "keyDown", " ")
            talking = await _until(
                tools, page, lambda s: s["sent"] >= 50, "the page never sent its microphone"
            )
            assert (talking["pressed"], talking["track"]) == ("true", "live")
            assert talking["status"] == "You are talking to the door."
            deadline = time.monotonic() + _WAIT_S
            while live.speaker.samples(since).size < live.speaker.sample_rate:  # 1 s played
                assert time.monotonic() < deadline, "the doorbell's speaker played nothing"
                await asyncio.sleep(0.05)
            # Meanwhile the visitor's sound keeps arriving on the page.
            during = await _stats(tools, page)
            assert during["received"] > talking["received"] > before["received"]
            await _key(tools, page, "keyUp", " ")

            # Let go: the page mutes, then closes the microphone and frees the speaker.
            released = await _until(
                tools, page, lambda s: s["track"] is None, "the microphone stayed open"
            )
            assert (released["pressed"], released["status"]) == ("false", "")
            floor = live.app[appkeys.SPEAKERS].floor("front")
            deadline = time.monotonic() + _WAIT_S
            while floor.holder is not None:
                assert time.monotonic() < deadline, f"the speaker stayed taken by {floor.holder}"
                await asyncio.sleep(0.05)
            heard = live.speaker.peak_hz(since)
            assert heard is not None
            assert abs(heard - TONE_HZ) <= 5.0, heard
            # And the visitor is heard on the page after the talk, at their own pitch.
            await _visitor_heard(tools, page, "the visitor's sound did not play after the talk")
            await _until(
                tools,
                page,
                lambda s: s["energy"] > released["energy"],
                "the page played no more sound after the talk",
            )
            # Let go, the page sends nothing: while another second of the visitor's sound
            # arrives, not one more packet goes out.
            settled = await _until(
                tools, page, lambda s: s["received"] >= released["received"] + 10, "no sound"
            )
            later = await _until(
                tools, page, lambda s: s["received"] >= settled["received"] + 50, "no sound"
            )
            assert later["sent"] == settled["sent"]


async def _mouse(tools: DevTools, page: str, kind: str) -> None:
    """Press or release the left mouse button on the talk button (pointer events follow)."""
    box = await tools.evaluate(
        page,
        """(() => {
          const button = document.getElementById("talk");
          button.scrollIntoView({block: "center"});
          const r = button.getBoundingClientRect();
          return {x: r.left + r.width / 2, y: r.top + r.height / 2};
        })()""",
    )
    await tools.call(
        "Input.dispatchMouseEvent",
        page,
        type=kind,
        x=box["x"],
        y=box["y"],
        button="left",
        buttons=1 if kind == "mousePressed" else 0,
        clickCount=1,
    )


async def test_a_second_owner_is_told_who_is_talking(tmp_path: Path) -> None:
    first, second = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    tone = tmp_path / "owner-voice.wav"
    write_tone(tone, TONE_HZ)
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(first, "first phone")
        live.add_owner(second, "second phone")
        pin = base64.b64encode(b64url_decode(page_spki_sha256(tmp_path / "data" / "keys")))
        async with chromium(tmp_path, pin.decode(), _microphone_flags(tone)) as tools:
            talking_page = await _open(live, tools, first)
            refused_page = await _open(live, tools, second)

            # The first owner holds the button with the mouse and talks.
            await _mouse(tools, talking_page, "mousePressed")
            await _until(
                tools, talking_page, lambda s: s["sent"] >= 10, "the first owner never talked"
            )
            floor = live.app[appkeys.SPEAKERS].floor("front")
            assert floor.holder == f"owner {first.key_id}"

            # The second presses Enter meanwhile: refused, naming who talks; nothing is sent.
            await tools.evaluate(refused_page, "document.getElementById('talk').focus()")
            await _key(tools, refused_page, "keyDown", "Enter")
            refused = await _until(
                tools, refused_page, lambda s: s["status"].startswith("Someone"), "no refusal"
            )
            await _key(tools, refused_page, "keyUp", "Enter")
            assert refused["status"] == (
                f"Someone else is talking to the door: the speaker is in use by owner "
                f"{first.key_id}; try again when they finish."
            )
            assert (refused["pressed"], refused["track"], refused["sent"]) == ("false", None, 0)
            assert floor.holder == f"owner {first.key_id}"

            # Once the first lets go, the second may talk.
            await _mouse(tools, talking_page, "mouseReleased")
            deadline = time.monotonic() + _WAIT_S
            while floor.holder is not None:
                assert time.monotonic() < deadline, f"the speaker stayed taken by {floor.holder}"
                await asyncio.sleep(0.05)
            await _key(tools, refused_page, "keyDown", "Enter")
            talking = await _until(
                tools, refused_page, lambda s: s["sent"] > 0, "the second owner never talked"
            )
            assert talking["status"] == "You are talking to the door."
            assert floor.holder == f"owner {second.key_id}"
            await _key(tools, refused_page, "keyUp", "Enter")
            await _until(tools, refused_page, lambda s: s["track"] is None, "still talking")

        # Each press is a talk on the record, by whom, from the page.
        talks = [
            (e.body()["kind"], e.body()["owner_key_id"], e.body()["via"])
            for e in live.device.audit.entries(0, live.device.audit.size)
            if e.body()["kind"].startswith("talk.")
        ]
        assert talks == [
            ("talk.started", first.key_id, "link"),
            ("talk.ended", first.key_id, "link"),
            ("talk.started", second.key_id, "link"),
            ("talk.ended", second.key_id, "link"),
        ]
