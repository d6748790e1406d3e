"""How this keystore checks what others present: contexts, DID resolution, status lists.

One :class:`~mpcid.identity.credentials.VerifyConfig` serves ``mpcid credential verify``,
``mpcid presentation verify`` and the admission of peers in a session, so a credential is
judged the same way everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpcid.identity import credentials as vc
from mpcid.identity.errors import UsageError
from mpcid.identity.jsonld import ContextLoader
from mpcid.identity.keystore import Keystore
from mpcid.identity.resolver import UniversalResolver, WebResolver, WebResolverConfig
from mpcid.identity.statuslist import FileAndHttpStatusSource


def check_ca_file(ca_file: str | None) -> None:
    if ca_file is not None and not Path(ca_file).is_file():
        raise UsageError(f"CA file {ca_file} does not exist", hint="give a PEM file")


def web_resolver(ca_file: str | None, *, public_only: bool = False) -> UniversalResolver:
    """did:key offline, did:web over HTTPS (with an extra CA bundle, if given); only at
    public addresses with ``public_only``."""
    check_ca_file(ca_file)
    return UniversalResolver(web=WebResolver(WebResolverConfig(ca_file=ca_file,
                                                               public_only=public_only)))


DEFAULT_STATUS_MAX_AGE = dt.timedelta(days=7)
"""How old a status list without validUntil may be (``specs/identity.md`` 6): an older
signed copy could be served to hide a later revocation."""


def verify_config(keystore: Keystore, *, now: dt.datetime,
                  contexts: Mapping[str, Path] | None = None,
                  status_files: Mapping[str, Path] | None = None, check_status: bool = True,
                  ca_file: str | None = None, peers: bool = False,
                  status_max_age: dt.timedelta = DEFAULT_STATUS_MAX_AGE) -> vc.VerifyConfig:
    """Verification as this keystore does it: the shipped contexts plus ``contexts``; the
    status lists this keystore hosts known locally (no round trip to their server), then
    ``status_files``, then the network; did:web through ``ca_file`` if given.

    ``peers=True`` for a session, where the documents come from other parties and so do
    the status list URLs in them: no ``file:`` URL is read and only https to public
    addresses is fetched, for status lists and did:web issuers alike (an invitation names
    the issuers; ``specs/session.md`` 7.4); local copies only through
    ``status_files``. The commands a user runs on a document (``mpcid credential
    verify``) keep ``file:`` and local http URLs: their errors stay on this machine. A
    session's configuration also fetches and verifies each status list once for all its
    peers (:attr:`~mpcid.identity.credentials.VerifyConfig.status_lists`)."""
    loader = ContextLoader.from_files(dict(contexts or {}))
    overrides: dict[str, Path | dict[str, Any]] = {}
    for _, record in keystore.documents("statuslists"):
        if isinstance(record.get("credential"), dict):
            overrides[str(record.get("url"))] = record["credential"]
    overrides.update(status_files or {})
    status = (FileAndHttpStatusSource(overrides, ca_file=ca_file, peer_documents=peers)
              if check_status else None)
    return vc.VerifyConfig(loader=loader, resolver=web_resolver(ca_file, public_only=peers),
                           status=status,
                           now=now, status_max_age=status_max_age,
                           status_lists={} if peers else None)


async def held_state(document: dict[str, Any], config: vc.VerifyConfig) -> str:
    """One word (and why, when it is not valid) for a held credential, checked now."""
    from mpcid.identity.errors import (CredentialExpired, CredentialNotYetValid,
                                       CredentialRevoked, MpcidError, StatusCheckFailed)

    try:
        await vc.verify_credential(document, config)
    except CredentialRevoked:
        return "revoked (ask its issuer)"
    except CredentialExpired:
        return "expired"
    except CredentialNotYetValid:
        return "not yet valid"
    except StatusCheckFailed as exc:
        return f"unknown: {exc.message}"
    except MpcidError as exc:
        return f"invalid: {exc.message}"
    return "valid"
