"""``doorward demo``: the Doorward story, run for real on this machine and narrated for a person."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crypto import age
from crypto.errors import NoIdentityMatched
from crypto.keys import KeyBundle

__all__ = ["add_parser", "run_demo"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the whole story on a simulated doorbell and keep every artefact",
        description="Run the Doorward story end to end and leave every artefact in DIR.",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to keep the artefacts (default: a new folder)"
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    directory = args.dir or Path.cwd() / datetime.now(UTC).strftime("doorward-demo-%Y%m%d-%H%M%S")
    run_demo(directory, out=sys.stdout)
    return 0


class _Narrator:
    def __init__(self, out: Any) -> None:
        self._out = out
        self._step = 0
        self._start = time.monotonic()

    def step(self, title: str) -> None:
        self._step += 1
        self._out.write(f"\n[{self._step}] {title}\n")
        self._out.flush()

    def say(self, text: str) -> None:
        self._out.write(f"    {text}\n")
        self._out.flush()

    def elapsed_s(self) -> float:
        return time.monotonic() - self._start


def run_demo(directory: Path, *, out: Any) -> dict[str, Any]:
    """Run the story, write ``directory/summary.json`` and return the summary."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    say = _Narrator(out)
    out.write(f"Doorward demo — every artefact is kept in {directory}\n")

    say.step("An owner's phone makes its keys")
    owner = KeyBundle.generate("hybrid")
    owner.save(directory / "owner")
    say.say(f"owner key id {owner.key_id}")
    say.say(f"post-quantum age recipient {str(owner.recipient)[:32]}…")

    say.step("A requester (a local police department) makes its keys")
    requester = KeyBundle.generate("x25519")
    requester.save(directory / "requester")
    say.say(f"requester key id {requester.key_id}, age recipient {requester.recipient}")

    say.step("The doorbell encrypts a recording to the owner only")
    plaintext = _sample_recording()
    segment = directory / "segment.age"
    with segment.open("wb") as dst, age.Encryptor(dst, [owner.recipient]) as enc:
        for offset in range(0, len(plaintext), 16384):
            enc.write(plaintext[offset : offset + 16384])
    say.say(f"{segment.name}: {segment.stat().st_size} bytes, an age file for one recipient")
    say.say(f"payload SHA-256 {enc.payload_sha256.hex()} (what the device signs)")

    say.step("The owner re-heads the segment to the requester (the payload is untouched)")
    data = segment.read_bytes()
    header, payload = age.split_header(data)
    new_header = age.reheader(header, [owner.age_identity], [requester.recipient])
    released = directory / "released-segment.age"
    released.write_bytes(new_header + payload)
    say.say(f"new header {len(new_header)} bytes, one stanza for the requester")
    same = hashlib.sha256(payload).digest() == age.payload_sha256(released.read_bytes())
    say.say(f"payload hash unchanged after re-heading: {same}")

    say.step("The requester decrypts the released copy")
    video = directory / "decrypted.bin"
    video.write_bytes(age.decrypt_bytes([requester.age_identity], released.read_bytes()))
    say.say(f"decrypted {video.stat().st_size} bytes; identical to the recording: "
            f"{video.read_bytes() == plaintext}")
    say.say(f"the `age` CLI can do the same: age -d -i {directory / 'requester' / 'age.key'} "
            f"{released}")

    say.step("The owner's key no longer opens the released copy")
    try:
        age.decrypt_bytes([owner.age_identity], released.read_bytes())
        owner_opens = True
    except NoIdentityMatched:
        owner_opens = False
    say.say(f"owner key opens the released copy: {owner_opens}")

    summary = {
        "owner_identity": str(directory / "owner" / "age.key"),
        "requester_identity": str(directory / "requester" / "age.key"),
        "encrypted_segment": str(segment),
        "released_segments": [str(released)],
        "video": str(video),
        "payload_hash_unchanged": same,
        "owner_opens_release": owner_opens,
        "elapsed_s": round(say.elapsed_s(), 2),
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    out.write(f"\nDone in {summary['elapsed_s']} s. Summary: {directory / 'summary.json'}\n")
    return summary


def _sample_recording() -> bytes:
    """Three 64 KiB chunks and a bit of stand-in data, so the stream spans several chunks."""
    buffer = io.BytesIO()
    buffer.write(b"doorward demo recording\n")
    buffer.write(os.urandom(3 * 65536 + 1000))
    return buffer.getvalue()
