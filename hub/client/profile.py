"""CLI profiles: one directory per owner or requester holding its keys and what it has pinned.

A profile lives in ``$XDG_CONFIG_HOME/doorward/<owner|requester>/<name>`` (``~/.config`` when
``XDG_CONFIG_HOME`` is unset), or wherever ``--profile DIR`` points::

    signing.ed25519, age.key     the keys (``crypto.keys.KeyBundle``; 0600, ``age -d -i age.key``)
    profile.json                 who this is: kind, name, requester identity
    devices.json                 pinned devices: id, TLS SPKI fingerprint, Ed25519 key, URL
    requests.json                (requester) which device each request and release went to
    relay.json, relay.password   the login on a relay broker (URL, CA); the password is secret
    relay-ca.pem                 the CA of the relay broker's certificate, if not a public one
    audit/<device-id>.checkpoint (owner) the last audit checkpoint this profile accepted

Only the key files and ``relay.password`` are secret; the JSON files hold public facts about devices and requests. The
folder is made 0700 (an existing one that others could open is narrowed, with a warning) and every
file in it 0600.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.errors import DoorwardError
from crypto.files import private_dir, write_atomic
from crypto.keys import KeyBundle, load_ed25519_public, read_secret_file
from crypto.signed import b64url, b64url_decode

__all__ = [
    "PinnedDevice",
    "Profile",
    "ProfileError",
    "ProfileKind",
    "RelayAccount",
    "default_profile_dir",
]

logger = logging.getLogger(__name__)

ProfileKind = Literal["owner", "requester"]

_PROFILE_FILE = "profile.json"
_DEVICES_FILE = "devices.json"
_REQUESTS_FILE = "requests.json"
_RELAY_FILE = "relay.json"
_RELAY_PASSWORD_FILE = "relay.password"  # noqa: S105 - a file name
_RELAY_CA_FILE = "relay-ca.pem"
_MAX_JSON_BYTES = 1024 * 1024


class ProfileError(DoorwardError):
    """A profile is missing, of the other kind, or does not know the device asked for."""


@dataclass(frozen=True, slots=True)
class PinnedDevice:
    """A device this profile talks to: only a TLS key with ``fingerprint`` is accepted."""

    device_id: str
    fingerprint: str
    url: str
    name: str = ""
    signing_key: Ed25519PublicKey | None = None
    # The device's relay key configuration (RFC 9458 §3): pinned at pairing (or taken from the
    # request address), compared with the one the device serves by 'doorward owner relay
    # refresh'.
    relay_key_config: bytes | None = None
    # The relay broker's listener for clients (mqtts://HOST:PORT) this device is reached through.
    relay_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        """This record as stored in ``devices.json`` (the signing key as unpadded base64url)."""
        key = b64url(self.signing_key.public_bytes_raw()) if self.signing_key else None
        record: dict[str, Any] = {
            "device_id": self.device_id,
            "fingerprint": self.fingerprint,
            "url": self.url,
            "name": self.name,
            "ed25519": key,
        }
        if self.relay_key_config is not None:
            record["relay_key_config"] = b64url(self.relay_key_config)
        if self.relay_url is not None:
            record["relay_url"] = self.relay_url
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PinnedDevice:
        """Read a ``devices.json`` record; raises ProfileError if it is malformed."""
        try:
            key = data.get("ed25519")
            relay = data.get("relay_key_config")
            return cls(
                device_id=str(data["device_id"]),
                fingerprint=str(data["fingerprint"]),
                url=str(data["url"]),
                name=str(data.get("name", "")),
                signing_key=load_ed25519_public(key) if isinstance(key, str) else None,
                relay_key_config=b64url_decode(relay) if isinstance(relay, str) else None,
                relay_url=str(data["relay_url"]) if data.get("relay_url") else None,
            )
        except (KeyError, TypeError, ValueError, DoorwardError) as exc:
            raise ProfileError(f"pinned device record is malformed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class RelayAccount:
    """This profile's login on a relay broker: its username is the profile's key id, the password
    (from the relay's operator) is kept in a 0600 file; ``url`` is the broker's listener for
    clients (None: the one each device was pinned with)."""

    url: str | None
    password_file: Path
    ca_file: Path | None = None

    def password(self) -> str:
        """The broker password (first line of its file); refuses a file others may read."""
        try:
            lines = read_secret_file(self.password_file).decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise ProfileError(f"{self.password_file} is not text") from None
        if not lines or not lines[0].strip():
            raise ProfileError(
                f"{self.password_file} is empty: log in again with 'relay login --password-file'"
            )
        return lines[0].strip()

    def tls_context(self) -> ssl.SSLContext:
        """TLS to the broker: its certificate checked against ``ca_file`` or the system CAs."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ProfileError(f"the relay CA file {self.ca_file} is unusable: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def default_profile_dir(kind: ProfileKind, name: str = "default") -> Path:
    """Where a profile lives unless ``--profile`` says otherwise."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "doorward" / kind / name


class Profile:
    """One owner's or requester's directory; every write is atomic."""

    def __init__(self, directory: Path, kind: ProfileKind) -> None:
        self.directory = Path(directory)
        self.kind = kind

    # -- creation and keys -----------------------------------------------------------------

    def exists(self) -> bool:
        """Whether ``profile.json`` is there (keys alone do not make a profile)."""
        return (self.directory / _PROFILE_FILE).exists()

    def create(self, keys: KeyBundle, info: Mapping[str, Any]) -> None:
        """Write a new profile; refuses to overwrite one (its keys may be paired somewhere)."""
        if self.exists():
            raise ProfileError(
                f"a profile already exists in {self.directory}; use --profile DIR for another"
            )
        old_mode = private_dir(self.directory)
        if old_mode is not None:
            logger.warning(
                "profile.narrowed path=%s old_mode=%04o new_mode=0700", self.directory, old_mode
            )
        keys.save(self.directory)
        _write_json(self.directory / _PROFILE_FILE, {"kind": self.kind, **info})

    def info(self) -> dict[str, Any]:
        """The contents of ``profile.json``; raises ProfileError if there is none, it is unreadable,
        or it is of the other kind."""
        if not self.exists():
            raise ProfileError(
                f"no {self.kind} profile in {self.directory}; run 'doorward {self.kind} init' first"
            )
        data = _read_json(self.directory / _PROFILE_FILE)
        if data.get("kind") != self.kind:
            raise ProfileError(
                f"{self.directory} holds a profile of kind {str(data.get('kind'))[:20]!r}, "
                f"not {self.kind!r}"
            )
        return data

    def keys(self) -> KeyBundle:
        """The profile's keys; raises ProfileError as :meth:`info` does, KeyFileError if a key file
        is missing or malformed."""
        self.info()
        return KeyBundle.load(self.directory)

    @property
    def identity_path(self) -> Path:
        """The age identity file (usable with ``age -d -i``)."""
        return self.directory / "age.key"

    # -- pinned devices ---------------------------------------------------------------------

    def devices(self) -> list[PinnedDevice]:
        """Every pinned device (empty before the first pairing or request)."""
        path = self.directory / _DEVICES_FILE
        if not path.exists():
            return []
        records = _read_json(path).get("devices", [])
        return [PinnedDevice.from_json(r) for r in records if isinstance(r, dict)]

    def pin(self, device: PinnedDevice) -> None:
        """Remember ``device``, replacing an earlier record with the same id."""
        others = [d for d in self.devices() if d.device_id != device.device_id]
        records = [d.to_json() for d in [*others, device]]
        _write_json(self.directory / _DEVICES_FILE, {"devices": records})

    def device(self, device_id: str | None = None) -> PinnedDevice:
        """The pinned device with ``device_id``, or the only one when it is None."""
        devices = self.devices()
        if device_id is not None:
            for device in devices:
                if device.device_id == device_id:
                    return device
            raise ProfileError(
                f"device {device_id!r} is not pinned in {self.directory}; pair with it first"
            )
        if not devices:
            action = "pair" if self.kind == "owner" else "ask"
            raise ProfileError(
                f"no device is pinned in {self.directory}; run 'doorward {self.kind} {action}' first"
            )
        if len(devices) > 1:
            ids = ", ".join(d.device_id for d in devices)
            raise ProfileError(f"several devices are pinned ({ids}); choose one with --device ID")
        return devices[0]

    # -- relay login ----------------------------------------------------------------------------

    def relay_account(self) -> RelayAccount | None:
        """The login on the relay broker saved by 'relay login', or None."""
        path = self.directory / _RELAY_FILE
        if not path.exists():
            return None
        data = _read_json(path)
        url = data.get("url")
        ca = self.directory / _RELAY_CA_FILE
        return RelayAccount(
            str(url) if url else None,
            self.directory / _RELAY_PASSWORD_FILE,
            ca if data.get("ca_file") else None,
        )

    def set_relay_account(self, url: str | None, password: str, ca_pem: bytes | None) -> None:
        """Save the login on the relay broker: the password in a 0600 file, the CA beside it."""
        self.info()
        write_atomic(self.directory / _RELAY_PASSWORD_FILE, password.encode() + b"\n", mode=0o600)
        if ca_pem is not None:
            write_atomic(self.directory / _RELAY_CA_FILE, ca_pem, mode=0o600)
        else:
            (self.directory / _RELAY_CA_FILE).unlink(missing_ok=True)
        _write_json(self.directory / _RELAY_FILE, {"url": url, "ca_file": ca_pem is not None})

    # -- requester bookkeeping ----------------------------------------------------------------

    def remember(
        self, table: Literal["requests", "releases"], item_id: str, device_id: str
    ) -> None:
        """Record which device a request or release belongs to."""
        path = self.directory / _REQUESTS_FILE
        data = _read_json(path) if path.exists() else {}
        entries = dict(data.get(table, {}))
        entries[item_id] = device_id
        data[table] = entries
        _write_json(path, data)

    def device_of(self, table: Literal["requests", "releases"], item_id: str) -> str | None:
        """The device id a request or release was sent to, or None if it was not recorded."""
        path = self.directory / _REQUESTS_FILE
        if not path.exists():
            return None
        value = _read_json(path).get(table, {}).get(item_id)
        return value if isinstance(value, str) else None

    # -- audit --------------------------------------------------------------------------------

    def checkpoint_path(self, device_id: str) -> Path:
        """Where the last accepted audit checkpoint of ``device_id`` is kept."""
        directory = self.directory / "audit"
        private_dir(directory)
        return directory / f"{device_id}.checkpoint"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_JSON_BYTES + 1)
        if len(data) > _MAX_JSON_BYTES:
            raise ProfileError(f"{path} is over {_MAX_JSON_BYTES} bytes")
        value = json.loads(data)
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ProfileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ProfileError(f"{path} must hold a JSON object")
    return value


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode("utf-8"), mode=0o600)
