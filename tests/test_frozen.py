"""`@frozen` (policy/frozen.py) behaves as `@dataclass(frozen=True)` for every class it makes.

Each syntax-tree class (keyword-only), `Pos`, `Span` and `errors.Problem` (positional) is compared
with a twin made by `dataclasses.make_dataclass` from the same fields: construction and its errors,
repr, equality, hash, immutability, `replace`, `asdict`, `fields`, `__match_args__` and
`inspect.signature` must all answer alike.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import Any

import pytest

from policy import ast as A
from policy.errors import Problem
from policy.frozen import Frozen, frozen

MADE = sorted({c for c in [*vars(A).values(), Problem] if isinstance(c, type) and issubclass(c, Frozen) and c is not Frozen},
              key=lambda c: c.__name__)


def twin(cls: type) -> type:
    """The same class as the standard library's frozen keyword-only dataclass would make it."""
    specs = [
        (f.name, f.type, dataclasses.field(default=f.default, compare=f.compare, repr=f.repr, hash=f.hash,
                                           kw_only=f.kw_only))
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True)


def outcome(call: Any, *args: Any, **kwargs: Any) -> str:
    """What ``call(*args, **kwargs)`` returns, or the exception it raises, as text to compare."""
    try:
        return repr(call(*args, **kwargs))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def values(cls: type, salt: str = "") -> dict[str, Any]:
    """A value for every field (dataclasses do not check types at run time)."""
    return {f.name: f"{f.name}{salt}" for f in dataclasses.fields(cls)}


def test_every_syntax_tree_class_is_made_by_frozen() -> None:
    assert len(MADE) >= 20 and {A.Node, A.Policy, A.Pos, A.Span, Problem} <= set(MADE)
    assert all(dataclasses.is_dataclass(c) for c in MADE)
    nodes = {c for c in vars(A).values() if isinstance(c, type) and issubclass(c, A.Node)}
    assert nodes <= set(MADE)


@pytest.mark.parametrize("cls", MADE, ids=lambda c: c.__name__)
def test_a_node_class_answers_as_its_dataclass_twin(cls: type) -> None:
    other = twin(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(other))
    assert cls.__match_args__ == other.__match_args__
    shape = lambda c: [(f.name, f.type, f.default, f.compare, f.repr, f.kw_only, f.init) for f in dataclasses.fields(c)]  # noqa: E731
    assert shape(cls) == shape(other)
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    positional = [f.name for f in dataclasses.fields(cls) if not f.kw_only]
    given = values(cls)
    kw_only = {k: v for k, v in given.items() if k not in positional}
    too_many = tuple(range(len(positional) + 1))
    # Construction: nothing, positional arguments (too many, twice given), an unknown keyword, each
    # missing field, by position where a class allows it.
    cases = [((), {}), ((1,), {}), ((1,), given), ((1, 2), {"zzz": 1}), ((), {**given, "zzz": 1}),
             (too_many, {}), (too_many, kw_only), (tuple(given[k] for k in positional), kw_only),
             *(((), {k: v for k, v in given.items() if k != name}) for name in required)]
    for args, kwargs in cases:
        assert outcome(cls, *args, **kwargs) == outcome(other, *args, **kwargs)
    ours, theirs = cls(**given), other(**given)
    assert repr(ours) == repr(theirs)
    assert hash(ours) == hash(theirs)
    assert ours == cls(**given)
    assert not ours != cls(**given)  # noqa: SIM202 - __ne__ is what is tested
    assert (ours == theirs) is False and ours.__eq__(theirs) is NotImplemented
    for f in dataclasses.fields(cls):
        changed = {**given, f.name: f"{f.name}-other"}
        # A field left out of comparison (pos, source) changes neither equality nor hash.
        assert (cls(**changed) == ours) is (not f.compare) and (other(**changed) == theirs) is (not f.compare)
        assert (hash(cls(**changed)) == hash(ours)) is (not f.compare)
        assert outcome(setattr, ours, f.name, 1) == outcome(setattr, theirs, f.name, 1)
        assert outcome(delattr, ours, f.name) == outcome(delattr, theirs, f.name)
    assert outcome(setattr, ours, "new", 1) == outcome(setattr, theirs, "new", 1)
    assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
    again = dataclasses.replace(ours, **values(cls, "2"))
    assert repr(again) == repr(dataclasses.replace(theirs, **values(cls, "2")))
    assert copy.deepcopy(ours) == ours and pickle.loads(pickle.dumps(ours)) == ours
    assert list(vars(ours)) == list(vars(theirs))


def test_a_parsed_policy_compares_and_hashes_without_positions() -> None:
    from policy import parse_policy

    a = parse_policy("stop when val_loss not improving for 3; save best on val_loss min")
    b = parse_policy("stop   when val_loss not improving for 3 epochs\n\nsave best on val_loss min")
    assert a == b and hash(a) == hash(b) and a.rules[0].pos != b.rules[0].pos
    assert len({a, b}) == 1


def test_frozen_refuses_what_it_does_not_do() -> None:
    with pytest.raises(TypeError, match="subclasses of Frozen"):
        frozen(type("Plain", (), {}))
    with pytest.raises(TypeError, match="__post_init__"):
        frozen(type("Post", (Frozen,), {"__post_init__": lambda self: None}))
    with pytest.raises(TypeError, match="plain default"):
        frozen(type("Factory", (Frozen,), {"__annotations__": {"x": "list[int]"},
                                            "x": dataclasses.field(default_factory=list)}))
