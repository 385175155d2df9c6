"""Requester text cannot slip past the keyword rule or reach the owner's terminal as controls.

Keywords are matched after NFKC, with format characters (soft hyphen, zero-width space) removed,
accents dropped, case folded and look-alike letters of other scripts folded to Latin, in every
free-text field a requester writes. Control and bidirectional-formatting characters are refused
when a request is signed and when it is submitted, naming the field."""

from __future__ import annotations

import dataclasses
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent._policy import DEFAULT_POLICY, Policy, decide
from consent.errors import RequestInvalid
from consent.models import ConsentRequest
from consent.requests import verify_request
from consent.text import escape, match_forms, unsafe_character
from crypto.keys import KeyBundle
from tests.consent.kit import IDENTITY, NOW, World, make_request

IDENTITY_FIELDS = ("name", "organisation", "jurisdiction", "contact")
REQUEST_FIELDS = ("reason", "detail", "case_reference")


@pytest.fixture(scope="module")
def base(requester: KeyBundle) -> ConsentRequest:
    return verify_request(make_request(requester), NOW)


def _with(request: ConsentRequest, field: str, value: str) -> ConsentRequest:
    if field in IDENTITY_FIELDS:
        identity = dataclasses.replace(request.identity, **{field: value})
        return dataclasses.replace(request, identity=identity)
    return dataclasses.replace(request, **{field: value})


EVASIONS = [
    ("soft hyphen", "reason", "Check the imm\u00adigration status of a visitor"),
    ("zero-width space", "reason", "Check the immi\u200bgration status of a visitor"),
    ("word joiner", "detail", "im\u2060mi\u2060gra\u2060tion"),
    ("Cyrillic look-alikes", "reason", "Check the \u0456mm\u0456gr\u0430t\u0456\u043en status"),
    ("Greek omicron", "reason", "Check the immigrati\u03bfn status"),
    ("Cyrillic capitals", "reason", "IMMIGR\u0410TI\u041eN CHECK"),
    ("fullwidth", "reason", "\uff49\uff4d\uff4d\uff49\uff47\uff52\uff41\uff54\uff49\uff4f\uff4e"),
    ("mathematical letters", "reason", "\U0001d422\U0001d426\U0001d426igration"),
    ("combining accent", "reason", "i\u0301mmigration"),
    ("keyword in organisation", "organisation", "Immigration and Customs Enforcement"),
    ("keyword in name", "name", "Deportation Unit 4"),
    ("keyword in jurisdiction", "jurisdiction", "Federal immigration district"),
    ("keyword in contact", "contact", "tips@deportation.example"),
    ("disguised in organisation", "organisation", "Imm\u200bigr\u0430tion Office"),
]


@pytest.mark.parametrize(("what", "field", "text"), EVASIONS, ids=[e[0] for e in EVASIONS])
def test_evasion_is_refused_by_the_keyword_rule(
    base: ConsentRequest, what: str, field: str, text: str
) -> None:
    policy = Policy(refused_keywords=("immigration", "deportation"))
    decision = decide(_with(base, field, text), policy, [], NOW)
    assert decision.rule == "reason_keyword", what
    label = field.replace("_", " ")
    assert decision.reason.endswith(f"' (in the {label})")


def test_the_default_policy_catches_an_evasion_in_the_organisation(base: ConsentRequest) -> None:
    request = _with(base, "organisation", "Office of Imm\u00adigration Enforcement")
    decision = decide(request, DEFAULT_POLICY, [], NOW)
    assert (decision.rule, decision.reason) == (
        "reason_keyword",
        "the owner refuses requests that mention 'immigration' (in the organisation)",
    )


@pytest.mark.parametrize(
    "text",
    ["A contest in the street", "Parcel taken from the porch", "Protection of the garden"],
)
def test_ordinary_words_still_pass(base: ConsentRequest, text: str) -> None:
    policy = Policy(refused_keywords=("protest", "immigration"))
    assert not decide(_with(base, "reason", text), policy, [], NOW).declined


def test_match_forms_fold_case_width_format_and_look_alikes() -> None:
    assert "immigration" in match_forms("\u0406MM\u0399GRATION")  # Cyrillic and Greek capitals
    assert "immigration" in match_forms("imm\u00adigr\u0430tion")
    assert "protest" in match_forms("\uff30\uff32\uff2f\uff34\uff25\uff33\uff34")


HOSTILE = [
    ("newline", "\n", "U+000A"),
    ("carriage return", "\r", "U+000D"),
    ("tab", "\t", "U+0009"),
    ("escape", "\x1b[2J", "U+001B"),
    ("right-to-left override", "\u202e", "U+202E"),
    ("right-to-left isolate", "\u2067", "U+2067"),
    ("right-to-left mark", "\u200f", "U+200F"),
    ("line separator", "\u2028", "U+2028"),
]


@pytest.mark.parametrize("field", IDENTITY_FIELDS + REQUEST_FIELDS)
@pytest.mark.parametrize(("what", "char", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_control_and_bidi_characters_are_refused_at_submission(
    world: World, requester: KeyBundle, field: str, what: str, char: str, code: str
) -> None:
    """The device refuses the request (and records the refusal), naming the field."""
    token = _hostile_token(requester, field, f"Springfield{char}PD")
    with pytest.raises(RequestInvalid) as info:
        world.desk.submit_request(token, NOW)  # type: ignore[attr-defined]
    label = field.replace("_", " ")
    assert str(info.value) == (
        f"request refused: the {label} contains {code} ({_name(code)}); control and "
        "bidirectional-formatting characters are not allowed in requests"
    )


@pytest.mark.parametrize("field", IDENTITY_FIELDS + REQUEST_FIELDS)
def test_the_requester_side_refuses_before_signing(requester: KeyBundle, field: str) -> None:
    label = field.replace("_", " ")
    with pytest.raises(ValueError, match=f"^the {label} contains U\\+202E "):
        _signed(requester, field, "Springfield\u202ePD")


def test_escape_shows_what_would_hide_or_move_text() -> None:
    assert escape("Officer\nDana\u202eSPD\u200b\x1b[31m") == (
        "Officer\\nDana\\u202eSPD\\u200b\\x1b[31m"
    )
    assert escape("Agent Müller, Zoë ½ 警察") == "Agent Müller, Zoë ½ 警察"
    assert unsafe_character("plain text, é and 警察") is None


INVISIBLE = ["\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\U000e0041"]


@given(
    prefix=st.text(max_size=20),
    cut=st.integers(0, len("immigration")),
    invisible=st.lists(st.sampled_from(INVISIBLE), min_size=1, max_size=3),
)
def test_no_format_character_hides_a_keyword(prefix: str, cut: int, invisible: list[str]) -> None:
    word = "immigration"
    text = f"{prefix} {word[:cut]}{''.join(invisible)}{word[cut:]}"
    assert any(re.search(r"\bimmigration", form) for form in match_forms(text))


@given(st.text())
def test_escaped_text_has_nothing_left_to_hide(text: str) -> None:
    shown = escape(text)
    assert unsafe_character(shown) is None
    assert not any(unicodedata.category(c) in ("Cf", "Co", "Cn") for c in shown)
    if shown == text:
        assert unsafe_character(text) is None


def _name(code: str) -> str:
    char = chr(int(code[2:], 16))
    return unicodedata.name(char, "control character")


def _signed(requester: KeyBundle, field: str, value: str) -> str:
    if field in IDENTITY_FIELDS:
        return make_request(requester, identity=dataclasses.replace(IDENTITY, **{field: value}))
    return make_request(requester, **{field: value})


def _hostile_token(requester: KeyBundle, field: str, value: str) -> str:
    """A request signed with the text in it, as a requester with its own tools would sign it."""
    from consent import jws
    from consent.requests import REQUEST_TYP, _claims

    claims = _claims(verify_request(make_request(requester), NOW))
    if field in IDENTITY_FIELDS:
        claims["requester"][field] = value
    else:
        claims[field] = value
    return jws.sign_compact(
        claims, typ=REQUEST_TYP, kid=requester.key_id, sign=requester.signing_key.sign
    )
