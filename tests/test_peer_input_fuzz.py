"""Every parser of what another party, a DHT node or a document sends, fed by Hypothesis:
only mpcid's own errors come out, and no single input takes longer than :data:`BOUND`.

The parsers: invitation tokens and files, DHT records (endpoint records, invitations and
declines), transcripts, admission messages, channel frames in every handshake state, status
lists, and presentations, including graphs of blank nodes that all link to each other (the
shape that makes RDF canonicalization explode). Inputs are mutations of valid documents as
well as arbitrary bytes, so the deep paths are reached too. ``deadline`` makes Hypothesis
fail any example over the bound (and shrink it to the smallest such input).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcid.broker import admission
from mpcid.broker.invitation import Invitation, decode_token
from mpcid.broker.session_records import decode_decline, decline_key
from mpcid.broker.transcript import Transcript
from mpcid.identity import credentials, multibase
from mpcid.identity.credentials import VerifyConfig
from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.identity.policy import Policy
from mpcid.identity.statuslist import Bitstring
from mpcid.p2p.noise import PREAMBLE, ChannelConfig, NoiseChannel, session_prologue
from mpcid.p2p.records import EndpointRecord, decode_and_verify, dht_key

#: No input from a peer may take a party longer than this (a loaded 2-core VM included).
BOUND = dt.timedelta(seconds=3)
BOUNDED = settings(max_examples=120, deadline=BOUND,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INVITER = Ed25519Key.from_seed(bytes([1]) * 32)
GUEST = Ed25519Key.from_seed(bytes([2]) * 32)
NOW = 1_800_000_000.0
INVITATION, INVITATION_DATA = Invitation.create(
    INVITER, [GUEST.did.did], "prog.py", bytes(32), requirements=Policy.parse(()),
    ttl=3600, bootstrap=("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWExample",), relays=(),
    now=NOW)
TOKEN = INVITATION.token()


def only_mpcid_errors(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except MpcidError:
        pass


def flip(data: bytes, positions: list[int], replacement: bytes) -> bytes:
    """``data`` with bytes at ``positions`` (mod its length) replaced, then ``replacement``
    spliced in at the first one: small, local damage, as in copying or tampering."""
    out = bytearray(data)
    for p in positions:
        out[p % len(out)] ^= 0x5A
    at = positions[0] % len(out) if positions else 0
    return bytes(out[:at]) + replacement + bytes(out[at:])


damage = st.tuples(st.lists(st.integers(min_value=0), max_size=4), st.binary(max_size=8))


# --- invitations, tokens, declines, transcripts, endpoint records -------------------------


@BOUNDED
@given(st.text(max_size=300) | st.builds(lambda s: "mpcid1:" + s, st.text(max_size=300)))
def test_tokens(text: str) -> None:
    only_mpcid_errors(Invitation.from_token, text, NOW)


@BOUNDED
@given(damage)
def test_damaged_tokens(change: tuple[list[int], bytes]) -> None:
    text = flip(TOKEN.encode(), *change).decode("ascii", errors="replace")
    only_mpcid_errors(Invitation.from_token, text, NOW)


@BOUNDED
@given(st.integers(min_value=1, max_value=64 << 20))
def test_compressed_tokens_of_any_claimed_size(size: int) -> None:
    """A token that inflates to a lot is refused without inflating all of it."""
    bomb = zlib.compress(b"{" + b" " * min(size, 8 << 20))
    text = "mpcid1:" + base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    only_mpcid_errors(decode_token, text)


@BOUNDED
@given(damage)
def test_damaged_invitations(change: tuple[list[int], bytes]) -> None:
    only_mpcid_errors(Invitation.verify, flip(INVITATION_DATA, *change), NOW)


@BOUNDED
@given(st.binary(max_size=600), st.sampled_from([dht_key(GUEST.did.did),
                                                  decline_key("0" * 32, GUEST.did.did)]))
def test_dht_values(value: bytes, key: str) -> None:
    only_mpcid_errors(decode_and_verify, key, value, NOW)
    only_mpcid_errors(decode_decline, key, value, NOW)


@BOUNDED
@given(damage)
def test_damaged_endpoint_records(change: tuple[list[int], bytes]) -> None:
    _, value = EndpointRecord.create(GUEST, seq=1, now=NOW, ttl=3600,
                                     tcp=("203.0.113.7:4001",))
    only_mpcid_errors(decode_and_verify, dht_key(GUEST.did.did), flip(value, *change), NOW)


@BOUNDED
@given(st.binary(max_size=2000))
def test_transcripts(data: bytes) -> None:
    only_mpcid_errors(Transcript.verify, data)


# --- admission messages and channel frames ------------------------------------------------


@BOUNDED
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_admission_streams(chunks: list[bytes]) -> None:
    decoder = admission.Decoder()
    for chunk in chunks:
        try:
            decoder.feed(chunk)
        except MpcidError:
            return


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
json_values = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)


@BOUNDED
@given(st.sampled_from(["presentation", "verdict", "ready", "abort", "other"]),
       st.dictionaries(st.sampled_from(["v", "vp", "admitted", "reason"]), json_values))
def test_admission_messages(kind: str, fields: dict[str, Any]) -> None:
    body = json.dumps({"t": kind, **fields}).encode()
    only_mpcid_errors(admission.Decoder().feed, len(body).to_bytes(4, "big") + body)


def _responder() -> NoiseChannel:
    peer = Ed25519Key.from_seed(bytes([3]) * 32)
    me = Ed25519Key.from_seed(bytes([4]) * 32)
    config = ChannelConfig(
        static_private=me.x25519_private_key,
        prologue=session_prologue("s", bytes(32), [peer.did.did, me.did.did]),
        initiator=False,
        expected_peers={peer.did.did: DIDKey.parse(peer.did.did).x25519_public_key})
    return NoiseChannel(config, 0.0)


@BOUNDED
@given(st.lists(st.binary(max_size=200) | st.builds(lambda b: PREAMBLE + b,
                                                    st.binary(max_size=200)), max_size=5))
def test_channel_bytes_before_and_during_the_handshake(chunks: list[bytes]) -> None:
    channel = _responder()
    channel.start()
    for chunk in chunks:
        try:
            channel.receive_data(chunk, 0.0)
        except MpcidError:
            return


# --- status lists and presentations ----------------------------------------------------------


@BOUNDED
@given(st.text(max_size=200) | st.builds(lambda b: "u" + base64.urlsafe_b64encode(b).decode(),
                                         st.binary(max_size=200)))
def test_status_list_bitstrings(encoded: str) -> None:
    only_mpcid_errors(Bitstring.decode, encoded)


HOLDER = Ed25519Key.from_seed(bytes([9]) * 32)


def linked_blank_nodes(n: int, extra: int) -> dict[str, Any]:
    """A presentation of ``n`` blank nodes that all refer to each other: tiny as JSON,
    the worst case of RDF canonicalization."""
    nodes = [{"@id": f"_:b{i}", "https://example.org/p": [{"@id": f"_:b{j}"}
                                                        for j in range(n) if j != i],
              "https://example.org/q": extra} for i in range(n)]
    return {"@context": ["https://www.w3.org/ns/credentials/v2"],
            "type": ["VerifiablePresentation"], "holder": HOLDER.did.did,
            "@included": nodes,
            "proof": {"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022",
                      "proofPurpose": "authentication", "challenge": "c", "domain": "d",
                      "verificationMethod": f"{HOLDER.did.did}#{HOLDER.did.did[8:]}",
                      "proofValue": multibase.encode(bytes(range(64)))}}


@settings(max_examples=12, deadline=BOUND,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(min_value=1, max_value=14), st.integers())
def test_presentations_of_linked_blank_nodes(n: int, extra: int) -> None:
    document = linked_blank_nodes(n, extra)
    only_mpcid_errors(asyncio.run, credentials.verify_presentation(
        document, VerifyConfig(status=None), challenge="c", domain="d"))
