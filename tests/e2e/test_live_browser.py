"""The live-view page in headless Chromium, driven over the DevTools protocol: an owner mints a
link, the page plays the doorbell's video (the strip counter read from the picture advances) and
its sound (a live audio track receiving packets, unmuted by the page's button), and shows a
doorbell press; a second visit with the same link shows a clear error."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from crypto.keys import KeyBundle
from crypto.signed import b64url_decode
from hardware.sim import read_strip, strip_rows
from hub.server import appkeys
from hub.server.live.page_tls import page_spki_sha256
from tests.browserkit import DevTools, chromium
from tests.hub.test_live_kit import live_device

pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(90)]

_TIMEOUT_S = 45.0

# Waits for the next decoded picture, then returns the luma of the strip rows (the simulated
# camera's frame counter) as a flat list, with the picture size.
_READ_STRIP = """
(async (rows) => {
  const video = document.getElementById("video");
  const deadline = Date.now() + 40000;
  while (!(video.videoWidth > 0) || video.paused) {
    if (Date.now() > deadline) return {error: "video never played", state: document.body.dataset.state};
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => video.requestVideoFrameCallback(() => r()));
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(video, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, rows).data;
  const luma = new Array(w * rows);
  for (let i = 0; i < w * rows; i++) {
    luma[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
  }
  return {width: w, height: h, luma: luma};
})
"""


# Waits for audio packets on the page's peer connection, then presses the sound button.
_SOUND = """
(async () => {
  const video = document.getElementById("video");
  const deadline = Date.now() + 40000;
  let packets = 0, codec = null;
  while (packets === 0 && Date.now() < deadline) {
    const stats = await window.liveView.peer.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        packets = s.packetsReceived;
        const c = s.codecId ? stats.get(s.codecId) : null;
        codec = c ? c.mimeType.toLowerCase() : null;
      }
    });
    if (packets === 0) await new Promise((r) => setTimeout(r, 50));
  }
  const button = document.getElementById("sound");
  const mutedBefore = video.muted;
  if (!button.hidden) button.click();
  return {
    tracks: video.srcObject.getAudioTracks().map((t) => t.readyState),
    packets: packets, codec: codec, muted_before: mutedBefore, muted_after: video.muted,
  };
})()
"""


async def _counter(tools: DevTools, page: str, width: int) -> int | None:
    rows = strip_rows(width)
    reading = await tools.evaluate(page, f"{_READ_STRIP}({rows})")
    assert "error" not in reading, reading
    assert reading["width"] == width
    luma = np.array(reading["luma"], dtype=np.uint8).reshape(rows, reading["width"])
    strip = read_strip(luma)
    return None if strip is None else strip.counter


async def test_the_page_plays_live_view_and_refuses_a_used_link(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        url = await live.link_url(owner)
        pin = base64.b64encode(b64url_decode(page_spki_sha256(tmp_path / "data" / "keys")))
        async with chromium(tmp_path, pin.decode()) as tools:
            page = await tools.open_page(url)
            counters: list[int] = []
            for _ in range(40):
                counter = await _counter(tools, page, 320)
                if counter is not None:
                    counters.append(counter)
                if len(counters) >= 2 and counters[-1] > counters[0]:
                    break
            assert len(counters) >= 2
            assert counters[-1] > counters[0]
            assert await tools.evaluate(page, "document.body.dataset.state") == "live"
            # The doorbell's sound plays too: a live audio track whose packets arrive, muted
            # until the button turns it on.
            sound = await tools.evaluate(page, _SOUND)
            assert sound["tracks"] == ["live"]
            assert sound["packets"] > 0
            assert sound["codec"] == "audio/opus"
            assert (sound["muted_before"], sound["muted_after"]) == (True, False)

            # A doorbell press reaches the page through its session's event feed.
            live.app[appkeys.BUS].publish("doorbell.pressed", camera="front")
            text = await tools.evaluate(
                page,
                """(async () => {
                  const list = document.getElementById("events");
                  const deadline = Date.now() + 40000;
                  while (!list.textContent && Date.now() < deadline) {
                    await new Promise((r) => setTimeout(r, 50));
                  }
                  return list.textContent;
                })()""",
            )
            assert text.startswith("Doorbell pressed at ")

            # The same link again: the page says it was used, and no second session starts.
            again = await tools.open_page(url)
            message = await tools.evaluate(
                again,
                """(async () => {
                  const deadline = Date.now() + 40000;
                  while (document.body.dataset.state !== "error" && Date.now() < deadline) {
                    await new Promise((r) => setTimeout(r, 50));
                  }
                  return document.getElementById("status").textContent;
                })()""",
            )
            assert message == (
                "This live link was already used: each link works once. "
                "Ask the owner for a new link."
            )
            assert live.relay.viewer_count() == 1
        assert live.source.opened == 1
        started = [
            e.body()
            for e in live.device.audit.entries(0, live.device.audit.size)
            if e.body()["kind"] == "live.started"
        ]
        # Chromium accepts H.264, so it got the camera's one shared encode.
        assert [(e["via"], e["encoding"]) for e in started] == [("link", "shared_h264")]
