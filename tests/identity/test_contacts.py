"""Contacts: names for DIDs, local to a keystore (mpcid.identity.contacts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpcid.identity.contacts import Contacts, named
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import KeystoreError, UsageError

BOB = Ed25519Key.generate().did.did
ACME = Ed25519Key.generate().did.did


def test_names_stand_for_dids(tmp_path: Path) -> None:
    contacts = Contacts(tmp_path)
    assert contacts.all() == {}
    contacts.add("bob", BOB)
    contacts.add("acme", ACME)
    contacts.add("bob", BOB)  # the same again changes nothing
    assert contacts.all() == {"acme": ACME, "bob": BOB}
    assert contacts.did_of("bob") == BOB and contacts.did_of(ACME) == ACME
    assert contacts.names() == {BOB: "bob", ACME: "acme"}
    assert named(BOB, contacts.names()) == f"bob ({BOB})" and named("did:web:x", {}) == \
        "did:web:x"
    assert contacts.requirement("MembershipCredential@acme,did:web:globex.example;org=A") \
        == f"MembershipCredential@{ACME},did:web:globex.example;org=A"
    assert oct((tmp_path / "contacts.json").stat().st_mode & 0o777) == "0o600"
    contacts.remove("bob")
    assert contacts.all() == {"acme": ACME}


@pytest.mark.parametrize("name, did, says", [
    ("did", BOB, "cannot be a contact's name"),
    ("1bob", BOB, "cannot be a contact's name"),
    ("bob/../x", BOB, "cannot be a contact's name"),
    ("bob", "did:key:zNope", "did:key"),
    ("bob", "not a did", "is not a DID"),
])
def test_bad_contacts_are_refused(tmp_path: Path, name: str, did: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        Contacts(tmp_path).add(name, did)
    assert Contacts(tmp_path).all() == {}


def test_a_name_is_not_silently_moved_or_guessed(tmp_path: Path) -> None:
    contacts = Contacts(tmp_path)
    contacts.add("bob", BOB)
    with pytest.raises(UsageError, match="is did:key:.* already"):
        contacts.add("bob", ACME)
    with pytest.raises(UsageError, match="neither a DID nor one of your contacts"):
        contacts.did_of("carol")
    with pytest.raises(UsageError, match="no contact named"):
        contacts.remove("carol")
    (tmp_path / "contacts.json").write_text("[1]")
    with pytest.raises(KeystoreError, match="not a JSON object"):
        contacts.all()
