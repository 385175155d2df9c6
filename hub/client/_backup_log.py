"""The audit log as the bucket holds it: the latest checkpoint, the log batches under it, and what
they say about clips (seals and deletions), checked with ``consent.audit_verify``.

The checkpoint is opened with the device key pinned at pairing. The batches are decrypted with the
owner's identity and must run from entry 0 without a gap or an overlap; their leaves are fed to
two verifiers in one pass: one for the uploaded checkpoint (every entry up to its size must hash
to its root) and, when the profile holds a checkpoint of its own, one for that (the same entries
up to its size must hash to its root). Together they prove that the uploaded log extends the one
the phone accepted; an uploaded checkpoint smaller than the held one is a rollback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent import AuditError, AuditUpdate, AuditVerifier, Checkpoint, audit_origin
from crypto import age
from crypto.errors import DoorwardError
from hub.offsite.layout import CHECKPOINTS, LOG, parse_checkpoint_name, parse_log_name
from hub.offsite.s3 import ObjectStore

__all__ = ["LogCheck", "Problem", "check_log"]

MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_LOG_BATCH_BYTES = 256 * 1024 * 1024  # 4 KiB leaves at most: 65 536 entries and more
_DELETION_KINDS = ("clip.deleted", "backup.deleted")
_SKIPPED_KIND = "backup.skipped"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with one object of the bucket (``name``, under the prefix): ``what``."""

    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.name}: {self.what}"


@dataclass(slots=True)
class LogCheck:
    """What the uploaded log showed: the checkpoint used (``ckpt_name``, ``size``; None without
    one), whether every entry under it verified (``verified``), the clips it seals (clip id ->
    manifest SHA-256), the clips and object names its deletion entries name, the clips some of
    whose segments the device never uploaded (``backup.skipped``), and the problems."""

    ckpt_name: str | None = None
    size: int = 0
    held_size: int | None = None
    verified: bool = False
    uncovered_entries: int = 0
    sealed: dict[str, str] = field(default_factory=dict)
    deleted_clips: set[str] = field(default_factory=set)
    deleted_names: set[str] = field(default_factory=set)
    skipped_clips: set[str] = field(default_factory=set)
    sealed_named: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)


async def check_log(
    store: ObjectStore,
    objects: dict[str, int],
    *,
    device_key: Ed25519PublicKey,
    identities: Sequence[age.Identity],
    held_checkpoint: str | None,
) -> LogCheck:
    """Check the bucket's checkpoints and log batches (``objects``: name -> size, as listed)."""
    result = LogCheck()
    origin = audit_origin(device_key)
    latest = await _latest_checkpoint(store, objects, device_key, origin, result)
    held: AuditUpdate | None = None
    if held_checkpoint is not None:
        held_verifier = AuditVerifier(device_key, origin)
        try:
            held = held_verifier.start_update(held_checkpoint, [])
        except (AuditError, DoorwardError) as exc:
            result.problems.append(
                Problem("(profile)", f"the checkpoint this profile holds does not verify: {exc}")
            )
        else:
            result.held_size = held.checkpoint.size
    if latest is None:
        if objects:
            result.problems.append(
                Problem(
                    CHECKPOINTS,
                    "no valid checkpoint in the bucket: the audit log and the clips' seals "
                    "cannot be checked",
                )
            )
        return result
    name, text, checkpoint = latest
    result.ckpt_name, result.size = name, checkpoint.size
    if held is not None and checkpoint.size < held.checkpoint.size:
        result.problems.append(
            Problem(
                name,
                f"the bucket's latest checkpoint has {checkpoint.size} entries but this profile "
                f"already holds one of {held.checkpoint.size}: checkpoints were removed or the "
                "log was rolled back",
            )
        )
        held = None
    verifier = AuditVerifier(device_key, origin)
    update = verifier.start_update(text, [])
    if await _read_batches(store, objects, identities, update, held, result):
        try:
            if held is not None and not held.complete:
                raise AuditError("the log ends before the held checkpoint's size")
            verifier.commit(update)
        except (AuditError, ValueError) as exc:
            result.problems.append(Problem(name, f"the uploaded log does not verify: {exc}"))
        else:
            result.verified = True
            result.sealed = verifier.sealed(result.sealed_named)
    return result


async def _latest_checkpoint(
    store: ObjectStore,
    objects: dict[str, int],
    device_key: Ed25519PublicKey,
    origin: str,
    result: LogCheck,
) -> tuple[str, str, Checkpoint] | None:
    """The largest checkpoint whose signature verifies; each larger one that does not is a problem."""
    sizes = sorted(
        ((size, name) for name in objects if (size := parse_checkpoint_name(name)) is not None),
        reverse=True,
    )
    verifier = AuditVerifier(device_key, origin)
    for size, name in sizes:
        try:
            data = await store.get_bytes(name, max_size=MAX_CHECKPOINT_BYTES)
            text = data.decode("utf-8")
            checkpoint = verifier.open_checkpoint(text)
        except UnicodeDecodeError:
            result.problems.append(Problem(name, "is not a checkpoint note (not UTF-8 text)"))
            continue
        except (AuditError, DoorwardError, ValueError) as exc:
            result.problems.append(Problem(name, f"not a checkpoint the device signed: {exc}"))
            continue
        if checkpoint.size != size:
            result.problems.append(
                Problem(name, f"holds a checkpoint of size {checkpoint.size}, not {size}")
            )
            continue
        return name, text, checkpoint
    return None


async def _read_batches(
    store: ObjectStore,
    objects: dict[str, int],
    identities: Sequence[age.Identity],
    update: AuditUpdate,
    held: AuditUpdate | None,
    result: LogCheck,
) -> bool:
    """Feed every batch to the verifiers in order; False (with a problem) at the first failure."""
    batches = sorted(
        (start, name) for name in objects if (start := parse_log_name(name)) is not None
    )
    size = update.checkpoint.size
    expected = 0
    for start, name in batches:
        if start < expected:
            result.problems.append(
                Problem(name, f"overlaps the batch before it, which ends at entry {expected - 1}")
            )
            return False
        if start > expected:
            break
        try:
            data = await store.get_bytes(name, max_size=MAX_LOG_BATCH_BYTES)
            plaintext = age.decrypt_bytes(identities, data)
        except DoorwardError as exc:
            result.problems.append(
                Problem(
                    name,
                    "cannot be decrypted with this owner's identity (altered or truncated, or "
                    f"uploaded before this owner was paired): {exc}",
                )
            )
            return False
        if plaintext and not plaintext.endswith(b"\n"):
            result.problems.append(Problem(name, "its last entry is cut off: it was truncated"))
            return False
        leaves = plaintext.split(b"\n")[:-1] if plaintext else []
        if not leaves:
            result.problems.append(Problem(name, "holds no entries"))
            return False
        for leaf in leaves:
            _note_clip(leaf, result)
        covered = leaves[: max(0, size - start)]
        if held is not None and not held.complete:
            try:
                held.add_entries(covered[: held.checkpoint.size - start])
            except AuditError as exc:
                result.problems.append(
                    Problem(
                        name,
                        f"the uploaded log disagrees with the checkpoint of size "
                        f"{held.checkpoint.size} this profile holds: the log was rewritten ({exc})",
                    )
                )
                return False
        try:
            if covered:
                update.add_entries(covered)
        except AuditError as exc:
            result.problems.append(Problem(name, str(exc)))
            return False
        result.uncovered_entries += len(leaves) - len(covered)
        expected = start + len(leaves)
    if expected < size:
        result.problems.append(
            Problem(
                LOG + f"{expected:012d}.age",
                f"missing: entries from {expected} on are not in the bucket, although "
                f"{result.ckpt_name} covers {size}",
            )
        )
        return False
    return True


def _note_clip(leaf: bytes, result: LogCheck) -> None:
    """Remember the clip an entry seals (its hash comes from the verifier) or deletes."""
    try:
        body = json.loads(leaf)
    except ValueError:
        return  # the verifier reports a leaf that is not JSON
    if not isinstance(body, dict):
        return
    kind, clip_id = body.get("kind"), body.get("clip_id")
    if kind == "clip.sealed" and isinstance(clip_id, str):
        result.sealed_named.add(clip_id)
    if kind == _SKIPPED_KIND and isinstance(clip_id, str):
        result.skipped_clips.add(clip_id)
    if kind not in _DELETION_KINDS:
        return
    if isinstance(clip_id, str):
        result.deleted_clips.add(clip_id)
    for key in ("object", "name"):
        if isinstance(body.get(key), str):
            result.deleted_names.add(body[key])
    for key in ("objects", "names"):
        if isinstance(body.get(key), list):
            result.deleted_names.update(n for n in body[key] if isinstance(n, str))
