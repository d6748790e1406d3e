"""The one exception hierarchy of mpcid, and the errors of mpcid.identity.

Every error a user can meet derives from :class:`MpcidError`. Each carries a message that
says what happened and a ``hint`` that says what to do; the CLI prints both on one line and
exits with :attr:`MpcidError.exit_code`. Categories are subclasses, so callers can catch a
whole layer: identity and credential here, transport and protocol in
:mod:`mpcid.p2p.errors`, session in :mod:`mpcid.broker.errors`. This module's part of the
tree::

    Exception
    ├── MpcidError                    a message, a hint and an exit code (1)
    │   ├── UsageError                the command was given something it cannot use (exit 2)
    │   ├── IdentityError             something about a DID or a key
    │   │   ├── InvalidDID            (also UsageError) not a DID this tool understands
    │   │   ├── DIDResolutionError    no DID document (e.g. did:web host unreachable)
    │   │   └── KeystoreError         the local keystore is missing or unreadable
    │   │       ├── IdentityNotFound
    │   │       ├── IdentityExists
    │   │       ├── WrongPassphrase
    │   │       ├── PassphraseRequired
    │   │       └── IdentityFileDamaged   a field is missing, mistyped or out of bounds
    │   └── CredentialError           a credential, presentation or proof is not accepted
    │       ├── MalformedCredential
    │       ├── InvalidProof          opaque on purpose: every kind of tampering
    │       ├── UnsupportedCryptosuite
    │       ├── UnknownContext
    │       ├── CredentialExpired
    │       ├── CredentialNotYetValid
    │       ├── CredentialRevoked
    │       ├── StatusCheckFailed
    │       ├── PresentationMismatch
    │       └── PolicyNotSatisfied
    └── FetchFailed                   internal: from http.fetch to its callers only

``tests/test_error_trees.py`` checks that this drawing is the real hierarchy.

Library exceptions (nacl, pyld, didkit, aiohttp) never cross a public function of this
package: they are mapped at the boundary, with the original kept as ``__cause__``.

Verification failures are deliberately opaque where detail would help an attacker
(:class:`InvalidProof` for every kind of tampering) and precise where the user must act
(:class:`CredentialExpired`, :class:`CredentialRevoked`, :class:`UnknownContext`).
"""

from __future__ import annotations


class MpcidError(Exception):
    """Base of every mpcid error. ``str(err)`` is the user-facing sentence."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """Message and hint on one line, as the CLI prints it."""
        text = self.message.replace("\n", " ")
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(MpcidError):
    """The command was given something it cannot use (a malformed argument or file)."""

    exit_code = 2


# --- identity -------------------------------------------------------------------------


class IdentityError(MpcidError):
    """Something about a DID or a key."""


class InvalidDID(IdentityError, UsageError):
    """A string is not a DID this tool understands (wrong prefix, bad encoding, bad key)."""

    exit_code = 2
    hint = "a did:key looks like did:key:z6Mk... (an Ed25519 public key, base58btc multibase)"


class DIDResolutionError(IdentityError):
    """A DID could not be resolved to a DID document (e.g. did:web host unreachable)."""

    hint = "check the DID and your network, or use a did:key"


class KeystoreError(IdentityError):
    """The local keystore is missing, unreadable, or in an unexpected state."""


class IdentityNotFound(KeystoreError):
    """No identity with that local name."""

    hint = "list your identities with `mpcid did list` or create one with `mpcid create-did`"


class IdentityExists(KeystoreError):
    """An identity with that name exists already."""

    hint = "choose another --name, or pass --force to replace it (the old key is lost)"


class WrongPassphrase(KeystoreError):
    """The key file could not be decrypted with the given passphrase."""

    hint = "check MPCID_PASSPHRASE or the passphrase you typed"


class PassphraseRequired(KeystoreError):
    """The key is encrypted and no passphrase is available (no terminal to prompt on)."""

    hint = "set MPCID_PASSPHRASE or run the command in a terminal"


class IdentityFileDamaged(KeystoreError):
    """An identity file cannot be used as it is: a field is missing, of the wrong type, or
    outside the bounds this tool accepts (e.g. Argon2id costs that would exhaust memory or
    never finish). The message names the file and the field."""

    hint = ("restore the file from a backup; `mpcid create-did --name NAME --force` replaces "
            "it with a new key, losing the old one")


# --- credentials ------------------------------------------------------------------------


class CredentialError(MpcidError):
    """A credential, presentation or proof was not accepted."""


class MalformedCredential(CredentialError):
    """The document is not a credential or presentation of the expected shape."""

    hint = "the document must be a JSON-LD verifiable credential or presentation"


class InvalidProof(CredentialError):
    """The proof does not verify. Deliberately says nothing about which byte was wrong:
    the document was altered after signing, or it was signed by a different key than the
    one it names."""

    def __init__(self, message: str = "bad signature: the proof does not match the document "
                 "and the key it names", *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)

    hint = "the document was changed after it was signed, or was not signed by its issuer"


class UnsupportedCryptosuite(CredentialError):
    """The proof uses a type or cryptosuite this tool does not verify."""

    hint = ("supported: DataIntegrityProof eddsa-rdfc-2022, Ed25519Signature2020, "
            "Ed25519Signature2018")


class UnknownContext(CredentialError):
    """A JSON-LD @context is neither shipped with mpcid nor given with --context.
    mpcid never fetches contexts from the network: a context changes what a signature
    means."""

    hint = "pass the context's file with --context URL=FILE if you trust it"


class CredentialExpired(CredentialError):
    """The credential's validUntil / expirationDate is in the past."""

    hint = "ask the issuer for a fresh credential"


class CredentialNotYetValid(CredentialError):
    """The credential's validFrom / issuanceDate is in the future."""

    hint = "wait until it becomes valid, or check your clock"


class CredentialRevoked(CredentialError):
    """The issuer's status list marks the credential revoked."""

    hint = "ask the issuer why; a revoked credential cannot be un-revoked by the holder"


class StatusCheckFailed(CredentialError):
    """The credential names a status list that could not be read or verified."""

    hint = "check that the status list URL is reachable, or pass it as a file"


class PresentationMismatch(CredentialError):
    """A presentation's challenge, domain, holder or purpose is not the one expected."""

    hint = "a presentation is valid only for the session (challenge and domain) it was made for"


class PolicyNotSatisfied(CredentialError):
    """No presented credential satisfies the session's credential requirement."""

    hint = "import a credential that meets the requirement with `mpcid credential import`"


# --- internal ---------------------------------------------------------------------------


class FetchFailed(Exception):
    """Why :func:`mpcid.identity.http.fetch` did not produce a body: a fragment without the
    URL, e.g. 'it answered HTTP 404', for the caller's sentence ("cannot fetch status list
    URL: ...").

    Internal on purpose, hence not an :class:`MpcidError`: it never reaches a user. Each
    caller turns it into the error of its own category (:class:`DIDResolutionError`,
    :class:`StatusCheckFailed`), which is what the user needs to act on.
    """
