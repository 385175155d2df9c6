"""The shipped relay broker configuration, on a real Mosquitto with real MQTT 5 clients: TLS and
passwords only, each role on its own listener, the topic ACLs (what a doorbell, a client and an
intruder with valid credentials of its own can read and write), persistent sessions across an
absence and a broker restart, no session takeover by client id, and the last will."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import warnings

import aiomqtt
import pytest

from hub.relay.broker import MosquittoBroker, shipped_config
from tests.relay.relaykit import (
    INTRUDER,
    OPERATOR,
    OWNER,
    REQUESTER,
    availability,
    client,
    connect_packet,
    events,
    inbox,
    messages_until,
    next_message,
    publish_packet,
    request_properties,
    responses,
)

pytestmark = pytest.mark.timeout(60)

# Mosquitto 2 answers every failed login with CONNACK "Not authorized" (MQTT 5 §3.2.2.2), the
# same for a wrong password, an unknown user and a login on the other role's listener.
_NOT_AUTHORIZED = 0x87
_PINGREQ = b"\xc0\x00"
_PINGRESP = b"\xd0\x00"


def _handshake(broker: MosquittoBroker, port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection((broker.host, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=broker.host) as tls,
    ):
        return tls.version()


def test_the_running_configuration_is_the_shipped_one_but_for_paths_and_ports(
    broker: MosquittoBroker,
) -> None:
    shipped = shipped_config("doorward.conf").splitlines()
    running = broker.config_path.read_text().splitlines()
    moved = {
        "listener",
        "certfile",
        "keyfile",
        "password_file",
        "acl_file",
        "log_dest",
        "persistence_location",
    }
    changed = [(a, b) for a, b in zip(shipped, running, strict=False) if a != b]
    assert changed, "the rendered configuration should place files in the broker's folder"
    assert all(a.split()[0] in moved and a.split()[0] == b.split()[0] for a, b in changed)
    assert running[len(shipped) :] in ([], ["user root"])
    assert (broker.directory / "devices.acl").read_text() == shipped_config("devices.acl")


def test_tls_1_3_is_negotiated_1_2_accepted_and_older_refused(broker: MosquittoBroker) -> None:
    for port in (broker.device_port, broker.client_port):
        assert _handshake(broker, port, broker.tls_context()) == "TLSv1.3"
        tls12 = broker.tls_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert _handshake(broker, port, tls12) == "TLSv1.2"
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(broker.ca_path)
        with warnings.catch_warnings():  # deprecated: the point is that the broker refuses it
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises(ssl.SSLError):
            _handshake(broker, port, old)


def test_a_plain_connection_gets_no_answer_but_a_closed_socket(broker: MosquittoBroker) -> None:
    login = broker.credentials(REQUESTER)
    for port in (broker.device_port, broker.client_port):
        with socket.create_connection((broker.host, port), timeout=5) as sock:
            sock.sendall(connect_packet(login.username, login.password))
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(4096) == b""  # no CONNACK: TLS or nothing
    with (
        socket.create_connection((broker.host, broker.client_port), timeout=5) as sock,
        broker.tls_context().wrap_socket(sock, server_hostname=broker.host) as tls,
    ):  # the same bytes over TLS are welcome: CONNACK, reason code 0 (success)
        tls.sendall(connect_packet(login.username, login.password))
        connack = tls.recv(4096)
        assert connack[0] == 0x20  # CONNACK
        assert connack[3] == 0x00  # success


@pytest.mark.asyncio
async def test_an_anonymous_login_is_refused(broker: MosquittoBroker) -> None:
    # Two settings refuse it: allow_anonymous false, and use_username_as_clientid (a client
    # without a username has no client id to be given).
    for port in (broker.device_port, broker.client_port):
        with pytest.raises(aiomqtt.MqttCodeError) as caught:
            async with aiomqtt.Client(
                broker.host,
                port,
                identifier="anonymous",
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=broker.tls_context(),
                timeout=5,
            ):
                pass
        assert caught.value.rc.value == _NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("name", "password", "device"),
    [
        pytest.param("alpha", "not-the-password", True, id="device-wrong-password"),
        pytest.param(REQUESTER, "not-the-password", False, id="client-wrong-password"),
        pytest.param("stranger", "whatever", False, id="unknown-user"),
        pytest.param("alpha", None, False, id="device-login-on-client-listener"),
        pytest.param(REQUESTER, None, True, id="client-login-on-device-listener"),
        pytest.param(REQUESTER, "", False, id="empty-password"),
    ],
)
@pytest.mark.asyncio
async def test_bad_logins_are_refused(
    broker: MosquittoBroker, name: str, password: str | None, device: bool
) -> None:
    if password is None:
        password = broker.credentials(name).password
    with pytest.raises(aiomqtt.MqttCodeError) as caught:
        async with client(broker, name, password=password, device=device):
            pass
    assert caught.value.rc.value == _NOT_AUTHORIZED


@pytest.mark.asyncio
async def test_a_request_reaches_the_device_with_its_properties_and_the_answer_comes_back(
    broker: MosquittoBroker,
) -> None:
    async with (
        client(broker, "alpha", device=True) as device,
        client(broker, REQUESTER) as requester,
    ):
        await device.subscribe(inbox("alpha", "+"), qos=1)
        await requester.subscribe(responses(REQUESTER, "+"), qos=1)
        answer_to = responses(REQUESTER, "alpha")
        await requester.publish(
            inbox("alpha", REQUESTER),
            b"\x00encapsulated request",
            qos=1,
            properties=request_properties(answer_to, b"\x01corr\xff"),
        )
        request = await next_message(device)
        assert request.topic.value == inbox("alpha", REQUESTER)  # the sender, vouched by the ACL
        assert request.payload == b"\x00encapsulated request"
        assert request.qos == 1
        assert request.properties is not None
        assert request.properties.ResponseTopic == answer_to
        assert request.properties.CorrelationData == b"\x01corr\xff"

        await device.publish(
            request.properties.ResponseTopic,
            b"\x00encapsulated response",
            qos=1,
            properties=request_properties(answer_to, request.properties.CorrelationData),
        )
        response = await next_message(requester)
        assert response.topic.value == answer_to
        assert response.payload == b"\x00encapsulated response"
        assert response.properties is not None
        assert response.properties.CorrelationData == b"\x01corr\xff"


@pytest.mark.asyncio
async def test_valid_credentials_do_not_let_a_client_read_other_traffic(
    broker: MosquittoBroker,
) -> None:
    """Mosquitto 2 accepts the intruder's subscriptions (SUBACK grants QoS 1) and then withholds
    every message its read ACL does not allow: the messages below, which each filter matches and
    which their rightful readers receive, never reach it."""
    snooped = [
        inbox("alpha", "+"),
        "doorward/v1/dev/+/in/+",
        responses(REQUESTER, "+"),
        events(OWNER, "+"),
        availability("alpha"),
        "doorward/v1/#",
        "#",
    ]
    async with (
        client(broker, "alpha", device=True) as device,
        client(broker, "bravo", device=True) as other_device,
        client(broker, REQUESTER) as requester,
        client(broker, OWNER) as owner,
        client(broker, INTRUDER) as intruder,
    ):
        await device.subscribe(inbox("alpha", "+"), qos=1)
        await requester.subscribe(responses(REQUESTER, "+"), qos=1)
        await owner.subscribe(events(OWNER, "+"), qos=1)
        for topic in snooped:
            granted = await intruder.subscribe(topic, qos=1)
            assert [code.value for code in granted] == [1], topic
        await intruder.subscribe(responses(INTRUDER, "+"), qos=1)

        await requester.publish(inbox("alpha", REQUESTER), b"request", qos=1)
        await device.publish(responses(REQUESTER, "alpha"), b"response", qos=1)
        await device.publish(events(OWNER, "alpha"), b"event", qos=1)
        await device.publish(availability("alpha"), b"online", qos=1, retain=True)
        # The rightful readers got theirs: each message matched a subscription the intruder holds.
        assert (await next_message(device)).payload == b"request"
        assert (await next_message(requester)).payload == b"response"
        assert (await next_message(owner)).payload == b"event"

        await other_device.publish(responses(INTRUDER, "bravo"), b"marker", qos=1)
        assert await messages_until(intruder, b"marker") == []
        await device.publish(availability("alpha"), b"", qos=1, retain=True)


@pytest.mark.asyncio
async def test_a_device_cannot_write_into_another_inbox_or_speak_for_another_device(
    broker: MosquittoBroker,
) -> None:
    async with (
        client(broker, "alpha", device=True) as device,
        client(broker, "bravo", device=True) as victim,
        client(broker, REQUESTER) as requester,
        client(broker, OWNER) as owner,
        client(broker, OPERATOR) as operator,
    ):
        await victim.subscribe(inbox("bravo", "+"), qos=1)
        await requester.subscribe(responses(REQUESTER, "+"), qos=1)
        await owner.subscribe(events(OWNER, "+"), qos=1)
        await operator.subscribe("#", qos=1)
        forged = [
            inbox("bravo", "alpha"),
            inbox("bravo", REQUESTER),
            inbox("alpha", "alpha"),
            responses(REQUESTER, "bravo"),
            events(OWNER, "bravo"),
            availability("bravo"),
        ]
        for topic in forged:
            await device.publish(topic, b"forged", qos=1)
        marker = inbox("bravo", REQUESTER)
        await requester.publish(marker, b"marker", qos=1)
        # The broker dropped them at the door: not even the operator's `#` saw one.
        assert await messages_until(victim, b"marker") == []
        seen = await messages_until(operator, b"marker")
        assert [m.payload for m in seen] == []
        await device.publish(responses(REQUESTER, "alpha"), b"marker", qos=1)
        await device.publish(events(OWNER, "alpha"), b"marker", qos=1)
        assert await messages_until(requester, b"marker") == []
        assert await messages_until(owner, b"marker") == []


@pytest.mark.asyncio
async def test_a_client_cannot_forge_a_sender_a_response_or_an_event(
    broker: MosquittoBroker,
) -> None:
    async with (
        client(broker, "bravo", device=True) as device,
        client(broker, REQUESTER) as requester,
        client(broker, OWNER) as owner,
        client(broker, INTRUDER) as intruder,
    ):
        await device.subscribe(inbox("bravo", "+"), qos=1)
        await requester.subscribe(responses(REQUESTER, "+"), qos=1)
        await owner.subscribe(events(OWNER, "+"), qos=1)
        for topic in (
            inbox("bravo", REQUESTER),  # a request in someone else's name
            responses(REQUESTER, "bravo"),  # a device's answer
            events(OWNER, "bravo"),  # a device's event
            availability("bravo"),
        ):
            await intruder.publish(topic, b"forged", qos=1)
        await intruder.publish(inbox("bravo", INTRUDER), b"in its own name", qos=1)
        await requester.publish(inbox("bravo", REQUESTER), b"marker", qos=1)
        assert [m.payload for m in await messages_until(device, b"marker")] == [b"in its own name"]
        await device.publish(responses(REQUESTER, "bravo"), b"marker", qos=1)
        await device.publish(events(OWNER, "bravo"), b"marker", qos=1)
        assert await messages_until(requester, b"marker") == []
        assert await messages_until(owner, b"marker") == []


async def _queue_while_offline(broker: MosquittoBroker, device_id: str) -> None:
    async with client(broker, device_id, device=True, session_expiry_s=600) as device:
        await device.subscribe(inbox(device_id, "+"), qos=1)
    async with client(broker, REQUESTER) as requester:
        await requester.publish(
            inbox(device_id, REQUESTER),
            b"sent while offline",
            qos=1,
            properties=request_properties(responses(REQUESTER, device_id), b"corr-offline"),
        )


async def _expect_queued(broker: MosquittoBroker, device_id: str) -> None:
    async with client(broker, device_id, device=True, session_expiry_s=600) as device:
        message = await next_message(device)
        assert message.payload == b"sent while offline"
        assert message.topic.value == inbox(device_id, REQUESTER)
        assert message.qos == 1
        assert message.properties is not None
        assert message.properties.CorrelationData == b"corr-offline"
        assert message.properties.ResponseTopic == responses(REQUESTER, device_id)


@pytest.mark.asyncio
async def test_a_persistent_session_delivers_what_came_while_the_device_was_offline(
    broker: MosquittoBroker,
) -> None:
    await _queue_while_offline(broker, "charlie")
    await _expect_queued(broker, "charlie")


@pytest.mark.asyncio
async def test_the_queued_request_survives_a_broker_restart(broker: MosquittoBroker) -> None:
    await _queue_while_offline(broker, "delta")
    await asyncio.to_thread(broker.stop)
    await asyncio.to_thread(broker.start)
    await _expect_queued(broker, "delta")


@pytest.mark.asyncio
async def test_nobody_takes_over_a_device_session_by_its_client_id(
    broker: MosquittoBroker,
) -> None:
    await _queue_while_offline(broker, "echo")
    # The broker replaces each client id by the login's username, so neither an intruder nor
    # another doorbell claiming "echo" gets echo's session or its queued request.
    for name, device in ((INTRUDER, False), ("bravo", True)):
        async with client(
            broker, name, device=device, identifier="echo", session_expiry_s=600
        ) as thief:
            await thief.subscribe(responses(name, "+") if not device else inbox(name, "+"), qos=1)
            marker_topic = responses(INTRUDER, "alpha") if not device else inbox("bravo", OWNER)
            async with client(
                broker, "alpha" if not device else OWNER, device=not device
            ) as sender:
                await sender.publish(marker_topic, b"marker", qos=1)
            assert await messages_until(thief, b"marker") == []
    await _expect_queued(broker, "echo")


@pytest.mark.asyncio
async def test_the_last_will_tells_the_owner_and_only_the_owner_that_the_device_is_gone(
    broker: MosquittoBroker,
) -> None:
    async with (
        client(broker, OWNER) as owner,
        client(broker, REQUESTER) as requester,
        client(broker, "alpha", device=True) as marker_device,
    ):
        await owner.subscribe(availability("foxtrot"), qos=1)
        await requester.subscribe(availability("foxtrot"), qos=1)
        await requester.subscribe(responses(REQUESTER, "+"), qos=1)

        # The doorbell (a raw MQTT 5 client here) sets its will, says it is online, then loses
        # its connection without an MQTT DISCONNECT (power cut, crash).
        login = broker.credentials("foxtrot")
        with (
            socket.create_connection((broker.host, broker.device_port), timeout=5) as sock,
            broker.tls_context().wrap_socket(sock, server_hostname=broker.host) as tls,
        ):
            will = (availability("foxtrot"), b"offline")
            tls.sendall(connect_packet(login.username, login.password, will=will))
            assert tls.recv(4096)[3] == 0x00  # CONNACK: success
            online = bytearray(publish_packet(availability("foxtrot"), b"online"))
            online[0] |= 0x01  # retain
            tls.sendall(online)
            assert (await next_message(owner)).payload == b"online"
        assert (await next_message(owner)).payload == b"offline"

        await marker_device.publish(responses(REQUESTER, "alpha"), b"marker", qos=1)
        assert await messages_until(requester, b"marker") == []

    # Retained: an owner who connects later learns it at once.
    async with client(broker, OWNER) as late:
        await late.subscribe(availability("foxtrot"), qos=1)
        message = await next_message(late)
        assert message.payload == b"offline"
        assert message.retain


def _publish_raw(broker: MosquittoBroker, topic: str, payload: bytes) -> bytes | None:
    """Log in as the intruder on a raw TLS socket, publish at QoS 0 and return what the broker
    sends back after a PINGREQ: PINGRESP if it took the packet, b"" or a DISCONNECT if it closed
    the connection, None if it closed it while the packet was still being sent."""
    login = broker.credentials(INTRUDER)
    with (
        socket.create_connection((broker.host, broker.client_port), timeout=5) as sock,
        broker.tls_context().wrap_socket(sock, server_hostname=broker.host) as tls,
    ):
        tls.sendall(connect_packet(login.username, login.password))
        connack = tls.recv(4096)
        assert connack[3] == 0x00
        assert b"\x27\x00\x02\x00\x00" in connack  # Maximum Packet Size: 131072
        try:
            tls.sendall(publish_packet(topic, payload) + _PINGREQ)
            return tls.recv(4096)
        except OSError:  # reset or TLS EOF: the broker hung up mid-packet
            return None


@pytest.mark.asyncio
async def test_a_packet_over_128_kib_is_refused_and_its_sender_disconnected(
    broker: MosquittoBroker,
) -> None:
    fits = 128 * 1024 - 64  # with its fixed header, topic and property length
    async with (
        client(broker, "bravo", device=True) as device,
        client(broker, REQUESTER) as requester,
    ):
        await device.subscribe(inbox("bravo", "+"), qos=1)
        topic = inbox("bravo", INTRUDER)
        assert await asyncio.to_thread(_publish_raw, broker, topic, bytes(fits)) == _PINGRESP
        # DISCONNECT "packet too large" (0x95), or the connection simply closed
        answer = await asyncio.to_thread(_publish_raw, broker, topic, bytes(128 * 1024))
        assert answer in (None, b"") or (answer[0] == 0xE0 and answer[2] == 0x95), answer
        await requester.publish(inbox("bravo", REQUESTER), b"marker", qos=1)
        delivered = await messages_until(device, b"marker")
        assert [len(m.payload) for m in delivered] == [fits]
