"""The owner's policy: a pure function deciding "decline because of rule R" or "ask the owner".

Rules run in a fixed order and the first that refuses wins, so the answer names one rule:

1. ``blocked_key``      the requester's key is on the owner's block list
2. ``requester_kind``   the requester is of a kind the owner refuses (e.g. federal agencies)
3. ``category``         the request's category is one the owner refuses
4. ``reason_keyword``   any text the requester wrote (reason, detail, case reference, name,
                       organisation, jurisdiction, contact) contains a refused keyword, matched
                       in the forms of ``consent.text.match_forms`` (format characters, widths,
                       accents, case and look-alike letters folded)
5. ``case_reference``   no case reference, and the owner requires one
6. ``legal_basis``      the legal basis is not one the owner accepts
7. ``window``           the window is wider than the owner allows
8. ``rate``             the requester already asked too often in the last 24 hours

Keys on ``allowed_keys`` (people the owner knows, such as a neighbour) skip rules 2 to 6; the block
list, the window and the rate limit apply to everyone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consent.models import (
    CATEGORIES,
    LEGAL_BASES,
    MAX_WINDOW_S,
    REQUESTER_KINDS,
    ConsentRequest,
    Decision,
    PastRequest,
)
from consent.text import match_forms

__all__ = ["DEFAULT_POLICY", "RULES", "Policy", "decide"]

RULES = (
    "blocked_key",
    "requester_kind",
    "category",
    "reason_keyword",
    "case_reference",
    "legal_basis",
    "window",
    "rate",
)
_DAY_S = 86400
_MAX_KEYWORDS = 100  # bounds the work of matching a request
_MAX_KEYS = 1000


@dataclass(frozen=True, slots=True)
class Policy:
    """The owner's rules for refusing requests before the owner is asked."""

    refused_kinds: frozenset[str] = frozenset()
    refused_categories: frozenset[str] = frozenset()
    refused_keywords: tuple[str, ...] = ()
    require_case_reference: bool = False
    allowed_legal_bases: frozenset[str] = frozenset(LEGAL_BASES)
    blocked_keys: frozenset[str] = frozenset()
    allowed_keys: frozenset[str] = frozenset()
    max_window_s: int = MAX_WINDOW_S
    max_requests_per_day: int = 10
    _keyword_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _keywords: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _subset("refused_kinds", self.refused_kinds, REQUESTER_KINDS)
        _subset("refused_categories", self.refused_categories, CATEGORIES)
        _subset("allowed_legal_bases", self.allowed_legal_bases, LEGAL_BASES)
        if len(self.refused_keywords) > _MAX_KEYWORDS:
            raise ValueError(f"refused_keywords must hold at most {_MAX_KEYWORDS} words")
        for word in self.refused_keywords:
            if not isinstance(word, str) or not 2 <= len(word) <= 64:
                raise ValueError(f"each refused keyword must be 2 to 64 characters, got {word!r}")
        for name in ("blocked_keys", "allowed_keys"):
            keys = getattr(self, name)
            if len(keys) > _MAX_KEYS or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"{name} must be at most {_MAX_KEYS} key id strings")
        if self.blocked_keys & self.allowed_keys:
            raise ValueError("a key must not be both blocked and allowed")
        if not isinstance(self.require_case_reference, bool):
            raise ValueError("require_case_reference must be true or false")
        if not _is_int(self.max_window_s) or not 60 <= self.max_window_s <= MAX_WINDOW_S:
            raise ValueError(
                f"max_window_s must be 60 to {MAX_WINDOW_S}, got {self.max_window_s!r}"
            )
        if not _is_int(self.max_requests_per_day) or not 1 <= self.max_requests_per_day <= 1000:
            raise ValueError(
                f"max_requests_per_day must be 1 to 1000, got {self.max_requests_per_day!r}"
            )
        folded: dict[str, str] = {}
        for word in self.refused_keywords:
            form = match_forms(word)[0]
            if len(form) < 2:
                raise ValueError(f"refused keyword {word!r} must keep 2 visible characters")
            folded.setdefault(form, word)
        object.__setattr__(self, "_keywords", folded)
        if folded:
            words = "|".join(re.escape(w) for w in sorted(folded, key=len, reverse=True))
            # Match at word starts so "protest" also catches "protesters" but not "contest".
            object.__setattr__(self, "_keyword_re", re.compile(rf"\b(?:{words})"))

    def to_json(self) -> dict[str, Any]:
        return {
            "refused_kinds": sorted(self.refused_kinds),
            "refused_categories": sorted(self.refused_categories),
            "refused_keywords": list(self.refused_keywords),
            "require_case_reference": self.require_case_reference,
            "allowed_legal_bases": sorted(self.allowed_legal_bases),
            "blocked_keys": sorted(self.blocked_keys),
            "allowed_keys": sorted(self.allowed_keys),
            "max_window_s": self.max_window_s,
            "max_requests_per_day": self.max_requests_per_day,
        }

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        expected = set(cls().to_json())
        if not isinstance(data, dict) or set(data) != expected:
            raise ValueError(f"policy must be an object with exactly {', '.join(sorted(expected))}")
        for name in (
            "refused_kinds",
            "refused_categories",
            "refused_keywords",
            "allowed_legal_bases",
            "blocked_keys",
            "allowed_keys",
        ):
            if not isinstance(data[name], list):
                raise ValueError(f"{name} must be a list")
        return cls(
            refused_kinds=frozenset(data["refused_kinds"]),
            refused_categories=frozenset(data["refused_categories"]),
            refused_keywords=tuple(data["refused_keywords"]),
            require_case_reference=data["require_case_reference"],
            allowed_legal_bases=frozenset(data["allowed_legal_bases"]),
            blocked_keys=frozenset(data["blocked_keys"]),
            allowed_keys=frozenset(data["allowed_keys"]),
            max_window_s=data["max_window_s"],
            max_requests_per_day=data["max_requests_per_day"],
        )


def decide(
    request: ConsentRequest, policy: Policy, history: Sequence[PastRequest], now: int
) -> Decision:
    """Decline ``request`` with the first rule that refuses it, or say to ask the owner.

    ``history`` holds earlier requests received by this device (not counting ``request``).
    """
    kid = request.requester_key_id
    if kid in policy.blocked_keys:
        return Decision.decline("blocked_key", "the owner has blocked this requester")
    if kid not in policy.allowed_keys:
        refusal = _content_rules(request, policy)
        if refusal is not None:
            return refusal
    if request.window_s > policy.max_window_s:
        return Decision.decline(
            "window",
            f"the window is {request.window_s} s; the owner accepts at most {policy.max_window_s} s",
        )
    recent = sum(1 for p in history if p.requester_key_id == kid and now - p.received_s < _DAY_S)
    if recent >= policy.max_requests_per_day:
        return Decision.decline(
            "rate",
            f"this requester already sent {recent} requests in 24 h; "
            f"the owner accepts at most {policy.max_requests_per_day}",
        )
    return Decision.ask()


def _content_rules(request: ConsentRequest, policy: Policy) -> Decision | None:
    kind = request.identity.kind
    if kind in policy.refused_kinds:
        return Decision.decline("requester_kind", f"the owner refuses requests from {kind}")
    if request.category in policy.refused_categories:
        return Decision.decline("category", f"the owner refuses requests about {request.category}")
    if policy._keyword_re is not None:
        refusal = _keyword_rule(request, policy, policy._keyword_re)
        if refusal is not None:
            return refusal
    if policy.require_case_reference and not request.case_reference.strip():
        return Decision.decline("case_reference", "the owner requires a case reference")
    if request.legal_basis not in policy.allowed_legal_bases:
        return Decision.decline(
            "legal_basis", f"the owner does not accept the legal basis {request.legal_basis}"
        )
    return None


def _keyword_rule(
    request: ConsentRequest, policy: Policy, pattern: re.Pattern[str]
) -> Decision | None:
    """Search every field a requester writes; the reason names the owner's keyword (never the
    requester's text) and the field."""
    who = request.identity
    fields = (
        ("reason", request.reason),
        ("detail", request.detail),
        ("case reference", request.case_reference),
        ("name", who.name),
        ("organisation", who.organisation),
        ("jurisdiction", who.jurisdiction),
        ("contact", who.contact),
    )
    for label, text in fields:
        for form in match_forms(text):
            match = pattern.search(form)
            if match is not None:
                keyword = policy._keywords[match.group(0)]
                return Decision.decline(
                    "reason_keyword",
                    f"the owner refuses requests that mention {keyword!r} (in the {label})",
                )
    return None


def _subset(name: str, values: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(values, frozenset) or not values <= set(allowed):
        raise ValueError(f"{name} must be a set drawn from {', '.join(allowed)}, got {values!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


DEFAULT_POLICY = Policy(
    refused_kinds=frozenset({"federal_agency"}),
    refused_categories=frozenset(),
    refused_keywords=("immigration", "deportation", "protest", "abortion"),
    require_case_reference=True,
    allowed_legal_bases=frozenset(LEGAL_BASES),
    blocked_keys=frozenset(),
    allowed_keys=frozenset(),
    max_window_s=4 * 3600,
    max_requests_per_day=3,
)
"""The policy a new device starts with; docs/policy.md says why each choice was made."""
