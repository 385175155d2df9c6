"""Audit routes (owners only): entries, checkpoints, proofs, and the owners' cosignatures.

An owner's phone reads the entries that are new since its last check in pages of at most
``MAX_ENTRIES_PER_READ``, checks them against the signed checkpoint, checks the checkpoint against
every other owner's cosigned one, then posts its own cosignature (C2SP tlog-cosignature), which the
device keeps as that owner's latest and attaches to the checkpoints it serves.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from consent.audit import MAX_ENTRIES_PER_READ
from crypto.signed import b64url
from hub.server import appkeys
from hub.server.routes._auth import require_owner
from hub.server.routes._params import int_param, json_body, str_field
from hub.wire.errors import BadRequest

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Add the audit routes (entries, checkpoint, proofs, cosignatures) to ``app``."""
    app.router.add_routes(
        [
            web.get("/audit/entries", audit_entries),
            web.get("/audit/checkpoint", audit_checkpoint),
            web.get("/audit/proof/inclusion", inclusion_proof),
            web.get("/audit/proof/consistency", consistency_proof),
            web.get("/audit/cosignatures", list_cosignatures),
            web.post("/audit/cosignatures", post_cosignature),
        ]
    )


async def audit_entries(request: web.Request) -> web.Response:
    await require_owner(request)
    audit = request.app[appkeys.DEPS].audit
    size = audit.size
    start = int_param(request.query, "start", default=0, low=0, high=size)
    # Without ``end``, one page: a log can outgrow what one answer may hold.
    end = int_param(
        request.query, "end", default=min(size, start + MAX_ENTRIES_PER_READ), low=start, high=size
    )
    try:
        entries = audit.entries(start, end)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return web.json_response(
        {
            "size": size,
            "entries": [
                {"index": e.index, "leaf": e.leaf.decode("utf-8"), "body": e.body()}
                for e in entries
            ],
        }
    )


async def audit_checkpoint(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    note = deps.cosignatures.attach(deps.audit.checkpoint(), _active_owners(request))
    return web.Response(text=note, content_type="text/plain")


async def inclusion_proof(request: web.Request) -> web.Response:
    await require_owner(request)
    audit = request.app[appkeys.DEPS].audit
    size = int_param(request.query, "size", low=1, high=audit.size)
    index = int_param(request.query, "index", low=0, high=size - 1)
    proof = audit.inclusion_proof(index, size)
    return web.json_response({"index": index, "size": size, "proof": [b64url(p) for p in proof]})


async def consistency_proof(request: web.Request) -> web.Response:
    await require_owner(request)
    audit = request.app[appkeys.DEPS].audit
    new = int_param(request.query, "new", low=0, high=audit.size)
    old = int_param(request.query, "old", low=0, high=new)
    proof = audit.consistency_proof(old, new)
    return web.json_response({"old": old, "new": new, "proof": [b64url(p) for p in proof]})


async def list_cosignatures(request: web.Request) -> web.Response:
    await require_owner(request)
    book = request.app[appkeys.DEPS].cosignatures
    records = await request.app[appkeys.WORKER].run(book.latest, _active_owners(request))
    return web.json_response({"cosignatures": [_record_json(r) for r in records]})


async def post_cosignature(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    deps = request.app[appkeys.DEPS]
    note = str_field(await json_body(request), "checkpoint")
    record = await request.app[appkeys.WORKER].run(
        lambda: deps.cosignatures.record(
            note,
            owner_key_id=owner.key_id,
            owner_key=owner.signing_public,
            now=int(deps.clock()),
        )
    )
    return web.json_response(_record_json(record))


def _active_owners(request: web.Request) -> set[str]:
    owners = request.app[appkeys.DEPS].owners
    return {o.key_id for o in owners.list_owners(include_removed=False)}


def _record_json(record: Any) -> dict[str, Any]:
    return {
        "owner_key_id": record.owner_key_id,
        "size": record.size,
        "time": record.time,
        "checkpoint": record.note,
    }
