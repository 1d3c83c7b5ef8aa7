"""Frozen dataclasses whose methods are written once, not generated per class.

``@dataclass(frozen=True)`` writes ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` as source text for every class and compiles each with
``exec`` when the class is created. For the syntax tree's classes that compiling was ~11 ms of
every ``import policy`` and every ``keras-policy check``, more than the rest of our start-up
together (BENCHMARKS.md, figure 5). ``@frozen`` makes the same classes without compiling
anything: ``dataclasses.dataclass`` still records the fields (so ``fields``, ``replace``,
``asdict`` and ``is_dataclass`` answer as before), and the six methods, inherited from
:class:`Frozen`, read the field lists recorded for each class.

What a class gets is what ``@dataclass(frozen=True, kw_only=True)`` gives it (``@frozen``), or
``@dataclass(frozen=True)`` (``@frozen(kw_only=False)``): construction with defaults and the same
``TypeError`` messages; equality only between instances of the same class, over the fields with
``compare=True``; a hash over the same fields; a repr of the fields with ``repr=True``;
:class:`~dataclasses.FrozenInstanceError` on assigning or deleting any attribute; the same
``inspect.signature``. What it does not support (``default_factory``, ``init=False`` fields,
``InitVar``, ``__post_init__``) is refused when the class is made or called, not ignored.
"""

from __future__ import annotations

import itertools
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

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
    """``inspect.signature(cls)``: the signature a dataclass's generated ``__init__`` would have.

    Built on demand (``help()``, Hypothesis's ``builds``), so making a class costs no ``inspect`` call.
    """

    def __get__(self, instance: object, owner: type) -> inspect.Signature:
        import inspect

        kinds = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
        params = [
            inspect.Parameter(f.name, kinds[bool(f.kw_only)], annotation=f.type,
                              default=inspect.Parameter.empty if f.default is MISSING else f.default)
            for f in sorted(fields(owner), key=lambda f: bool(f.kw_only))  # positional ones first, as dataclasses do
        ]
        return inspect.Signature(params, return_annotation=None)


class Frozen:
    """The methods every ``@frozen`` class shares; the per-class facts they read are set by ``frozen``."""

    __slots__ = ()
    __signature__ = _ClassSignature()

    if TYPE_CHECKING:  # declared for the type checker only: typing.get_type_hints(node class) must not see them
        _frozen_init: ClassVar[dict[str, Any]]  # field name -> default (MISSING if required), in field order
        _frozen_positional: ClassVar[tuple[str, ...]]  # the fields that may be passed by position, in order
        _frozen_required: ClassVar[frozenset[str]]  # the fields without a default
        _frozen_eq: ClassVar[Callable[[object], tuple[Any, ...]]]
        _frozen_hash: ClassVar[Callable[[object], tuple[Any, ...]]]
        _frozen_repr: ClassVar[tuple[str, ...]]

    def __init__(self, *args: object, **values: Any) -> None:
        cls = type(self)
        spec = cls._frozen_init
        # The common case, known keywords covering the required fields, needs no further check.
        if args or not spec.keys() >= values.keys() >= cls._frozen_required:
            values = _bind(cls, args, values)
        # The instance dict directly, as a frozen dataclass's __init__ goes around its __setattr__.
        self.__dict__.update({name: values.get(name, default) for name, default in spec.items()})

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


def _bind(cls: type[Frozen], args: tuple[object, ...], values: dict[str, Any]) -> dict[str, Any]:
    """Every argument by name, with the checks and messages of a generated ``__init__``, in Python's order."""
    spec, positional = cls._frozen_init, cls._frozen_positional
    where = f"{cls.__qualname__}.__init__()"
    for name in values:
        if name not in spec:
            raise TypeError(f"{where} got an unexpected keyword argument {name!r}")
        if name in positional[: len(args)]:
            raise TypeError(f"{where} got multiple values for argument {name!r}")
    if len(args) > len(positional):
        # Counted as Python counts them: self included.
        optional = sum(spec[name] is not MISSING for name in positional)
        most = len(positional) + 1
        takes = f"from {most - optional} to {most}" if optional else str(most)
        plural = "s" if optional or most != 1 else ""
        keywords = sum(name not in positional for name in values)
        also = (f" positional arguments (and {keywords} keyword-only argument{'s' if keywords != 1 else ''})"
                if keywords else "")
        raise TypeError(f"{where} takes {takes} positional argument{plural} but {len(args) + 1}{also} were given")
    bound = {**dict(zip(positional, args, strict=False)), **values}  # no more args than names: checked above
    for kind, names in (("positional", positional), ("keyword-only", tuple(n for n in spec if n not in positional))):
        missing = [name for name in names if name not in bound and spec[name] is MISSING]
        if missing:
            s = "s" if len(missing) > 1 else ""
            raise TypeError(f"{where} missing {len(missing)} required {kind} argument{s}: {_listed(missing)}")
    return bound


@overload
def frozen(cls: type[F], /) -> type[F]: ...


@overload
def frozen(*, kw_only: bool = True) -> Callable[[type[F]], type[F]]: ...


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[F] | None = None, /, *, kw_only: bool = True) -> type[F] | Callable[[type[F]], type[F]]:
    """Make ``cls`` (a subclass of :class:`Frozen`) a frozen dataclass; see the module.

    ``@frozen`` makes every field keyword-only (the syntax tree's nodes); ``@frozen(kw_only=False)``
    lets them be passed by position too, in order (``Pos(1, 5, 1, 9)``).
    """
    if cls is None:
        return lambda c: _make(c, kw_only)
    return _make(cls, kw_only)


def _make(cls: type[F], kw_only: bool) -> type[F]:
    if not issubclass(cls, Frozen):
        raise TypeError(f"@frozen makes subclasses of Frozen; {cls.__qualname__} is not one")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"@frozen does not run __post_init__ ({cls.__qualname__}): use @dataclass")
    # Records the fields and __match_args__ and writes no method: every generating option is off.
    dataclass(cls, init=False, repr=False, eq=False, kw_only=kw_only)
    made = fields(cast("type[DataclassInstance]", cls))
    for f in made:
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"@frozen takes fields with a plain default or none ({cls.__qualname__}.{f.name})")
    positional = tuple(f for f in made if not f.kw_only)
    for before, after in itertools.pairwise(positional):
        if before.default is not MISSING and after.default is MISSING:  # what dataclass's __init__ refuses
            raise TypeError(f"non-default argument {after.name!r} follows default argument")
    cls._frozen_init = {f.name: f.default for f in made}
    cls._frozen_positional = tuple(f.name for f in positional)
    cls._frozen_required = frozenset(f.name for f in made if f.default is MISSING)
    cls._frozen_eq = staticmethod(_getter(tuple(f.name for f in made if f.compare)))
    cls._frozen_hash = staticmethod(_getter(tuple(f.name for f in made if (f.compare if f.hash is None else f.hash))))
    cls._frozen_repr = tuple(f.name for f in made if f.repr)
    return cls
