"""Throughput of Doorward's age implementation against pyrage and the raw AEAD loop.

    python bench/crypto.py [--json] [--mib 64] [--repeat 3]

Everything runs on the same random plaintext in one process; each figure is the best of
`--repeat` runs. With --json the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyrage
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto import age

_CHUNK = 64 * 1024


class _Discard:
    """A writer that keeps nothing, so the sink costs no copies."""

    def write(self, data: bytes) -> int:
        return len(data)


def _best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure(mib: int, repeat: int) -> dict[str, float]:
    data = os.urandom(mib * 1024 * 1024)
    mb = len(data) / 1e6
    x_identity = age.X25519Identity.generate()
    x_recipient = x_identity.recipient()
    pq_identity = age.HybridIdentity.generate()
    pyrage_identity = pyrage.x25519.Identity.from_str(x_identity.to_secret_string())
    pyrage_recipient = pyrage.x25519.Recipient.from_str(str(x_recipient))
    sink = _Discard()

    def ours_encrypt(hash_payload: bool) -> None:
        enc = age.Encryptor(sink, [x_recipient], hash_payload=hash_payload)  # type: ignore[arg-type]
        enc.write(data)
        enc.close()

    def ours_encrypt_stream() -> None:
        enc = age.Encryptor(sink, [x_recipient])  # type: ignore[arg-type]
        view = memoryview(data)
        for pos in range(0, len(data), _CHUNK):
            enc.write(view[pos : pos + _CHUNK])
        enc.close()

    ciphertext = age.encrypt_bytes([x_recipient], data)

    def ours_decrypt() -> None:
        age.decrypt([x_identity], io.BytesIO(ciphertext), sink)  # type: ignore[arg-type]

    def raw_aead() -> None:
        aead = ChaCha20Poly1305(os.urandom(32))
        view = memoryview(data)
        for counter, pos in enumerate(range(0, len(data), _CHUNK)):
            aead.encrypt(counter.to_bytes(12, "big"), view[pos : pos + _CHUNK], None)

    pyrage_ciphertext = pyrage.encrypt(data, [pyrage_recipient])
    results = {
        "mib": float(mib),
        # encrypt_MBps is encryption alone, like pyrage's; the device path also hashes the
        # payload (encrypt_with_sha256_MBps), and SHA-256 on its own is sha256_MBps.
        "encrypt_MBps": mb / _best(lambda: ours_encrypt(False), repeat),
        "encrypt_with_sha256_MBps": mb / _best(lambda: ours_encrypt(True), repeat),
        "encrypt_64k_writes_with_sha256_MBps": mb / _best(ours_encrypt_stream, repeat),
        "sha256_MBps": mb / _best(lambda: hashlib.sha256(data).digest(), repeat),
        "decrypt_MBps": mb / _best(ours_decrypt, repeat),
        "pyrage_encrypt_MBps": mb / _best(lambda: pyrage.encrypt(data, [pyrage_recipient]), repeat),
        "pyrage_decrypt_MBps": mb
        / _best(lambda: pyrage.decrypt(pyrage_ciphertext, [pyrage_identity]), repeat),
        "raw_aead_MBps": mb / _best(raw_aead, repeat),
    }
    results["encrypt_vs_pyrage"] = results["encrypt_MBps"] / results["pyrage_encrypt_MBps"]
    results["encrypt_vs_raw_aead"] = results["encrypt_MBps"] / results["raw_aead_MBps"]
    results["encrypt_with_sha256_vs_raw_aead"] = (
        results["encrypt_with_sha256_MBps"] / results["raw_aead_MBps"]
    )
    results["decrypt_vs_pyrage"] = results["decrypt_MBps"] / results["pyrage_decrypt_MBps"]

    x_header, _ = age.split_header(age.encrypt_bytes([x_recipient], b"x"))
    pq_header, _ = age.split_header(age.encrypt_bytes([pq_identity.recipient()], b"x"))
    requester_x = age.X25519Identity.generate().recipient()
    requester_pq = age.HybridIdentity.generate().recipient()
    rounds = 50
    results["reheader_x25519_us"] = (
        _best(
            lambda: [age.reheader(x_header, [x_identity], [requester_x]) for _ in range(rounds)],
            repeat,
        )
        / rounds
        * 1e6
    )
    results["reheader_hybrid_us"] = (
        _best(
            lambda: [age.reheader(pq_header, [pq_identity], [requester_pq]) for _ in range(rounds)],
            repeat,
        )
        / rounds
        * 1e6
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--mib", type=int, default=64, help="plaintext size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    args = parser.parse_args(argv)
    results = measure(args.mib, args.repeat)
    for key, value in results.items():
        print(f"{key:38} {value:12.2f}")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in results.items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
