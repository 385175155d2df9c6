"""The relay from the command line, against a real Mosquitto and a real ``doorward serve`` with
``[relay]``: pairing pins the relay key and URL, owner commands work ``--via relay`` and fall back
to it when the LAN address does not answer, ``share-address`` prints a request address (and a QR
code that decodes to it), and a requester asks through that address."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.keys import KeyBundle, key_id
from hub.cli import main as cli
from hub.client.profile import Profile
from hub.relay.address import RequestAddress
from hub.relay.broker import BrokerError, MosquittoBroker, find_mosquitto
from hub.server.state import Device
from hub.wire import ohttp
from tests.kit import child_env, in_ci, require_tool, serve_command

SCENE = "[camera]\nwidth = 160\nheight = 120\nfps = 5\nseconds = 3600\nseed = 1\n"
SERVE_START_S = 60.0


@dataclass
class Setup:
    tmp: Path
    broker: MosquittoBroker
    device_id: str
    lan_url: str
    owner_dir: Path
    owner_id: str
    requester_dir: Path
    requester_id: str
    key_config: bytes  # the relay key configuration in the device's key file


def run(*argv: str) -> tuple[int, str, str]:
    """``doorward ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def ok(*argv: str) -> tuple[str, str]:
    code, out, err = run(*argv)
    assert code == 0, err
    return out, err


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    try:
        find_mosquitto()
    except BrokerError as exc:
        if in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("relay-cli")
    device = Device.open(tmp / "data")  # the device id names its broker login
    device_id = device.identity.device_id
    assert device.relay_key is not None
    key_config = device.relay_keys()
    device.close()
    owner_dir, requester_dir = tmp / "owner", tmp / "requester"
    owner, requester = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    Profile(owner_dir, "owner").create(owner, {"name": "Ada's phone"})
    identity = {
        "name": "Officer Ada",
        "organisation": "Springfield PD",
        "kind": "local_agency",
        "jurisdiction": "Springfield",
        "contact": "",
    }
    Profile(requester_dir, "requester").create(requester, {"identity": identity})
    owner_id = key_id(owner.signing_key.public_key())
    requester_id = key_id(requester.signing_key.public_key())
    broker = MosquittoBroker(tmp / "broker", devices=[device_id], clients=[owner_id, requester_id])
    broker.start()
    secret_file(tmp / "device-password", broker.credentials(device_id).password)
    (tmp / "scene.toml").write_text(SCENE)
    (tmp / "doorward.toml").write_text(
        "[relay]\n"
        f'url = "mqtts://{broker.host}:{broker.device_port}"\n'
        f'client_url = "mqtts://{broker.host}:{broker.client_port}"\n'
        f'ca_file = "{broker.ca_path}"\n'
        f'credentials_file = "{tmp / "device-password"}"\n'
    )
    log = tmp / "serve.log"
    process = subprocess.Popen(
        serve_command(tmp, f"front=simulated:{tmp / 'scene.toml'}"),
        env=child_env("NOTIFY_SOCKET"),
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        text=True,
    )
    try:
        assert process.stdout is not None
        uri = lan_url = ""
        for line in process.stdout:
            if line.strip().startswith("pairing URI:"):
                uri = line.split("pairing URI:", 1)[1].strip()
            if line.startswith("doorward: serving "):
                lan_url = line.split()[2]
                break
        assert uri, f"doorward serve printed no pairing URI: {log.read_text()[-2000:]}"
        deadline = time.monotonic() + SERVE_START_S
        while "relay.connected" not in log.read_text():
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the device did not connect to the relay"
            time.sleep(0.2)
        # Pairing, as a person does it: the URI on standard input.
        code, _, err = run_with_stdin(uri, "owner", "pair", "-", "--profile", str(owner_dir))
        assert code == 0, err
        yield Setup(
            tmp,
            broker,
            device_id,
            lan_url,
            owner_dir,
            owner_id,
            requester_dir,
            requester_id,
            key_config,
        )
    finally:
        process.terminate()
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
            broker.stop()


def run_with_stdin(text: str, *argv: str) -> tuple[int, str, str]:
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(text + "\n")
    try:
        return run(*argv)
    finally:
        sys.stdin = saved


def owner_login(setup: Setup, profile: Path | None = None) -> None:
    password = secret_file(
        setup.tmp / "owner-relay-password", setup.broker.credentials(setup.owner_id).password
    )
    ok(
        "owner",
        "relay",
        "login",
        "--password-file",
        str(password),
        "--ca-file",
        str(setup.broker.ca_path),
        "--profile",
        str(profile or setup.owner_dir),
    )


def copy_profile(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# -- pairing -------------------------------------------------------------------------------------


def test_pairing_pins_the_relay_key_and_the_clients_relay_url(setup: Setup) -> None:
    [device] = Profile(setup.owner_dir, "owner").devices()
    assert device.device_id == setup.device_id
    assert device.relay_key_config == setup.key_config
    assert device.relay_url == f"mqtts://{setup.broker.host}:{setup.broker.client_port}"
    # The LAN's GET /relay/key-config serves the same key: refresh finds it unchanged.
    out, _ = ok("owner", "relay", "refresh", "--profile", str(setup.owner_dir), "--json")
    result = json.loads(out)
    assert (result["changed"], result["relay_url"]) == (False, device.relay_url)


def test_a_relay_key_other_than_the_pinned_one_is_refused_until_re_pinned(
    setup: Setup, tmp_path: Path
) -> None:
    profile_dir = copy_profile(setup.owner_dir, tmp_path / "owner")
    profile = Profile(profile_dir, "owner")
    [device] = profile.devices()
    stale = bytes(ohttp.GatewayKey.generate(1).config())
    profile.pin(dataclasses.replace(device, relay_key_config=stale))
    code, out, err = run("owner", "relay", "refresh", "--profile", str(profile_dir))
    assert (code, out) == (1, "")
    assert err.startswith(f"doorward: error: device {setup.device_id} serves a relay key (sha256:")
    assert "other than the one pinned at pairing" in err
    assert "'doorward owner relay refresh --re-pin'" in err
    assert profile.devices()[0].relay_key_config == stale  # nothing was changed
    ok("owner", "relay", "refresh", "--re-pin", "--profile", str(profile_dir))
    assert profile.devices()[0].relay_key_config == setup.key_config


# -- owner commands through the relay -----------------------------------------------------------


def test_owner_login_keeps_the_password_private_and_refuses_a_readable_file(
    setup: Setup, tmp_path: Path
) -> None:
    profile_dir = copy_profile(setup.owner_dir, tmp_path / "owner")
    password = setup.broker.credentials(setup.owner_id).password
    readable = tmp_path / "pw"
    readable.write_text(password + "\n")
    readable.chmod(0o644)
    code, out, err = run(
        "owner", "relay", "login", "--password-file", str(readable), "--profile", str(profile_dir)
    )
    assert (code, out) == (1, "")
    assert err == (
        f"doorward: error: password file {readable} is readable by group or others (mode "
        f"0644); run `chmod 600 {readable}` and try again\n"
    )
    readable.chmod(0o600)
    # A password the broker does not know: the command says where and as whom it tried.
    wrong = secret_file(tmp_path / "wrong", "not-the-password")
    ok(
        "owner",
        "relay",
        "login",
        "--password-file",
        str(wrong),
        "--ca-file",
        str(setup.broker.ca_path),
        "--profile",
        str(profile_dir),
    )
    code, out, err = run("owner", "status", "--via", "relay", "--profile", str(profile_dir))
    assert (code, out) == (1, "")
    relay_url = f"mqtts://{setup.broker.host}:{setup.broker.client_port}"
    assert err.startswith(
        f"doorward: via the relay ({relay_url})\ndoorward: error: cannot log in to the relay at "
        f"{relay_url} as {setup.owner_id} ("
    )
    assert err.endswith(
        "): check the relay's address, its CA and the password its operator gave for this "
        "client id ('doorward owner relay login --password-file FILE')\n"
    )
    assert "not-the-password" not in err
    out, err = ok(
        "owner",
        "relay",
        "login",
        "--password-file",
        str(readable),
        "--ca-file",
        str(setup.broker.ca_path),
        "--profile",
        str(profile_dir),
    )
    assert setup.owner_id in out
    assert password not in out + err
    kept = profile_dir / "relay.password"
    assert kept.stat().st_mode & 0o777 == 0o600
    account = Profile(profile_dir, "owner").relay_account()
    assert account is not None
    assert password not in repr(account)
    assert account.password() == password


def test_owner_status_goes_through_the_relay(setup: Setup, tmp_path: Path) -> None:
    profile_dir = copy_profile(setup.owner_dir, tmp_path / "owner")
    code, out, err = run("owner", "status", "--via", "relay", "--profile", str(profile_dir))
    assert (code, out) == (1, "")
    assert err == (
        "doorward: error: cannot use the relay: this profile has no relay login: run "
        "'doorward owner relay login --password-file FILE'\n"
    )
    owner_login(setup, profile_dir)
    out, err = ok("owner", "status", "--via", "relay", "--json", "--profile", str(profile_dir))
    relay_url = f"mqtts://{setup.broker.host}:{setup.broker.client_port}"
    assert err == f"doorward: via the relay ({relay_url})\n"
    assert json.loads(out)["health"]["device_id"] == setup.device_id
    # Viewing a clip goes through the relay too (here one the device does not have).
    code, out, err = run("owner", "view", "c" * 26, "--via", "relay", "--profile", str(profile_dir))
    assert (code, out) == (1, "")
    assert err.startswith(f"doorward: via the relay ({relay_url})\ndoorward: error: ")
    assert err.endswith("error: unknown clip 'cccccccccccccccccccccccccc' (not_found, HTTP 404)\n")
    # Live view: the call that sets it up goes through the relay; the video comes over the
    # network path the two ends find (here, loopback).
    code, out, err = run(
        "owner", "live", "--via", "relay", "--seconds", "2", "--json", "--profile", str(profile_dir)
    )
    assert code == 0, err
    assert err == f"doorward: via the relay ({relay_url})\n"
    assert json.loads(out)["frames"] > 0
    # A live link is for a browser on the doorbell's network: it says so.
    code, out, err = run("owner", "live-link", "--via", "relay", "--profile", str(profile_dir))
    assert (code, out) == (1, "")
    assert err == "doorward: error: a live link does not go through the relay yet: use --via lan\n"


def test_auto_falls_back_to_the_relay_when_the_lan_address_does_not_answer(
    setup: Setup, tmp_path: Path
) -> None:
    profile_dir = copy_profile(setup.owner_dir, tmp_path / "owner")
    owner_login(setup, profile_dir)
    relay_url = f"mqtts://{setup.broker.host}:{setup.broker.client_port}"
    # On the LAN while it answers (and the stderr line says so).
    out, err = ok("owner", "status", "--json", "--profile", str(profile_dir))
    assert err == f"doorward: via LAN ({setup.lan_url})\n"
    # A LAN address where nothing listens: auto goes through the relay.
    profile = Profile(profile_dir, "owner")
    [device] = profile.devices()
    with contextlib.closing(_closed_port()) as port:
        away = f"https://127.0.0.1:{port.number}"
        profile.pin(dataclasses.replace(device, url=away))
        out, err = ok("owner", "requests", "--json", "--profile", str(profile_dir))
        assert err == (
            f"doorward: the LAN address {away} did not answer; via the relay ({relay_url})\n"
        )
        assert "requests" in json.loads(out)
        # --via lan still means the LAN: the usual error, no relay.
        code, out, err = run("owner", "status", "--via", "lan", "--profile", str(profile_dir))
        assert (code, out) == (1, "")
        assert err.startswith(f"doorward: error: cannot connect to device {setup.device_id} at")


# -- the request address -------------------------------------------------------------------------


def test_share_address_prints_an_address_that_parses_and_a_qr_code_that_decodes_to_it(
    setup: Setup, tmp_path: Path
) -> None:
    png = tmp_path / "address.png"
    out, _ = ok(
        "owner", "share-address", "--qr", "--qr-file", str(png), "--profile", str(setup.owner_dir)
    )
    uri = out.splitlines()[0]
    address = RequestAddress.parse(uri)
    assert address.device_id == setup.device_id
    assert address.relay_url == f"mqtts://{setup.broker.host}:{setup.broker.client_port}"
    assert address.key_config == setup.key_config
    [device] = Profile(setup.owner_dir, "owner").devices()
    assert device.signing_key is not None
    assert address.signing_key.public_bytes_raw() == device.signing_key.public_bytes_raw()
    assert address.fingerprint == device.fingerprint
    # The terminal QR code, read back module by module, is the code of the URI; and a real QR
    # decoder (zbar) reads the URI back from the image file.
    assert _terminal_qr(out) == _matrix(uri)
    zbarimg = require_tool("zbarimg")
    decoded = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(png)], capture_output=True, text=True, check=True
    )
    assert decoded.stdout.strip() == uri
    assert (
        json.loads(ok("owner", "share-address", "--json", "--profile", str(setup.owner_dir))[0])[
            "uri"
        ]
        == uri
    )


def test_a_requester_asks_through_the_address_and_the_owner_sees_it_pending(
    setup: Setup, tmp_path: Path
) -> None:
    uri = json.loads(ok("owner", "share-address", "--json", "--profile", str(setup.owner_dir))[0])[
        "uri"
    ]
    address = RequestAddress.parse(uri)
    requester_dir = copy_profile(setup.requester_dir, tmp_path / "requester")
    now = datetime.now(UTC)
    ask = (
        "requester",
        "ask",
        uri,
        "--camera",
        "front",
        "--start",
        (now - timedelta(hours=1)).isoformat(),
        "--end",
        now.isoformat(),
        "--category",
        "package_theft",
        "--case",
        "CASE-2026-17",
        "--reason",
        "A parcel was taken from the porch.",
        "--legal-basis",
        "voluntary",
        "--json",
        "--profile",
        str(requester_dir),
    )
    code, out, err = run(*ask)
    assert (code, out) == (1, "")
    assert err == (
        "doorward: error: device "
        f"{setup.device_id} has no LAN address and the relay cannot be used: this profile has "
        "no relay login: run 'doorward requester relay login --password-file FILE'\n"
    )
    password = secret_file(tmp_path / "pw", setup.broker.credentials(setup.requester_id).password)
    ok(
        "requester",
        "relay",
        "login",
        "--password-file",
        str(password),
        "--ca-file",
        str(setup.broker.ca_path),
        "--profile",
        str(requester_dir),
    )
    # The owner, away from home, watches for requests through the relay.
    watcher = copy_profile(setup.owner_dir, tmp_path / "watcher")
    owner_login(setup, watcher)
    watch = subprocess.Popen(
        [
            *(sys.executable, "-m", "hub.cli.main", "owner", "watch", "--via", "relay"),
            *("--kind", "request.pending", "--count", "1", "--json", "--profile", str(watcher)),
        ],
        env=child_env("NOTIFY_SOCKET"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stderr is not None
        assert watch.stderr.readline().startswith("doorward: via the relay")
        assert watch.stderr.readline() == "doorward: watching (Ctrl-C stops)\n"
        out, err = ok(*ask)
        watched, _ = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert err == f"doorward: via the relay ({address.relay_url})\n"
    request = json.loads(out)
    assert request["status"] == "pending"
    event = json.loads(watched)
    assert (event["kind"], event["data"]["request_id"]) == (
        "request.pending",
        request["request_id"],
    )
    assert watch.returncode == 0
    # The device is pinned from the address: its signing key, TLS pin and relay key.
    [pinned] = Profile(requester_dir, "requester").devices()
    assert (pinned.device_id, pinned.fingerprint, pinned.url) == (
        setup.device_id,
        address.fingerprint,
        "",
    )
    assert pinned.signing_key is not None
    assert pinned.signing_key.public_bytes_raw() == address.signing_key.public_bytes_raw()
    assert pinned.relay_key_config == setup.key_config
    # The requester follows it through the relay; the owner sees it pending and decides.
    status, _ = ok(
        "requester", "status", request["request_id"], "--json", "--profile", str(requester_dir)
    )
    assert json.loads(status)["status"] == "pending"
    listed, _ = ok("owner", "requests", "--json", "--via", "lan", "--profile", str(setup.owner_dir))
    pending = {r["request_id"]: r for r in json.loads(listed)["requests"]}
    assert request["request_id"] in pending


def test_a_bad_address_gets_a_clear_error_and_sends_nothing(setup: Setup, tmp_path: Path) -> None:
    uri = json.loads(ok("owner", "share-address", "--json", "--profile", str(setup.owner_dir))[0])[
        "uri"
    ]
    other = Device.open(tmp_path / "other")
    forged = uri.replace(setup.device_id, other.identity.device_id)
    other.close()
    code, out, err = run(
        "requester",
        "ask",
        forged,
        "--camera",
        "front",
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-01T01:00:00Z",
        "--category",
        "package_theft",
        "--reason",
        "x",
        "--legal-basis",
        "voluntary",
        "--profile",
        str(setup.requester_dir),
    )
    assert (code, out) == (1, "")
    assert err.startswith(
        f"doorward: error: the request address is not usable: the device id "
        f"{other.identity.device_id} is not the id of the signing key in the address"
    )
    assert Profile(setup.requester_dir, "requester").devices() == []


# -- helpers -------------------------------------------------------------------------------------


@dataclass
class _Port:
    number: int

    def close(self) -> None:
        pass


def _closed_port() -> _Port:
    """A loopback port where nothing listens (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return _Port(probe.getsockname()[1])


def _matrix(text: str) -> list[list[bool]]:
    import segno

    return [[bool(m) for m in row] for row in segno.make(text, error="m").matrix]


def _terminal_qr(output: str) -> list[list[bool]]:
    """The modules of the compact terminal QR code in ``output``, read back without the quiet
    zone: segno draws two module rows per text line, light modules as ink (half or full blocks)
    and dark ones as the terminal's background; an odd last row is padding with no ink."""
    halves = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}
    lines = [line for line in output.splitlines() if line and set(line) <= set(halves)]
    rows: list[list[bool]] = []
    for line in lines:
        pairs = [halves[c] for c in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    dark = [[not ink for ink in row] for row in rows if any(row)]
    while dark and not any(dark[0]):
        dark.pop(0)
    while dark and not any(dark[-1]):
        dark.pop()
    left = min(row.index(True) for row in dark if any(row))
    right = max(len(row) - row[::-1].index(True) for row in dark if any(row))
    return [row[left:right] for row in dark]


def test_watch_refuses_an_unknown_kind_and_a_count_below_one(tmp_path: Path) -> None:
    code, out, err = run("owner", "watch", "--kind", "doorbell.rang", "--profile", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.startswith("doorward: error: unknown event kind(s) doorbell.rang; the kinds are ")
    assert "doorbell.pressed" in err
    code, out, err = run("owner", "watch", "--count", "0", "--profile", str(tmp_path))
    assert (code, out, err) == (1, "", "doorward: error: --count must be at least 1, got 0\n")
