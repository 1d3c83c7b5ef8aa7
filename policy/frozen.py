"""Frozen keyword-only dataclasses whose methods are written once, not generated per class.

``@dataclass(frozen=True, kw_only=True)`` writes ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` as source text for every class and compiles
each with ``exec`` when the class is created. For the syntax tree's classes that compiling was
~11 ms of every ``import policy`` and every ``keras-policy check``, more than the rest of our
start-up together (BENCHMARKS.md, figure 5). ``@frozen`` makes the same classes without
compiling anything: ``dataclasses.dataclass`` still records the fields (so ``fields``,
``replace``, ``asdict`` and ``is_dataclass`` answer as before), and the six methods, inherited
from :class:`Frozen`, read the field lists recorded for each class.

What a class gets is what ``@dataclass(frozen=True, kw_only=True)`` gives it: keyword-only
construction with defaults; equality only between instances of the same class, over the fields
with ``compare=True``; a hash over the same fields; a repr of the fields with ``repr=True``;
:class:`~dataclasses.FrozenInstanceError` on assigning or deleting any attribute; the same
``inspect.signature``. What it does not support (``default_factory``, ``init=False`` fields,
``InitVar``, ``__post_init__``) is refused when the class is made, not ignored.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

if TYPE_CHECKING:
    import inspect

    from _typeshed import DataclassInstance
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object) -> Callable[[Any], Any]:
        """Type checkers read the real one; at run time it marks nothing."""
        return lambda decorated: decorated


F = TypeVar("F", bound="Frozen")


def _getter(names: tuple[str, ...]) -> Callable[[object], tuple[Any, ...]]:
    """A function returning the tuple of ``names``' values (what the generated methods compare)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _listed(names: list[str]) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b', and 'c'``: how Python lists missing arguments."""
    quoted = [repr(n) for n in names]
    if len(quoted) < 3:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


class _ClassSignature:
    """``inspect.signature(cls)``: the keyword-only signature a dataclass's generated __init__ has.

    Built on demand (``help()``, Hypothesis's ``builds``), so making a class costs no ``inspect`` call.
    """

    def __get__(self, instance: object, owner: type) -> inspect.Signature:
        import inspect

        empty = inspect.Parameter.empty
        params = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=f.type,
                              default=empty if f.default is MISSING else f.default)
            for f in fields(owner)
        ]
        return inspect.Signature(params, return_annotation=None)


class Frozen:
    """The methods every ``@frozen`` class shares; the per-class facts they read are set by ``frozen``."""

    __slots__ = ()
    __signature__ = _ClassSignature()

    if TYPE_CHECKING:  # declared for the type checker only: typing.get_type_hints(node class) must not see them
        _frozen_init: ClassVar[dict[str, Any]]  # field name -> default (MISSING if required), in field order
        _frozen_eq: ClassVar[Callable[[object], tuple[Any, ...]]]
        _frozen_hash: ClassVar[Callable[[object], tuple[Any, ...]]]
        _frozen_repr: ClassVar[tuple[str, ...]]

    def __init__(self, *args: object, **values: Any) -> None:
        cls = type(self)
        spec = cls._frozen_init
        # The checks and messages of a generated __init__, in Python's order.
        for name in values:
            if name not in spec:
                raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {name!r}")
        if args:
            n = len(values)
            also = f" positional arguments (and {n} keyword-only argument{'s' if n != 1 else ''})" if n else ""
            raise TypeError(f"{cls.__qualname__}.__init__() takes 1 positional argument but {len(args) + 1}{also} were given")
        state = {}
        missing = []
        for name, default in spec.items():
            if name in values:
                state[name] = values[name]
            elif default is MISSING:
                missing.append(name)
            else:
                state[name] = default
        if missing:
            s = "s" if len(missing) > 1 else ""
            raise TypeError(f"{cls.__qualname__}.__init__() missing {len(missing)} required keyword-only "
                            f"argument{s}: {_listed(missing)}")
        # The instance dict directly, as a frozen dataclass's __init__ goes around its __setattr__.
        self.__dict__.update(state)

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._frozen_repr)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            key = type(self)._frozen_eq
            return key(self) == key(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(type(self)._frozen_hash(self))

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[F]) -> type[F]:
    """Make ``cls`` (a subclass of :class:`Frozen`) a frozen keyword-only dataclass; see the module."""
    if not issubclass(cls, Frozen):
        raise TypeError(f"@frozen makes subclasses of Frozen; {cls.__qualname__} is not one")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"@frozen does not run __post_init__ ({cls.__qualname__}): use @dataclass")
    # Records the fields and __match_args__ and writes no method: every generating option is off.
    dataclass(cls, init=False, repr=False, eq=False, kw_only=True)
    made = fields(cast("type[DataclassInstance]", cls))
    for f in made:
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"@frozen takes fields with a plain default or none ({cls.__qualname__}.{f.name})")
    cls._frozen_init = {f.name: f.default for f in made}
    cls._frozen_eq = staticmethod(_getter(tuple(f.name for f in made if f.compare)))
    cls._frozen_hash = staticmethod(_getter(tuple(f.name for f in made if (f.compare if f.hash is None else f.hash))))
    cls._frozen_repr = tuple(f.name for f in made if f.repr)
    return cls
