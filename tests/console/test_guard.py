"""The console's gate on a real server on loopback: each refusal (wrong Host, wrong Origin, no
or wrong cookie, wrong launch secret), the secret-for-cookie exchange, the security headers, no
CORS, and the launch secret in no log line and no response."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hub.client.profile import Profile
from hub.console import serve
from tests.console.consolekit import SECRET, SESSION, Console, cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def test_the_printed_url_is_loopback_and_its_secret_buys_a_strict_cookie(
    console: Console,
) -> None:
    assert console.url == f"http://127.0.0.1:{console.gate.port}/?key={SECRET}"
    status, headers, _ = await console.get(f"/?key={SECRET}")
    assert (status, headers["location"]) == (303, "/")
    given = headers["set-cookie"]
    assert given.startswith(f"doorward_console={SESSION};")
    attributes = {a.strip().lower() for a in given.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict"} <= attributes
    status, headers, body = await console.get("/api/profile", **cookie())
    assert status == 200
    assert '"name": "Ada"' in body
    assert headers["cache-control"] == "no-store"


async def test_a_wrong_launch_secret_is_refused_and_buys_no_cookie(console: Console) -> None:
    status, headers, body = await console.get("/?key=guessed")
    assert status == 403
    assert "set-cookie" not in headers
    assert "not the one printed at launch" in body


@pytest.mark.parametrize("sent", [None, "doorward_console=wrong", f"other={SESSION}"])
async def test_no_page_and_no_api_without_the_session_cookie(
    console: Console, sent: str | None
) -> None:
    headers = {"Cookie": sent} if sent else {}
    for path in ("/", "/api/profile", "/static/app.js", "/api/doorbells"):
        status, _, body = await console.get(path, **headers)
        assert status == 401, path
        assert "open the console with the URL" in body


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost:{port}"])
async def test_another_host_name_is_refused_even_with_the_cookie(
    console: Console, host: str
) -> None:
    # DNS rebinding: a name the attacker controls, resolving to 127.0.0.1, names itself in Host.
    named = host.format(port=console.gate.port) if "{port}" in host else host
    status, headers, body = await console.get("/api/profile", Host=named, **cookie())
    assert status == 421
    assert "answers only at http://127.0.0.1:" in body
    status, headers, _ = await console.get(f"/?key={SECRET}", Host=named)
    assert status == 421
    assert "set-cookie" not in headers


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null", "http://127.0.0.1:1"])
async def test_a_change_from_another_origin_is_refused_even_with_the_cookie(
    console: Console, origin: str | None
) -> None:
    headers = cookie() | ({"Origin": origin} if origin else {})
    status, _, body = await console.send("POST", "/api/pair", headers, json={"setup": "x"})
    assert status == 403
    assert "must come from the console's own page" in body


async def test_a_change_from_the_console_itself_goes_through(console: Console) -> None:
    headers = cookie() | {"Origin": console.base}
    status, _, body = await console.send("POST", "/api/pair", headers, json={"setup": ""})
    assert status == 400  # reached the handler, which wants a code
    assert "type the 8-digit setup code" in body


async def test_no_cors_and_strict_headers_on_every_answer(console: Console) -> None:
    evil = {"Origin": "http://evil.example"}
    answers = [
        await console.get("/", **cookie(), **evil),
        await console.get("/api/profile", **cookie(), **evil),
        await console.get("/static/app.js", **cookie()),
        await console.get("/api/profile"),
        await console.send(
            "OPTIONS",
            "/api/pair",
            evil | {"Access-Control-Request-Method": "POST"},
        ),
    ]
    for status, headers, _ in answers:
        assert not [h for h in headers if h.startswith("access-control-")], status
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
    assert answers[2][1]["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )


async def test_the_launch_secret_is_in_no_log_and_no_response(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await console.get(f"/?key={SECRET}")
    await console.get("/?key=guessed")
    await console.get("/", **cookie())
    await console.get("/api/profile", **cookie())
    await console.send(
        "POST",
        "/api/pair",
        cookie() | {"Origin": console.base},
        json={"setup": "doorward://pair?v=1&c=12345670"},
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "console.request method=GET path=/ status=303" in logged  # the access log is on
    answered = "\n".join(console.seen)
    for text in (logged, answered):
        assert SECRET not in text
        assert "12345670" not in text
    # The session value appears once per exchange, in Set-Cookie only.
    assert all(SESSION not in line or "set-cookie" in line for line in console.seen)
    assert SESSION not in logged


async def test_a_taken_port_is_a_clear_error(console: Console, tmp_path: Path) -> None:
    from hub.cli.common import CliError

    profile = Profile(tmp_path / "owner", "owner")
    with pytest.raises(CliError, match=r"cannot listen on 127.0.0.1:\d+ .*pick another --port"):
        await serve(profile, port=console.gate.port, ready=lambda url: None)
