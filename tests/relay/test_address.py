"""The request address: a URI holding a doorbell's id, relay URL, signing key and relay key; the
parser takes exactly that and names the part at fault otherwise."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.keys import DeviceIdentity
from crypto.signed import b64url
from crypto.tls import spki_fingerprint
from hub.relay.address import AddressError, RequestAddress, relay_base_url
from hub.server.config import ConfigError, RelayConfig, load_config
from hub.wire import ohttp

IDENTITY = DeviceIdentity.generate()
OTHER = DeviceIdentity.generate()
GATEWAY = ohttp.GatewayKey.generate(1)
CONFIG = bytes(GATEWAY.config())


def address(relay_url: str = "mqtts://relay.example.net:8884") -> RequestAddress:
    return RequestAddress(IDENTITY.device_id, relay_url, IDENTITY.public_key, CONFIG)


def test_an_address_round_trips_and_carries_every_part() -> None:
    uri = address().to_uri()
    key = b64url(IDENTITY.public_key.public_bytes_raw())
    assert uri == (
        f"doorward+mqtts://relay.example.net:8884/{IDENTITY.device_id}"
        f"?v=1&key={key}&relay_key={b64url(CONFIG)}"
    )
    parsed = RequestAddress.parse(uri)
    assert parsed == address()
    assert parsed.device_id == IDENTITY.device_id
    assert parsed.relay_url == "mqtts://relay.example.net:8884"
    assert (parsed.host, parsed.port) == ("relay.example.net", 8884)
    assert parsed.signing_key.public_bytes_raw() == IDENTITY.public_key.public_bytes_raw()
    assert ohttp.KeyConfig.parse(parsed.key_config) == GATEWAY.config()
    # The device's TLS key is its signing key: the address gives the requester its TLS pin too.
    assert parsed.fingerprint == spki_fingerprint(IDENTITY.public_key)
    assert repr(parsed) == (
        f"RequestAddress(device_id='{IDENTITY.device_id}', "
        "relay_url='mqtts://relay.example.net:8884')"
    )


def test_the_relay_url_is_canonical_and_the_port_defaults_to_the_clients_listener() -> None:
    assert address("mqtts://Relay.Example.NET:8884/").relay_url == "mqtts://relay.example.net:8884"
    assert address("mqtts://[::1]:9000").to_uri().startswith("doorward+mqtts://[::1]:9000/")
    no_port = address().to_uri().replace(":8884/", "/")
    assert RequestAddress.parse(no_port).port == 8884
    spaced = "  " + address().to_uri().replace("doorward+mqtts", "DOORWARD+MQTTS") + "\n"
    assert RequestAddress.parse(spaced) == address()


def test_requests_to_an_address_only_device_are_signed_for_a_host_that_never_resolves() -> None:
    assert relay_base_url(IDENTITY.device_id) == f"https://{IDENTITY.device_id}.relay.invalid"


HOSTS = st.one_of(
    st.lists(  # at most 8 labels of 12: within a host name's 253 characters
        st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12),
        min_size=1,
        max_size=8,
    ).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)


@given(host=HOSTS, port=st.integers(1, 65535), key_id=st.integers(0, 255))
def test_any_valid_address_round_trips(host: str, port: int, key_id: int) -> None:
    config = bytes(ohttp.GatewayKey.generate(key_id).config())
    made = RequestAddress(IDENTITY.device_id, f"mqtts://{host}:{port}", IDENTITY.public_key, config)
    parsed = RequestAddress.parse(made.to_uri())
    assert parsed == made
    assert parsed.port == port
    assert parsed.key_config == config
    assert RequestAddress.parse(parsed.to_uri()).to_uri() == made.to_uri()


@given(text=st.text(max_size=300))
def test_arbitrary_text_is_refused_with_an_address_error_only(text: str) -> None:
    try:
        RequestAddress.parse(text)
    except AddressError as exc:
        message = str(exc)
        assert message, "an empty error message"


@given(position=st.integers(0, 400), char=st.sampled_from("aZ09-_./:?&=%#@[]+ "))
def test_a_changed_character_gives_the_same_address_or_a_clear_error(
    position: int, char: str
) -> None:
    uri = address().to_uri()
    position %= len(uri)
    changed = uri[:position] + char + uri[position + 1 :]
    try:
        parsed = RequestAddress.parse(changed)
    except AddressError as exc:
        message = str(exc)
        assert message, "an empty error message"
        return
    # Whatever still parses is self-consistent: the id is still the key's id.
    assert parsed.device_id == IDENTITY.device_id


def _with(**fields: str) -> str:
    parts = {
        "v": "1",
        "key": b64url(IDENTITY.public_key.public_bytes_raw()),
        "relay_key": b64url(CONFIG),
    }
    path = fields.pop("path", IDENTITY.device_id)
    authority = fields.pop("authority", "relay.example.net:8884")
    parts.update(fields)
    query = "&".join(f"{k}={v}" for k, v in parts.items() if v != "<drop>")
    return f"doorward+mqtts://{authority}/{path}?{query}"


BAD = [
    (
        "https://relay.example.net/x",
        "a request address begins with doorward+mqtts://, got 'https://relay.example.ne'; "
        "the owner prints one with 'doorward owner share-address'",
    ),
    (_with(v="2"), "request address version '2' is not supported (only 1); update doorward"),
    (_with(extra="1"), "unknown field(s) extra; a request address holds v, key, relay_key"),
    (_with(key="<drop>"), "the request address lacks key"),
    (_with() + "&v=1", "field(s) v appear more than once"),
    (_with(key="AAAA"), "key must be the device's 32-byte Ed25519 key in base64url"),
    (_with(key="not*b64"), "key must be the device's 32-byte Ed25519 key in base64url"),
    (_with(relay_key="AAAA"), "relay_key is not a usable relay key configuration: "),
    (_with(relay_key="@@"), "relay_key must be base64url"),
    (
        _with(path="ABCDEFGHIJKLMNOP"),
        "the device id (the path) must be 16 characters of a-z and 2-7, got 'ABCDEFGHIJKLMNOP'",
    ),
    (
        _with(path=OTHER.device_id),
        f"the device id {OTHER.device_id} is not the id of the signing key in the address "
        f"(that key's id is {IDENTITY.device_id}): the address was altered or put together "
        "from two devices; ask the owner for it again",
    ),
    (_with(authority="relay.example.net:0"), "the relay port must be 1-65535, got '0'"),
    (_with(authority="relay.example.net:http"), "the relay port must be 1-65535, got 'http'"),
    (
        _with(authority="bad_host:8884"),
        "the relay host 'bad_host' is not a host name or address",
    ),
    (_with(authority=":8884"), "the request address names no relay host"),
    (
        _with(authority="user:pw@relay.example.net"),
        "a request address holds no login (user@): the relay's password is given with "
        "'doorward requester relay login'",
    ),
    (_with(authority="[::1"), "the relay host's IPv6 address lacks its closing ]"),
    (_with(authority="[nope]:1"), "the relay host 'nope' is not an IPv6 address"),
    (_with() + "#frag", "a request address has no #fragment"),
    (
        _with().replace("relay.example", "relay example"),
        "a request address holds no spaces, control or non-ASCII characters",
    ),
    ("doorward+mqtts://" + "a" * 5000, "a request address is at most 4096 characters, got 5017"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_addresses_get_an_error_naming_the_part(text: str, message: str) -> None:
    with pytest.raises(AddressError) as refused:
        RequestAddress.parse(text)
    assert str(refused.value).startswith(message)


def test_relay_client_url_defaults_to_the_next_port() -> None:
    secret = Path("/etc/doorward/relay-password")
    assert RelayConfig("mqtts://relay.example.net:8883", secret).clients_url == (
        "mqtts://relay.example.net:8884"
    )
    assert RelayConfig("mqtts://relay.example.net", secret).clients_url == (
        "mqtts://relay.example.net:8884"
    )
    assert RelayConfig("mqtts://[::1]:9000", secret).clients_url == "mqtts://[::1]:9001"
    given_url = RelayConfig("mqtts://r:1", secret, None, "mqtts://clients.example:443")
    assert given_url.clients_url == "mqtts://clients.example:443"


def test_relay_client_url_option(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(
        '[relay]\nurl = "mqtts://relay.example.net:8883"\ncredentials_file = "/p"\n'
        'client_url = "mqtts://relay.example.net:9884"\n'
    )
    relay = load_config(path).relay
    assert relay is not None
    assert relay.clients_url == "mqtts://relay.example.net:9884"
    path.write_text(
        '[relay]\nurl = "mqtts://relay.example.net:8883"\ncredentials_file = "/p"\n'
        'client_url = "https://relay.example.net"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        "relay client_url 'https://relay.example.net' must look like mqtts://HOST:PORT (TLS "
        "only, no login, path or query)"
    )
