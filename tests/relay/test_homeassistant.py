"""The Home Assistant role against a real Mosquitto: a real device's events (a simulated camera
through the real pipeline, a requester's real request) become MQTT discovery and states on the
home broker, checked as Home Assistant would read them; availability follows the connection;
nothing about requesters, owners or video is ever published."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consent.owner import decline
from consent.requests import verify_request
from crypto.keys import KeyBundle, key_id
from device import CameraPipeline, MotionConfig, RecorderConfig, detector_for
from device.events import DeviceEvent
from hardware.sim import SimulatedCamera, parse_scenario
from hub.relay.broker import HomeBroker
from hub.relay.homeassistant import HomeAssistantBridge, HomeAssistantError, HomeAssistantLogin
from hub.server import appkeys
from hub.server.config import ConfigError, HomeAssistantConfig, ServeConfig, load_config
from hub.server.events import device_event
from hub.server.runtime import _home_assistant
from hub.server.state import Device
from tests.hub.hubkit import Running, request_token, running_device
from tests.kit import child_env, serve_command
from tests.relay.homeassistantkit import (
    DOORBELL,
    Listener,
    check_discovery,
    home_assistant,
    suggested_acl,
)
from tests.relay.relaykit import need_mosquitto

pytestmark = pytest.mark.timeout(120)

CAMERAS = ("front", "back")
OWNER_NAME = "Grace Hopper's phone"


def scene(start_s: float, *, seconds: float, press_at_s: float) -> str:
    """Someone walks past the door and rings."""
    start = datetime.fromtimestamp(int(start_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""\
[camera]
width = 160
height = 120
fps = 10
seconds = {seconds}
seed = 4
start = {start}

[[actor]]
id = "visitor"
kind = "person"
enter_s = 0.5
leave_s = 3.5
path = [[0.1, 0.8], [0.5, 0.7], [0.9, 0.8]]
times = [0.5, 2.0, 3.5]

[[press]]
at_s = {press_at_s}
"""


def require_mosquitto() -> None:
    need_mosquitto()


@dataclass
class Rig:
    broker: HomeBroker
    running: Running
    owner: KeyBundle
    bridge: HomeAssistantBridge
    task: asyncio.Future[None]

    @property
    def base(self) -> str:
        return f"doorward/{self.bridge.node.node_id}"


def password_file(path: Path, broker: HomeBroker) -> Path:
    path.write_text(broker.credentials(DOORBELL).password + "\n")
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def ha_rig(tmp_path: Path, *, tls: bool = True) -> AsyncIterator[Rig]:
    """A device with ``[homeassistant]`` (as ``doorward serve`` wires it) and its home broker,
    which lets the doorbell's login write only what docs/relay.md suggests."""
    require_mosquitto()
    data = tmp_path / "data"
    first = Device.open(data)
    node_id = f"doorward_{first.identity.device_id}"
    first.close()
    broker = HomeBroker(
        tmp_path / "home-broker",
        users=[DOORBELL, "homeassistant"],
        tls=tls,
        acl=suggested_acl(node_id),
    )
    broker.start()
    settings = HomeAssistantConfig(
        broker.url,
        username=DOORBELL,
        password_file=password_file(tmp_path / "ha-password", broker),
        ca_file=broker.ca_path if tls else None,
    )
    config = ServeConfig(data_dir=data, name="Porch", cameras=CAMERAS, homeassistant=settings)
    owner = KeyBundle.generate("x25519")
    try:
        async with running_device(data, config=config) as running:
            running.add_owner(owner, name=OWNER_NAME)
            bridge = _home_assistant(config, running.device, running.app, list(CAMERAS))
            assert isinstance(bridge, HomeAssistantBridge)
            task = asyncio.ensure_future(bridge.run())
            try:
                async with asyncio.timeout(10):
                    await bridge.connected.wait()
                yield Rig(broker, running, owner, bridge, task)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        broker.stop()


async def record(rig: Rig, camera: str = "front", *, press_at_s: float = 1.5) -> None:
    """The simulated camera through the real pipeline (virtual time), its events onto the
    device's bus as ``doorward serve`` puts them."""
    bus = rig.running.app[appkeys.BUS]

    def on_event(event: DeviceEvent) -> None:
        mapped = device_event(event)
        if mapped is not None:
            bus.publish(mapped[0], **mapped[1])

    source = SimulatedCamera(
        parse_scenario(scene(time.time() - 60, seconds=8.0, press_at_s=press_at_s), "walk.toml")
    )
    pipeline = CameraPipeline(
        camera,
        source,
        rig.running.device.store,
        rig.running.device.owners.recipients,
        detector=detector_for(source, MotionConfig()),
        config=RecorderConfig(
            pre_roll_s=1.0, post_roll_s=1.0, segment_s=1.0, keyframe_interval_s=1.0
        ),
        on_event=on_event,
        button=source.button,
    )
    stats = await pipeline.run()
    assert stats.clips >= 1


@pytest.mark.asyncio
async def test_discovery_states_and_nothing_about_requesters(tmp_path: Path) -> None:
    async with ha_rig(tmp_path) as rig, home_assistant(rig.broker) as mqtt:
        ha = Listener(mqtt)
        await ha.subscribe_like_home_assistant()
        base = rig.base
        # `online` comes last: every config and state is in by then.
        online = await ha.until(f"{base}/availability", b"online")
        assert online.retain
        assert ha.last(f"{base}/pending_requests") == b"0"
        for camera in CAMERAS:
            assert ha.last(f"{base}/motion/{camera}") == b"OFF"

        # A visitor walks up and rings: motion ON, the press, motion OFF when the clip ends.
        await record(rig)
        await ha.until(f"{base}/motion/front", b"ON")
        press = await ha.until(f"{base}/doorbell")
        assert json.loads(press.payload) == {"event_type": "press", "camera": "front"}
        await ha.until(f"{base}/motion/front", b"OFF")

        # A requester's real request: the count goes to 1; the owner declines it: back to 0.
        requester = KeyBundle.generate("x25519")
        token = request_token(requester, contact="ada@pd.example")
        async with rig.running.client(requester) as agency, rig.running.client(rig.owner) as phone:
            submitted = await agency.submit_request(token)
            assert submitted.status == "pending"
            assert (await ha.until(f"{base}/pending_requests")).payload == b"1"
            request = verify_request(
                (await phone.request(submitted.request_id)).token or "", int(time.time())
            )
            refusal = decline(
                rig.owner.signing_key,
                request,
                "Not without a warrant.",
                device_id=rig.running.device.identity.device_id,
                token_id=secrets.token_urlsafe(16),
                now=int(time.time()),
            )
            await phone.decline(request.request_id, refusal)
        assert (await ha.until(f"{base}/pending_requests")).payload == b"0"
        clip_ids = [c.clip_id for c in rig.running.device.store.list_clips()]
        # Nobody walked past the back camera.
        assert [m.payload for m in ha.seen if m.topic == f"{base}/motion/back"] == [b"OFF"]

    published = {m.topic for m in ha.seen}
    check_discovery(ha.entities(), published)
    assert len(ha.entities()) == 2 + len(CAMERAS)
    forbidden = [
        "Officer Ada",
        "Springfield",
        "CASE-2026-17",
        "parcel",
        "package_theft",
        "ada@pd.example",
        "Not without a warrant",
        OWNER_NAME,
        "Grace",
        submitted.request_id,
        key_id(requester.signing_key.public_key()),
        key_id(rig.owner.signing_key.public_key()),
        str(requester.recipient),
    ]
    assert clip_ids
    for message in ha.seen:
        text = message.topic + " " + message.payload.decode("utf-8")  # all text, no media
        for needle in (*forbidden, *clip_ids):
            assert needle not in text, (needle, message.topic)
        assert len(message.payload) < 2048, message.topic
        if message.topic.startswith(base + "/"):
            assert message.payload in (b"ON", b"OFF", b"online", b"offline", b"0", b"1") or (
                json.loads(message.payload).keys() <= {"event_type", "camera"}
            ), message


@pytest.mark.asyncio
async def test_retained_discovery_survives_a_home_assistant_restart(tmp_path: Path) -> None:
    async with ha_rig(tmp_path) as rig:
        async with home_assistant(rig.broker) as mqtt:
            before = Listener(mqtt)
            await before.subscribe_like_home_assistant()
            await before.until(f"{rig.base}/availability", b"online")
            await record(rig)
            await before.until(f"{rig.base}/doorbell")
            await before.until(f"{rig.base}/motion/front", b"OFF")
        # Home Assistant restarts: a new connection gets every config and state from the
        # broker's retained messages, and no press again.
        async with home_assistant(rig.broker, "home-assistant-again") as mqtt:
            after = Listener(mqtt)
            await after.subscribe_like_home_assistant()
            await after.until(f"{rig.base}/availability", b"online")
            assert after.last(f"{rig.base}/pending_requests") == b"0"
            configs = {e.topic: e.config for e in after.entities()}
            assert configs == {e.topic: e.config for e in before.entities()}
            assert len(configs) == 2 + len(CAMERAS)
            assert all(m.retain for m in after.seen)
            assert f"{rig.base}/doorbell" not in {m.topic for m in after.seen}
            check_discovery(
                after.entities(), {m.topic for m in after.seen} | {f"{rig.base}/doorbell"}
            )


@pytest.mark.asyncio
async def test_home_assistant_birth_brings_the_configs_back(tmp_path: Path) -> None:
    async with ha_rig(tmp_path, tls=False) as rig, home_assistant(rig.broker) as mqtt:
        ha = Listener(mqtt)
        await ha.subscribe_like_home_assistant()
        await ha.until(f"{rig.base}/availability", b"online")
        [topic, *_] = sorted(e.topic for e in ha.entities())
        # Someone wipes a retained config (an empty payload deletes the entity)...
        await mqtt.publish(topic, b"", qos=1, retain=True)
        await ha.until(topic, b"")
        # ...and Home Assistant starts: its birth message has the device announce itself again.
        await mqtt.publish("homeassistant/status", b"online", qos=1)
        again = await ha.until(topic)
        # The rig stops the device while it is still announcing: on Python 3.11 aiomqtt's
        # publish can swallow that cancellation, and the stop would hang (the bridge re-raises it).
        assert again.payload
        assert json.loads(again.payload)["unique_id"]


@pytest.mark.asyncio
async def test_a_clean_stop_says_offline_and_a_broker_restart_is_survived(tmp_path: Path) -> None:
    async with ha_rig(tmp_path, tls=False) as rig:
        # The broker goes away (and forgets its retained messages: no persistence) and comes
        # back on the same port: the device connects again and announces everything again.
        rig.broker.stop()
        await asyncio.to_thread(rig.broker.start)
        async with home_assistant(rig.broker) as mqtt:
            ha = Listener(mqtt)
            await ha.subscribe_like_home_assistant()
            await ha.until(f"{rig.base}/availability", b"online")
            assert ha.last(f"{rig.base}/pending_requests") == b"0"
            assert len(ha.entities()) == 2 + len(CAMERAS)
            rig.task.cancel()
            await asyncio.gather(rig.task, return_exceptions=True)
            await ha.until(f"{rig.base}/availability", b"offline")
            assert not rig.bridge.connected.is_set()
        async with home_assistant(rig.broker, "late") as mqtt:
            late = Listener(mqtt)
            await late.subscribe_like_home_assistant()
            assert (await late.until(f"{rig.base}/availability")).payload == b"offline"


@pytest.mark.asyncio
async def test_a_bus_that_drops_the_bridge_never_leaves_motion_on(tmp_path: Path) -> None:
    async with ha_rig(tmp_path, tls=False) as rig, home_assistant(rig.broker) as mqtt:
        ha = Listener(mqtt)
        await ha.subscribe_like_home_assistant()
        await ha.until(f"{rig.base}/availability", b"online")
        bus = rig.running.app[appkeys.BUS]
        bus.publish("motion", camera="back", score=0.5)
        await ha.until(f"{rig.base}/motion/back", b"ON")
        # A burst the bridge cannot take in time: publishing never waits; the bus drops the
        # bridge's subscription, and the bridge subscribes again with motion reset.
        for index in range(400):
            bus.publish("request.decided", request_id=f"r{index}", decision="declined")
        assert bus.dropped_subscribers == 1
        await ha.until(f"{rig.base}/motion/back", b"OFF")
        await bus.wait_for_subscriber(1)
        bus.publish("doorbell.pressed", camera="back")
        press = await ha.until(f"{rig.base}/doorbell")
        assert json.loads(press.payload)["camera"] == "back"


@pytest.mark.asyncio
async def test_unusable_password_file_leaves_the_role_off_with_a_clear_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "ha-password"
    secret.write_text("hunter2-not-logged\n")
    secret.chmod(0o644)
    with pytest.raises(HomeAssistantError) as loose:
        HomeAssistantLogin.from_files(
            "127.0.0.1", 1883, tls=False, username="doorward", password_file=secret
        )
    assert str(loose.value) == (
        f"homeassistant password_file: key file {secret} is readable by group or others "
        f"(mode 0644); run `chmod 600 {secret}` and try again"
    )
    settings = HomeAssistantConfig("mqtt://127.0.0.1", username="doorward", password_file=secret)
    config = ServeConfig(data_dir=tmp_path / "data", homeassistant=settings)
    async with running_device(config.data_dir, config=config) as running:
        with caplog.at_level(logging.ERROR, logger="hub.server.runtime"):
            assert _home_assistant(config, running.device, running.app, ["front"]) is None
        assert "homeassistant.off error=HomeAssistantError" in caplog.text
        assert "chmod 600" in caplog.text
        secret.chmod(0o600)
        bridge = _home_assistant(config, running.device, running.app, ["front"])
        assert isinstance(bridge, HomeAssistantBridge)
    assert "hunter2" not in caplog.text + repr(bridge) + repr(bridge._login)
    secret.write_text("")
    with pytest.raises(HomeAssistantError, match="is empty: write the home broker's password"):
        HomeAssistantLogin.from_files(
            "127.0.0.1", 1883, tls=False, username="doorward", password_file=secret
        )


class _Counted(logging.Handler):
    """Sets ``reached`` once ``count`` log lines starting with ``prefix`` were logged (on the
    event loop's thread, where the bridge logs)."""

    def __init__(self, prefix: str, count: int) -> None:
        super().__init__(logging.DEBUG)
        self.prefix, self.count = prefix, count
        self.lines: list[str] = []
        self.reached = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if line.startswith(self.prefix):
            self.lines.append(line)
            if len(self.lines) >= self.count:
                self.reached.set()


@pytest.mark.asyncio
async def test_a_refused_login_is_retried_and_said_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with ha_rig(tmp_path, tls=False) as rig:
        wrong = HomeAssistantLogin(rig.broker.host, rig.broker.port, DOORBELL, "not-the-password")
        bus = rig.running.app[appkeys.BUS]

        async def pending() -> int:
            return 0

        bridge = HomeAssistantBridge(
            wrong, rig.bridge.node, subscribe=lambda: bus.subscribe(), pending_count=pending
        )
        retried = _Counted("homeassistant.disconnected", 2)
        logger = logging.getLogger("hub.relay.homeassistant")
        logger.addHandler(retried)
        with caplog.at_level(logging.WARNING, logger="hub.relay.homeassistant"):
            task = asyncio.ensure_future(bridge.run())
            try:
                async with asyncio.timeout(15):
                    await retried.reached.wait()
            finally:
                logger.removeHandler(retried)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert not bridge.connected.is_set()
        assert retried.lines[:2] == [
            "homeassistant.disconnected error=MqttConnectError detail=[code:135] Not authorized "
            "retry_s=1.0",
            "homeassistant.disconnected error=MqttConnectError detail=[code:135] Not authorized "
            "retry_s=2.0",
        ]
        assert "not-the-password" not in caplog.text
        # Refused, the first device's connection is untouched: it still says online.
        async with home_assistant(rig.broker) as mqtt:
            ha = Listener(mqtt)
            await ha.subscribe_like_home_assistant()
            await ha.until(f"{rig.base}/availability", b"online")


def test_homeassistant_config_table(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"

    def load(text: str) -> HomeAssistantConfig | None:
        path.write_text("[homeassistant]\n" + text)
        return load_config(path).homeassistant

    assert load("") is None
    settings = load('url = "mqtts://ha.example.net"\nusername = "doorward"\npassword_file = "/p"\n')
    assert settings == HomeAssistantConfig(
        "mqtts://ha.example.net", username="doorward", password_file=Path("/p")
    )
    assert settings is not None
    assert (settings.address(), settings.tls, settings.node("abc")) == (
        ("ha.example.net", 8883),
        True,
        "doorward_abc",
    )
    plain = load('url = "mqtt://192.0.2.7"\nnode_id = "porch"\ndiscovery_prefix = "ha"\n')
    assert plain is not None
    assert (plain.address(), plain.tls, plain.node("abc")) == (("192.0.2.7", 1883), False, "porch")
    cases = {
        'url = "http://ha.example.net"\n': (
            "invalid homeassistant option: homeassistant url 'http://ha.example.net' must look "
            "like mqtts://HOST:PORT (TLS) or mqtt://HOST:PORT (plain, on the LAN only)"
        ),
        'url = "mqtt://ha"\npassword = "x"\n': (
            "unknown homeassistant option(s): password; the options are ca_file, "
            "discovery_prefix, node_id, password_file, url, username"
        ),
        'username = "doorward"\n': (
            "homeassistant needs url: set it in [homeassistant] (mqtts://HOST:PORT), or leave "
            "the table empty to turn Home Assistant off"
        ),
        'url = "mqtt://ha"\nusername = "doorward"\n': (
            "invalid homeassistant option: homeassistant needs username and password_file "
            "together (or neither, for a broker that takes anonymous logins)"
        ),
        'url = "mqtt://ha"\nca_file = "/ca.pem"\n': (
            "invalid homeassistant option: homeassistant ca_file is for mqtts:// only, got url "
            "'mqtt://ha'; use mqtts://HOST:8883 or drop ca_file"
        ),
        'url = "mqtt://user:pw@ha"\n': (
            "invalid homeassistant option: homeassistant url must hold no login, path or query: "
            "set username and password_file instead"
        ),
        'url = "mqtt://ha:99999"\n': (
            "invalid homeassistant option: homeassistant url 'mqtt://ha:99999' has an invalid port"
        ),
        'url = "mqtt://ha"\nnode_id = "front door"\n': (
            "invalid homeassistant option: homeassistant node_id must be 1 to 64 letters, "
            "digits, _ or -, got 'front door'"
        ),
        'url = "mqtt://ha"\ndiscovery_prefix = "home/#"\n': (
            "invalid homeassistant option: homeassistant discovery_prefix must be a topic "
            "without wildcards or outer slashes (Home Assistant's default is homeassistant), "
            "got 'home/#'"
        ),
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            load(text)
        assert str(caught.value) == message, text
        assert "hunter2" not in str(caught.value)


LIVE_SCENE_S = 120.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_doorward_serve_announces_itself_and_its_last_will_says_offline(tmp_path: Path) -> None:
    """``doorward serve`` as a process with ``[homeassistant]``: Home Assistant sees the
    device, the ring and the motion of a real-time simulated camera; the process is killed
    (no DISCONNECT) and the broker publishes its last will."""
    require_mosquitto()
    data = tmp_path / "data"
    first = Device.open(data)
    node_id = f"doorward_{first.identity.device_id}"
    first.owners.add(KeyBundle.generate("x25519").public(), name=OWNER_NAME, now=int(time.time()))
    first.close()
    broker = HomeBroker(
        tmp_path / "home-broker",
        users=[DOORBELL, "homeassistant"],
        tls=True,
        acl=suggested_acl(node_id),
    )
    broker.start()
    secret = password_file(tmp_path / "ha-password", broker)
    (tmp_path / "walk.toml").write_text(scene(time.time(), seconds=LIVE_SCENE_S, press_at_s=2.5))
    (tmp_path / "doorward.toml").write_text(
        "pre_roll_s = 1.0\npost_roll_s = 1.0\nsegment_s = 1.0\n\n[homeassistant]\n"
        f'url = "{broker.url}"\nusername = "{DOORBELL}"\npassword_file = "{secret}"\n'
        f'ca_file = "{broker.ca_path}"\n'
    )
    log = (tmp_path / "serve.log").open("ab")
    process = subprocess.Popen(
        serve_command(tmp_path, f"front=simulated:{tmp_path / 'walk.toml'}"),
        env=child_env("NOTIFY_SOCKET"),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"doorward/{node_id}"

    async def watch() -> tuple[Listener, Listener]:
        async with home_assistant(broker) as mqtt:
            ha = Listener(mqtt)
            await ha.subscribe_like_home_assistant()
            for _ in range(6):  # the process imports and starts the camera first
                with contextlib.suppress(TimeoutError):
                    await ha.until(f"{base}/availability", b"online")
                    break
            await ha.until(f"{base}/motion/front", b"ON")
            press = await ha.until(f"{base}/doorbell")
            assert json.loads(press.payload) == {"event_type": "press", "camera": "front"}
            await ha.until(f"{base}/motion/front", b"OFF")
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 30)
            will = await ha.until(f"{base}/availability", b"offline")
            assert will.payload == b"offline"
        async with home_assistant(broker, "restarted") as mqtt:
            later = Listener(mqtt)
            await later.subscribe_like_home_assistant()
            assert (await later.until(f"{base}/availability")).payload == b"offline"
            assert later.last(f"{base}/pending_requests") == b"0"
        return ha, later

    try:
        ha, later = asyncio.run(watch())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        log.close()
        broker.stop()
    check_discovery(ha.entities(), {m.topic for m in ha.seen})
    assert {e.topic for e in later.entities()} == {e.topic for e in ha.entities()}
    assert len(ha.entities()) == 3
