"""Fuzzing kit: inputs made by mutating valid encodings, and the oracle every parser must meet.

A fuzz target starts from VALID encoded objects (seeds) and draws either a seed as it is, a
mutant of one (bit flips, interesting bytes, deletions, insertions, duplicated or spliced ranges,
truncation, dictionary tokens) or raw random bytes. The oracle, :func:`parse_or_refuse`, runs
the parser and lets through only a return value or one of the error types the parser documents;
any other exception is a bug. It also bounds the memory the parser allocates (Python objects,
traced with ``tracemalloc``), so an input cannot make it hold far more than it was given.

Hangs are caught by pytest-timeout on each test (``tests/fuzz`` modules set it); the example
count per target comes from the Hypothesis profile that ``tests/conftest.py`` loads (``ci`` when
``CI=true``). ``fuzz/run.py`` drives the same tests under atheris, coverage-guided.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T = TypeVar("T")

# What a parser may allocate beyond a multiple of its input before it counts as unbounded.
MEMORY_FLOOR_BYTES = 32 * 1024 * 1024
MEMORY_PER_INPUT_BYTE = 64

# Bytes that change a parser's path when they land in the right place.
_INTERESTING = (
    b"\x00",
    b"\xff",
    b"\n",
    b"\r\n",
    b" ",
    b"\t",
    b"-",
    b"=",
    b".",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"0",
    b"9",
    b"\x80",
    b"\xc3\xa9",
    b"\xed\xa0\x80",  # a UTF-8-encoded lone surrogate
    b"\xe2\x80\x94",  # an em dash (signed-note signature lines start with one)
)
_JSON_TOKENS = (
    b"null",
    b"true",
    b"false",
    b"1.5",
    b"-0",
    b"1e999",
    b"NaN",
    b"Infinity",
    b"9" * 5000,  # past Python's int-conversion digit limit
    b"[" * 3000,  # deeper than the JSON decoder's recursion limit
    b"{}",
    b"[]",
    b'""',
    b'"\\ud800"',  # a lone surrogate, escaped
    b'"\\u0000"',
    b'"a":1,"a":2',
    b"[1,2,3]",
    b'[["x",1]]',
)


def _splice_ops() -> st.SearchStrategy[tuple[str, int, int, bytes]]:
    return st.tuples(
        st.sampled_from(
            (
                "flip",
                "set",
                "delete",
                "insert",
                "duplicate",
                "truncate",
                "token",
                "prefix",
                "splice",
            )
        ),
        st.integers(min_value=0, max_value=2**16),
        st.integers(min_value=0, max_value=64),
        st.one_of(st.sampled_from(_INTERESTING + _JSON_TOKENS), st.binary(max_size=16)),
    )


def fuzz_settings(*, share: float) -> settings:
    """Settings for one target: ``share`` times the profile's example count (cheap targets get
    more, costly ones less), no deadline (hangs are pytest-timeout's job)."""
    return settings(
        max_examples=max(1, round(settings.default.max_examples * share)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


@dataclass(frozen=True, slots=True)
class ByteTarget:
    """A check over one input, its seeds, and whether it takes text (decoded from the bytes)."""

    check: Callable[[Any], None]
    seeds: tuple[bytes, ...]
    text: bool

    def run(self, data: bytes) -> None:
        """Run the check on raw bytes (text targets decode them, bad bytes as surrogates)."""
        self.check(data.decode("utf-8", "surrogateescape") if self.text else data)


# Every byte- and text-level target, by "module:function": fuzz/run.py hands them to atheris.
BYTE_TARGETS: dict[str, ByteTarget] = {}


def bytes_target(
    seeds: Sequence[bytes], *, share: float, raw_max_size: int = 512
) -> Callable[[Callable[[bytes], None]], Any]:
    """Make ``check(data)`` a Hypothesis test over :func:`fuzz_bytes` of ``seeds`` and register
    it for coverage-guided fuzzing."""

    def wrap(check: Callable[[bytes], None]) -> Any:
        _register(check, [bytes(s) for s in seeds], text=False)
        strategy = fuzz_bytes(seeds, raw_max_size=raw_max_size)
        return fuzz_settings(share=share)(given(strategy)(check))

    return wrap


def text_target(
    seeds: Sequence[str], *, share: float, raw_max_size: int = 512
) -> Callable[[Callable[[str], None]], Any]:
    """Like :func:`bytes_target` for a check that takes text."""

    def wrap(check: Callable[[str], None]) -> Any:
        _register(check, [s.encode("utf-8", "surrogatepass") for s in seeds], text=True)
        strategy = fuzz_text(seeds, raw_max_size=raw_max_size)
        return fuzz_settings(share=share)(given(strategy)(check))

    return wrap


def _register(check: Callable[[Any], None], seeds: list[bytes], *, text: bool) -> None:
    name = f"{check.__module__.rsplit('.', 1)[-1]}:{check.__name__}"
    BYTE_TARGETS[name] = ByteTarget(check, tuple(seeds), text)


def mutate(
    data: bytes, ops: Sequence[tuple[str, int, int, bytes]], donors: Sequence[bytes]
) -> bytes:
    """Apply mutation ``ops`` (kind, position, length, bytes) to ``data``; positions wrap."""
    out = bytearray(data)
    for number, (kind, position, length, chunk) in enumerate(ops):
        at = position % (len(out) + 1)
        if kind == "flip" and out:
            out[at % len(out)] ^= 1 << (length % 8)
        elif kind == "set" and out:
            out[at % len(out)] = chunk[0] if chunk else length % 256
        elif kind == "delete":
            del out[at : at + length + 1]
        elif kind in ("insert", "token"):
            out[at:at] = chunk
        elif kind == "prefix":
            out[:0] = chunk
        elif kind == "duplicate":
            out[at:at] = out[at : at + length + 1]
        elif kind == "truncate":
            del out[at:]
        elif kind == "splice" and donors:
            donor = donors[(number + length) % len(donors)]
            cut = position % (len(donor) + 1)
            out[at:] = donor[cut:]
    return bytes(out)


def fuzz_bytes(seeds: Sequence[bytes], *, raw_max_size: int = 512) -> st.SearchStrategy[bytes]:
    """A seed as it is, a mutant of a seed, or raw random bytes."""
    seeds = list(seeds)
    mutant = st.builds(
        mutate,
        st.sampled_from(seeds),
        st.lists(_splice_ops(), min_size=1, max_size=8),
        st.just(seeds),
    )
    return st.one_of(st.sampled_from(seeds), mutant, mutant, st.binary(max_size=raw_max_size))


def fuzz_text(seeds: Sequence[str], *, raw_max_size: int = 512) -> st.SearchStrategy[str]:
    """Like :func:`fuzz_bytes` for text; undecodable bytes become lone surrogates."""
    encoded = [s.encode("utf-8", "surrogatepass") for s in seeds]
    return st.one_of(
        fuzz_bytes(encoded, raw_max_size=raw_max_size).map(
            lambda b: b.decode("utf-8", "surrogateescape")
        ),
        st.text(max_size=raw_max_size),
    )


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value Python's decoder can produce, floats and huge integers included."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=24),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _near(value: Any) -> st.SearchStrategy[Any]:
    """Values next to ``value``: what a check written with ``$``, ``\\d`` or ``<`` lets by."""
    if isinstance(value, str):
        return st.sampled_from(
            [
                value + "\n",
                " " + value,
                value + "\u200b",
                value.upper(),
                value[:-1],
                value * 2,
                value + "\x00",
                value.replace("0", "\u0660").replace("1", "\uff11"),
                "",
            ]
        )
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), None])
    if isinstance(value, int):
        return st.sampled_from(
            [value - 1, value + 1, -value, -1, 0, 2**63, float(value), str(value), True]
        )
    if isinstance(value, list):
        return st.sampled_from([[], value * 2, value[:1], [value]])
    return st.sampled_from([None, [value], str(value)])


def perturbed_json(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``valid`` with members nudged to a near value, replaced by any JSON value, removed, or
    added; sometimes deeply."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        doc = _copy(valid)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            path = _paths(doc)
            where = draw(st.sampled_from(path)) if path else ()
            parent = _at(doc, where[:-1]) if where else None
            action = draw(st.sampled_from(("near", "replace", "remove", "add")))
            if not where or parent is None:
                continue
            key = where[-1]
            if action == "near":
                parent[key] = draw(_near(parent[key]))
            elif action == "replace":
                parent[key] = draw(json_values())
            elif action == "remove" and isinstance(parent, dict):
                del parent[key]
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.text(max_size=12))] = draw(json_values())
        return doc

    return build()


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def parse_or_refuse(
    parse: Callable[[], T],
    allowed: tuple[type[BaseException], ...],
    *,
    input_size: int = 0,
) -> T | BaseException:
    """Run ``parse``; return its value or the allowed error it raised. Any other exception
    propagates (the test fails with it), and so does an allocation peak past the bound."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        try:
            result: T | BaseException = parse()
        except allowed as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    limit = MEMORY_FLOOR_BYTES + MEMORY_PER_INPUT_BYTE * input_size
    assert peak <= limit, f"parser allocated {peak} bytes for {input_size} bytes of input"
    return result
