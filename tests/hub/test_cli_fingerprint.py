"""A TLS fingerprint is base64url and may begin with '-': the documented `--fingerprint=FP` form
parses whatever its first character."""

from __future__ import annotations

from hub.cli.main import build_parser

FP = "-xH9bq0Lw5mCnPVW3oZu0R2H5FHqq3C4gM1zS6k7dA"


def _ask(*fingerprint: str) -> list[str]:
    return [
        "requester", "ask", "https://127.0.0.1:8443", *fingerprint, "--device-id", "abcdefgh",
        "--camera", "front", "--start", "1", "--end", "2", "--category", "theft",
        "--reason", "r", "--legal-basis", "voluntary",
    ]  # fmt: skip


def test_equals_form_takes_a_fingerprint_beginning_with_a_dash() -> None:
    args = build_parser().parse_args(_ask(f"--fingerprint={FP}"))
    assert args.fingerprint == FP
