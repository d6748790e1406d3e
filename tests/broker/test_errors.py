"""The error tree drawn in ``mpcid.broker.errors`` is the real class hierarchy."""

from __future__ import annotations

import inspect
import re

from mpcid.broker import errors
from mpcid.identity.errors import MpcidError

_LINE = re.compile(r"^((?:│   |    )*)(?:├── |└── )?([A-Za-z]+)\b")


def drawn_tree() -> dict[str, str | None]:
    """Each class name in the docstring's drawing -> its parent's name (None: the root)."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in block.splitlines():
        match = _LINE.match(line.removeprefix("    "))
        assert match, line
        depth = len(match.group(1)) // 4 + (0 if match.group(0).startswith(match.group(2))
                                            else 1)
        del stack[depth:]
        parents[match.group(2)] = stack[-1] if stack else None
        stack.append(match.group(2))
    return parents


def test_every_broker_error_is_drawn_under_its_base() -> None:
    drawn = drawn_tree()
    defined = {name for name, cls in vars(errors).items()
               if inspect.isclass(cls) and issubclass(cls, MpcidError)
               and cls.__module__ == errors.__name__}
    assert set(drawn) - {"MpcidError"} == defined
    for name, parent in drawn.items():
        if parent is None:
            continue
        cls = getattr(errors, name)
        assert cls.__bases__[0].__name__ == parent, name


def test_every_broker_error_has_a_hint_or_says_what_it_is() -> None:
    for name in drawn_tree():
        cls = getattr(errors, name)
        assert cls.__doc__ or cls.hint, name
