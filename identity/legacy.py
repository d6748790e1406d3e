"""Verification of VC 1.1 credentials and presentations with ``Ed25519Signature2018``
proofs, through didkit.

didkit (SpruceID, Rust) implements the 2018 suite's detached-JWS proofs and ships the VC
1.1 contexts; it rejects VC 2.0 contexts, which is why everything else is done by
:mod:`mpcid.identity.dataintegrity`. This module is the only one that imports didkit,
and it maps didkit's answers to our errors. mpcid verifies such proofs but never makes
them: its own credentials carry Data Integrity proofs, and the tests sign 2018 credentials
with didkit directly (``tests/identity/test_legacy_didkit.py``).
"""

from __future__ import annotations

import json
from typing import Any

from .dataintegrity import VerifiedProof
from .errors import InvalidProof, MalformedCredential, UnknownContext


def _didkit_error() -> type[BaseException]:
    import didkit

    # didkit's type hints (didkit.pyi) declare DIDKitException as an instance; at run
    # time it is a class.
    error: type[BaseException] = getattr(didkit, "DIDKitException")
    return error


async def verify_2018(document: dict[str, Any], *, presentation: bool,
                      challenge: str | None = None, domain: str | None = None
                      ) -> VerifiedProof:
    """Verify the Ed25519Signature2018 proof of a VC 1.1 credential or presentation."""
    import didkit

    proof = document.get("proof")
    if isinstance(proof, list) and len(proof) == 1:
        proof = proof[0]
    if not isinstance(proof, dict):
        raise MalformedCredential("the proof is not a JSON object")
    purpose = "authentication" if presentation else "assertionMethod"
    options: dict[str, Any] = {"proofPurpose": purpose}
    if challenge is not None:
        options["challenge"] = challenge
    if domain is not None:
        options["domain"] = domain
    verify = didkit.verify_presentation if presentation else didkit.verify_credential
    try:
        answer = json.loads(await verify(json.dumps(document), json.dumps(options)))
    except _didkit_error() as exc:
        raise _mapped(str(exc)) from None
    errors = answer.get("errors") or []
    if errors:
        raise _mapped(str(errors[0]))
    vm = proof.get("verificationMethod")
    if not isinstance(vm, str):
        raise MalformedCredential("the proof has no verificationMethod")
    return VerifiedProof(suite="Ed25519Signature2018", verification_method=vm,
                         controller=vm.split("#", 1)[0], proof_purpose=purpose,
                         created=proof.get("created"), challenge=proof.get("challenge"),
                         domain=proof.get("domain"))


def _mapped(message: str) -> Exception:
    lowered = message.lower()
    if "no applicable proof" in lowered:
        # didkit drops proofs whose options (issuer key, challenge, domain) do not match.
        return InvalidProof()
    if "context" in lowered:
        return UnknownContext(f"didkit refused a context: {message[:160]}")
    if "signature" in lowered or "verif" in lowered or "key" in lowered:
        return InvalidProof()
    return MalformedCredential(f"didkit: {message[:200]}")
