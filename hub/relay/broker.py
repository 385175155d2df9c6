"""A Mosquitto relay broker on loopback, configured exactly as the shipped configuration
(``hub/relay/mosquitto/``), for the tests and ``doorward demo``.

:class:`MosquittoBroker` renders ``doorward.conf`` into a directory of its own, replacing only
where things live (ports on 127.0.0.1, the certificate, password, ACL, persistence and log
files); every other setting (TLS versions and ciphers, no anonymous access, the per-role
listeners and ACLs, persistence, queue and packet limits) is the shipped one. It makes a throwaway
CA and a server certificate for 127.0.0.1, a random password for each named doorbell and client
(hashed with ``mosquitto_passwd``), starts ``mosquitto``, waits until both listeners complete a TLS
handshake, and stops it. Nothing of the doorbell or the client depends on it: any MQTT 5 broker
with the same topic rules works (docs/relay.md, "The broker").

:class:`HomeBroker` is another kind of broker: a home's own Mosquitto (one listener, plain or TLS,
password logins, an optional ACL), which the Home Assistant role's tests publish to.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.errors import DoorwardError
from crypto.keys import write_secret_file

__all__ = [
    "BrokerCredentials",
    "BrokerError",
    "HomeBroker",
    "MosquittoBroker",
    "find_mosquitto",
    "mosquitto_broker",
    "shipped_config",
]

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_CERT_VALIDITY = timedelta(days=2)
# A name is one topic level, one password-file field and one client id: no topic separators or
# wildcards, no ':' (the password file's separator), printable ASCII, and short.
_NAME = re.compile(r"[A-Za-z0-9._~-]{1,64}")
# Where the shipped configuration names a file, and which file of the broker's folder it becomes.
_SHIPPED_FILES = {
    "certfile": "server.crt",
    "keyfile": "server.key",
    "password_file": None,  # by its file name: devices.passwd, clients.passwd
    "acl_file": None,  # devices.acl, clients.acl
}
_SHIPPED_PORTS = {"8883": "device", "8884": "client"}


class BrokerError(DoorwardError):
    """The relay broker could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class BrokerCredentials:
    """A broker login: the username (the device id or client id) and its password."""

    username: str
    password: str = field(repr=False)


def find_mosquitto() -> Path:
    """The ``mosquitto`` broker binary (Debian installs it in /usr/sbin, often not on PATH)."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BrokerError("the `mosquitto` broker is not installed; run `apt-get install mosquitto`")


def _find_passwd() -> Path:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BrokerError(
        "`mosquitto_passwd` is not installed (it comes with the broker); "
        "run `apt-get install mosquitto`"
    )


def shipped_config(name: str) -> str:
    """The text of a shipped broker file: ``doorward.conf``, ``devices.acl`` or ``clients.acl``."""
    if name not in {"doorward.conf", "devices.acl", "clients.acl"}:
        raise ValueError(f"must be doorward.conf, devices.acl or clients.acl, got {name!r}")
    return resources.files("hub.relay").joinpath("mosquitto", name).read_text(encoding="utf-8")


class _Mosquitto:
    """A ``mosquitto`` process with its files in ``directory``: start, stop, its paths and the
    passwords of its logins. Subclasses write the configuration (:meth:`_prepare`) and say when
    it is ready (:meth:`_ready`)."""

    host = "127.0.0.1"
    _roles = "its logins"

    def __init__(self, directory: Path, names: Iterable[str]) -> None:
        self.directory = Path(directory)
        self._passwords = {name: secrets.token_urlsafe(24) for name in names}
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (to read its CPU and memory)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def ca_path(self) -> Path:
        """The throwaway CA's certificate (PEM), to verify the broker's certificate."""
        return self.directory / "ca.crt"

    @property
    def config_path(self) -> Path:
        """The rendered ``mosquitto.conf``."""
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """The broker's log file."""
        return self.directory / "mosquitto.log"

    def credentials(self, name: str) -> BrokerCredentials:
        """The login of a named party."""
        try:
            return BrokerCredentials(name, self._passwords[name])
        except KeyError:
            raise BrokerError(
                f"no broker credentials for {name!r}; name it among {self._roles} when making "
                "the broker"
            ) from None

    def _ca_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def start(self) -> None:
        """Start the broker (writing its files at the first start) and wait until it answers;
        blocking, so call it outside an event loop."""
        if self.running:
            return
        if not self._prepared:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._prepare()
            self._prepared = True
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._process = subprocess.Popen(
                [str(find_mosquitto()), "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._ready():
            assert self._process is not None
            if self._process.poll() is not None:
                status, self._process = self._process.returncode, None
                raise BrokerError(
                    f"mosquitto exited with status {status} at start; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"mosquitto did not answer within {_START_TIMEOUT_S:.0f} s; see {self.log_path}"
                )
            time.sleep(0.02)
        logger.info("broker.started %r", self)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves what it persists; SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("broker.stopped %r", self)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _hash_passwords(self, path: Path, names: Iterable[str]) -> None:
        """``name:password`` lines in a 0600 file, then hashed in place (``mosquitto_passwd
        -U``): the passwords never appear on a command line, where ``ps`` would show them."""
        text = "".join(f"{name}:{self._passwords[name]}\n" for name in names)
        write_secret_file(path, text.encode())
        if not text:
            return  # nobody: an empty file lets nobody in
        done = subprocess.run(
            [str(_find_passwd()), "-U", str(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerError(
                f"mosquitto_passwd could not hash {path.name} (status {done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()}"
            )


class MosquittoBroker(_Mosquitto):
    """``mosquitto`` with the shipped configuration in ``directory`` on two free loopback ports
    (doorbells, clients); :meth:`start` / :meth:`stop` or a ``with`` block. It can be stopped
    and started again on the same ports, keeping its persisted sessions."""

    _roles = "the devices, clients or operators"

    def __init__(
        self,
        directory: Path,
        *,
        devices: Iterable[str] = (),
        clients: Iterable[str] = (),
        owners: Mapping[str, Iterable[str]] | None = None,
        operators: Iterable[str] = (),
    ) -> None:
        """Prepare (not start) a broker for the named doorbells and clients.

        ``owners`` maps a client to the doorbells whose availability it may read; ``operators``
        are clients that may read every topic, as whoever runs the broker can (for tests that look
        at the traffic through the operator's eyes)."""
        self._devices = _names(devices, "a device id")
        self._clients = _names(clients, "a client id")
        self._operators = _names(operators, "an operator name")
        both = set(self._devices) & (set(self._clients) | set(self._operators))
        if both:
            raise ValueError(
                f"a name must belong to one role (the broker's client ids are shared), "
                f"got {sorted(both)} as both device and client"
            )
        if set(self._clients) & set(self._operators):
            raise ValueError(
                f"an operator must not also be a client, got "
                f"{sorted(set(self._clients) & set(self._operators))}"
            )
        self._owners: dict[str, tuple[str, ...]] = {}
        for owner, owned in (owners or {}).items():
            if owner not in self._clients:
                raise ValueError(f"an owner must be one of the clients, got {owner!r}")
            owned = tuple(owned)
            unknown = [d for d in owned if d not in self._devices]
            if unknown:
                raise ValueError(f"an owner's doorbells must be among the devices, got {unknown}")
            self._owners[owner] = owned
        super().__init__(directory, (*self._devices, *self._clients, *self._operators))
        self.device_port = _free_port()
        self.client_port = _free_port()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"MosquittoBroker({self.host}, device_port={self.device_port}, "
            f"client_port={self.client_port}, {state})"
        )

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only this broker's CA (TLS 1.2 or later)."""
        return self._ca_context()

    def _prepare(self) -> None:
        (self.directory / "persist").mkdir(exist_ok=True)
        self._write_certificates()
        self._hash_passwords(self.directory / "devices.passwd", self._devices)
        self._hash_passwords(self.directory / "clients.passwd", (*self._clients, *self._operators))
        (self.directory / "devices.acl").write_text(shipped_config("devices.acl"))
        (self.directory / "clients.acl").write_text(self._clients_acl())
        self.config_path.write_text(self._render_config())

    def _render_config(self) -> str:
        out: list[str] = []
        for number, line in enumerate(shipped_config("doorward.conf").splitlines(), 1):
            words = line.split()
            key = words[0] if words and not words[0].startswith("#") else ""
            if key == "listener":
                role = _SHIPPED_PORTS.get(words[1] if len(words) > 1 else "")
                if role is None:
                    raise BrokerError(f"doorward.conf line {number}: unexpected listener {line!r}")
                port = self.device_port if role == "device" else self.client_port
                line = f"listener {port} {self.host}"
            elif key in _SHIPPED_FILES:
                shipped = Path(words[1])
                line = f"{key} {self.directory / (_SHIPPED_FILES[key] or shipped.name)}"
            elif key == "persistence_location":
                line = f"persistence_location {self.directory / 'persist'}/"
            elif key == "log_dest":
                line = f"log_dest file {self.log_path}"
            elif "/" in line and key:
                raise BrokerError(f"doorward.conf line {number}: a path the broker cannot place")
            out.append(line)
        if os.geteuid() == 0:
            # As root, mosquitto would switch to the `mosquitto` user, who cannot read this
            # folder's files (mode 0600, ours).
            out.append("user root")
        return "\n".join(out) + "\n"

    def _clients_acl(self) -> str:
        text = shipped_config("clients.acl")
        blocks = [
            f"\nuser {owner}\n" + "".join(f"topic read doorward/v1/dev/{d}/avail\n" for d in owned)
            for owner, owned in self._owners.items()
        ]
        blocks += [f"\nuser {operator}\ntopic read #\n" for operator in self._operators]
        return text + "".join(blocks)

    def _write_certificates(self) -> None:
        _write_test_pki(self.directory, self.host)

    def _ready(self) -> bool:
        """Both listeners complete a TLS handshake."""
        context = self.tls_context()
        return all(_handshakes(context, self.host, p) for p in (self.device_port, self.client_port))


def _write_test_pki(directory: Path, host: str) -> None:
    """A throwaway CA (``ca.crt``) and a server certificate for ``host`` and localhost
    (``server.crt``, ``server.key``, mode 0600) in ``directory``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Doorward test relay CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(host)),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    write_secret_file(
        directory / "server.key",
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


class HomeBroker(_Mosquitto):
    """A home's own Mosquitto on loopback, as Home Assistant's Mosquitto add-on runs one: a
    single listener (plain MQTT, or TLS with a throwaway CA), password logins and, if given, an
    ACL file's text. Not the relay's configuration: the broker a ``[homeassistant]`` connection
    talks to. It can be stopped and started again on the same port (nothing is persisted)."""

    _roles = "the users"

    def __init__(
        self, directory: Path, *, users: Iterable[str], tls: bool = False, acl: str | None = None
    ) -> None:
        super().__init__(directory, _names(users, "a user"))
        self.tls = tls
        self._acl = acl
        self.port = _free_port()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"HomeBroker({self.host}, port={self.port}, tls={self.tls}, {state})"

    @property
    def url(self) -> str:
        """``mqtt://`` or ``mqtts://`` with this broker's address."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context trusting only this broker's CA; None for plain MQTT."""
        return self._ca_context() if self.tls else None

    def _ready(self) -> bool:
        return _answers(self.tls_context(), self.host, self.port)

    def _prepare(self) -> None:
        passwords = self.directory / "passwd"
        self._hash_passwords(passwords, self._passwords)
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if self._acl is not None:
            (self.directory / "acl").write_text(self._acl)
            lines.append(f"acl_file {self.directory / 'acl'}")
        if self.tls:
            _write_test_pki(self.directory, self.host)
            lines += [
                f"certfile {self.directory / 'server.crt'}",
                f"keyfile {self.directory / 'server.key'}",
                "tls_version tlsv1.2",
            ]
        if os.geteuid() == 0:
            lines.append("user root")  # see MosquittoBroker._render_config
        self.config_path.write_text("\n".join(lines) + "\n")


def _answers(context: ssl.SSLContext | None, host: str, port: int) -> bool:
    if context is not None:
        return _handshakes(context, host, port)
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _names(names: Iterable[str], what: str) -> tuple[str, ...]:
    out = tuple(names)
    for name in out:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{what} must be 1 to 64 letters, digits or ._~- (it becomes an MQTT topic "
                f"level and a client id), got {name!r}"
            )
    if len(set(out)) != len(out):
        raise ValueError(f"{what} must be named once, got {list(out)}")
    return out


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _handshakes(context: ssl.SSLContext, host: str, port: int) -> bool:
    try:
        with (
            socket.create_connection((host, port), timeout=1) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mosquitto_broker(
    directory: Path,
    *,
    devices: Iterable[str] = (),
    clients: Iterable[str] = (),
    owners: Mapping[str, Iterable[str]] | None = None,
    operators: Iterable[str] = (),
) -> Iterator[MosquittoBroker]:
    """A started broker for the named doorbells and clients; stopped on exit."""
    broker = MosquittoBroker(
        directory, devices=devices, clients=clients, owners=owners, operators=operators
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
