"""Release bundles written to a private temporary file before they are sent anywhere."""

from __future__ import annotations

import tempfile
from pathlib import Path

from consent.desk import ConsentDesk

__all__ = ["spool_bundle"]


def spool_bundle(desk: ConsentDesk, release_id: str, spool: Path) -> Path:
    """Write the release's bundle to a new file in ``spool`` (0700), on the desk's thread; the
    caller deletes it. Nothing is left behind when writing fails."""
    spool.mkdir(mode=0o700, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, prefix="release-", delete=False) as f:
        try:
            desk.write_bundle(release_id, f)  # type: ignore[arg-type]
        except BaseException:
            Path(f.name).unlink(missing_ok=True)
            raise
    return Path(f.name)
