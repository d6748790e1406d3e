"""The local keystore: identities (Ed25519 seeds), held credentials, hosted status lists.

Layout of ``$MPCID_HOME`` (default ``~/.mpcid``), specified in ``specs/identity.md``::

    identities/NAME.json     one identity: DID and its seed, encrypted when a passphrase is set
    credentials/ID.json      credentials this holder imported, by content id
    statuslists/ID.json      status lists this issuer hosts

The folders are 0700 and every file 0600. Every write is atomic (temporary file in the same
folder, fsync, rename, fsync of the folder), so a crash leaves either the old file or the new
one, never a torn key. Seeds are encrypted with XSalsa20-Poly1305 (libsodium ``secretbox``)
under a key derived from the passphrase by Argon2id; the KDF parameters are stored beside
the ciphertext so they can be raised later without breaking old files.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from .did_key import Ed25519Key
from .errors import (IdentityExists, IdentityNotFound, KeystoreError, PassphraseRequired,
                     UsageError, WrongPassphrase)

FORMAT_VERSION = 1
ENCRYPTION = "argon2id+xsalsa20poly1305"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: Returns the passphrase, or None when none is available. ``confirm`` asks twice (new key).
PassphraseSource = Callable[[str, bool], "str | None"]


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default is libsodium's MODERATE (256 MiB, 3 passes)."""

    opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_MODERATE


@dataclass(frozen=True)
class IdentityInfo:
    name: str
    did: str
    created: str
    encrypted: bool


def default_home() -> Path:
    return Path("~/.mpcid").expanduser()


class Keystore:
    """One keystore folder. ``passphrase`` is asked only when a key must be decrypted."""

    def __init__(self, home: Path, *, passphrase: PassphraseSource | None = None,
                 kdf: KdfParams = KdfParams()) -> None:
        self.home = Path(home)
        self._passphrase = passphrase or (lambda _prompt, _confirm: None)
        self._kdf = kdf

    # -- identities ------------------------------------------------------------------

    def create_identity(self, name: str = "default", *, force: bool = False,
                        encrypt: bool | None = None) -> Ed25519Key:
        """Generate and store a new identity. ``encrypt=None`` encrypts iff a passphrase
        is available without prompting twice for nothing."""
        path = self._identity_path(name)
        if path.exists() and not force:
            raise IdentityExists(f"an identity named {name!r} exists already")
        key = Ed25519Key.generate()
        passphrase = None
        if encrypt is not False:
            passphrase = self._passphrase(f"New passphrase for {name!r}", True)
            if encrypt and not passphrase:
                raise PassphraseRequired("a passphrase is needed to encrypt the new key")
        record: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "name": name,
            "did": key.did.did,
            "created": _now(),
            "key": self._seal(key.seed, passphrase) if passphrase else {
                "encryption": "none", "seed": _b64(key.seed)},
        }
        self._write_json(path, record)
        return key

    def load_identity(self, name: str = "default") -> Ed25519Key:
        record = self._read_identity(name)
        sealed = record.get("key")
        if not isinstance(sealed, dict):
            raise KeystoreError(f"identity file for {name!r} has no key",
                                hint=f"the file {self._identity_path(name)} is damaged")
        if sealed.get("encryption") == "none":
            seed = _unb64(sealed.get("seed"), name)
        elif sealed.get("encryption") == ENCRYPTION:
            passphrase = self._passphrase(f"Passphrase for {name!r}", False)
            if not passphrase:
                raise PassphraseRequired(f"the key of {name!r} is encrypted")
            seed = self._open(sealed, passphrase, name)
        else:
            raise KeystoreError(f"identity {name!r} uses unknown encryption "
                                f"{sealed.get('encryption')!r}",
                                hint="it was written by a newer mpcid; upgrade")
        if len(seed) != 32:
            raise KeystoreError(f"identity file for {name!r} is damaged (bad seed length)",
                                hint=f"restore {self._identity_path(name)} from a backup")
        key = Ed25519Key.from_seed(seed)
        if key.did.did != record.get("did"):
            raise KeystoreError(f"identity file for {name!r} is inconsistent: its key does not "
                                "match its DID", hint=f"restore {self._identity_path(name)} "
                                "from a backup")
        return key

    def identity(self, name: str = "default") -> IdentityInfo:
        record = self._read_identity(name)
        sealed = record.get("key")
        return IdentityInfo(name=name, did=str(record.get("did")),
                            created=str(record.get("created")),
                            encrypted=isinstance(sealed, dict)
                            and sealed.get("encryption") == ENCRYPTION)

    def identities(self) -> list[IdentityInfo]:
        folder = self.home / "identities"
        if not folder.is_dir():
            return []
        return [self.identity(p.stem) for p in sorted(folder.glob("*.json"))
                if _NAME.fullmatch(p.stem)]

    def find_identity_by_did(self, did: str) -> IdentityInfo | None:
        return next((i for i in self.identities() if i.did == did), None)

    # -- credentials and status lists ------------------------------------------------

    def put_document(self, kind: str, doc_id: str, document: dict[str, Any]) -> Path:
        path = self._doc_path(kind, doc_id)
        self._write_json(path, document)
        return path

    def get_document(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        path = self._doc_path(kind, doc_id)
        if not path.exists():
            return None
        return _read_json(path)

    def documents(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        folder = self.home / kind
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                yield path.stem, _read_json(path)

    # -- internals -------------------------------------------------------------------

    def _identity_path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not a valid identity name",
                             hint="use 1-64 letters, digits, '.', '_' or '-'")
        return self.home / "identities" / f"{name}.json"

    def _doc_path(self, kind: str, doc_id: str) -> Path:
        if kind not in ("credentials", "statuslists", "invitations") or not _NAME.fullmatch(doc_id):
            raise UsageError(f"{doc_id!r} is not a valid stored document id")
        return self.home / kind / f"{doc_id}.json"

    def _read_identity(self, name: str) -> dict[str, Any]:
        path = self._identity_path(name)
        if not path.exists():
            raise IdentityNotFound(f"no identity named {name!r} in {self.home}")
        return _read_json(path)

    def _seal(self, seed: bytes, passphrase: str) -> dict[str, Any]:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(self._derive(passphrase, salt, self._kdf))
        return {"encryption": ENCRYPTION, "salt": _b64(salt),
                "opslimit": self._kdf.opslimit, "memlimit": self._kdf.memlimit,
                "ciphertext": _b64(bytes(box.encrypt(seed)))}

    def _open(self, sealed: dict[str, Any], passphrase: str, name: str) -> bytes:
        try:
            kdf = KdfParams(int(sealed["opslimit"]), int(sealed["memlimit"]))
            salt = _unb64(sealed["salt"], name)
            ciphertext = _unb64(sealed["ciphertext"], name)
        except (KeyError, TypeError, ValueError):
            raise KeystoreError(f"identity file for {name!r} is damaged") from None
        box = nacl.secret.SecretBox(self._derive(passphrase, salt, kdf))
        try:
            return box.decrypt(ciphertext)
        except nacl.exceptions.CryptoError:
            raise WrongPassphrase(f"wrong passphrase for identity {name!r}") from None

    @staticmethod
    def _derive(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
        return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE,
                                        passphrase.encode("utf-8"), salt,
                                        opslimit=kdf.opslimit, memlimit=kdf.memlimit)

    def _write_json(self, path: Path, document: dict[str, Any]) -> None:
        _ensure_private_dir(self.home)
        _ensure_private_dir(path.parent)
        try:
            atomic_write(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise KeystoreError(f"cannot write {path}: {exc.strerror or exc}",
                                hint="check free disk space and permissions") from None


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix,
    and a crash at any point loses neither."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        fh = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        os.fchmod(fh.fileno(), mode)
        with fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _ensure_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise KeystoreError(f"cannot create keystore folder {path}: {exc.strerror}",
                            hint="choose another folder with --home or MPCID_HOME") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreError(f"{path} is not valid JSON", hint="restore it from a backup") from None
    if not isinstance(value, dict):
        raise KeystoreError(f"{path} does not hold a JSON object")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, name: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise KeystoreError(f"identity file for {name!r} is damaged") from None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")
