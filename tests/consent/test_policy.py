"""Owner policy: one table row per rule, allowed keys, the default policy, signed policy documents."""

from __future__ import annotations

import dataclasses
import json

import pytest

from consent._policy import DEFAULT_POLICY, RULES, Policy, decide
from consent.errors import PolicyInvalid
from consent.models import ConsentRequest, PairedOwner, PastRequest
from consent.policy_doc import sign_policy, verify_policy
from consent.requests import verify_request
from crypto.keys import KeyBundle
from tests.consent.kit import HOUR, NOW, make_request


@pytest.fixture(scope="module")
def base(requester: KeyBundle) -> ConsentRequest:
    return verify_request(make_request(requester), NOW)


def _with(request: ConsentRequest, **changes: object) -> ConsentRequest:
    identity_changes = {k: changes.pop(k) for k in ("kind",) if k in changes}
    identity = dataclasses.replace(request.identity, **identity_changes)
    return dataclasses.replace(request, identity=identity, **changes)


OPEN = Policy()  # refuses nothing: each row adds one rule to it

# (rule, policy, request changes, history size, expected reason)
CASES = [
    (
        "blocked_key",
        lambda kid: dataclasses.replace(OPEN, blocked_keys=frozenset({kid})),
        {},
        0,
        "the owner has blocked this requester",
    ),
    (
        "requester_kind",
        lambda kid: dataclasses.replace(OPEN, refused_kinds=frozenset({"insurer"})),
        {"kind": "insurer"},
        0,
        "the owner refuses requests from insurer",
    ),
    (
        "category",
        lambda kid: dataclasses.replace(OPEN, refused_categories=frozenset({"missing_pet"})),
        {"category": "missing_pet"},
        0,
        "the owner refuses requests about missing_pet",
    ),
    (
        "reason_keyword",
        lambda kid: Policy(refused_keywords=("protest",)),
        {"reason": "Identify PROTESTERS who walked down the street."},
        0,
        "the owner refuses requests that mention 'protest' (in the reason)",
    ),
    (
        "case_reference",
        lambda kid: Policy(require_case_reference=True),
        {"case_reference": "  "},
        0,
        "the owner requires a case reference",
    ),
    (
        "legal_basis",
        lambda kid: Policy(allowed_legal_bases=frozenset({"warrant"})),
        {"legal_basis": "voluntary"},
        0,
        "the owner does not accept the legal basis voluntary",
    ),
    (
        "window",
        lambda kid: Policy(max_window_s=1800),
        {},
        0,
        "the window is 3600 s; the owner accepts at most 1800 s",
    ),
    (
        "rate",
        lambda kid: Policy(max_requests_per_day=2),
        {},
        2,
        "this requester already sent 2 requests in 24 h; the owner accepts at most 2",
    ),
]


def test_every_rule_has_a_case() -> None:
    assert [c[0] for c in CASES] == list(RULES)


@pytest.mark.parametrize(("rule", "make_policy", "changes", "history", "reason"), CASES)
def test_rule_declines(
    base: ConsentRequest, rule: str, make_policy, changes: dict, history: int, reason: str
) -> None:
    policy = make_policy(base.requester_key_id)
    request = _with(base, **changes)
    past = [PastRequest(base.requester_key_id, NOW - 60 * (i + 1)) for i in range(history)]
    decision = decide(request, policy, past, NOW)
    assert (decision.action, decision.rule, decision.reason) == ("decline", rule, reason)
    # The same request passes the open policy: the rule, not the request, declined it.
    assert decide(request, OPEN, past, NOW).action == "ask"


def test_keyword_matches_word_starts_only(base: ConsentRequest) -> None:
    policy = Policy(refused_keywords=("protest",))
    assert decide(_with(base, reason="a contest winner's car"), policy, [], NOW).action == "ask"
    assert decide(_with(base, detail="Protest march"), policy, [], NOW).rule == "reason_keyword"


def test_rate_counts_only_this_requester_in_the_last_day(base: ConsentRequest) -> None:
    policy = Policy(max_requests_per_day=1)
    others = [PastRequest("someone-else", NOW - 10)]
    old = [PastRequest(base.requester_key_id, NOW - 86400)]
    assert decide(base, policy, others + old, NOW).action == "ask"
    recent = [PastRequest(base.requester_key_id, NOW - 86399)]
    assert decide(base, policy, recent, NOW).rule == "rate"


def test_allowed_key_skips_content_rules_but_not_window_rate_or_block(
    base: ConsentRequest,
) -> None:
    kid = base.requester_key_id
    neighbour = _with(base, kind="federal_agency", case_reference="", category="other")
    policy = dataclasses.replace(DEFAULT_POLICY, allowed_keys=frozenset({kid}))
    assert decide(neighbour, policy, [], NOW).action == "ask"
    wide = _with(neighbour, window_start_s=NOW - 10 * HOUR, window_end_s=NOW - HOUR)
    assert decide(wide, policy, [], NOW).rule == "window"
    with pytest.raises(ValueError, match="a key must not be both blocked and allowed"):
        dataclasses.replace(policy, blocked_keys=frozenset({kid}))


def test_first_failing_rule_wins(base: ConsentRequest) -> None:
    request = _with(base, kind="federal_agency", case_reference="")
    assert decide(request, DEFAULT_POLICY, [], NOW).rule == "requester_kind"


class TestDefaultPolicy:
    """The default documented in docs/policy.md (and the README)."""

    def test_values(self) -> None:
        assert DEFAULT_POLICY.to_json() == {
            "refused_kinds": ["federal_agency"],
            "refused_categories": [],
            "refused_keywords": ["immigration", "deportation", "protest", "abortion"],
            "require_case_reference": True,
            "allowed_legal_bases": ["emergency", "subpoena", "voluntary", "warrant"],
            "blocked_keys": [],
            "allowed_keys": [],
            "max_window_s": 14400,
            "max_requests_per_day": 3,
        }

    def test_docs_state_the_tested_values(self) -> None:
        from pathlib import Path

        text = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
        block = text.split("```json\n", 1)[1].split("```", 1)[0]
        assert json.loads(block) == DEFAULT_POLICY.to_json()

    @pytest.mark.parametrize(
        ("changes", "rule"),
        [
            ({"kind": "federal_agency"}, "requester_kind"),
            ({"case_reference": ""}, "case_reference"),
            ({"reason": "Immigration status check of a resident"}, "reason_keyword"),
            ({"window_start_s": NOW - 7 * HOUR, "window_end_s": NOW - 2 * HOUR}, "window"),
        ],
    )
    def test_refuses(self, base: ConsentRequest, changes: dict, rule: str) -> None:
        assert decide(_with(base, **changes), DEFAULT_POLICY, [], NOW).rule == rule

    @pytest.mark.parametrize(
        "kind", ["neighbour", "local_agency", "state_agency", "insurer", "other"]
    )
    def test_asks_owner_for_narrow_requests(self, base: ConsentRequest, kind: str) -> None:
        assert decide(_with(base, kind=kind), DEFAULT_POLICY, [], NOW).action == "ask"

    def test_fourth_request_in_a_day_declined(self, base: ConsentRequest) -> None:
        past = [PastRequest(base.requester_key_id, NOW - 100 * i) for i in range(1, 4)]
        assert decide(base, DEFAULT_POLICY, past[:2], NOW).action == "ask"
        assert decide(base, DEFAULT_POLICY, past, NOW).rule == "rate"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"refused_kinds": frozenset({"aliens"})}, "refused_kinds must be a set drawn from"),
        ({"max_window_s": 50000}, "max_window_s must be 60 to 43200, got 50000"),
        ({"max_requests_per_day": 0}, "max_requests_per_day must be 1 to 1000, got 0"),
        ({"refused_keywords": ("a",)}, "each refused keyword must be 2 to 64 characters"),
    ],
)
def test_invalid_policy(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**kwargs)


def test_policy_json_round_trip() -> None:
    assert Policy.from_json(DEFAULT_POLICY.to_json()) == DEFAULT_POLICY


class TestSignedPolicy:
    def test_round_trip(self, owner: KeyBundle) -> None:
        doc = sign_policy(DEFAULT_POLICY, owner.signing_key, device_id="dev1", issued_at_s=NOW)
        signed = verify_policy(doc, [PairedOwner.from_public(owner.signing_key.public_key())])
        assert signed.policy == DEFAULT_POLICY
        assert (signed.owner_key_id, signed.device_id, signed.issued_at_s) == (
            owner.key_id,
            "dev1",
            NOW,
        )

    def test_unpaired_signer_refused(self, owner: KeyBundle, requester: KeyBundle) -> None:
        doc = sign_policy(OPEN, requester.signing_key, device_id="dev1", issued_at_s=NOW)
        paired = [PairedOwner.from_public(owner.signing_key.public_key())]
        with pytest.raises(PolicyInvalid) as info:
            verify_policy(doc, paired)
        assert str(info.value) == (
            f"policy is signed by {requester.key_id!r}, which is not a current owner"
        )

    def test_edited_policy_refused(self, owner: KeyBundle) -> None:
        doc = json.loads(
            sign_policy(DEFAULT_POLICY, owner.signing_key, device_id="dev1", issued_at_s=NOW)
        )
        doc["body"]["policy"]["refused_kinds"] = []
        paired = [PairedOwner.from_public(owner.signing_key.public_key())]
        with pytest.raises(PolicyInvalid) as info:
            verify_policy(json.dumps(doc), paired)
        assert str(info.value) == (
            "policy document refused: signature does not verify: the document was altered"
        )
