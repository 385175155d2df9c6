"""Where backups go and with whose keys: the bucket address, the credentials, the errors.

Light on purpose (no S3 client import): ``doorward serve``'s config reads it.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from crypto.errors import DoorwardError
from crypto.keys import read_secret_file

__all__ = [
    "BucketAddress",
    "ChecksumMismatch",
    "ClockSkewed",
    "Credentials",
    "ObjectMissing",
    "OffsiteError",
    "StoreDenied",
    "StoreFull",
    "StoreUnreachable",
    "split_s3_url",
]


class OffsiteError(DoorwardError):
    """Something about the off-site store went wrong; the subclasses say what to do."""


class StoreUnreachable(OffsiteError):
    """The store did not answer, or answered with a server error: retry later."""


class StoreDenied(OffsiteError):
    """The store refused the credentials or the operation: fix the keys or their policy."""


class ClockSkewed(StoreDenied):
    """The store refused the request's time: S3 signatures (SigV4) need a clock within 15 min."""


class StoreFull(OffsiteError):
    """The bucket refused the object for its size or a quota: free space or raise the quota."""


class ObjectMissing(OffsiteError):
    """The object (or the bucket) does not exist."""


class ChecksumMismatch(OffsiteError):
    """The bytes the store holds or received are not the bytes whose SHA-256 was given."""


@dataclass(frozen=True, slots=True)
class BucketAddress:
    """Where backups go: ``endpoint`` (an S3 API URL), ``bucket``, ``prefix`` (no slashes at
    either end; every object key starts with it) and ``region`` (SigV4 signs it)."""

    endpoint: str
    bucket: str
    prefix: str
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise OffsiteError(
                f"backup endpoint {self.endpoint!r} must be an http:// or https:// URL of the "
                "S3 API, such as https://s3.eu-central-1.amazonaws.com"
            )
        if (
            not 3 <= len(self.bucket) <= 63
            or not self.bucket.replace("-", "").replace(".", "").isalnum()
            or self.bucket != self.bucket.lower()
        ):
            raise OffsiteError(
                f"backup bucket {self.bucket!r} is not an S3 bucket name (3-63 lowercase "
                "letters, digits, '-' and '.')"
            )
        if not self.prefix or self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise OffsiteError(
                f"backup prefix {self.prefix!r} must be a non-empty path without a leading or "
                "trailing '/', such as doorward/front-door"
            )
        if any(part in ("", ".", "..") for part in self.prefix.split("/")):
            raise OffsiteError(f"backup prefix {self.prefix!r} has an empty, '.' or '..' part")

    @classmethod
    def parse(cls, url: str, *, endpoint: str, region: str = "us-east-1") -> BucketAddress:
        """``s3://BUCKET/PREFIX`` (the ``--backup`` flag's form) at ``endpoint``."""
        bucket, prefix = split_s3_url(url)
        return cls(endpoint, bucket, prefix, region)

    def key(self, name: str) -> str:
        """The full object key of ``name`` under the prefix."""
        return f"{self.prefix}/{name}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"


def split_s3_url(url: str) -> tuple[str, str]:
    """The bucket and prefix of ``s3://BUCKET/PREFIX`` (the prefix may be empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise OffsiteError(f"backup target {url!r} must look like s3://BUCKET/PREFIX")
    return parts.netloc, parts.path.strip("/")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An S3 access key pair. The secret never appears in a repr, a log line or an error."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def from_file(cls, path: Path, profile: str = "default") -> Credentials:
        """Read an AWS-style credentials file (``[default]`` with ``aws_access_key_id`` and
        ``aws_secret_access_key``), which must be readable by its owner only (0600)."""
        text = read_secret_file(path).decode("utf-8", errors="replace")
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            raise OffsiteError(
                f"{path}: not an AWS credentials file ({type(exc).__name__}); write a "
                "[default] section with aws_access_key_id and aws_secret_access_key"
            ) from None
        if not parser.has_section(profile):
            raise OffsiteError(f"{path}: no [{profile}] section with the backup credentials")
        section = parser[profile]
        key_id = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        if not key_id or not secret:
            raise OffsiteError(
                f"{path}: [{profile}] needs both aws_access_key_id and aws_secret_access_key"
            )
        return cls(key_id, secret)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Credentials:
        """``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` from the environment."""
        env = os.environ if environ is None else environ
        key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
        secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
        if not key_id or not secret:
            raise OffsiteError(
                "no backup credentials: name a credentials file (mode 0600) or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        return cls(key_id, secret)

    @classmethod
    def load(cls, path: Path | None) -> Credentials:
        """From ``path`` when given, else from the environment."""
        return cls.from_file(path) if path is not None else cls.from_environment()
