"""The error tree drawn in each package's ``errors`` module is the real class hierarchy,
so the drawings cannot go stale."""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
from types import ModuleType

import pytest

MODULES = ["mpcid.identity.errors", "mpcid.p2p.errors", "mpcid.broker.errors"]

#: One line of the drawing: the guides of the levels above, a branch, the class name, an
#: optional "(also Base)" naming its second base, then free text.
_LINE = re.compile(r"((?:│   |    )*)(├── |└── )?([A-Za-z]+)(?: +\(also ([A-Za-z]+)\))?")


def drawn_bases(doc: str) -> dict[str, tuple[str, ...]]:
    """Each class in the docstring's drawing -> its bases as drawn: the class it hangs
    under, then its "(also ...)" base; ``()`` for a root."""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    bases: dict[str, tuple[str, ...]] = {}
    stack: list[str] = []
    for line in block.splitlines():
        match = _LINE.match(line.removeprefix("    "))
        assert match, line
        guides, branch, name, also = match.groups()
        depth = len(guides) // 4 + (1 if branch else 0)
        assert name not in bases and depth <= len(stack), line
        del stack[depth:]
        bases[name] = (stack[-1], *([also] if also else [])) if stack else ()
        stack.append(name)
    return bases


def lookup(module: ModuleType, name: str) -> type:
    found = getattr(module, name, None) or getattr(builtins, name)
    assert inspect.isclass(found), name
    return found


@pytest.fixture(params=MODULES)
def module(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_the_drawing_is_the_class_hierarchy(module: ModuleType) -> None:
    drawn = drawn_bases(module.__doc__ or "")
    defined = {name for name, cls in vars(module).items()
               if inspect.isclass(cls) and issubclass(cls, BaseException)
               and cls.__module__ == module.__name__}
    assert {name for name, bases in drawn.items() if bases} == defined
    for name, bases in drawn.items():
        cls = lookup(module, name)
        if bases:
            assert tuple(base.__name__ for base in cls.__bases__) == bases, name
        subclasses = {sub.__name__ for sub in cls.__subclasses__()
                      if sub.__module__ == module.__name__}
        assert subclasses == {other for other, of in drawn.items() if name in of}, name


def test_every_error_says_what_it_is(module: ModuleType) -> None:
    for name, bases in drawn_bases(module.__doc__ or "").items():
        if bases:
            assert lookup(module, name).__doc__, name


def test_a_wrong_drawing_is_caught() -> None:
    """The parser really reads the tree: a class moved to another parent changes it."""
    doc = importlib.import_module("mpcid.broker.errors").__doc__ or ""
    moved = doc.replace("│   ├── NotAParty ", "├── NotAParty     ")
    assert drawn_bases(moved)["NotAParty"] == ("MpcidError",)
    assert drawn_bases(doc)["NotAParty"] == ("SessionError",)
