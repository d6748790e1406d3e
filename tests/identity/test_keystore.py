"""The local keystore: identities, encryption, file permissions, atomic writes."""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import nacl.pwhash
import pytest

from mpcid.identity import keystore as ks
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import (IdentityExists, IdentityFileDamaged, IdentityNotFound,
                                   KeystoreError, PassphraseRequired, UsageError,
                                   WrongPassphrase)
from mpcid.identity.keystore import KdfParams, Keystore


def _source(passphrase: str | None):  # type: ignore[no-untyped-def]
    calls: list[tuple[str, bool]] = []

    def source(prompt: str, confirm: bool) -> str | None:
        calls.append((prompt, confirm))
        return passphrase

    source.calls = calls  # type: ignore[attr-defined]
    return source


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _record(home: Path, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((home / "identities" / f"{name}.json").read_text())


# --- round trips -------------------------------------------------------------------------


def test_create_and_load_round_trip_unencrypted(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "home")
    key = store.create_identity("alice")
    loaded = store.load_identity("alice")
    assert loaded.seed == key.seed
    assert loaded.did.did == key.did.did
    info = store.identity("alice")
    assert (info.name, info.did, info.encrypted) == ("alice", key.did.did, False)
    assert info.created.endswith("Z")
    assert _record(tmp_path / "home", "alice")["key"]["encryption"] == "none"


def test_load_from_a_fresh_keystore_object(tmp_path: Path) -> None:
    key = Keystore(tmp_path).create_identity("default")
    assert Keystore(tmp_path).load_identity().seed == key.seed


def test_encrypted_round_trip(tmp_path: Path, fast_kdf: KdfParams) -> None:
    source = _source("correct horse battery staple")
    store = Keystore(tmp_path, passphrase=source, kdf=fast_kdf)
    key = store.create_identity("alice")
    assert source.calls == [("New passphrase for 'alice'", True)]
    record = _record(tmp_path, "alice")
    assert record["key"]["encryption"] == ks.ENCRYPTION
    assert record["key"]["opslimit"] == fast_kdf.opslimit
    assert record["key"]["memlimit"] == fast_kdf.memlimit
    assert store.identity("alice").encrypted is True

    loaded = Keystore(tmp_path, passphrase=_source("correct horse battery staple"),
                      kdf=fast_kdf).load_identity("alice")
    assert loaded.seed == key.seed


def test_kdf_parameters_are_read_from_the_file(tmp_path: Path, fast_kdf: KdfParams) -> None:
    """A key sealed with cheap parameters opens with a store configured with the (costly)
    default parameters: the stored parameters are used, not the configured ones."""
    key = Keystore(tmp_path, passphrase=_source("pw"), kdf=fast_kdf).create_identity("a")
    assert Keystore(tmp_path, passphrase=_source("pw")).load_identity("a").seed == key.seed


def test_seed_is_not_in_the_file_when_encrypted(tmp_path: Path, fast_kdf: KdfParams) -> None:
    store = Keystore(tmp_path, passphrase=_source("pw"), kdf=fast_kdf)
    key = store.create_identity("alice")
    raw = (tmp_path / "identities" / "alice.json").read_bytes()
    seed = key.seed
    for form in (seed, seed.hex().encode(), base64.b64encode(seed),
                 base64.urlsafe_b64encode(seed).rstrip(b"="),
                 base64.b64encode(seed).rstrip(b"=")):
        assert form not in raw
    assert "seed" not in json.loads(raw)["key"]


def test_wrong_passphrase(tmp_path: Path, fast_kdf: KdfParams) -> None:
    Keystore(tmp_path, passphrase=_source("right"), kdf=fast_kdf).create_identity("alice")
    with pytest.raises(WrongPassphrase) as info:
        Keystore(tmp_path, passphrase=_source("wrong"), kdf=fast_kdf).load_identity("alice")
    assert "alice" in str(info.value)
    assert info.value.hint


def test_encrypted_key_without_passphrase(tmp_path: Path, fast_kdf: KdfParams) -> None:
    Keystore(tmp_path, passphrase=_source("right"), kdf=fast_kdf).create_identity("alice")
    with pytest.raises(PassphraseRequired):
        Keystore(tmp_path).load_identity("alice")
    with pytest.raises(PassphraseRequired):
        Keystore(tmp_path, passphrase=_source("")).load_identity("alice")


def test_encrypt_true_without_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PassphraseRequired):
        Keystore(tmp_path).create_identity("alice", encrypt=True)
    assert not (tmp_path / "identities" / "alice.json").exists()


def test_encrypt_false_never_asks(tmp_path: Path) -> None:
    source = _source("pw")
    Keystore(tmp_path, passphrase=source).create_identity("alice", encrypt=False)
    assert source.calls == []
    assert Keystore(tmp_path).identity("alice").encrypted is False


# --- names and existing identities --------------------------------------------------------


def test_existing_name_is_refused_and_force_replaces(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    first = store.create_identity("alice")
    with pytest.raises(IdentityExists):
        store.create_identity("alice")
    assert store.load_identity("alice").seed == first.seed
    second = store.create_identity("alice", force=True)
    assert second.did.did != first.did.did
    assert store.load_identity("alice").seed == second.seed
    assert [i.name for i in store.identities()] == ["alice"]


def test_identity_created_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    """Issue item 9: another process creates the name after the existence check (here:
    while this one asks for the passphrase). This creation must fail, not replace it."""
    others: list[Ed25519Key] = []

    def source(prompt: str, confirm: bool) -> str | None:
        others.append(Keystore(tmp_path).create_identity("alice", encrypt=False))
        return None

    with pytest.raises(IdentityExists):
        Keystore(tmp_path, passphrase=source).create_identity("alice")
    assert len(others) == 1
    assert Keystore(tmp_path).load_identity("alice").seed == others[0].seed
    assert _leftovers(tmp_path / "identities") == []


def test_racing_creators_exactly_one_wins(tmp_path: Path) -> None:
    """Eight threads pass the existence check together (the barrier is in the passphrase
    prompt, between check and write); exactly one creates, the others get IdentityExists."""
    barrier = threading.Barrier(8, timeout=30)
    results: list[Ed25519Key | BaseException] = []

    def source(prompt: str, confirm: bool) -> str | None:
        barrier.wait()
        return None

    def create() -> None:
        try:
            results.append(Keystore(tmp_path, passphrase=source).create_identity("x"))
        except BaseException as exc:  # collected, checked below
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [r for r in results if isinstance(r, Ed25519Key)]
    assert len(results) == 8 and len(winners) == 1, results
    assert all(isinstance(r, IdentityExists) for r in results if r is not winners[0])
    assert Keystore(tmp_path).load_identity("x").seed == winners[0].seed
    assert _leftovers(tmp_path / "identities") == []


def test_force_replaces_even_when_racing(tmp_path: Path) -> None:
    """--force is not exclusive: it replaces atomically whatever is there."""
    store = Keystore(tmp_path)
    store.create_identity("alice")

    def source(prompt: str, confirm: bool) -> str | None:
        store.create_identity("alice", force=True)
        return None

    key = Keystore(tmp_path, passphrase=source).create_identity("alice", force=True)
    assert store.load_identity("alice").seed == key.seed


def test_missing_identity(tmp_path: Path) -> None:
    with pytest.raises(IdentityNotFound):
        Keystore(tmp_path).load_identity("nobody")


@pytest.mark.parametrize("name", [
    "", "../evil", "a/b", "a\\b", ".hidden", "-dash", "_under", "a b", "x" * 65, "é",
    "alice\n", "alice.json\n"])
def test_invalid_names_are_usage_errors(tmp_path: Path, name: str) -> None:
    store = Keystore(tmp_path)
    with pytest.raises(UsageError):
        store.create_identity(name)
    with pytest.raises(UsageError):
        store.load_identity(name)
    folder = tmp_path / "identities"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_non_string_name_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        Keystore(tmp_path).create_identity(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "A9", "alice.work", "bob_2", "x-y", "x" * 64])
def test_valid_names(tmp_path: Path, name: str) -> None:
    store = Keystore(tmp_path)
    key = store.create_identity(name)
    assert store.load_identity(name).seed == key.seed


def test_identities_listing_and_lookup(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    assert store.identities() == []
    bob = store.create_identity("bob")
    alice = store.create_identity("alice")
    assert [i.name for i in store.identities()] == ["alice", "bob"]
    found = store.find_identity_by_did(bob.did.did)
    assert found is not None and found.name == "bob"
    assert store.find_identity_by_did(alice.did.did).name == "alice"  # type: ignore[union-attr]
    assert store.find_identity_by_did(Ed25519Key.generate().did.did) is None


# --- permissions ----------------------------------------------------------------------------


def test_file_and_folder_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        home = tmp_path / "home"
        store = Keystore(home)
        store.create_identity("alice")
        store.put_document("credentials", "c1", {"a": 1})
    finally:
        os.umask(old)
    assert _mode(home) == 0o700
    assert _mode(home / "identities") == 0o700
    assert _mode(home / "credentials") == 0o700
    assert _mode(home / "identities" / "alice.json") == 0o600
    assert _mode(home / "credentials" / "c1.json") == 0o600


def test_existing_home_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    Keystore(home).create_identity("alice")
    assert _mode(home) == 0o700


# --- atomic writes ------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_replace_failure_keeps_old_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.json"
    ks.atomic_write(target, b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ks.os, "replace", broken_replace)
    with pytest.raises(OSError):
        ks.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


def test_atomic_write_fsync_failure_keeps_old_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.json"
    ks.atomic_write(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ks.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        ks.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_creates_file_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"
    ks.atomic_write(target, b"data", mode=0o640)
    assert target.read_bytes() == b"data"
    assert _mode(target) == 0o640
    assert _leftovers(tmp_path) == []


def test_exclusive_write_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "file.json"
    ks.exclusive_write(target, b"first")
    assert _mode(target) == 0o600
    with pytest.raises(FileExistsError):
        ks.exclusive_write(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_exclusive_write_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            code: int) -> None:
    """A file system without hard links (vfat): O_EXCL instead, still exclusive."""
    def no_link(src: object, dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ks.os, "link", no_link)
    target = tmp_path / "file.json"
    ks.exclusive_write(target, b"first")
    with pytest.raises(FileExistsError):
        ks.exclusive_write(target, b"second")
    assert target.read_bytes() == b"first"
    assert _mode(target) == 0o600
    assert _leftovers(tmp_path) == []


def test_exclusive_write_other_link_errors_propagate(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ks.os, "link", lambda src, dst: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        ks.exclusive_write(tmp_path / "file.json", b"data")
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_of_identity_keeps_old_key(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = Keystore(tmp_path)
    old = store.create_identity("alice")
    monkeypatch.setattr(ks.os, "replace", lambda src, dst: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    # OSError today; a KeystoreError would be acceptable too (it is the friendlier form).
    with pytest.raises((OSError, KeystoreError)):
        store.create_identity("alice", force=True)
    monkeypatch.undo()
    assert store.load_identity("alice").seed == old.seed
    assert _leftovers(tmp_path / "identities") == []


# --- damaged files --------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]", b"null"])
def test_damaged_identity_file(tmp_path: Path, content: bytes) -> None:
    store = Keystore(tmp_path)
    store.create_identity("alice")
    (tmp_path / "identities" / "alice.json").write_bytes(content)
    with pytest.raises(KeystoreError):
        store.load_identity("alice")


def test_tampered_did_in_file(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create_identity("alice")
    path = tmp_path / "identities" / "alice.json"
    record = json.loads(path.read_text())
    record["did"] = Ed25519Key.generate().did.did
    path.write_text(json.dumps(record))
    with pytest.raises(KeystoreError) as info:
        store.load_identity("alice")
    assert "inconsistent" in str(info.value)


@pytest.mark.parametrize("seed", ["!!!not base64!!!", base64.b64encode(b"\x01" * 31).decode(),
                                  base64.b64encode(b"\x01" * 33).decode(), None])
def test_damaged_seed_is_a_keystore_error(tmp_path: Path, seed: str | None) -> None:
    store = Keystore(tmp_path)
    store.create_identity("alice")
    path = tmp_path / "identities" / "alice.json"
    record = json.loads(path.read_text())
    record["key"]["seed"] = seed
    path.write_text(json.dumps(record))
    with pytest.raises(KeystoreError):
        store.load_identity("alice")


def test_damaged_ciphertext_fields(tmp_path: Path, fast_kdf: KdfParams) -> None:
    store = Keystore(tmp_path, passphrase=_source("pw"), kdf=fast_kdf)
    store.create_identity("alice")
    path = tmp_path / "identities" / "alice.json"
    record = json.loads(path.read_text())
    del record["key"]["salt"]
    path.write_text(json.dumps(record))
    with pytest.raises(KeystoreError):
        store.load_identity("alice")


_MIN = {"opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
        "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN}
_SENSITIVE = {"opslimit": nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE,
              "memlimit": nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE}


@pytest.mark.parametrize(("field", "value", "says"), [
    ("memlimit", 2**42, "outside"),             # a raw nacl traceback before
    ("memlimit", _SENSITIVE["memlimit"] + 1, "outside"),
    ("memlimit", 1024, "outside"),
    ("opslimit", 2**32 - 1, "outside"),         # ran for hours before
    ("opslimit", _SENSITIVE["opslimit"] + 1, "outside"),
    ("opslimit", 0, "outside"),
    ("opslimit", -3, "outside"),
    ("opslimit", "1", "not an integer"),
    ("opslimit", 1.0, "not an integer"),
    ("opslimit", True, "not an integer"),
    ("memlimit", [8192], "not an integer"),
    ("memlimit", None, "has no memlimit"),
    ("opslimit", ..., "has no opslimit"),       # ...: the field is absent
    ("salt", base64.b64encode(b"s" * 15).decode(), "salt is 15 bytes"),
    ("salt", 12, "salt is not base64"),
    ("ciphertext", base64.b64encode(b"c" * 40).decode(), "ciphertext is 40 bytes"),
])
def test_unusable_kdf_fields_are_refused_before_any_work(
        tmp_path: Path, fast_kdf: KdfParams, field: str, value: Any, says: str) -> None:
    """Issue item 10: the stored Argon2id cost is bounded, checked (with the salt and the
    ciphertext) before the passphrase is asked for, and reported as a damaged file."""
    Keystore(tmp_path, passphrase=_source("pw"), kdf=fast_kdf).create_identity("alice")
    path = tmp_path / "identities" / "alice.json"
    record = json.loads(path.read_text())
    if value is ...:
        del record["key"][field]
    else:
        record["key"][field] = value
    path.write_text(json.dumps(record))

    def no_prompt(prompt: str, confirm: bool) -> str | None:
        raise AssertionError("asked for a passphrase for a damaged file")

    with pytest.raises(IdentityFileDamaged) as info:
        Keystore(tmp_path, passphrase=no_prompt).load_identity("alice")
    assert str(path) in str(info.value) and says in str(info.value)
    assert "backup" in info.value.hint and "--name alice --force" in info.value.hint


@pytest.mark.parametrize("limits", [_MIN, _SENSITIVE, {"opslimit": 1, "memlimit": 2**30}],
                         ids=["min", "sensitive", "mixed"])
def test_kdf_bounds_are_inclusive(limits: dict[str, int]) -> None:
    """The edges are accepted: what tests write (MIN) and the costliest preset (a round
    trip at SENSITIVE would cost seconds; MIN and MODERATE round trips are tested above and
    in the CLI tests)."""
    assert KdfParams.from_record(limits) == KdfParams(**limits)


@pytest.mark.parametrize("limits", [{"opslimit": 2**32 - 1}, {"memlimit": 2**42},
                                    {"opslimit": "3"}])
def test_kdf_params_out_of_bounds_are_refused(limits: dict[str, Any]) -> None:
    """The tool never writes a file it would refuse to read."""
    with pytest.raises(ValueError):
        KdfParams(**limits)


def test_unknown_encryption_and_missing_key(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.create_identity("alice")
    path = tmp_path / "identities" / "alice.json"
    record = json.loads(path.read_text())
    record["key"]["encryption"] = "rot13"
    path.write_text(json.dumps(record))
    with pytest.raises(KeystoreError) as info:
        store.load_identity("alice")
    assert "rot13" in str(info.value)
    del record["key"]
    path.write_text(json.dumps(record))
    with pytest.raises(KeystoreError):
        store.load_identity("alice")


# --- stored documents -----------------------------------------------------------------------


def test_documents_put_get_and_list(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    assert list(store.documents("credentials")) == []
    assert store.get_document("credentials", "missing") is None
    path = store.put_document("credentials", "b2", {"n": 2})
    store.put_document("credentials", "a1", {"n": 1})
    store.put_document("statuslists", "list1", {"s": True})
    assert path == tmp_path / "credentials" / "b2.json"
    assert store.get_document("credentials", "a1") == {"n": 1}
    assert list(store.documents("credentials")) == [("a1", {"n": 1}), ("b2", {"n": 2})]
    assert list(store.documents("statuslists")) == [("list1", {"s": True})]
    store.put_document("credentials", "a1", {"n": 3})
    assert store.get_document("credentials", "a1") == {"n": 3}


@pytest.mark.parametrize("kind,doc_id", [("identities", "x"), ("other", "x"),
                                         ("credentials", "../x"), ("credentials", "")])
def test_documents_bad_kind_or_id(tmp_path: Path, kind: str, doc_id: str) -> None:
    store = Keystore(tmp_path)
    with pytest.raises(UsageError):
        store.put_document(kind, doc_id, {})
    with pytest.raises(UsageError):
        store.get_document(kind, doc_id)


def test_damaged_document_is_a_keystore_error(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.put_document("credentials", "c1", {"a": 1})
    (tmp_path / "credentials" / "c1.json").write_text("{broken")
    with pytest.raises(KeystoreError):
        store.get_document("credentials", "c1")
    with pytest.raises(KeystoreError):
        list(store.documents("credentials"))
