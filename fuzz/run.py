"""Coverage-guided fuzzing of the parsers of untrusted input, with atheris (libFuzzer).

The targets are the fuzz tests of ``tests/fuzz``, with their oracle (a value or a documented
error, bounded memory). A byte- or text-level target (``tests.fuzz.kit.bytes_target``) gets
libFuzzer's bytes directly, its valid seeds as the starting corpus; a structured one is driven
through Hypothesis's ``fuzz_one_input``. Needs ``pip install -e '.[fuzz]'``.

    python fuzz/run.py --list
    python fuzz/run.py --seconds 300 test_fuzz_age:test_header_parse   # one target, by hand
    python fuzz/run.py --ci --seconds 60        # every byte/text target in one run (.ci/run)
    python fuzz/run.py --ci fuzz-out/crash-...  # replay a crash (the first byte picks the target)

A crash leaves ``crash-*`` (the input) in ``--artifacts`` (default ``fuzz-out/``); replaying it
shows the exception. Each crash becomes a named regression test next to the parser's tests.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUZZ_TESTS = REPO / "tests" / "fuzz"
_PACKAGES = ["crypto", "consent", "hub", "hardware"]


def _modules() -> list[str]:
    return [p.stem for p in sorted(FUZZ_TESTS.glob("test_fuzz_*.py"))]


def targets() -> list[str]:
    """Every fuzz test, as ``module:function``."""
    found = []
    for module in _modules():
        text = (FUZZ_TESTS / f"{module}.py").read_text(encoding="utf-8")
        found += [
            f"{module}:{line[4:].split('(')[0]}"
            for line in text.splitlines()
            if line.startswith("def test_")
        ]
    return found


def _import_instrumented(modules: list[str]) -> dict[str, object]:
    """Import the fuzz tests with our packages instrumented for coverage; the byte targets."""
    import atheris
    from hypothesis import settings

    # No example database and no deadline: libFuzzer keeps the corpus and watches for hangs.
    settings.register_profile("atheris", database=None, deadline=None)
    settings.load_profile("atheris")
    sys.path.insert(0, str(REPO))
    with atheris.instrument_imports(include=_PACKAGES):
        for package in _PACKAGES:
            importlib.import_module(package)
        loaded = {m: importlib.import_module(f"tests.fuzz.{m}") for m in modules}
    from tests.fuzz.kit import BYTE_TARGETS

    return {"modules": loaded, "bytes": BYTE_TARGETS}


def _fuzz(
    one_input: Callable[[bytes], None],
    seeds: list[bytes],
    seconds: int,
    artifacts: Path,
    inputs: list[str],
) -> None:
    import atheris

    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="doorward-corpus-") as corpus:
        for number, seed in enumerate(seeds):
            (Path(corpus) / f"seed-{number}").write_bytes(seed)
        args = [
            sys.argv[0],
            f"-max_total_time={seconds}",
            "-timeout=30",  # one input running this long is a hang
            "-rss_limit_mb=3072",
            "-max_len=65536",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
            *(inputs or [corpus]),
        ]
        atheris.Setup(args, one_input)
        atheris.Fuzz()


def run_target(target: str, seconds: int, artifacts: Path, inputs: list[str]) -> None:
    """Fuzz one target (never returns: libFuzzer exits)."""
    module, function = target.split(":")
    loaded = _import_instrumented([module])
    byte_targets = loaded["bytes"]
    if target in byte_targets:  # type: ignore[operator]
        found = byte_targets[target]  # type: ignore[index]
        _fuzz(found.run, list(found.seeds), seconds, artifacts, inputs)
    test = getattr(loaded["modules"][module], function)  # type: ignore[index]
    # Hypothesis needs some bytes before it draws anything: start from random buffers.
    rng = random.Random(0)
    seeds = [rng.randbytes(size) for size in (256, 1024, 4096, 16384)]
    _fuzz(test.hypothesis.fuzz_one_input, seeds, seconds, artifacts, inputs)


def run_all_bytes(seconds: int, artifacts: Path, inputs: list[str]) -> None:
    """Fuzz every byte/text target in one process: the first byte of an input picks the target."""
    loaded = _import_instrumented(_modules())
    byte_targets = loaded["bytes"]
    names = sorted(byte_targets)  # type: ignore[call-overload]
    chosen = [byte_targets[name] for name in names]  # type: ignore[index]
    print(f"fuzz: {len(names)} targets: {', '.join(names)}", file=sys.stderr)

    def one_input(data: bytes) -> None:
        if data:
            chosen[data[0] % len(chosen)].run(data[1:])

    seeds = [bytes([n]) + seed for n, target in enumerate(chosen) for seed in target.seeds]
    _fuzz(one_input, seeds, seconds, artifacts, inputs)


def main() -> int:
    """Parse the command line and fuzz."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target", nargs="?", help="module:function, e.g. test_fuzz_age:test_header_parse"
    )
    parser.add_argument("inputs", nargs="*", help="crash files to replay, or a corpus folder")
    parser.add_argument("--seconds", type=int, default=60, help="time budget")
    parser.add_argument("--artifacts", type=Path, default=REPO / "fuzz-out")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--ci", action="store_true", help="every byte/text target in one run")
    options = parser.parse_args()
    if options.list:
        print("\n".join(targets()))
        return 0
    artifacts = options.artifacts.resolve()
    if options.ci:
        inputs = [options.target, *options.inputs] if options.target else []
        run_all_bytes(options.seconds, artifacts, inputs)
    elif options.target is None:
        parser.error("name a target (see --list) or pass --ci")
    else:
        run_target(options.target, options.seconds, artifacts, options.inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
