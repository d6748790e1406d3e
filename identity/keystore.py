"""The local keystore: identities (Ed25519 seeds), held credentials, hosted status lists.

Layout of ``$MPCID_HOME`` (default ``~/.mpcid``), specified in ``specs/identity.md``::

    identities/NAME.json     one identity: DID and its seed, encrypted when a passphrase is set
    credentials/ID.json      credentials this holder imported, by content id
    statuslists/ID.json      status lists this issuer hosts

The folders are 0700 and every file 0600. Every write is atomic (temporary file in the same
folder, fsync, rename, fsync of the folder), so a crash leaves either the old file or the new
one, never a torn key. A new identity is created exclusively (link instead of rename), so of
two processes creating the same name at once exactly one wins. Seeds are encrypted with
XSalsa20-Poly1305 (libsodium ``secretbox``) under a key derived from the passphrase by
Argon2id; the KDF parameters are stored beside the ciphertext so they can be raised later
without breaking old files, and are bounded when read (:data:`KDF_BOUNDS`).
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from .did_key import Ed25519Key
from .errors import (IdentityExists, IdentityFileDamaged, IdentityNotFound, KeystoreError,
                     PassphraseRequired, UsageError, WrongPassphrase)

FORMAT_VERSION = 1
ENCRYPTION = "argon2id+xsalsa20poly1305"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: Returns the passphrase, or None when none is available. ``confirm`` asks twice (new key).
PassphraseSource = Callable[[str, bool], "str | None"]


#: The Argon2id costs an identity file may ask for (specs/identity.md §8): from libsodium's
#: minimum up to its SENSITIVE preset (4 passes over 1 GiB: seconds, not minutes). The cost
#: is read from the file, so without bounds a damaged or hostile file could exhaust memory
#: (memlimit 2**42) or make loading never finish (opslimit 2**32-1).
KDF_BOUNDS: dict[str, tuple[int, int]] = {
    "opslimit": (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE),
    "memlimit": (nacl.pwhash.argon2id.MEMLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE),
}
#: nonce || MAC || 32-byte seed
_CIPHERTEXT_BYTES = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES + 32


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default is libsodium's MODERATE (256 MiB, 3 passes). Both values
    must lie within :data:`KDF_BOUNDS` (ValueError otherwise), so that this tool never
    writes a file it would refuse to read."""

    opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_MODERATE

    def __post_init__(self) -> None:
        for field in KDF_BOUNDS:
            problem = _kdf_problem(field, getattr(self, field))
            if problem:
                raise ValueError(problem)

    @classmethod
    def from_record(cls, sealed: Mapping[str, object]) -> KdfParams:
        """The parameters stored in an encrypted key; ValueError naming the field if one is
        missing, not an integer, or outside :data:`KDF_BOUNDS`."""
        values: list[int] = []
        for field in KDF_BOUNDS:
            value = sealed.get(field)
            problem = _kdf_problem(field, value)
            if problem:
                raise ValueError(problem)
            assert isinstance(value, int)
            values.append(value)
        return cls(*values)


def _kdf_problem(field: str, value: object) -> str | None:
    """Why ``value`` is not acceptable as the KDF parameter ``field``, or None."""
    if value is None:
        return f"it has no {field}"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"its {field} {value!r} is not an integer"
    low, high = KDF_BOUNDS[field]
    if not low <= value <= high:
        return f"its {field} {value} is outside the accepted {low}..{high}"
    return None


@dataclass(frozen=True)
class IdentityInfo:
    name: str
    did: str
    created: str
    encrypted: bool


DOCUMENT_KINDS = ("credentials", "statuslists", "invitations", "issued")
"""The folders of JSON documents a keystore holds: credentials held, status lists hosted,
invitations received or made, credentials issued."""


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
        exists = IdentityExists(f"an identity named {name!r} exists already")
        if path.exists() and not force:
            raise exists  # early, before asking for a passphrase; the write below decides
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
        try:
            self._write_json(path, record, exclusive=not force)
        except FileExistsError:
            raise exists from None  # another process created it since the check above
        return key

    def load_identity(self, name: str = "default") -> Ed25519Key:
        record = self._read_identity(name)
        sealed = record.get("key")
        if not isinstance(sealed, dict):
            raise self._damaged(name, "it has no key")
        if sealed.get("encryption") == "none":
            seed = self._field_bytes(sealed, "seed", name)
        elif sealed.get("encryption") == ENCRYPTION:
            # Checked before the prompt: a damaged file is reported as such, not after
            # the user typed a passphrase, and never reaches Argon2id.
            kdf, salt, ciphertext = self._sealed_parts(sealed, name)
            passphrase = self._passphrase(f"Passphrase for {name!r}", False)
            if not passphrase:
                raise PassphraseRequired(f"the key of {name!r} is encrypted")
            seed = self._open(kdf, salt, ciphertext, passphrase, name)
        else:
            raise KeystoreError(f"identity {name!r} uses unknown encryption "
                                f"{sealed.get('encryption')!r}",
                                hint="it was written by a newer mpcid; upgrade")
        if len(seed) != 32:
            raise self._damaged(name, f"its seed is {len(seed)} bytes, not 32")
        key = Ed25519Key.from_seed(seed)
        if key.did.did != record.get("did"):
            raise self._damaged(name, "its key is inconsistent with its DID")
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
        if kind not in DOCUMENT_KINDS or not _NAME.fullmatch(doc_id):
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

    def _damaged(self, name: str, problem: str) -> IdentityFileDamaged:
        return IdentityFileDamaged(
            f"identity file {self._identity_path(name)} is damaged: {problem}",
            hint=f"restore it from a backup; `mpcid create-did --name {name} --force` "
                 "replaces it with a new key, losing the old one")

    def _field_bytes(self, sealed: dict[str, Any], field: str, name: str) -> bytes:
        value = sealed.get(field)
        if value is None:
            raise self._damaged(name, f"it has no {field}")
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise self._damaged(name, f"its {field} is not base64 text") from None

    def _sealed_parts(self, sealed: dict[str, Any], name: str
                      ) -> tuple[KdfParams, bytes, bytes]:
        """KDF parameters (bounded, see KDF_BOUNDS), salt and ciphertext of a sealed key."""
        try:
            kdf = KdfParams.from_record(sealed)
        except ValueError as exc:
            raise self._damaged(name, str(exc)) from None
        salt = self._field_bytes(sealed, "salt", name)
        ciphertext = self._field_bytes(sealed, "ciphertext", name)
        if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
            raise self._damaged(name, f"its salt is {len(salt)} bytes, not "
                                f"{nacl.pwhash.argon2id.SALTBYTES}")
        if len(ciphertext) != _CIPHERTEXT_BYTES:
            raise self._damaged(name, f"its ciphertext is {len(ciphertext)} bytes, not "
                                f"{_CIPHERTEXT_BYTES}")
        return kdf, salt, ciphertext

    def _open(self, kdf: KdfParams, salt: bytes, ciphertext: bytes, passphrase: str,
              name: str) -> bytes:
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

    def _write_json(self, path: Path, document: dict[str, Any], *,
                    exclusive: bool = False) -> None:
        """Write atomically; ``exclusive``: create, FileExistsError if ``path`` exists."""
        _ensure_private_dir(self.home)
        _ensure_private_dir(path.parent)
        data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        try:
            (exclusive_write if exclusive else atomic_write)(path, data)
        except FileExistsError:
            raise
        except OSError as exc:
            raise KeystoreError(f"cannot write {path}: {exc.strerror or exc}",
                                hint="check free disk space and permissions") from None


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix,
    and a crash at any point loses neither."""
    tmp = _write_temporary(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_folder(path.parent)


#: link(2) errors meaning "this file system has no hard links" (vfat, some network mounts)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def exclusive_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data``, or raise FileExistsError if it exists: of several
    processes creating one file at once, exactly one succeeds. As with :func:`atomic_write`
    no reader sees a partial file: the content is synced under a temporary name, then
    hard-linked to ``path``; link(2), unlike rename(2), fails when the target exists."""
    tmp = _write_temporary(path, data, mode)
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        _create_exclusive(path, data, mode)  # still exclusive, but a crash may tear it
    finally:
        _unlink_quietly(tmp)
    _fsync_folder(path.parent)


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink_quietly(str(path))  # we created it: do not leave it half written
        raise


def _write_temporary(path: Path, data: bytes, mode: int) -> str:
    """A new file beside ``path`` holding ``data``, synced; its name is returned."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        fh = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    try:
        with fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
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


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")
