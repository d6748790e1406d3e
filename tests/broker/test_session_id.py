"""The one session-id grammar (``mpcid.broker.session_id``)."""

from __future__ import annotations

import pytest

from mpcid.broker.session_id import is_session_id, is_session_label, session_id_for


@pytest.mark.parametrize("text", ["0" * 32, "0123456789abcdef" * 2])
def test_session_ids_are_32_lowercase_hex_digits(text: str) -> None:
    assert is_session_id(text) and is_session_label(text)


@pytest.mark.parametrize("value", ["0" * 31, "0" * 33, "A" * 32, "g" * 32, " " + "0" * 31,
                                   "0" * 32 + "\n", 12, None, b"0" * 32])
def test_anything_else_is_no_session_id(value: object) -> None:
    assert not is_session_id(value)


def test_session_labels_of_session_files() -> None:
    assert is_session_label("salaries-2026") and is_session_label("a:b.c_d-e")
    assert not is_session_label("") and not is_session_label("x" * 129)
    assert not is_session_label("two words") and not is_session_label("é")


def test_a_derived_id_depends_on_inviter_and_nonce() -> None:
    a = session_id_for("did:key:z6MkA", b"\x00" * 16)
    assert is_session_id(a)
    assert a != session_id_for("did:key:z6MkB", b"\x00" * 16)
    assert a != session_id_for("did:key:z6MkA", b"\x01" * 16)
