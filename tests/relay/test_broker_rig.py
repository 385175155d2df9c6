"""The loopback broker rig: bad names get a clear error before anything starts, passwords stay
out of reprs and the broker's log, and a broken start says where to look."""

from __future__ import annotations

import re
from pathlib import Path

import aiomqtt
import pytest

from hub.relay.broker import BrokerError, MosquittoBroker, mosquitto_broker
from tests.relay.relaykit import client

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"devices": ["a/b"]},
            "a device id must be 1 to 64 letters, digits or ._~- (it becomes an MQTT topic "
            "level and a client id), got 'a/b'",
        ),
        ({"clients": ["+"]}, "got '+'"),
        ({"clients": ["x:y"]}, "got 'x:y'"),
        ({"operators": [""]}, "an operator name must be 1 to 64"),
        ({"devices": ["a" * 65]}, "got 'aaaa"),
        ({"devices": ["a", "a"]}, "a device id must be named once, got ['a', 'a']"),
        (
            {"devices": ["same"], "clients": ["same"]},
            "a name must belong to one role (the broker's client ids are shared), "
            "got ['same'] as both device and client",
        ),
        ({"clients": ["o"], "operators": ["o"]}, "an operator must not also be a client"),
        (
            {"devices": ["d"], "owners": {"o": ["d"]}},
            "an owner must be one of the clients, got 'o'",
        ),
        (
            {"devices": ["d"], "clients": ["o"], "owners": {"o": ["e"]}},
            "an owner's doorbells must be among the devices, got ['e']",
        ),
    ],
)
def test_bad_names_are_refused_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MosquittoBroker(tmp_path / "broker", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "broker").exists()


def test_credentials_of_an_unknown_name_say_how_to_get_some(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, devices=["d"])
    with pytest.raises(BrokerError, match="no broker credentials for 'x'; name it among"):
        broker.credentials("x")


def test_no_password_in_a_repr(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, devices=["d"], clients=["c"])
    login = broker.credentials("d")
    assert login.password not in repr(login)
    assert login.password not in repr(broker)
    assert "d" in repr(login)


@pytest.mark.asyncio
async def test_the_broker_log_holds_no_password_right_or_wrong(tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path, devices=["d"], clients=["c"]) as broker:
        async with client(broker, "d", device=True):
            pass
        with pytest.raises(aiomqtt.MqttCodeError):
            async with client(broker, "c", password="a-wrong-password-guess"):
                pass
        passwd = (tmp_path / "clients.passwd").read_text()
    log = broker.log_path.read_text()
    assert "New client connected" in log  # the log is written, and at this level
    for secret in ("a-wrong-password-guess", broker.credentials("d").password):
        assert secret not in log
    assert broker.credentials("c").password not in passwd  # hashed, not stored
    assert passwd.startswith("c:$7$")  # PBKDF2-SHA512, Mosquitto 2's hash


def test_a_broker_that_cannot_start_says_where_its_log_is(tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path / "first", devices=["d"]) as first:
        second = MosquittoBroker(tmp_path / "second", devices=["d"])
        second.device_port = first.device_port  # taken
        with pytest.raises(BrokerError, match="mosquitto exited with status") as caught:
            second.start()
        assert str(second.log_path) in str(caught.value)
        assert not second.running
