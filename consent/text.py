"""Text a stranger writes: how it is checked, matched against the owner's keywords and shown.

Three questions, one module, so they agree on which characters matter:

- :func:`unsafe_character` — would this text move or hide other text on a terminal? Control
  characters (newline and tab included), line and paragraph separators, lone surrogates and the
  bidirectional-formatting controls (UAX #9 §2: embeddings, overrides, isolates and the marks)
  are refused in requests when they are signed and when they are submitted.
- :func:`match_forms` — the forms keyword rules match in. A keyword must not slip past the rule
  with a soft hyphen, a zero-width space, another width, an accent or a look-alike letter of
  another script: text is NFKC-normalised, format characters (category Cf) removed, combining
  marks dropped, case folded, and look-alike letters folded to the Latin letter they imitate.
- :func:`escape` — what a terminal may print: everything above, other format and private-use
  characters and unassigned code points are written as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.

The look-alike table is ours, a subset of the Unicode TS #39 confusables that map single letters of
Cyrillic, Greek, Armenian, Cherokee, Lisu, Coptic and Latin extensions and IPA to a Latin letter
(``confusables.txt``, type MA); mathematical and fullwidth letters need none, NFKC folds them.
Capital-I look-alikes fold to ``I`` (TS #39: ``l``), as matching is caseless. It
is not the full TS #39 skeleton: no maintained Python library offers one, and the skeleton folds
ASCII too (``m`` to ``rn``), which a keyword rule does not need since both sides are folded alike.
Leetspeak (``1`` for ``i``) and spaced-out letters are not folded: keywords stay a blunt tool.
"""

from __future__ import annotations

import unicodedata

__all__ = ["escape", "match_forms", "unsafe_character"]

# UAX #9 "Bidi_Control": ALM, LRM, RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_ESCAPED_CATEGORIES = _REFUSED_CATEGORIES | {"Cf", "Co", "Cn"}

# Look-alike letter -> the Latin letter it imitates (same case; folded afterwards).
_LOOKALIKES = {
    "a": "\u0430\u0251\u03b1",  # Cyrillic a, Latin alpha, Greek alpha
    "A": "\u0410\u0391\u13aa\ua4ee",
    "B": "\u0412\u0392\u13f4\ua4d0",
    "b": "\u042c\u13cf\u1472",  # Cyrillic soft sign (capital), Cherokee, Canadian syllabics
    "c": "\u0441\u03f2\u1d04\u2ca5",
    "C": "\u0421\u03f9\u13df\ua4da\u2ca4",
    "d": "\u0501\u13e7\ua4d2",
    "D": "\u13a0\ua4d3",
    "e": "\u0435\u04bd",
    "E": "\u0415\u0395\u13ac\ua4f0",
    "F": "\u03dc\ua4dd",
    "g": "\u0261\u0581\u018d",
    "G": "\u050c\u13c0\u13f3\ua4d6",
    "h": "\u04bb\u0570\u13c2",
    "H": "\u041d\u0397\u13bb\ua4e7\u2c8e",
    "i": "\u0456\u03b9\u0131\u0269\u026a\u13a5\ua647\u04cf",
    "I": "\u0406\u0399\u04c0\u2c92",
    "j": "\u0458\u03f3",
    "J": "\u0408\u037f\u13ab\ua4d9",
    "K": "\u041a\u039a\u13e6\ua4d7\u2c94",
    "l": "\u01c0\u0196",
    "L": "\u13de\ua4e1\u2cd0",
    "M": "\u041c\u039c\u03fa\u13b7\ua4df\u2c98",
    "n": "\u0578\u057c",
    "N": "\u039d\ua4e0\u2c9a",
    "o": "\u043e\u03bf\u03c3\u0585\u1d0f\u2c9f",
    "O": "\u041e\u039f\u0555\ua4f3\u2c9e",
    "p": "\u0440\u03c1\u03f1\u2ca3",
    "P": "\u0420\u03a1\u13e2\ua4d1\u2ca2",
    "q": "\u051b\u0563\u0566",
    "r": "\u0433\u1d26\u2c85",
    "R": "\u13a1\u13d2\ua4e3\u01a6",
    "s": "\u0455\ua731\u01bd",
    "S": "\u0405\u054f\u13d5\u13da\ua4e2",
    "T": "\u0422\u03a4\u13a2\ua4d4\u2ca6",
    "u": "\u057d\u03c5\u1d1c\u028b",
    "U": "\u054d\ua4f4",
    "v": "\u03bd\u0475\u1d20",
    "V": "\u0474\u13d9\ua4e6",
    "w": "\u051d\u0461\u0561\u026f\u1d21",
    "W": "\u051c\u13b3\u13d4\ua4ea",
    "x": "\u0445\u00d7",
    "X": "\u0425\u03a7\ua4eb\u2cac",
    "y": "\u0443\u04af\u03b3\u028f\u10e7",
    "Y": "\u0423\u04ae\u03a5\u03d2\u13a9\u13bd\ua4ec\u2ca8",
    "z": "\u1d22",
    "Z": "\u0396\u13c3\ua4dc",
}
_FOLD = str.maketrans({c: latin for latin, chars in _LOOKALIKES.items() for c in chars})


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` that may not appear in a request, described as
    ``U+202E (RIGHT-TO-LEFT OVERRIDE)``; None when there is none."""
    for c in text:
        if c in _BIDI_CONTROLS or unicodedata.category(c) in _REFUSED_CATEGORIES:
            return f"U+{ord(c):04X} ({unicodedata.name(c, 'control character')})"
    return None


def match_forms(text: str) -> tuple[str, ...]:
    """The forms of ``text`` a keyword is searched in (one or two; see the module docstring).

    Look-alikes are folded both before and after case folding, because some letters imitate a
    Latin letter in one case only (Cyrillic capital ve looks like B, its small letter does not)."""
    base = _strip(text)
    folded = base.casefold().translate(_FOLD)
    other = base.translate(_FOLD).casefold()
    return (folded,) if other == folded else (folded, other)


def escape(text: str) -> str:
    """``text`` safe to print on a terminal: characters that could move, hide or recolour text
    are written as escapes (``\\n``, ``\\x1b``, ``\\u202e``); everything else is kept."""
    if not any(_escaped(c) for c in text):
        return text
    return "".join(_escape_one(c) if _escaped(c) else c for c in text)


def _strip(text: str) -> str:
    """NFKC, without format characters, then without combining marks."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _escaped(c: str) -> bool:
    return c in _BIDI_CONTROLS or unicodedata.category(c) in _ESCAPED_CATEGORIES


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
