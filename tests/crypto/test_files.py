"""crypto.files.write_atomic: old or new content, never half, and no temp file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crypto.files import TEMP_SUFFIX, fsync_dir, write_atomic


def test_replaces_the_file_and_leaves_only_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content_and_removes_the_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "text is not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_rename_keeps_the_old_content_and_removes_the_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.mkdir()
    (path / "inside").write_bytes(b"old")  # a non-empty folder cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        write_atomic(path, b"new")
    assert (path / "inside").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}"))


def test_missing_folder_is_an_error_not_a_mkdir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "nope" / "file", b"x")
    assert list(tmp_path.iterdir()) == []


def test_mode_is_set_exactly_even_under_a_narrow_umask(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    old_umask = os.umask(0o277)  # would leave 0400 without the explicit mode
    try:
        write_atomic(path, b"key material", mode=0o600)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"key material"


def test_default_mode_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_atomic(path, b"{}")
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_fsync_dir_accepts_a_folder_and_refuses_a_file(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "f")
