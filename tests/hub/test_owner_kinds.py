"""All owners of one doorbell hold the same kind of age key: every segment goes to all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.server.owners import OwnerError, OwnersTable


def test_a_classic_phone_cannot_join_post_quantum_owners(tmp_path: Path) -> None:
    table = OwnersTable(tmp_path / "doorward.db")
    table.add(KeyBundle.generate("hybrid").public(), name="first", now=1)
    table.add(KeyBundle.generate("hybrid").public(), name="second", now=2)
    classic = KeyBundle.generate("x25519").public()
    with pytest.raises(OwnerError) as info:
        table.add(classic, name="old phone", now=3)
    assert str(info.value) == (
        "this doorbell's owners use hybrid age keys and this phone has a x25519 key; one file "
        "cannot be encrypted to both kinds. Make this phone's keys with "
        "`doorward owner init --recipient hybrid` and pair again"
    )
    assert [o.name for o in table.list_owners()] == ["first", "second"]
    assert len(table.recipients()) == 2


def test_classic_owners_take_classic_phones_only(tmp_path: Path) -> None:
    table = OwnersTable(tmp_path / "doorward.db")
    table.add(KeyBundle.generate("x25519").public(), name="classic", now=1)
    with pytest.raises(OwnerError, match="use x25519 age keys and this phone has a hybrid key"):
        table.add(KeyBundle.generate("hybrid").public(), name="new", now=2)
    table.add(KeyBundle.generate("x25519").public(), name="classic too", now=3)
    assert [r.stanza_type for r in table.recipients()] == ["X25519", "X25519"]
