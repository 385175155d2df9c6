"""``doorward serve``'s configuration: every option, the example file, camera entries.

:data:`EXAMPLE_CONFIG` is what ``doorward serve --print-config`` prints; :func:`load_config` reads
such a file and applies the flags over it. Nothing here opens a camera or a file of the device.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crypto.errors import DoorwardError

if TYPE_CHECKING:
    from consent.desk import RequestLimits
    from device import Polygon
    from hardware.gpio import GpioButtonSpec
    from hub.offsite.target import BucketAddress

__all__ = [
    "DEFAULT_SIGNATURE_WINDOW_S",
    "EXAMPLE_CONFIG",
    "BackupConfig",
    "CameraConfig",
    "ConfigError",
    "HomeAssistantConfig",
    "RelayConfig",
    "ServeConfig",
    "SpeakerConfig",
    "load_config",
    "parse_camera",
    "parse_speaker",
    "speaker_for",
]

# Signed requests created further than this from the device's clock are refused (RFC 9421
# ``created``). The API's own default (``HubDeps``) is the same constant.
DEFAULT_SIGNATURE_WINDOW_S = 60


def _package_dir(name: str) -> Path:
    """Where package ``name`` lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"package {name} is not installed")
    return Path(spec.origin).resolve().parent


# Shipped inside the package so `doorward serve` works from a plain (non-editable) install.
_DEFAULT_SCENARIO = _package_dir("hardware") / "sim" / "default_scenario.toml"


EXAMPLE_CONFIG = """\
# doorward serve configuration (TOML). Every option, with its default; flags override.

data_dir = "doorward-data"      # keys, database, audit log and encrypted clips live here
name = "Doorward"               # display name advertised on the LAN (at most 63 bytes)

# One entry per camera: [NAME=]simulated[:SCENARIO] | a video file | v4l2:/dev/videoN | rtsp://...
# A camera with two streams records its main stream as it comes (H.264, never decoded) and runs
# motion on its small substream: "NAME=rtsp://cam/main detect=rtsp://cam/sub", or as a table
# { name = "garden", record = "rtsp://cam/main", detect = "rtsp://cam/sub" }.
cameras = ["simulated"]

host = "0.0.0.0"                # address the HTTPS API listens on
port = 8443                     # HTTPS port (0 picks a free one)
advertise = true                # announce _doorward._tcp.local. with zeroconf

pre_roll_s = 5.0                # video kept from before motion or a ring
post_roll_s = 5.0               # recording continues this long after motion stops
motion_sensitivity = 0.5        # 0 (only large, strong motion) to 1 (small, faint motion)
segment_s = 2.0                 # length of each encrypted segment (cut at keyframes)
encoder = "libx264"             # H.264 encoder for raw cameras: libx264, h264_v4l2m2m, h264_vaapi, …
                                # (used if this PyAV build and device have it, else libx264)

retention_days = 30.0           # clips older than this are deleted (unless a release holds them)
max_storage_mb = 8192           # oldest clips are deleted past this much video

max_pairing_failures = 20       # then pairing is refused until the doorbell button is held
signature_window_s = 60         # signed requests must be created within this many seconds
rate_per_s = 2.0                # requester and pairing requests per second, per address and key
rate_burst = 20                 # ... with bursts up to this many
max_pending_requests = 500      # requests awaiting an owner's decision, from everyone
max_pending_per_requester = 5   # ... from one requester key
max_pending_per_address = 20    # ... from one client address (IPv6: one /64)
max_requests_per_requester_per_day = 50   # requests stored per key in 24 h, whatever their fate
max_requests_per_address_per_day = 200    # ... per client address
quiet_refusals_after = 10       # then a key's or address's refusals are counted, not each audited
refusal_summary_s = 3600        # ... and summarised once per this many seconds
live_page_port = 0              # browser live-view page (ECDSA cert); 0: a free port, links carry it
live_max_viewers = 4            # live-view sessions at once (owners and browser links together)
live_max_session_s = 600.0      # a live-view session ends after this long (watch again to go on)
chime = ""                      # what a press plays on the camera's speaker: a WAV or Ogg Opus
                                # file of at most 10 s; empty: the built-in two-tone chime; "off"

# What a stranger on the LAN can hold: connections, time and bytes, before any signature is seen.
max_connections = 512           # open connections at most (fewer if the descriptor limit is low)
max_connections_per_address = 32  # connections from one address until one proves to be an owner
descriptor_reserve = 128        # file descriptors kept for recording, never given to connections
header_timeout_s = 5.0          # TLS handshake and first request head must arrive within this
keepalive_s = 10.0              # an idle connection is closed after this long between requests
body_timeout_s = 60.0           # a request body must arrive within this once its head has
auth_failure_burst = 10         # failed signatures from one address before it is answered 429
auth_failure_per_s = 0.2        # ... then one more allowed every 5 s
log_repeats = 5                 # log lines of one kind per log_summary_s; the rest are counted
log_summary_s = 60.0            # how often counted (suppressed) log lines are summarised

# Under systemd (WatchdogSec=), the watchdog is pinged only while every camera records: no camera
# without a frame, no frame in its encoder or on its way to disk, and no recording without a new
# segment for longer than this (a camera that is reconnecting does not count as stuck).
watchdog_stall_s = 20.0

# Privacy zones per camera name: polygons of normalised (x, y) points, blacked out in every frame
# before it is encoded, so they are never recorded nor streamed. A camera with zones is always
# encoded with libx264, even one that delivers H.264 itself (its packets cannot be masked).
[privacy_zones]
# front = [[[0.0, 0.0], [0.35, 0.0], [0.35, 0.5], [0.0, 0.5]]]

# Motion masks per camera name: polygons (as above) where motion is never looked for, such as
# the street beyond the garden or a tree that sways. They are still recorded and streamed.
[motion_masks]
# front = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.2], [0.0, 0.2]]]

# The speaker per camera name, which plays an owner talking back: sim (a simulated speaker that
# keeps what it played; the default of a simulated camera), wav:PATH (into a WAV file),
# alsa:DEVICE (an ALSA output such as alsa:default or alsa:hw:0,0) or none (the default of every
# other camera).
[speakers]
# front = "alsa:default"

# Off-site backup to S3-compatible storage (off while this table is empty). Every segment,
# clip manifest and audit checkpoint is uploaded as the device stores it (age ciphertext to the
# owners, or signed). The credentials need write (and delete) under the prefix only, no read.
[backup]
# endpoint = "https://s3.eu-central-1.amazonaws.com"   # the S3 API's URL
# bucket = "my-doorbell-evidence"
# prefix = ""                   # empty: the device id's first 16 characters
# region = "us-east-1"
# credentials_file = "/etc/doorward/s3-credentials"   # [default] aws_access_key_id/..., mode 0600
# max_upload_kbps = 0           # 0: no limit
# max_queue_mb = 4096           # un-uploaded segments kept at most; past it the oldest are skipped

# The relay (off while this table is empty): the device connects out to an MQTT 5 broker over
# TLS and answers the same signed API calls sent through it, sealed end to end to its relay key.
[relay]
# url = "mqtts://relay.example.net:8883"   # the broker's doorbell listener (TLS only)
# client_url = ""               # its phones' and requesters' listener; empty: url's port + 1
# ca_file = ""                  # the CA that signed the broker's certificate; empty: system CAs
# credentials_file = "/etc/doorward/relay-password"   # the device's broker password, mode 0600

# Home Assistant (off while this table is empty): a second MQTT connection, to the home's own
# broker, announces the doorbell with MQTT discovery: an event entity for presses, a motion
# sensor per camera, the number of requests waiting for an owner, availability. Counts and
# on/off only: never video, snapshots, requester details or owner names.
[homeassistant]
# url = "mqtts://homeassistant.local:8883"   # mqtts:// (TLS) or mqtt:// (plain, the LAN only)
# username = "doorward"         # the broker login; empty: connect without one
# password_file = "/etc/doorward/homeassistant-password"   # its password, mode 0600
# ca_file = ""                  # the CA of the broker's certificate (mqtts://); empty: system CAs
# discovery_prefix = "homeassistant"   # Home Assistant's discovery prefix
# node_id = ""                  # topic level naming this doorbell; empty: doorward_<device id>

# The doorbell button on a GPIO line (libgpiod v2: pip install 'doorward[gpio]'). Without this
# table there is no hardware button (a simulated camera has its own). A press rings the camera
# named here (default: the first); a hold of 3 s unlocks pairing after too many failures.
[button]
# chip = "/dev/gpiochip0"       # the GPIO character device (or its name, gpiochip0)
# line = 17                     # the line offset on that chip (or the line's name)
# active_low = true             # the button pulls the line to ground when pressed
# bias = "pull-up"              # pull-up, pull-down, disabled or as-is
# debounce_ms = 20              # edges closer than this to the last one are contact bounce
# camera = "front"
"""


class ConfigError(DoorwardError, ValueError):
    """A ``doorward serve`` option is missing, unknown or out of range: fix the file or flag."""


@dataclass(frozen=True, slots=True)
class BackupConfig:
    """The ``[backup]`` section: an S3-compatible bucket the device uploads its evidence to
    (``hub.server.backup``). ``prefix`` empty means the device id's first 16 characters."""

    endpoint: str
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    credentials_file: Path | None = None  # AWS-style, mode 0600; else the AWS_* environment
    max_upload_kbps: int = 0  # 0: as fast as the uplink goes
    max_queue_mb: int = 4096  # un-uploaded segments kept queued at most

    def __post_init__(self) -> None:
        if self.max_upload_kbps < 0:
            raise ValueError(f"backup.max_upload_kbps must be >= 0, got {self.max_upload_kbps}")
        if self.max_queue_mb < 1:
            raise ValueError(f"backup.max_queue_mb must be >= 1, got {self.max_queue_mb}")
        self.address("0" * 16)  # the endpoint, bucket and prefix must make an address

    def address(self, device_id: str) -> BucketAddress:
        """Where this device's objects go."""
        from hub.offsite.target import BucketAddress, OffsiteError

        try:
            return BucketAddress(
                self.endpoint, self.bucket, self.prefix or device_id[:16], self.region
            )
        except OffsiteError as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def from_table(cls, table: Any) -> BackupConfig:
        """The ``[backup]`` TOML table (or the flags' equivalent), checked."""
        if not isinstance(table, dict):
            raise ConfigError("backup must be a table: [backup] with endpoint, bucket, …")
        known = {f.name for f in fields(cls)} | {"url"}  # url: s3://BUCKET/PREFIX in one
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"unknown backup option(s): {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(known))}"
            )
        values = dict(table)
        if "url" in values:
            values.update(_split_s3_url(str(values.pop("url"))))
        missing = [name for name in ("endpoint", "bucket") if not values.get(name)]
        if missing:
            raise ConfigError(
                f"backup needs {' and '.join(missing)}: set them in [backup] or pass "
                "--backup s3://BUCKET/PREFIX --backup-endpoint URL"
            )
        if values.get("credentials_file"):
            values["credentials_file"] = Path(values["credentials_file"])
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid backup option: {exc}") from None


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The ``[relay]`` section: the MQTT 5 broker the device answers API calls through
    (``hub.relay.device``); it logs in as its device id with the password in
    ``credentials_file``."""

    url: str
    credentials_file: Path
    ca_file: Path | None = None
    # The broker's listener for phones and requesters, which pairing and the request address
    # hand to clients; None: the host of ``url`` at its port + 1 (8883 and 8884 as shipped).
    client_url: str | None = None

    @property
    def clients_url(self) -> str:
        """Where owners' phones and requesters connect to reach this device through the relay."""
        if self.client_url:
            return self.client_url
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        return f"mqtts://{host}:{(parts.port or 8883) + 1}"

    @classmethod
    def from_table(cls, table: Any) -> RelayConfig:
        """The ``[relay]`` TOML table, checked."""
        if not isinstance(table, dict):
            raise ConfigError("relay must be a table: [relay] with url and credentials_file")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"unknown relay option(s): {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(known))}"
            )
        missing = [name for name in ("url", "credentials_file") if not table.get(name)]
        if missing:
            raise ConfigError(f"relay needs {' and '.join(missing)}: set them in [relay]")
        url = _mqtts_url("url", table["url"])
        client_url = (
            _mqtts_url("client_url", table["client_url"]) if table.get("client_url") else None
        )
        ca = table.get("ca_file")
        return cls(url, Path(table["credentials_file"]), Path(ca) if ca else None, client_url)


def _mqtts_url(option: str, value: Any) -> str:
    """A ``[relay]`` URL option, checked: mqtts://HOST[:PORT] and nothing else."""
    url = str(value)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme != "mqtts"
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or not url.isascii()
        or not url.isprintable()
        or " " in url
    ):
        raise ConfigError(
            f"relay {option} {url[:80]!r} must look like mqtts://HOST:PORT (TLS only, no login, "
            "path or query)"
        )
    return url.rstrip("/")


_TOPIC_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class HomeAssistantConfig:
    """The ``[homeassistant]`` section: the home's MQTT broker that Home Assistant reads, where
    the device announces itself with MQTT discovery (``hub.relay.homeassistant``)."""

    url: str
    username: str = ""
    password_file: Path | None = None  # mode 0600, the password on its first line
    ca_file: Path | None = None  # mqtts:// only; None: the system's CAs
    discovery_prefix: str = "homeassistant"
    node_id: str = ""  # empty: doorward_<device id>

    def __post_init__(self) -> None:
        self.address()  # the url must name a broker
        if bool(self.username) != (self.password_file is not None):
            raise ValueError(
                "homeassistant needs username and password_file together (or neither, for a "
                "broker that takes anonymous logins)"
            )
        if self.ca_file is not None and not self.tls:
            raise ValueError(
                f"homeassistant ca_file is for mqtts:// only, got url {self.url!r}; use "
                "mqtts://HOST:8883 or drop ca_file"
            )
        prefix = self.discovery_prefix
        if (
            not prefix
            or prefix.startswith("/")
            or prefix.endswith("/")
            or any(c in prefix for c in "+#\0")
        ):
            raise ValueError(
                f"homeassistant discovery_prefix must be a topic without wildcards or outer "
                f"slashes (Home Assistant's default is homeassistant), got {prefix!r}"
            )
        if self.node_id and not _TOPIC_ID.fullmatch(self.node_id):
            raise ValueError(
                f"homeassistant node_id must be 1 to 64 letters, digits, _ or -, got "
                f"{self.node_id!r}"
            )

    @property
    def tls(self) -> bool:
        """Whether the broker is reached over TLS (``mqtts://``)."""
        return self.url.startswith("mqtts://")

    def address(self) -> tuple[str, int]:
        """The broker's host and port (1883 for mqtt://, 8883 for mqtts:// by default)."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                f"homeassistant url {self.url!r} must look like mqtts://HOST:PORT (TLS) or "
                "mqtt://HOST:PORT (plain, on the LAN only)"
            )
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
            raise ValueError(
                "homeassistant url must hold no login, path or query: set username and "
                "password_file instead"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"homeassistant url {self.url!r} has an invalid port") from None
        return parts.hostname, port or (8883 if parts.scheme == "mqtts" else 1883)

    def node(self, device_id: str) -> str:
        """The node id in this device's topics."""
        return self.node_id or f"doorward_{device_id}"

    @classmethod
    def from_table(cls, table: Any) -> HomeAssistantConfig:
        """The ``[homeassistant]`` TOML table, checked."""
        if not isinstance(table, dict):
            raise ConfigError("homeassistant must be a table: [homeassistant] with url, …")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"unknown homeassistant option(s): {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(known))}"
            )
        if not table.get("url"):
            raise ConfigError(
                "homeassistant needs url: set it in [homeassistant] (mqtts://HOST:PORT), or "
                "leave the table empty to turn Home Assistant off"
            )
        values = {key: value for key, value in table.items() if value != ""}
        for name in ("url", "username", "discovery_prefix", "node_id"):
            if name in values and not isinstance(values[name], str):
                raise ConfigError(f"homeassistant {name} must be a string, got {values[name]!r}")
        for name in ("password_file", "ca_file"):
            if name in values:
                values[name] = Path(values[name])
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid homeassistant option: {exc}") from None


def _split_s3_url(url: str) -> dict[str, str]:
    """``s3://BUCKET/PREFIX`` as the bucket and prefix options."""
    from hub.offsite.target import OffsiteError, split_s3_url

    try:
        bucket, prefix = split_s3_url(url)
    except OffsiteError as exc:
        raise ConfigError(str(exc)) from None
    return {"bucket": bucket, "prefix": prefix}


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Every ``doorward serve`` option; the TOML file and the flags fill it (flags win)."""

    data_dir: Path = Path("doorward-data")
    cameras: tuple[str, ...] = ("simulated",)
    name: str = "Doorward"
    host: str = "0.0.0.0"  # noqa: S104 - a doorbell serves its LAN
    port: int = 8443
    advertise: bool = True
    pre_roll_s: float = 5.0
    post_roll_s: float = 5.0
    motion_sensitivity: float = 0.5
    segment_s: float = 2.0
    encoder: str = "libx264"
    retention_days: float = 30.0
    max_storage_mb: int = 8192
    max_pairing_failures: int = 20
    signature_window_s: int = DEFAULT_SIGNATURE_WINDOW_S
    rate_per_s: float = 2.0
    rate_burst: int = 20
    max_pending_requests: int = 500
    max_pending_per_requester: int = 5
    max_pending_per_address: int = 20
    max_requests_per_requester_per_day: int = 50
    max_requests_per_address_per_day: int = 200
    quiet_refusals_after: int = 10
    refusal_summary_s: int = 3600
    live_page_port: int = 0
    live_max_viewers: int = 4
    live_max_session_s: float = 600.0
    max_connections: int = 512
    max_connections_per_address: int = 32
    descriptor_reserve: int = 128
    header_timeout_s: float = 5.0
    keepalive_s: float = 10.0
    body_timeout_s: float = 60.0
    auth_failure_burst: int = 10
    auth_failure_per_s: float = 0.2
    log_repeats: int = 5
    log_summary_s: float = 60.0
    watchdog_stall_s: float = 20.0
    chime: str = ""  # a sound file; "" the built-in chime; "off" none (``hub.server.chime``)
    button: GpioButtonSpec | None = None
    privacy_zones: tuple[tuple[str, tuple[Polygon, ...]], ...] = ()
    motion_masks: tuple[tuple[str, tuple[Polygon, ...]], ...] = ()
    speakers: tuple[tuple[str, SpeakerConfig], ...] = ()
    backup: BackupConfig | None = None
    relay: RelayConfig | None = None
    homeassistant: HomeAssistantConfig | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if not 0 <= self.live_page_port < 65536:
            raise ValueError(f"live_page_port must be 0-65535, got {self.live_page_port}")
        if self.live_max_viewers < 1:
            raise ValueError(f"live_max_viewers must be >= 1, got {self.live_max_viewers}")
        if self.live_max_session_s <= 0:
            raise ValueError(f"live_max_session_s must be > 0, got {self.live_max_session_s}")
        if not 0.0 <= self.motion_sensitivity <= 1.0:
            raise ValueError(f"motion_sensitivity must be in [0, 1], got {self.motion_sensitivity}")
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        from device import RecorderConfig

        RecorderConfig(encoder=self.encoder)  # an encoder's name is checked as the recorder will
        if self.retention_days <= 0 or self.max_storage_mb <= 0:
            raise ValueError("retention_days and max_storage_mb must be positive")
        self.request_limits()  # each limit must be a positive integer
        self._check_guard()

    def request_limits(self) -> RequestLimits:
        """The consent desk's caps on held requests (overall, per key, per address)."""
        from consent.desk import RequestLimits

        return RequestLimits(
            max_pending=self.max_pending_requests,
            max_pending_per_key=self.max_pending_per_requester,
            max_pending_per_address=self.max_pending_per_address,
            max_per_key_per_day=self.max_requests_per_requester_per_day,
            max_per_address_per_day=self.max_requests_per_address_per_day,
            quiet_after=self.quiet_refusals_after,
            summary_period_s=self.refusal_summary_s,
        )

    def _check_guard(self) -> None:
        """The connection, body, failed-authentication and log limits (``hub.server.guard``)."""
        for name in ("max_connections", "max_connections_per_address", "auth_failure_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_connections_per_address > self.max_connections:
            raise ValueError(
                "max_connections_per_address must be at most max_connections "
                f"({self.max_connections}), got {self.max_connections_per_address}"
            )
        if self.descriptor_reserve < 16:
            raise ValueError(f"descriptor_reserve must be >= 16, got {self.descriptor_reserve}")
        for name in (
            "header_timeout_s",
            "keepalive_s",
            "body_timeout_s",
            "auth_failure_per_s",
            "log_summary_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.log_repeats < 1:
            raise ValueError(f"log_repeats must be >= 1, got {self.log_repeats}")
        if not self.watchdog_stall_s > 0:
            raise ValueError(f"watchdog_stall_s must be > 0, got {self.watchdog_stall_s}")


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> ServeConfig:
    """Read a TOML config (top-level keys named as :class:`ServeConfig` fields), then apply
    ``overrides`` (flags; None values are ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name: f for f in fields(ServeConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config option(s): {', '.join(unknown)}; see `doorward serve --help`"
        )
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    if "cameras" in values:
        cams = values["cameras"]
        if isinstance(cams, str) or not all(isinstance(c, str | dict) for c in cams):
            raise ConfigError("cameras must be a list of camera specs")
        values["cameras"] = tuple(c if isinstance(c, str) else _camera_table(c) for c in cams)
    for option in ("privacy_zones", "motion_masks"):
        if option in values:
            values[option] = _polygons_per_camera(option, values[option])
    if "speakers" in values:
        values["speakers"] = _speakers(values["speakers"])
    if "backup" in values and not isinstance(values["backup"], BackupConfig):
        # An empty [backup] table (as in the example) leaves the backup off.
        values["backup"] = BackupConfig.from_table(values["backup"]) if values["backup"] else None
    if "relay" in values and not isinstance(values["relay"], RelayConfig):
        # An empty [relay] table (as in the example) leaves the relay off.
        values["relay"] = RelayConfig.from_table(values["relay"]) if values["relay"] else None
    if "homeassistant" in values and not isinstance(values["homeassistant"], HomeAssistantConfig):
        # An empty [homeassistant] table (as in the example) leaves it off.
        table = values["homeassistant"]
        values["homeassistant"] = HomeAssistantConfig.from_table(table) if table else None
    if "button" in values:
        values["button"] = _button(values["button"])
    if "chime" in values:
        values["chime"] = _chime(values["chime"])
    try:
        return ServeConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid serve option: {exc}") from exc


def _polygons_per_camera(option: str, table: Any) -> tuple[tuple[str, tuple[Polygon, ...]], ...]:
    """``[privacy_zones]`` or ``[motion_masks]``: camera name → list of polygons, each checked as
    the recorder or the detector will."""
    if not isinstance(table, dict):
        raise ConfigError(f"{option} must be a table: camera name = list of polygons")
    from device import MotionConfig, RecorderConfig

    zones = []
    for camera, polygons in sorted(table.items()):
        try:
            shaped = tuple(tuple((float(x), float(y)) for x, y in polygon) for polygon in polygons)
            if option == "privacy_zones":
                RecorderConfig(privacy_zones=shaped)
            else:
                MotionConfig(masks=shaped)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{option}.{camera}: {exc}; write polygons as [[x, y], …] with x and y "
                "between 0 and 1"
            ) from exc
        zones.append((camera, shaped))
    return tuple(zones)


def _chime(value: Any) -> str:
    """The ``chime`` option: a sound file, checked now (it must decode, at most 10 s), so a bad
    one is refused when the config is loaded, not at the first press."""
    if not isinstance(value, str):
        raise ConfigError(f'chime must be a file name, "" or "off", got {value!r}')
    if value in ("", "off"):
        return value
    from hub.server.chime import load_chime
    from hub.server.sound import SoundError

    try:
        load_chime(Path(value))
    except OSError as exc:
        raise ConfigError(
            f"chime {value!r} cannot be read: {exc.strerror or exc}; give a WAV or Ogg Opus "
            'file, "" for the built-in chime or "off" for none'
        ) from None
    except SoundError as exc:
        raise ConfigError(
            f'chime: {exc}; give another file, "" for the built-in chime or "off" for none'
        ) from None
    return value


def _speakers(table: Any) -> tuple[tuple[str, SpeakerConfig], ...]:
    """``[speakers]``: camera name → speaker spec, each checked."""
    if isinstance(table, tuple):  # already parsed (a ServeConfig's own value)
        return table
    if not isinstance(table, dict):
        raise ConfigError('speakers must be a table: camera name = "sim" | "wav:PATH" | …')
    speakers = []
    for camera, spec in sorted(table.items()):
        if not isinstance(spec, str):
            raise ConfigError(
                f"speakers.{camera} must be a string (sim, wav:PATH, alsa:DEVICE or none), "
                f"got {spec!r}"
            )
        try:
            speakers.append((camera, parse_speaker(spec)))
        except ConfigError as exc:
            raise ConfigError(f"speakers.{camera}: {exc}") from None
    return tuple(speakers)


def _button(table: Any) -> GpioButtonSpec | None:
    """``[button]``: the GPIO doorbell button (an empty table: none)."""
    if not isinstance(table, dict):
        raise ConfigError(
            "button must be a table: chip, line, active_low, bias, debounce_ms, camera"
        )
    if not table:
        return None
    from hardware.gpio import GpioButtonSpec

    try:
        return GpioButtonSpec.from_table(table)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"button: {exc}") from exc


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """A parsed ``--camera`` value: ``[NAME=]simulated[:SCENARIO] | PATH | v4l2:/dev/videoN |
    rtsp://…``, optionally followed by `` detect=SPEC`` (a two-stream camera: the first spec is
    recorded, never decoded, and motion runs on the detect stream)."""

    name: str
    kind: str  # simulated, file, live
    target: str
    detect: tuple[str, str] | None = None  # the detect stream's kind and target

    @property
    def display(self) -> str:
        """How the API lists the camera's source (credentials in a url are the camera's own)."""
        text = f"{self.kind}:{self.target}"
        return text if self.detect is None else f"{text} detect={':'.join(self.detect)}"


def parse_camera(text: str, index: int) -> CameraConfig:
    """Parse one camera spec; unnamed cameras are called ``cam1``, ``cam2``, …"""
    name = f"cam{index + 1}"
    words = text.split()
    if not words:
        raise ConfigError("camera spec is empty: give simulated, a file, v4l2:… or rtsp://…")
    first, *more = words
    head, sep, rest = first.partition("=")
    if sep and head.replace("-", "").replace("_", "").isalnum() and "://" not in head:
        name, first = head, rest
    first = first.removeprefix("record=")
    kind, target = _camera_source(first)
    detect = None
    for extra in more:
        key, sep, value = extra.partition("=")
        if key != "detect" or not sep or detect is not None:
            raise ConfigError(
                f"camera {name}: {extra!r} is not understood; a camera is "
                "'[NAME=]RECORD' or 'NAME=RECORD detect=DETECT' (one detect stream, the two "
                "separated by a space)"
            )
        detect = _camera_source(value)
    if detect is not None:
        if kind == "simulated" or detect[0] == "simulated":
            raise ConfigError(
                f"camera {name}: a simulated camera makes its own detect stream; set "
                "detect_width and detect_height in its scenario's [camera] instead of detect="
            )
        if kind == "live" and not target.startswith(("rtsp://", "rtsps://")):
            raise ConfigError(
                f"camera {name}: its record stream {target!r} must be an H.264 file or "
                "rtsp://… to be recorded without decoding; a V4L2 camera has one stream: drop "
                "detect="
            )
    return CameraConfig(name, kind, target, detect)


def _camera_source(text: str) -> tuple[str, str]:
    if text == "simulated" or text.startswith("simulated:"):
        scenario = text.removeprefix("simulated").removeprefix(":") or str(_DEFAULT_SCENARIO)
        return "simulated", scenario
    if text.startswith(("v4l2:", "rtsp://", "rtsps://")):
        return "live", text
    if Path(text).is_file():
        return "file", text
    raise ConfigError(
        f"camera spec {text!r} is not simulated[:SCENARIO], an existing file, v4l2:/dev/videoN "
        "or rtsp://…"
    )


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    """A parsed speaker spec: ``sim`` | ``wav:PATH`` | ``alsa:DEVICE`` | ``none``."""

    kind: str  # sim, wav, alsa or none
    target: str = ""  # the WAV file's path or the ALSA device's name

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def parse_speaker(text: str) -> SpeakerConfig:
    """Parse one speaker spec (a camera's entry in ``[speakers]``)."""
    kind, sep, target = text.partition(":")
    if kind in ("sim", "none") and not sep:
        return SpeakerConfig(kind)
    if kind in ("wav", "alsa") and target.strip():
        return SpeakerConfig(kind, target)
    if kind in ("wav", "alsa"):
        example = "wav:talk.wav" if kind == "wav" else "alsa:default or alsa:hw:0,0"
        raise ConfigError(f"speaker spec {text[:80]!r} names no {kind} target; write {example}")
    raise ConfigError(
        f"speaker spec {text[:80]!r} is not sim, wav:PATH, alsa:DEVICE or none; "
        'write, for instance, front = "alsa:default" under [speakers]'
    )


def speaker_for(config: ServeConfig, camera: CameraConfig) -> SpeakerConfig:
    """The speaker ``camera`` plays on: its ``[speakers]`` entry, else a simulated speaker for a
    simulated camera and none for any other."""
    named = dict(config.speakers)
    if camera.name in named:
        return named[camera.name]
    return SpeakerConfig("sim" if camera.kind == "simulated" else "none")


def _camera_table(table: Any) -> str:
    """A ``cameras`` entry written as a table (``{name, record, detect}``) as its spec string."""
    known = {"name", "record", "detect"}
    unknown = sorted(set(table) - known)
    if unknown or not isinstance(table.get("record"), str):
        raise ConfigError(
            "a camera table needs record (and may have name and detect), e.g. "
            '{ name = "front", record = "rtsp://cam/main", detect = "rtsp://cam/sub" }'
            + (f"; unknown key(s): {', '.join(unknown)}" if unknown else "")
        )
    values = [table.get(k) for k in ("name", "record", "detect") if k in table]
    if not all(isinstance(v, str) and v and not any(c.isspace() for c in v) for v in values):
        raise ConfigError("camera name, record and detect must be strings without spaces")
    spec = table["record"]
    if "name" in table:
        spec = f"{table['name']}={spec}"
    if "detect" in table:
        spec = f"{spec} detect={table['detect']}"
    return spec
