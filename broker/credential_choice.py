"""Which of my stored credentials to present for a session's policy.

For each requirement the best stored credential is chosen: one issued to me that meets
the requirement and verifies now (signature, validity period, status) first; failing
that, the closest one of the required type (issued to me, then to anyone), so that the
other parties can say precisely why it does not do (expired, revoked, wrong issuer,
someone else's), and this party is warned before it connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpcid.identity import credentials as vc
from mpcid.identity.errors import DIDResolutionError, MpcidError, StatusCheckFailed
from mpcid.identity.keystore import Keystore
from mpcid.identity.policy import Policy, Presented, Requirement


@dataclass(frozen=True)
class Choice:
    credentials: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...]
    """Requirements this party will probably fail, and why."""
    unmet: tuple[str, ...] = ()
    """The warnings that are certain: no credential, or one that is expired, revoked,
    from another issuer or about someone else. (A status list or DID that could not be
    fetched here only makes the outcome uncertain: the others may well reach it.)"""
    unmet_issuer: str | None = None
    """The issuer of the credential behind the first of :attr:`unmet`, if there is one:
    the one to ask."""


#: Failures that only say "could not be checked from here".
UNCERTAIN = (StatusCheckFailed, DIDResolutionError)


async def choose(keystore: Keystore, did: str, policy: Policy,
                 config: vc.VerifyConfig) -> Choice:
    stored = [doc for _, doc in keystore.documents("credentials") if isinstance(doc, dict)]
    chosen: list[dict[str, Any]] = []
    warnings: list[str] = []
    unmet: list[str] = []
    issuer: str | None = None
    for requirement in policy.requirements:
        document, warning, certain = await _best(stored, did, requirement, config)
        if warning:
            warnings.append(warning)
            if certain:
                if not unmet and document is not None:
                    issuer = Presented.read(document).issuer
                unmet.append(warning)
        if document is not None and document not in chosen:
            chosen.append(document)
    return Choice(tuple(chosen), tuple(warnings), tuple(unmet), issuer)


async def _best(stored: list[dict[str, Any]], did: str, requirement: Requirement,
                config: vc.VerifyConfig
                ) -> tuple[dict[str, Any] | None, str | None, bool]:
    """The best credential for ``requirement``, what is wrong with it (None: nothing),
    and whether that is certain."""
    ranked: list[tuple[int, dict[str, Any], str | None, bool]] = []
    for document in stored:
        shape = Presented.read(document)
        shape = shape.about(did) or shape
        subject = shape.subject
        if requirement.credential_type not in shape.types:
            continue
        mismatch = requirement.mismatch(shape)
        problem, certain = mismatch, True
        if subject != did:
            problem = f"credential {shape.id} was issued to {subject}, not to you"
        elif mismatch is None:
            try:
                await vc.verify_credential(document, config)
            except MpcidError as exc:
                problem = exc.message
                certain = not isinstance(exc, UNCERTAIN)
        rank = (0 if problem is None else 1 if subject == did and mismatch is None
                else 2 if subject == did else 3)
        ranked.append((rank, document, problem, certain))
    if not ranked:
        return None, (f"you hold no {requirement.credential_type} credential for the "
                      f"requirement {requirement}"), True
    rank, document, problem, certain = min(ranked, key=lambda r: r[0])
    if problem is None:
        return document, None, False
    return document, f"requirement {requirement}: {problem}", certain


def describe_presented(documents: tuple[dict[str, Any], ...]
                       ) -> list[tuple[str | None, tuple[str, ...], str]]:
    """(id, types, issuer) of the credentials this party presents."""
    return [(shape.id, shape.types, shape.issuer) for shape in map(Presented.read, documents)]
