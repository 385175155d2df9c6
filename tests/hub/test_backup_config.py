"""The ``[backup]`` section and the ``--backup`` flags: what is accepted, what is refused and how."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hub.cli.cmd_serve import with_backup_flags
from hub.server.config import BackupConfig, ConfigError, load_config

TABLE = """
[backup]
endpoint = "https://s3.example.net"
bucket = "porch-evidence"
prefix = "home/front"
region = "eu-central-1"
credentials_file = "/etc/doorward/s3"
max_upload_kbps = 2000
max_queue_mb = 512
"""


def flags(**values: object) -> argparse.Namespace:
    base = {"backup": None, "backup_endpoint": None, "backup_credentials": None}
    base.update(values)
    return argparse.Namespace(**base)


def test_the_section_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(TABLE)
    config = load_config(path)
    assert config.backup == BackupConfig(
        endpoint="https://s3.example.net",
        bucket="porch-evidence",
        prefix="home/front",
        region="eu-central-1",
        credentials_file=Path("/etc/doorward/s3"),
        max_upload_kbps=2000,
        max_queue_mb=512,
    )
    assert (
        str(config.backup.address("x" * 43))
        == "s3://porch-evidence/home/front at https://s3.example.net"
    )


def test_without_a_prefix_the_device_id_names_the_folder() -> None:
    config = BackupConfig(endpoint="http://127.0.0.1:9000", bucket="evidence")
    assert config.address("AbCdEfGhIjKlMnOpQrStUv").prefix == "AbCdEfGhIjKlMnOp"


def test_flags_override_the_file_and_a_new_url_drops_its_prefix(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(TABLE)
    config = with_backup_flags(
        load_config(path), flags(backup="s3://other-bucket", backup_credentials=Path("/k"))
    )
    assert config.backup is not None
    assert (config.backup.bucket, config.backup.prefix) == ("other-bucket", "")
    assert config.backup.endpoint == "https://s3.example.net"
    assert config.backup.credentials_file == Path("/k")
    assert config.backup.max_queue_mb == 512
    unchanged = load_config(path)
    assert with_backup_flags(unchanged, flags()) is unchanged


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[backup]\nbucket = "evidence"\n', "backup needs endpoint"),
        ('[backup]\nendpoint = "ftp://x"\nbucket = "evidence"\n', "http:// or https://"),
        ('[backup]\nendpoint = "http://x"\nbucket = "Evidence_1"\n', "not an S3 bucket name"),
        ('[backup]\nendpoint = "http://x"\nbucket = "ok-bucket"\nprefix = "a/../b"\n', "'..'"),
        (
            '[backup]\nendpoint = "http://x"\nbucket = "ok-bucket"\nsecret = "x"\n',
            "unknown backup option",
        ),
        (
            '[backup]\nendpoint = "http://x"\nbucket = "ok-bucket"\nmax_queue_mb = 0\n',
            "max_queue_mb",
        ),
        ('[backup]\nurl = "http://bucket/prefix"\nendpoint = "http://x"\n', "s3://BUCKET/PREFIX"),
        ('backup = "s3://x"\n', "must be a table"),
    ],
)
def test_bad_sections_are_refused_with_what_to_fix(
    tmp_path: Path, table: str, message: str
) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(path)


def test_a_flag_without_an_endpoint_says_which_flag_is_missing() -> None:
    with pytest.raises(ConfigError, match="--backup-endpoint URL"):
        with_backup_flags(load_config(None), flags(backup="s3://evidence/front"))
