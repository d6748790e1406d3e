"""JSON-LD canonicalization (RDFC-1.0 / URDNA2015) with an offline document loader.

A context decides what a signed document *means*, so mpcid never fetches one from the
network: every context it knows is shipped in ``mpcid/identity/contexts/``, and the user may
add more explicitly (``--context URL=FILE``). An unknown context raises
:class:`UnknownContext`.

pyld has no "safe mode", so we add one: a property that no context defines would be
silently dropped by expansion, leaving unsigned data in a signed-looking document. We turn
every dropped property, and every ``@type`` that does not expand to an absolute IRI, into a
:class:`MalformedCredential` error, as the Data Integrity specification requires.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import MalformedCredential, UnknownContext, UsageError

#: URL -> file shipped in mpcid/identity/contexts (W3C and W3C-CCG published contexts).
SHIPPED_CONTEXTS: dict[str, str] = {
    "https://www.w3.org/2018/credentials/v1": "credentials-v1.jsonld",
    "https://www.w3.org/ns/credentials/v2": "credentials-v2.jsonld",
    "https://www.w3.org/ns/credentials/undefined-terms/v2": "undefined-terms-v2.jsonld",
    "https://www.w3.org/ns/credentials/status/v1": "vc-bitstring-status-list-v1.jsonld",
    "https://w3id.org/security/data-integrity/v1": "data-integrity-v1.jsonld",
    "https://w3id.org/security/data-integrity/v2": "data-integrity-v2.jsonld",
    "https://w3id.org/security/suites/ed25519-2020/v1": "ed25519-signature-2020-v1.jsonld",
    "https://w3id.org/security/suites/ed25519-2018/v1": "ed25519-signature-2018-v1.jsonld",
    "https://w3id.org/security/multikey/v1": "multikey-v1.jsonld",
    "https://w3id.org/security/v1": "security-v1.jsonld",
    "https://w3id.org/security/v2": "security-v2.jsonld",
    "https://www.w3.org/ns/did/v1": "did-v1.jsonld",
    "https://w3id.org/mpcid/v1": "mpcid-v1.jsonld",
}

MPCID_CONTEXT = "https://w3id.org/mpcid/v1"
_cache: dict[str, dict[str, Any]] = {}


def shipped_context(url: str) -> dict[str, Any]:
    if url not in _cache:
        text = resources.files("mpcid.identity.contexts").joinpath(
            SHIPPED_CONTEXTS[url]).read_text(encoding="utf-8")
        _cache[url] = json.loads(text)
    return _cache[url]


class ContextLoader:
    """The pyld document loader: shipped contexts plus the ones given explicitly."""

    def __init__(self, extra: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.extra = dict(extra or {})
        self.unknown: str | None = None

    @classmethod
    def from_files(cls, pairs: Mapping[str, str | Path]) -> ContextLoader:
        """Build from ``{URL: FILE}``; raises :class:`UsageError` for unreadable files."""
        extra = {}
        for url, path in pairs.items():
            try:
                doc = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UsageError(f"cannot read JSON-LD context file {path}: {exc}") from None
            if not isinstance(doc, dict) or "@context" not in doc:
                raise UsageError(f"{path} is not a JSON-LD context (no top-level @context)")
            extra[url] = doc
        return cls(extra)

    def knows(self, url: str) -> bool:
        return url in self.extra or url in SHIPPED_CONTEXTS

    def __call__(self, url: str, options: Any = None) -> dict[str, Any]:
        if url in self.extra:
            doc = self.extra[url]
        elif url in SHIPPED_CONTEXTS:
            doc = shipped_context(url)
        else:
            self.unknown = url
            raise UnknownContext(f"unknown JSON-LD context {url}")
        # pyld may annotate documents; hand out copies so the cache stays pristine.
        return {"contextUrl": None, "documentUrl": url, "document": copy.deepcopy(doc)}


def canonicalize(document: dict[str, Any], loader: ContextLoader) -> str:
    """Return the RDFC-1.0 canonical N-Quads of ``document`` (safe mode, offline)."""
    # pyld (and the HTTP stack it imports) costs ~0.2 s to import: only when needed, so
    # that commands that never canonicalize (e.g. `mpcid run`) start fast.
    from pyld import jsonld

    pyld_errors = (jsonld.JsonLdError, *_PYTHON_ERRORS)
    dropped: list[str] = []

    def on_dropped(prop: str | None) -> None:
        dropped.append(str(prop))

    options = {"documentLoader": loader, "processingMode": "json-ld-1.1"}
    try:
        expanded = jsonld.JsonLdProcessor(on_property_dropped=on_dropped).expand(
            document, options)
    except UnknownContext:
        raise
    except pyld_errors as exc:
        _raise_mapped(exc, loader)
    if dropped:
        names = sorted({d for d in dropped if d != "None"} | _keyword_like_keys(document))
        raise MalformedCredential(
            "the document uses terms no @context defines: "
            f"{', '.join(names) or 'a key mapped to null'}",
            hint="add a context that defines them (e.g. https://w3id.org/mpcid/v1)")
    _check_types(expanded)
    try:
        result = jsonld.normalize(expanded, {"algorithm": "URDNA2015",
                                             "format": "application/n-quads",
                                             "documentLoader": loader})
    except pyld_errors as exc:
        _raise_mapped(exc, loader)
    return str(result)


#: pyld raises JsonLdError for most bad input, but plain ValueError/KeyError/... for some
#: (a relative @context IRI, {"@vocab": null}); none of them may escape as a traceback.
_PYTHON_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)

_KEYWORDS = {"@context", "@id", "@type", "@value", "@language", "@list", "@set", "@graph",
             "@index", "@reverse", "@base", "@vocab", "@container", "@direction", "@included",
             "@json", "@nest", "@none", "@prefix", "@propagate", "@protected", "@version",
             "@import"}


def _keyword_like_keys(node: Any) -> set[str]:
    """Keys that look like JSON-LD keywords but are none (expansion drops them silently)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _keyword_like_keys(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "@context":
                continue
            if isinstance(key, str) and key.startswith("@") and key not in _KEYWORDS:
                found.add(key)
            found |= _keyword_like_keys(value)
    return found


def _check_types(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _check_types(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "@type" and "@value" not in node:
                for t in value if isinstance(value, list) else [value]:
                    if not isinstance(t, str) or ":" not in t:
                        raise MalformedCredential(
                            f"the type {t!r} is not defined by any @context",
                            hint="add a context that defines it")
            elif key != "@value":
                _check_types(value)


def _raise_mapped(exc: Exception, loader: ContextLoader) -> Any:
    if loader.unknown:
        raise UnknownContext(f"unknown JSON-LD context {loader.unknown}") from None
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UnknownContext):
            raise UnknownContext(str(cause)) from None
        cause = cause.__cause__ or cause.__context__
    raise MalformedCredential(f"invalid JSON-LD: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
