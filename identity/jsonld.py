"""JSON-LD canonicalization (RDFC-1.0 / URDNA2015) with an offline document loader.

A context decides what a signed document *means*, so mpcid never fetches one from the
network: every context it knows is shipped in ``mpcid/identity/contexts/``, and the user may
add more explicitly (``--context URL=FILE``). An unknown context raises
:class:`UnknownContext`.

pyld has no "safe mode", so we add one: a property that no context defines would be
silently dropped by expansion, leaving unsigned data in a signed-looking document. We turn
every dropped property, and every ``@type`` that does not expand to an absolute IRI, into a
:class:`MalformedCredential` error, as the Data Integrity specification requires. toRdf
drops more, silently: every statement about a node whose ``id`` is not an absolute IRI
(``"urn uuid:x"``, a relative IRI), so such ids, and anything else the canonical form would
lose, are refused too; otherwise a signature could cover nothing.

RDFC-1.0 takes time exponential in the blank nodes it cannot tell apart, and runs before
any signature is checked: :class:`CanonLimits` bounds the input so that canonicalizing
anything accepted takes well under a second (specs/identity.md §3.4).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
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

#: Our own context (an ``@vocab`` for custom types and claims). Nobody publishes it, so a
#: verifier elsewhere cannot load it: mpcid no longer issues with it, but still verifies
#: the credentials issued with it before (it is shipped, like every context we accept).
MPCID_CONTEXT = "https://w3id.org/mpcid/v1"
#: W3C's context for terms the VC 2.0 context does not define (custom types and claims);
#: published, and shipped by the usual verifier libraries: what mpcid issues with.
UNDEFINED_TERMS_CONTEXT = "https://www.w3.org/ns/credentials/undefined-terms/v2"
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
        remote = {"contextUrl": None, "documentUrl": url, "document": copy.deepcopy(doc)}
        if url not in self.extra:
            # A shipped context never changes: pyld may keep it resolved across calls
            # (a third of the work of a small document). Contexts given explicitly are
            # not kept, and canonicalize() forgets all kept ones around a call with
            # a loader that has any (one may replace a shipped URL).
            remote["tag"] = "static"
        return remote


@dataclass(frozen=True)
class CanonLimits:
    """What :func:`canonicalize` accepts (specs/identity.md §3.4). RDFC-1.0 is exponential
    in the number of blank nodes it cannot tell apart by their own statements (8 such
    nodes all linked to each other took 54 s), so these are checked before it runs."""

    max_json_values: int = 10_000
    """JSON values (objects, arrays, scalars) in the document; an mpcid credential has
    about 27, a presentation about 27 per credential it carries."""
    max_depth: int = 32
    """Nesting of JSON objects and arrays; our credentials nest 3 deep, presentations 5
    (and pyld recurses: this keeps it far from Python's recursion limit)."""
    max_chars: int = 32 * 1024 * 1024
    """Characters in all keys and strings together: as many as the bytes a status list
    document may have (``statuslist.MAX_DOCUMENT_BYTES``); they cost linear time only."""
    max_merge_work: int = 100_000
    """The sum, over each property of each node, of the square of its number of values
    (pyld merges values in quadratic time); a presentation of 120 credentials needs about
    16,000."""
    max_quads: int = 2_500
    """RDF statements; a credential has 8 to 12, a presentation about 20 per credential
    (so about 120 credentials fit)."""
    max_blank_nodes: int = 400
    """Blank nodes (nodes without an ``id``, the graphs of credentials and proofs); a
    presentation has 3 per credential."""
    max_ambiguous_blank_nodes: int = 4
    """Blank nodes that share their first-degree hash with another one: only these make
    RDFC-1.0 search permutations. Documents made by mpcid and common wallets have none
    (two identical anonymous objects make two)."""
    max_ambiguous_quads: int = 64
    """Statements that mention one of the ambiguous blank nodes: the work of each step of
    that search. Worst case measured under these limits: specs/identity.md §3.4."""


LIMITS = CanonLimits()


_PYLD_UNUSED = ("requests", "aiohttp")
"""HTTP clients pyld sets up for its default document loader at import, which mpcid never
uses (every call passes the offline :class:`ContextLoader`): a requests session costs
~0.05 CPU-s and 6 MB per process."""


def load_pyld() -> Any:
    """Import pyld (the first call costs ~0.1 s) and return its ``jsonld`` module.

    When this is the only thread, pyld is imported without the HTTP clients of its default
    loader: they are hidden from it (``sys.modules[name] = None`` makes their import fail,
    and pyld falls back to a loader that fetches nothing) and restored at once. With other
    threads alive this is not done, since one of them could be importing aiohttp just then;
    commands that canonicalize on a hot path (``mpcid join``) call this early instead."""
    if "pyld.jsonld" in sys.modules:
        return sys.modules["pyld.jsonld"]
    hidden = [name for name in _PYLD_UNUSED if name not in sys.modules] \
        if threading.active_count() == 1 else []
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        from pyld import jsonld
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return jsonld


_PYLD = threading.Lock()
"""pyld keeps module-level caches and makes no promise about threads: one call at a time,
so that verification may run in a worker thread while the event loop signs."""


def canonicalize(document: dict[str, Any], loader: ContextLoader,
                 limits: CanonLimits = LIMITS) -> str:
    """Return the RDFC-1.0 canonical N-Quads of ``document`` (safe mode, offline).

    Thread-safe: calls are serialised (each is bounded by ``limits``).

    Checks run cheapest first, and each bounds the next step (specs/identity.md §3.4):
    the JSON's size and depth, expansion (no dropped term), the expanded form (nothing
    that toRdf would drop; values per property), the RDF dataset's size and its
    indistinguishable blank nodes; only then does pyld's RDFC-1.0 run, on work those
    bounds keep small. Raises :class:`MalformedCredential` or :class:`UnknownContext`.
    """
    with _PYLD:
        if not loader.extra:
            return _canonicalize(document, loader, limits)
        _forget_contexts()
        try:
            return _canonicalize(document, loader, limits)
        finally:
            _forget_contexts()


def _forget_contexts() -> None:
    """Drop the contexts pyld keeps resolved between calls (see ContextLoader)."""
    cache = getattr(load_pyld(), "_resolved_context_cache", None)
    if cache is not None:
        cache.clear()


def _canonicalize(document: dict[str, Any], loader: ContextLoader,
                  limits: CanonLimits) -> str:
    # pyld costs ~0.1 s to import: only when needed, so that commands that never
    # canonicalize (e.g. `mpcid run`) start fast.
    jsonld = load_pyld()
    from pyld.canon import URDNA2015

    _check_json_size(document, limits)
    pyld_errors = (jsonld.JsonLdError, *_PYTHON_ERRORS)
    dropped: list[str] = []

    def on_dropped(prop: str | None) -> None:
        dropped.append(str(prop))

    # No base IRI: pyld would resolve a relative id against http://example.org/base/,
    # making "x" and that URL sign alike; left relative, it is refused below.
    options = {"documentLoader": loader, "processingMode": "json-ld-1.1", "base": None}
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
            hint="add a context that defines them (e.g. "
                 "https://www.w3.org/ns/credentials/undefined-terms/v2)")
    _check_statements(expanded)
    _check_merging(expanded, limits)
    try:
        dataset = jsonld.to_rdf(expanded, {**options, "produceGeneralizedRdf": False})
        _check_dataset(dataset, limits)
        result = URDNA2015().main(dataset, {"format": "application/n-quads"})
    except pyld_errors as exc:
        _raise_mapped(exc, loader)
    return str(result)


def _too_complex(detail: str) -> MalformedCredential:
    return MalformedCredential(
        f"the document is too complex to canonicalize safely: {detail}",
        hint="mpcid refuses such documents before checking them (specs/identity.md §3.4)")


def _check_json_size(document: Any, limits: CanonLimits) -> None:
    """Count values, depth and characters without recursion (the input is untrusted)."""
    values = chars = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        values += 1
        if depth > limits.max_depth:
            raise _too_complex(f"nested deeper than {limits.max_depth} levels")
        if isinstance(node, dict):
            chars += sum(len(k) for k in node if isinstance(k, str))
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            chars += len(node)
        if values > limits.max_json_values:
            raise _too_complex(f"more than {limits.max_json_values} JSON values")
    if chars > limits.max_chars:
        raise _too_complex(f"{chars} characters (limit {limits.max_chars})")


def _check_dataset(dataset: dict[str, list[dict[str, Any]]], limits: CanonLimits) -> None:
    """Bound the RDF dataset, and the blank nodes RDFC-1.0 would have to search for.

    This is step 5 of RDFC-1.0 (W3C rdf-canon §4.4.3) done without hashing: two blank
    nodes share a first-degree hash exactly when their statements, with the node itself
    written ``_:a`` and every other blank node ``_:z``, are the same multiset.
    """
    mentions: dict[str, list[tuple[Any, ...]]] = {}
    quads = 0
    for graph, triples in dataset.items():
        name = None if graph == "@default" else graph
        for triple in triples:
            quads += 1
            terms = (triple["subject"], triple["predicate"], triple["object"])
            nodes = {t["value"] for t in terms[::2] if t["type"] == "blank node"}
            if name is not None and name.startswith("_:"):
                nodes.add(name)
            for node in nodes:
                mentions.setdefault(node, []).append((terms, name))
    if quads > limits.max_quads:
        raise _too_complex(f"{quads} RDF statements (limit {limits.max_quads})")
    if len(mentions) > limits.max_blank_nodes:
        raise _too_complex(f"{len(mentions)} blank nodes (limit {limits.max_blank_nodes})")
    classes: dict[tuple[Any, ...], list[str]] = {}
    for node, quads_of in mentions.items():
        key = tuple(sorted(_first_degree(node, terms, name) for terms, name in quads_of))
        classes.setdefault(key, []).append(node)
    ambiguous = [n for same in classes.values() if len(same) > 1 for n in same]
    if len(ambiguous) > limits.max_ambiguous_blank_nodes:
        raise _too_complex(f"{len(ambiguous)} blank nodes are indistinguishable (limit "
                           f"{limits.max_ambiguous_blank_nodes})")
    work = sum(len(mentions[n]) for n in ambiguous)
    if work > limits.max_ambiguous_quads:
        raise _too_complex(f"{work} statements about indistinguishable blank nodes "
                           f"(limit {limits.max_ambiguous_quads})")


def _first_degree(node: str, terms: tuple[dict[str, Any], ...], name: str | None
                  ) -> tuple[Any, ...]:
    def term(t: dict[str, Any] | None) -> tuple[Any, ...]:
        if t is None:
            return ()
        if t["type"] == "blank node":
            return ("b", "_:a" if t["value"] == node else "_:z")
        return (t["type"], t["value"], t.get("datatype") or "", t.get("language") or "")

    graph = None if name is None else {"type": "blank node" if name.startswith("_:")
                                       else "IRI", "value": name}
    return (*map(term, terms), term(graph))


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


#: An IRI as N-Quads can write it (RDF 1.1 N-Quads, IRIREF) with a scheme (RFC 3987):
#: pyld's toRdf silently drops statements about anything else, and would write some of
#: the rest (with ``<``, ``>`` or ``"``) ambiguously.
_IRI = re.compile(r'[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>"{}|^`\\]*')
_BLANK = re.compile(r"_:[^\x00-\x20<>\"{}|^`\\]+")
_LANGUAGE = re.compile(r"[a-zA-Z]+(-[a-zA-Z0-9]+)*")  # N-Quads LANGTAG


def _is_iri(value: object) -> bool:
    return isinstance(value, str) and _IRI.fullmatch(value) is not None


def _is_node_id(value: object) -> bool:
    return _is_iri(value) or isinstance(value, str) and _BLANK.fullmatch(value) is not None


def _check_statements(expanded: Any) -> None:
    """Refuse what JSON-LD toRdf would drop or mangle, so that a signature over the
    canonical form covers every statement of the JSON (specs/identity.md §3.3).
    (Expansion itself already drops values that belong to no property.)"""
    for item in expanded if isinstance(expanded, list) else [expanded]:
        if not isinstance(item, dict):
            continue  # strings only occur under @id/@type, checked by their node
        if "@value" in item:
            _check_value(item)
        elif "@list" in item:
            _check_statements(item["@list"])
        else:
            _check_node(item)


def _check_merging(expanded: Any, limits: CanonLimits) -> None:
    """Bound pyld's node map, which adds each value to its node's property after a linear
    search for a duplicate (``has_value``): quadratic in the values of one property of one
    node, gathered over the whole document (nodes with the same id merge)."""
    counts: dict[tuple[str, str], int] = {}
    stack: list[Any] = [expanded]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict) or "@value" in item:
            continue
        if "@list" in item:  # a list's items are not merged: no search for duplicates
            stack.append(item["@list"])
            continue
        node = item.get("@id")
        node = node if isinstance(node, str) else f"anonymous {id(item)}"
        for key, values in item.items():
            values = values if isinstance(values, list) else [values]
            if key == "@reverse":
                for prop, targets in item[key].items():
                    for target in targets if isinstance(targets, list) else [targets]:
                        if isinstance(target, dict) and isinstance(target.get("@id"), str):
                            pair = (target["@id"], prop)
                            counts[pair] = counts.get(pair, 0) + 1
                    stack.append(targets)
            elif key == "@type" or not key.startswith("@"):
                counts[(node, key)] = counts.get((node, key), 0) + len(values)
                stack.append(values)
            elif key in ("@graph", "@included"):
                stack.append(values)
    work = sum(n * n for n in counts.values())
    if work > limits.max_merge_work:
        raise _too_complex(f"values merge work {work} (limit {limits.max_merge_work}): "
                           "too many values for one property of one node")


def _check_value(item: dict[str, Any]) -> None:
    for key in ("@index", "@direction"):
        if key in item:
            raise MalformedCredential(f"{key} is not signed (canonical form drops it)",
                                      hint="remove it from the document")
    language = item.get("@language")
    if language is not None and (not isinstance(language, str)
                                 or not _LANGUAGE.fullmatch(language)):
        raise MalformedCredential(f"{language!r} is not a language tag")
    datatype = item.get("@type")
    if datatype is not None and datatype != "@json" and not _is_iri(datatype):
        raise MalformedCredential(f"the datatype {datatype!r} is not an absolute IRI")


def _check_node(node: dict[str, Any]) -> None:
    if "@id" in node and not _is_node_id(node["@id"]):
        raise MalformedCredential(f"the id {node['@id']!r} is not an absolute IRI",
                                  hint="an id must be a URL, a DID or a URN such as "
                                       "urn:uuid:...; every statement about it would be "
                                       "unsigned")
    types = node.get("@type", [])
    for t in types if isinstance(types, list) else [types]:
        if not isinstance(t, str) or ":" not in t:
            raise MalformedCredential(f"the type {t!r} is not defined by any @context",
                                      hint="add a context that defines it")
        if not _is_node_id(t):
            raise MalformedCredential(f"the type {t!r} is not an absolute IRI")
    if "@index" in node:
        raise MalformedCredential("@index is not signed (canonical form drops it)",
                                  hint="remove it from the document")
    for key, values in node.items():
        if key in ("@graph", "@included"):
            _check_statements(values)
        elif key == "@reverse":
            _check_node({k: v for k, v in values.items() if not k.startswith("@")})
        elif not key.startswith("@"):
            if not _is_iri(key):
                raise MalformedCredential(f"the property {key!r} is not an absolute IRI",
                                          hint="define it in a @context as a URL")
            _check_statements(values)


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
