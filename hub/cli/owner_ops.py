"""What an owner does to a device, shared by ``doorward owner …`` and the owner's console: pair
from a setup URI or code, describe a request, list a request's segments, approve chosen segments,
decline, revoke; the household's owners and the signed policy. One implementation; the command line and the console only ask and show differently.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import consent.owner
from consent import Policy
from consent.audit_verify import AuditVerifier
from consent.models import ConsentRequest
from consent.policy_doc import sign_policy
from consent.requests import verify_request
from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import KeyBundle
from crypto.setup_code import PairingURI, SetupCode
from hub.cli.cmd_audit import audit_verifier
from hub.cli.common import CliError
from hub.cli.request_footage import ApiFootage
from hub.client import Clip, DoorwardClient, OwnerInfo, RequestInfo, pair
from hub.client.audit import check_audit
from hub.client.profile import PinnedDevice, Profile
from hub.wire.discovery import DiscoveredDevice, browse

__all__ = [
    "DISCOVER_S",
    "OWNER_ACTIONS",
    "ApprovalTerms",
    "PreparedApproval",
    "build_approval",
    "change_owners",
    "clip_plaintext",
    "decline_request",
    "describe_request",
    "pair_profile",
    "pairing_uri",
    "pending_request",
    "post_approval",
    "prepare_approval",
    "remux_to_mp4",
    "revoke_release",
    "signed_policy",
    "uri_for_code",
    "url_of",
]

DISCOVER_S = 3.0
OWNER_ACTIONS = ("list", "remove", "approve")


# -- pairing ------------------------------------------------------------------------------------


async def pairing_uri(
    text: str, *, discover_s: float = DISCOVER_S, interfaces: Sequence[str] | None = None
) -> PairingURI:
    """The pairing URI in ``text`` (``doorward://pair?…``), or, for a bare setup code, the one
    device open for pairing on the LAN (zeroconf gives its id, address and TLS pin); zeroconf
    listens on ``interfaces`` (addresses; None: all)."""
    text = text.strip()
    if not text:
        raise CliError(
            "no setup URI or code was given; type the one the doorbell printed, or pipe it in: "
            "doorward owner pair - < FILE"
        )
    if text.startswith("doorward:"):
        return PairingURI.parse(text)
    code = SetupCode.parse(text)
    found = [d for d in await _browse(discover_s, interfaces) if d.pairing == "open"]
    return uri_for_code(code, found)


async def _browse(discover_s: float, interfaces: Sequence[str] | None) -> list[DiscoveredDevice]:
    if interfaces is None:
        return await browse(discover_s)
    return await browse(discover_s, interfaces=list(interfaces))


def uri_for_code(code: SetupCode, found: Sequence[DiscoveredDevice]) -> PairingURI:
    """The pairing URI of the one device in ``found`` (those open for pairing) for ``code``."""
    if len(found) != 1:
        raise CliError(
            f"{len(found)} devices are open for pairing on the LAN; "
            "pass the pairing URI (doorward://pair?…) instead of the code"
        )
    device = found[0]
    host = device.addresses[0] if device.addresses else None
    return PairingURI(
        device.device_id, code, device.fingerprint, host, device.port if host else None
    )


def url_of(uri: PairingURI) -> str:
    """The device's https URL from the address in ``uri``."""
    if uri.host is None:
        raise CliError("this pairing URI has no address; pass --url https://HOST:PORT")
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"https://{host}:{uri.port}"


async def pair_profile(
    profile: Profile, uri: PairingURI, url: str
) -> tuple[PinnedDevice, str | None]:
    """Pair the profile's keys with the device at ``url`` and pin it; returns the pinned device
    and a note when its relay key is unusable."""
    keys = profile.keys()
    name = str(profile.info().get("name", "owner"))
    device_keys = await pair(url, uri, keys, name=name)
    relay_config, relay_note = _relay_config_of(device_keys.relay_key_config)
    device = PinnedDevice(
        device_id=device_keys.device_id,
        fingerprint=device_keys.tls_fingerprint,
        url=url,
        signing_key=device_keys.signing_key,
        relay_key_config=relay_config,
        relay_url=device_keys.relay_url if relay_config is not None else None,
    )
    profile.pin(device)
    return device, relay_note


def _relay_config_of(config: bytes | None) -> tuple[bytes | None, str | None]:
    """The relay key configuration the device gave at pairing, if usable, and a note if not."""
    from hub.wire import ohttp
    from hub.wire.relay_keys import RelayKeys

    if config is None:
        return None, None
    try:
        RelayKeys.parse(config)
    except ohttp.OhttpError as exc:
        return None, f"its relay key is unusable ({exc}); calls through the relay are off for it"
    return config, None


# -- requests -----------------------------------------------------------------------------------


def describe_request(r: RequestInfo, now: int) -> dict[str, Any] | None:
    """Who asks, for what and why, from the request's signed token (None if it has none or it
    does not verify)."""
    if r.token is None:
        return None
    try:
        request = verify_request(r.token, min(now, r.expires_s - 1), strict_text=False)
    except (DoorwardError, ValueError):
        return None
    who = request.identity
    return {
        "name": who.name,
        "organisation": who.organisation,
        "kind": who.kind,
        "jurisdiction": who.jurisdiction,
        "contact": who.contact,
        "camera": request.camera,
        "window": [request.window_start_s, request.window_end_s],
        "category": request.category,
        "case_reference": request.case_reference,
        "request_reason": request.reason,
        "legal_basis": request.legal_basis,
    }


async def pending_request(api: DoorwardClient, request_id: str, now: int) -> ConsentRequest:
    """Request ``request_id``, verified, if it is still waiting for a decision."""
    info = await api.request(request_id)
    if info.status != "pending":
        raise CliError(f"request {request_id} is {info.status}, not pending")
    if info.token is None:
        raise CliError(f"the device did not send request {request_id}'s token")
    return verify_request(info.token, now, strict_text=False)


@dataclass(frozen=True, slots=True)
class ApprovalTerms:
    """How long and how often the requester may fetch a release, and what the owner discloses."""

    expires_s: int
    max_downloads: int
    disclosures: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.max_downloads < 1:
            raise CliError(f"the download count must be at least 1, got {self.max_downloads}")
        if self.expires_s < 1:
            raise CliError(f"the expiry must be a positive duration, got {self.expires_s} s")


@dataclass(frozen=True, slots=True)
class PreparedApproval:
    """A pending request with its chosen segments fetched and the device's log audited."""

    request: ConsentRequest
    footage: ApiFootage
    verifier: AuditVerifier


async def prepare_approval(
    api: DoorwardClient,
    profile: Profile,
    device: PinnedDevice,
    keys: KeyBundle,
    request_id: str,
    wanted: Sequence[str] | None,
    *,
    workdir: Path,
    now: int,
) -> PreparedApproval:
    """Fetch the ``wanted`` segments (None: all in the window) of pending request ``request_id``
    into ``workdir`` and audit the device's log, so that the approval can be checked and built."""
    if device.signing_key is None:
        raise CliError(
            f"this profile has no signing key pinned for device {device.device_id}, so the "
            "footage it serves cannot be checked; pair with the device again"
        )
    verifier = audit_verifier(profile, device)
    request = await pending_request(api, request_id, now)
    footage = await ApiFootage.load(api, request, wanted, workdir=workdir)
    # After the footage: a clip that finished meanwhile is sealed by now.
    await check_audit(api, verifier, signing_key=keys.signing_key, now=now)
    return PreparedApproval(request, footage, verifier)


def build_approval(
    prepared: PreparedApproval,
    device: PinnedDevice,
    keys: KeyBundle,
    terms: ApprovalTerms,
    *,
    now: int,
) -> Any:
    """The signed approval re-heading the chosen segments to the requester (made here, on the
    owner's machine: the device never sees an owner key)."""
    assert device.signing_key is not None  # prepare_approval refused otherwise
    segments = prepared.footage.chosen()
    return consent.owner.approve(
        keys.signing_key,
        [keys.age_identity],
        prepared.request,
        segments,
        prepared.footage,
        device_id=device.device_id,
        device_key=device.signing_key,
        sealed=prepared.verifier.sealed({segment.clip_id for segment in segments}),
        token_id=secrets.token_hex(8),
        now=now,
        expires_at_s=now + terms.expires_s,
        max_downloads=terms.max_downloads,
        disclosures=terms.disclosures or None,
        checkpoint=prepared.verifier.last_checkpoint,
    )


async def post_approval(
    api: DoorwardClient,
    prepared: PreparedApproval,
    device: PinnedDevice,
    keys: KeyBundle,
    terms: ApprovalTerms,
    *,
    now: int,
) -> Any:
    """Build the approval and send it; returns the device's release record."""
    approval = build_approval(prepared, device, keys, terms, now=now)
    return await api.consent(prepared.request.request_id, approval)


async def decline_request(
    api: DoorwardClient,
    device: PinnedDevice,
    keys: KeyBundle,
    request_id: str,
    reason: str,
    *,
    now: int,
) -> RequestInfo:
    """Refuse request ``request_id`` with ``reason`` (the requester sees it)."""
    info = await api.request(request_id)
    if info.token is None:
        raise CliError(f"the device did not send request {request_id}'s token")
    request = verify_request(info.token, now, strict_text=False)
    token = consent.owner.decline(
        keys.signing_key,
        request,
        reason,
        device_id=device.device_id,
        token_id=secrets.token_hex(8),
        now=now,
    )
    return await api.decline(request_id, token)


async def revoke_release(
    api: DoorwardClient, device: PinnedDevice, keys: KeyBundle, release_id: str, *, now: int
) -> Any:
    """Withdraw release ``release_id`` (one not downloaded yet); returns the device's record."""
    token = consent.owner.revoke(
        keys.signing_key,
        release_id,
        device_id=device.device_id,
        token_id=secrets.token_hex(8),
        now=now,
    )
    return await api.revoke(release_id, token)


# -- footage ------------------------------------------------------------------------------------


async def clip_plaintext(
    api: DoorwardClient,
    clip: Clip,
    identities: Sequence[Any],
    *,
    wrap: Callable[[IO[bytes]], IO[bytes]] | None = None,
) -> bytes:
    """The segments of ``clip`` (from ``api.clip``) downloaded and decrypted here with
    ``identities``, joined into one MPEG-TS; ``wrap`` wraps each segment's download buffer (to
    count progress)."""
    joined = io.BytesIO()
    for segment in clip.segments:
        buffer = io.BytesIO()
        await api.download_segment(
            segment.segment_id, wrap(buffer) if wrap else buffer, max_bytes=segment.size
        )
        # Off the event loop: a console serving other pages runs this too.
        joined.write(
            await asyncio.to_thread(age.decrypt_bytes, list(identities), buffer.getvalue())
        )
    return joined.getvalue()


def remux_to_mp4(ts: bytes, out: Path | IO[bytes], *, fragmented: bool = False) -> None:
    """The video of MPEG-TS ``ts`` remuxed (not re-encoded) into an MP4 file at ``out``;
    ``fragmented``: a fragment per keyframe after an empty ``moov`` (what a ``<video>`` element or
    Media Source plays while the rest still loads), with an ``mfra`` index for seeking."""
    import av  # only remuxing needs the demuxer here

    target_file: Any = str(out) if isinstance(out, Path) else out
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if fragmented else {}
    with (
        # FFmpeg's stream probe would decode the first pictures, which a remux never uses.
        av.open(io.BytesIO(ts), "r", format="mpegts", options={"skip_frame": "all"}) as src,
        av.open(target_file, "w", format="mp4", options=options) as dst,
    ):
        stream = src.streams.video[0]
        target = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = target
            dst.mux(packet)


# -- the household and the policy ---------------------------------------------------------------


async def change_owners(
    api: DoorwardClient, action: str, key_id: str | None = None
) -> list[OwnerInfo]:
    """``remove`` the owner ``key_id`` or ``approve`` the phone ``key_id`` to pair during the next
    few minutes (both admin only, except removing oneself), or just ``list``; then the owners."""
    if action not in OWNER_ACTIONS:
        raise CliError(
            f"the owners action must be one of {', '.join(OWNER_ACTIONS)}, got {action!r}"
        )
    if action != "list" and not key_id:
        raise CliError(f"owners {action} needs the owner's KEY_ID")
    if action == "remove":
        assert key_id is not None
        await api.remove_owner(key_id)
    elif action == "approve":
        assert key_id is not None
        await api.approve_owner(key_id)
    return await api.owners()


def signed_policy(
    data: Any, keys: KeyBundle, device_id: str, *, now: int, source: str = "the policy"
) -> str:
    """``data`` (a policy as JSON) checked and signed by this owner for ``device_id``: the
    document ``api.set_policy`` installs; ``source`` names where it came from in the error."""
    try:
        policy = Policy.from_json(data)
    except ValueError as exc:
        raise CliError(f"{source} is not a valid policy: {exc}") from exc
    return sign_policy(policy, keys.signing_key, device_id=device_id, issued_at_s=now)
