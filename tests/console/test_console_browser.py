"""The owner's console in headless Chromium (DevTools protocol) against a real ``doorward serve``
with a simulated camera: pair by typing the setup code (the doorbell found on loopback by
zeroconf); a requester's request appears; the owner picks two segments and approves; the
requester's fetch gets exactly those two; the audit page shows the log verified. On each page
every control has an accessible name (Chromium's accessibility tree). With
``DOORWARD_CONSOLE_SCREENSHOTS=DIR`` a screenshot of each page is saved there."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest

from crypto.keys import KeyBundle
from crypto.setup_code import PairingURI
from crypto.signed import b64url_decode
from hub.cli.common import client_for
from hub.client import Clip
from hub.client.profile import Profile
from hub.console import new_gate, serve
from hub.server.live.page_tls import page_spki_sha256
from tests.browserkit import DevTools, chromium
from tests.kit import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = "pre_roll_s = 1.0\npost_roll_s = 2.0\nsegment_s = 1.0\n"
AUDIT_PAGE = 5  # entries per audit page: the story's log spans two pages
# A visitor walks up, rings and leaves; then the bell rings every 15 s, so a press comes after
# the console's alert stream opened however long pairing took.
SCENARIO = (
    'description = "A visitor rings; then the bell rings every 15 s."\n'
    "[camera]\nwidth = 640\nheight = 360\nfps = 15\nseconds = 600\nseed = 1\naudio = true\n"
    '[[actor]]\nid = "visitor"\nkind = "person"\nenter_s = 7\nleave_s = 24\n'
    "path = [[-0.1, 0.92], [0.66, 0.86], [0.66, 0.86], [-0.1, 0.92]]\n"
    "times = [7, 12, 17, 24]\n"
    + "".join(f"[[press]]\nat_s = {at_s}\n" for at_s in range(13, 600, 15))
)
# Records each browser notification the page makes (before the real one is shown).
HOOK_NOTIFICATIONS = """
window.shownNotifications = [];
const RealNotification = window.Notification;
window.Notification = class extends RealNotification {
  constructor(title, options) {
    window.shownNotifications.push({ title, body: options && options.body });
    super(title, options);
  }
};
"""
_CONTROL_ROLES = {
    "button",
    "checkbox",
    "combobox",
    "textbox",
    "spinbutton",
    "link",
    "radio",
    "date",
    "Date",
}


@dataclass
class Device:
    url: str
    uri: PairingURI
    home: Path

    def cli(self, *args: str) -> dict[str, Any]:
        """``doorward ARGS --json`` in a fresh process; it must succeed with one JSON object."""
        run = self.run(*args)
        assert run.returncode == 0, run.stderr
        [line] = run.stdout.splitlines()
        result: dict[str, Any] = json.loads(line)
        return result

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``doorward ARGS --json`` in a fresh process (profiles under this test's home)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(self.home)}
        return subprocess.run(
            [sys.executable, "-m", "hub.cli.main", *args, "--json"],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    config = tmp_path / "serve.toml"
    config.write_text(SERVE_CONFIG)
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    command = [
        sys.executable,
        "-m",
        "hub.cli.cmd_serve",
        "--config",
        str(config),
        "--data",
        str(tmp_path / "data"),
        "--camera",
        f"front=simulated:{scenario}",
        "--host",
        "127.0.0.1",  # advertised on loopback only: the console looks there
        "--port",
        "0",
        "--name",
        "Console test door",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        uri_text = url = ""
        for line in process.stdout:
            if line.strip().startswith("pairing URI:"):
                uri_text = line.split("pairing URI:", 1)[1].strip()
            if line.startswith("doorward: serving "):
                url = line.split()[2]
                break
        assert url, "doorward serve did not start"
        home = tmp_path / "home"
        home.mkdir()
        yield Device(url, PairingURI.parse(uri_text), home)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()


@contextlib.asynccontextmanager
async def console(profile: Profile) -> AsyncIterator[str]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            profile,
            ready=ready.set_result,
            gate=new_gate(),
            interfaces=("127.0.0.1",),
            audit_page=AUDIT_PAGE,
        )
    )
    try:
        yield await asyncio.wait_for(ready, 20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(tools: DevTools, page: str, condition: str) -> Any:
    """Poll the page until the JavaScript expression ``condition`` is truthy; return its value."""
    value = await tools.evaluate(
        page,
        f"""(async () => {{
          const deadline = Date.now() + 40000;
          while (Date.now() < deadline) {{
            const value = (() => {{ try {{ return {condition}; }} catch {{ return null; }} }})();
            if (value) return value;
            await new Promise((r) => setTimeout(r, 100));
          }}
          const main = document.getElementById("main");
          return {{timeout: true, page: document.body.dataset.page, text: main && main.innerText}};
        }})()""",
    )
    if isinstance(value, dict) and value.get("timeout"):
        raise AssertionError(f"waited in vain for {condition}: {value}")
    return value


async def rendered(tools: DevTools, page: str, name: str) -> None:
    found = await wait_for(
        tools,
        page,
        f'document.body.dataset.page === "{name}" && '
        'document.getElementById("main").getAttribute("aria-busy") === "false"',
    )
    assert found is True, found


async def check_labels(tools: DevTools, page: str, name: str) -> set[str]:
    """Every control on the page has an accessible name; returns the names."""
    nodes = await tools.accessibility_tree(page)
    controls = [
        n
        for n in nodes
        if not n.get("ignored") and n.get("role", {}).get("value") in _CONTROL_ROLES
    ]
    assert controls, f"no controls on the {name} page"
    unnamed = [n["role"]["value"] for n in controls if not n.get("name", {}).get("value")]
    assert unnamed == [], f"unlabelled controls on the {name} page: {unnamed}"
    return {str(n["name"]["value"]) for n in controls}


async def focus_order(tools: DevTools, page: str, presses: int) -> list[str]:
    """What the Tab key focuses, ``presses`` times from the top: each element's id, else text."""
    await tools.evaluate(page, "document.activeElement && document.activeElement.blur()")
    order = []
    for _ in range(presses):
        for kind in ("rawKeyDown", "keyUp"):
            await tools.call(
                "Input.dispatchKeyEvent",
                page,
                type=kind,
                key="Tab",
                code="Tab",
                windowsVirtualKeyCode=9,
            )
        order.append(
            await tools.evaluate(
                page, "document.activeElement.id || document.activeElement.textContent.trim()"
            )
        )
    return order


async def screenshot(tools: DevTools, page: str, name: str) -> None:
    folder = os.environ.get("DOORWARD_CONSOLE_SCREENSHOTS")
    png = await tools.screenshot(page)
    assert png.startswith(b"\x89PNG")
    if folder:
        await asyncio.to_thread(_write, Path(folder) / f"{name}.png", png)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def finished_clip(profile: Profile) -> Clip:
    """The next clip of at least three segments to finish (from the owner's event stream)."""
    keys, paired = profile.keys(), profile.device()
    async with client_for(paired, keys.signing_key) as api:
        async for event in api.events(("clip.finished",)):
            clip = await api.clip(event.data["clip_id"])
            if clip.segment_count >= 3:
                return clip
    raise AssertionError("the event stream ended before a clip finished")


@pytest.mark.asyncio
async def test_the_owner_pairs_approves_two_segments_and_audits_in_the_console(
    device: Device, tmp_path: Path
) -> None:
    require_tool("chromium")
    profile = Profile(device.home / "doorward" / "owner" / "default", "owner")
    profile.create(KeyBundle.generate("x25519"), {"name": "Ada", "recipient_kind": "x25519"})

    # Chromium trusts the doorbell's live page certificate, as the owner does once by hand.
    pin = base64.b64encode(b64url_decode(page_spki_sha256(tmp_path / "data" / "keys")))
    async with console(profile) as url, chromium(tmp_path, pin.decode()) as tools:
        page = await tools.open_page("about:blank")
        await tools.call(
            "Emulation.setDeviceMetricsOverride",
            page,
            width=1100,
            height=800,
            deviceScaleFactor=1,
            mobile=False,
        )
        origin = url.split("/?")[0]
        await tools.call("Browser.grantPermissions", origin=origin, permissions=["notifications"])
        await tools.call("Page.addScriptToEvaluateOnNewDocument", page, source=HOOK_NOTIFICATIONS)
        nav = await tools.call("Page.navigate", page, url=url)
        assert "errorText" not in nav, nav
        await rendered(tools, page, "doorbells")
        # The secret left the address bar: the cookie stands for it.
        assert await tools.evaluate(page, "location.href") == url.split("?")[0]
        assert await tools.evaluate(page, "document.cookie") == ""  # HttpOnly

        # Keyboard: Tab goes through the skip link, the pages, then the pairing form in order.
        assert await focus_order(tools, page, 10) == [
            "Skip to the page",
            "nav-doorbells",
            "nav-live",
            "nav-clips",
            "nav-requests",
            "nav-alerts",
            "nav-owners",
            "nav-audit",
            "setup",
            "pair",
        ]

        # A mistyped code fails with the pairing error, and no digit of it is shown back.
        digits = device.uri.code.digits()
        wrong = f"{(int(digits[0]) + 1) % 10}{digits[1:]}"
        await tools.evaluate(
            page,
            f'document.getElementById("setup").value = "{wrong}";'
            'document.getElementById("pair").click();',
        )
        failed = await wait_for(
            tools,
            page,
            'document.getElementById("pair-result").className === "error" && '
            'document.getElementById("pair-result").textContent',
        )
        assert failed == (
            "pairing failed: the setup code was typed wrong, or someone tried to guess it; "
            "check the code on the doorbell and try again"
        ), failed
        shown = await tools.evaluate(page, "document.body.innerText")
        assert wrong not in shown
        assert digits not in shown

        # Pair by typing the setup code the doorbell shows.
        await tools.evaluate(
            page,
            f'document.getElementById("setup").value = "{digits}";'
            'document.getElementById("pair").click();',
        )
        result = await wait_for(
            tools,
            page,
            'document.getElementById("pair-result").textContent.startsWith("Paired") && '
            "document.querySelector('article.card .pill.ok') && "
            'document.getElementById("pair-result").textContent',
        )
        assert result == f"Paired with doorbell {device.uri.device_id}.", result
        assert profile.device().device_id == device.uri.device_id
        names = await check_labels(tools, page, "doorbells")
        assert {"Setup code or setup URI", "Pair", "Look for doorbells"} <= names
        await screenshot(tools, page, "doorbells")

        # A requester asks for the window of a finished clip.
        clip = await asyncio.wait_for(finished_clip(profile), 120)
        await asyncio.to_thread(
            device.cli,
            "requester",
            "init",
            "--name",
            "Det. R. Alvarez",
            "--organisation",
            "Springfield Police Department",
            "--kind",
            "local_agency",
            "--jurisdiction",
            "Springfield",
            "--contact",
            "records@springfield.example",
        )
        ask = [
            "requester",
            "ask",
            device.url,
            f"--fingerprint={device.uri.fingerprint}",
            "--device-id",
            device.uri.device_id,
            "--camera",
            "front",
            "--start",
            str(int(clip.start_s) - 2),
            "--end",
            str(int(clip.end_s or clip.start_s) + 2),
            "--category",
            "package_theft",
            "--legal-basis",
            "voluntary",
        ]
        asked = await asyncio.to_thread(
            device.cli,
            *ask,
            "--case",
            "SPD-2026-1142",
            "--reason",
            "a parcel was taken from a porch on this street",
        )
        request_id = asked["request_id"]
        again = await asyncio.to_thread(
            device.cli, *ask, "--case", "SPD-2026-1150", "--reason", "a second look at the porch"
        )
        other_id = again["request_id"]
        third = await asyncio.to_thread(
            device.cli, *ask, "--case", "SPD-2026-1160", "--reason", "the street, a minute later"
        )
        third_id = third["request_id"]

        # Alerts: the new requests and a press, as browser notifications and in the list.
        notes = "window.shownNotifications.map((n) => n.title)"
        titles = await wait_for(
            tools,
            page,
            f"{notes}.filter((t) => t === 'A new request for footage').length === 3 && "
            f"{notes}.includes('Someone rang the doorbell') && {notes}",
        )
        assert set(titles) <= {
            "A new request for footage",
            "Someone rang the doorbell",
            "Motion",
        }, titles
        await tools.evaluate(page, 'location.hash = "#alerts"')
        await rendered(tools, page, "alerts")
        listed_alerts = await tools.evaluate(
            page, "document.getElementById('alert-list').innerText"
        )
        for text in (
            f"request {request_id}: decide on the Requests page",
            "Someone rang the doorbell",
            "camera front",
        ):
            assert text in listed_alerts
        state = await tools.evaluate(page, "document.getElementById('notify-state').textContent")
        assert state == "Browser notifications are on."
        await screenshot(tools, page, "alerts")

        await tools.evaluate(page, 'location.hash = "#requests"')
        await rendered(tools, page, "requests")
        title = await wait_for(
            tools, page, f'document.getElementById("title-{request_id}").textContent'
        )
        assert title == (
            f"Request {request_id} from Det. R. Alvarez, Springfield Police Department"
        )
        shown = await tools.evaluate(page, "document.getElementById('main').innerText")
        for text in ("SPD-2026-1142", "a parcel was taken from a porch on this street"):
            assert text in shown
        assert "the policy leaves this request to the owners" in shown

        # The owner picks two segments of the clip and approves them.
        chosen = [f"{clip.clip_id}.000001", f"{clip.clip_id}.000002"]
        await tools.evaluate(page, f'document.getElementById("choose-{request_id}").click()')
        listed = await wait_for(
            tools,
            page,
            "document.querySelectorAll('input[name=segment]').length > 0 && "
            "[...document.querySelectorAll('input[name=segment]')].map((b) => b.value)",
        )
        assert set(chosen) <= set(listed), listed
        # Each segment shows its first picture, decrypted and scaled by the console.
        sizes = await wait_for(
            tools,
            page,
            "[...document.querySelectorAll('img.thumb')].every((i) => i.complete) && "
            "[...document.querySelectorAll('img.thumb')].map((i) => i.naturalWidth)",
        )
        assert sizes == [192] * len(listed), sizes
        for segment in chosen:
            await tools.evaluate(
                page, f"document.querySelector('input[value=\"{segment}\"]').click()"
            )
        names = await check_labels(tools, page, "requests")
        assert {"Approve selected segments", "Downloads allowed", "Link expires after"} <= names
        assert any(n.startswith("Camera front, ") for n in names)
        await screenshot(tools, page, "requests")
        await tools.evaluate(page, f'document.getElementById("approve-{request_id}").click()')
        decided = await wait_for(
            tools,
            page,
            "document.getElementById('past') && document.getElementById('past').innerText",
        )
        assert request_id in decided
        assert "approved" in decided

        # The other request is declined, with a reason the requester sees.
        reason = "one release for this case is enough"
        await tools.evaluate(
            page,
            f'document.getElementById("reason-{other_id}").value = "{reason}";'
            f'document.getElementById("decline-{other_id}").click();',
        )
        rows = await wait_for(
            tools,
            page,
            "[...document.querySelectorAll('#past tbody tr')].length === 2 && "
            "[...document.querySelectorAll('#past tbody tr')].map((r) => r.innerText)",
        )
        [declined_row] = [r for r in rows if r.startswith(other_id)]
        assert "declined" in declined_row
        assert reason in declined_row
        told = await asyncio.to_thread(device.cli, "requester", "status", other_id)
        assert (told["status"], told["reason"]) == ("declined", reason)

        # A release withdrawn before the requester fetched it can no longer be fetched.
        await tools.evaluate(page, f'document.getElementById("choose-{third_id}").click()')
        one = f"{clip.clip_id}.000003"
        await wait_for(tools, page, f"document.querySelector('input[value=\"{one}\"]')")
        await tools.evaluate(
            page,
            f"document.querySelector('input[value=\"{one}\"]').click();"
            f'document.getElementById("approve-{third_id}").click();',
        )
        await wait_for(tools, page, "document.querySelectorAll('#past tbody tr').length === 3")
        status = await asyncio.to_thread(device.cli, "requester", "status", third_id)
        [withdrawn] = status["release_ids"]
        await tools.evaluate(page, f'document.getElementById("revoke-{withdrawn}").click()')
        note = await wait_for(
            tools, page, f'document.getElementById("revoked-{withdrawn}").textContent'
        )
        assert note == " revoked: it can no longer be downloaded", note
        refused = await asyncio.to_thread(
            device.run, "requester", "fetch", withdrawn, "--out", str(tmp_path / "withdrawn")
        )
        assert refused.returncode == 1
        assert "revoked" in refused.stderr, refused.stderr

        # The requester's fetch gets exactly those two segments.
        status = await asyncio.to_thread(device.cli, "requester", "status", request_id)
        [release_id] = status["release_ids"]
        fetched = await asyncio.to_thread(
            device.cli, "requester", "fetch", release_id, "--out", str(tmp_path / "release")
        )
        assert fetched["ok"] is True
        assert [s["segment_id"] for s in fetched["segments"]] == chosen

        # The audit page shows the log verified, with the release in plain words.
        await tools.evaluate(page, 'location.hash = "#audit"')
        await rendered(tools, page, "audit")
        verdict = await tools.evaluate(page, "document.getElementById('verdict').innerText")
        assert verdict.startswith("verified"), verdict
        listed_entries = "document.querySelector('ol.entries').innerText"
        entries = [await tools.evaluate(page, listed_entries)]
        names = await check_labels(tools, page, "audit")
        assert {"Older entries", "Newer entries"} <= names
        await screenshot(tools, page, "audit")

        # Older entries, a page further back: the first entry is the owner's pairing.
        heading = "document.getElementById('entries-title').textContent"
        first = await tools.evaluate(page, heading)
        assert first.startswith("Entries (page 1 of "), first
        pages = int(first.rstrip(")").rsplit(" ", 1)[1])
        for number in range(2, pages + 1):
            await tools.evaluate(page, "document.getElementById('older').click()")
            now = await wait_for(
                tools, page, f"{heading}.startsWith('Entries (page {number} ') && {heading}"
            )
            assert now == f"Entries (page {number} of {pages})", now
            entries.append(await tools.evaluate(page, listed_entries))
        assert await tools.evaluate(page, "document.getElementById('older').disabled") is True
        oldest = entries[-1]
        assert oldest.rstrip().endswith('"via":"pairing"}'), oldest
        assert "#0 " in oldest
        assert "An owner was added" in oldest
        everything = "\n".join(entries)
        for sentence in (
            "Footage was released to a requester",
            "A requester downloaded released footage",
            "An owner declined a request",
            "An owner withdrew a release",
        ):
            assert sentence in everything

        # Clips: the clip with its first picture; its MP4 download plays; the filters work.
        await tools.evaluate(page, 'location.hash = "#clips"')
        await rendered(tools, page, "clips")
        item = f"document.getElementById('clip-{clip.clip_id}')"
        width = await wait_for(
            tools,
            page,
            f"{item} && {item}.querySelector('img').complete && "
            f"{item}.querySelector('img').naturalWidth",
        )
        assert width == 192
        # The player: the clip decrypted and remuxed by the console plays in the page and seeks.
        await tools.evaluate(page, f"document.getElementById('play-{clip.clip_id}').click()")
        video = "document.getElementById('video')"
        started = await wait_for(
            tools,
            page,
            f"{video} && {video}.getVideoPlaybackQuality().totalVideoFrames > 0 && "
            f"{video}.currentTime > 0 && {video}.currentTime",
        )
        advanced = await wait_for(
            tools, page, f"{video}.currentTime > {started} + 0.3 && {video}.currentTime"
        )
        assert advanced > started
        duration = await tools.evaluate(page, f"{video}.duration")
        assert duration >= 2.5, duration  # three 1-second segments or more
        seeked = await tools.evaluate(
            page,
            f"""new Promise((resolve) => {{
              const v = {video};
              v.pause();
              v.addEventListener("seeked", () => resolve(v.currentTime), {{ once: true }});
              v.currentTime = v.duration - 1;
            }})""",
        )
        assert abs(seeked - (duration - 1)) < 0.2, (seeked, duration)
        decoded = await tools.evaluate(page, f"{video}.getVideoPlaybackQuality().totalVideoFrames")
        assert decoded > 0
        names = await check_labels(tools, page, "clips")
        assert {
            "Camera",
            "Day (UTC)",
            "Show",
            f"Play clip {clip.clip_id}",
            f"Download clip {clip.clip_id} as MP4",
            "Close player",
        } <= names
        await screenshot(tools, page, "clips")
        got = await tools.evaluate(
            page,
            f"""(async () => {{
              const response = await fetch({item}.querySelector('a.download').href);
              const bytes = new Uint8Array(await response.arrayBuffer());
              let text = "";
              for (const b of bytes) text += String.fromCharCode(b);
              return {{status: response.status, type: response.headers.get("content-type"),
                       data: btoa(text)}};
            }})()""",
        )
        assert (got["status"], got["type"]) == (200, "video/mp4")
        with av.open(io.BytesIO(base64.b64decode(got["data"])), "r") as mp4:
            assert "mp4" in mp4.format.name
            assert sum(1 for _ in mp4.decode(video=0)) > 0
        day = time.strftime("%Y-%m-%d", time.gmtime(clip.start_s))
        for chosen_day, expect in ((day, True), ("2001-01-01", False)):
            await tools.evaluate(
                page,
                f'document.getElementById("clip-camera").value = "front";'
                f'document.getElementById("clip-day").value = "{chosen_day}";'
                'document.getElementById("filter").click();',
            )
            shown = await wait_for(
                tools,
                page,
                f'document.getElementById("clip-day").value === "{chosen_day}" && '
                "document.getElementById('main').getAttribute('aria-busy') === 'false' && "
                "document.getElementById('main').innerText",
            )
            assert (clip.clip_id in shown) is expect, shown
            assert ("No clip matches." in shown) is not expect, shown

        # Owners and policy: this profile is the admin; it lets a new phone pair, then signs a
        # policy that also refuses insurers and two keywords, which the device then holds.
        await tools.evaluate(page, 'location.hash = "#owners"')
        await rendered(tools, page, "owners")
        listed_owners = await tools.evaluate(
            page, "document.getElementById('owner-rows').innerText"
        )
        assert "Ada (this profile)" in listed_owners
        assert "admin" in listed_owners
        phone = KeyBundle.generate("x25519").key_id
        await tools.evaluate(
            page,
            f'document.getElementById("phone-key").value = "{phone}";'
            'document.getElementById("approve-phone").click();',
        )
        told_phone = await wait_for(
            tools, page, 'document.getElementById("phone-result").textContent'
        )
        assert told_phone.startswith("That phone may pair during the next few minutes"), told_phone
        await tools.evaluate(
            page,
            "document.querySelector('input[name=requester_kinds][value=insurer]').checked = true;"
            'document.getElementById("keywords").value = "protest\\nrally";'
            'document.getElementById("max-window").value = "90";'
            'document.getElementById("save-policy").click();',
        )
        saved = await wait_for(tools, page, 'document.getElementById("policy-result").textContent')
        assert saved == "Policy signed and installed.", saved
        names = await check_labels(tools, page, "owners")
        assert {
            "New phone's key id",
            "Let this phone pair",
            "Remove Ada (this profile)",
            "insurer",
            "Refuse requests whose text contains",
            "Longest window (minutes)",
            "Sign and save the policy",
        } <= names
        await screenshot(tools, page, "owners")
        in_force = (await asyncio.to_thread(device.cli, "owner", "policy"))["policy"]
        assert "insurer" in in_force["refused_kinds"], json.dumps(in_force)
        assert in_force["refused_keywords"] == ["protest", "rally"]
        assert in_force["max_window_s"] == 5400
        # A policy the device would refuse is answered on the page, and nothing is saved.
        await tools.evaluate(
            page,
            'document.getElementById("keywords").value = "x";'
            'document.getElementById("save-policy").click();',
        )
        refused = await wait_for(
            tools,
            page,
            'document.getElementById("policy-result").className === "error" && '
            'document.getElementById("policy-result").textContent',
        )
        assert refused == (
            "the policy is not a valid policy: each refused keyword must be 2 to 64 "
            "characters, got 'x'"
        ), refused

        # Live: the console mints a single-use live link for the doorbell's own page.
        await tools.evaluate(page, 'location.hash = "#live"')
        await rendered(tools, page, "live")
        await wait_for(tools, page, 'document.getElementById("live-camera").value === "front"')
        await tools.evaluate(page, 'document.getElementById("open-live").click()')
        link = await wait_for(tools, page, 'document.getElementById("live-link")?.href')
        assert link.startswith("https://127.0.0.1:"), link
        names = await check_labels(tools, page, "live")
        assert {"Camera", "Get a live link", "Open live view (video and sound)"} <= names
        await screenshot(tools, page, "live")
        # The link opens the doorbell's own page, which plays the camera with its sound.
        viewer = await tools.open_page(link)
        state = await wait_for(
            tools,
            viewer,
            'document.body.dataset.state === "live" && '
            'document.getElementById("video").srcObject.getAudioTracks().length > 0 && '
            "document.body.dataset.state",
        )
        assert state == "live"
