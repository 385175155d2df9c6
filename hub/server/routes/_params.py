"""Strict reading of query parameters and JSON bodies; bad input becomes a precise BadRequest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hub.server.body import read_body
from hub.wire.errors import BadRequest

__all__ = ["int_param", "json_body", "parse_json_object", "str_field"]

_MAX_FIELD_CHARS = 4 * 1024 * 1024


def int_param(
    query: Mapping[str, str], name: str, *, default: int | None = None, low: int, high: int
) -> int:
    """The integer query parameter ``name`` in [low, high]; required when ``default`` is None."""
    text = query.get(name)
    if text is None or text == "":
        if default is None:
            raise BadRequest(f"query parameter {name} is required")
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        raise BadRequest(f"{name} must be a non-negative integer, got {text[:32]!r}")
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (read by :func:`hub.server.body.read_body`)."""
    return parse_json_object(await read_body(request))


def parse_json_object(data: bytes) -> dict[str, Any]:
    """A request body's bytes as a JSON object; anything else is a BadRequest."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # also too deeply nested, or an integer too long
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def str_field(body: Mapping[str, Any], name: str) -> str:
    """The string member ``name`` of a JSON body."""
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > _MAX_FIELD_CHARS:
        raise BadRequest(f"body member {name} must be a non-empty string")
    return value
