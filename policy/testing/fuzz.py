"""Random and mutated inputs for every entry point that reads user input, and the one promise they
are checked against: only :class:`~policy.errors.PolicyError`, or a ``TypeError`` of ours saying what
an argument should be, ever escapes.

Plain :mod:`random` (seeded), no Hypothesis, so that ``benchmarks/fig8_bad_input.py`` can run
100,000 inputs in a couple of minutes; ``tests/test_fuzz.py`` drives the same generators from
Hypothesis-drawn seeds and mutates Hypothesis's own generated policies too.

- :func:`policy_text`: a policy from the grammar's own vocabulary, usually valid.
- :func:`mutate`: one edit of a text: characters or tokens inserted, deleted, swapped or repeated,
  a condition nested deep or chained long, a huge or odd number, odd Unicode, a broken path.
- :func:`history`, :func:`simulate_kwargs`: histories and keyword arguments of every shape, right
  or wrong (ragged, nested, huge integers, booleans, NaN, strings).
- :func:`config_document`: the bytes of a JSON/YAML/TOML/.policy file, often broken (not UTF-8,
  nested thousands deep, truncated, wrong key).
- :func:`one_input`: one of the above, as ``(entry point, thunk)``; :func:`unexpected` says whether
  an exception breaks the promise.
"""

from __future__ import annotations

import inspect
import json
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policy.errors import PolicyError
from policy.parser import keywords

METRICS = ("loss", "val_loss", "accuracy", "val_accuracy", "val_auc", "score", "learning_rate", "f1/macro")

_CONDITIONS = (
    "{m} not improving for {n}",
    "{m} not improving by {x} for {n} epochs",
    "{m} not decreasing by {p}% for {n}",
    "{m} not increasing for {n}",
    "{m} >= {x}",
    "{m} < {x}",
    "{m} is not finite",
    "{m} is nan",
)
_RULES = (
    "stop when {c}",
    "stop when {c}, restore best",
    "stop when {c}, restore best {m}",
    "stop when {c}, ignore first {n} epochs",
    "stop when {c}, baseline {x}",
    "stop after {n} epochs",
    "stop after {n} steps",
    "stop after {x} min",
    "stop after {n}h",
    "save best on {m}",
    "save best on {m} {d} to {path}",
    "save best weights on {m} to {wpath}",
    "save top {n} on {m} {d} to {path}",
    "save every epoch to {path}",
    "save every {n} epochs to {path}",
    "save every {n} steps to {path}",
    "save last to {path}",
    "multiply lr by {f} when {m} not improving for {n}",
    "multiply lr by {f} when {m} not improving by {x} for {n}, cooldown {n}, min lr {x}",
    "warm up lr to {x} over {n} epochs",
    "warm up lr to {x} over {n} epochs, then cosine to {x} over {n} epochs",
    "cosine lr to {x} over {n} epochs",
    "decay lr by {f} every {n} epochs",
    'log to "{name}.csv"',
    'log to "{name}.csv", append',
    'log to tensorboard "{name}/"',
    'backup to "{name}/" every {n} steps',
)
_PLACEHOLDERS = (
    "{epoch}", "{epoch:03d}", "{val_loss:.4f}", "{batch}", "{loss:.2e}", "{epoch.__class__}", "{val_loss[0]}",
    "{}", "{0}", "{epoch", "}", "{epoch:zz}", "{epoch!x}", "{epoch:{w}}", "{epoch:09999}", "{ epoch }",
    "{nonsense}", "{{literal}}",
)
_ODD_TEXT = (
    "\u00e9", "\u0301", "\u200b", "\ufeff", "\u202e", "\U0001f600", "\x00", "\x1b[31m", "\r", "\t", "\\", "\"", "'",
    "#", ";", "\n", "(", ")", ",", "%", "{", "}", "\udcff", "\u2028", "ｓｔｏｐ", "−1", "٣",
)
_HUGE_NUMBERS = (
    "1e308", "1e309", "-1e400", "9" * 400, "1" + "0" * 5000, "0." + "0" * 400 + "1", "1e-400", "nan", "inf",
    "1e999999999999", "-0", "00000003", ".5", "5.", "1e", "--1", "4294967296", "1000000001",
)
# Besides the grammar's keywords (read from it, so a new phrase's words are fuzzed with no list
# to keep up): punctuation, a path, numbers, metric names.
_OTHER_TOKENS = (">=", "<", "(", ")", ",", ";", "%", '"x.keras"', "3", "0.5", "-2", "val_loss")


WORDS = (*sorted(keywords()), *_OTHER_TOKENS)
"""The words of the language a mutation inserts: every keyword, then other tokens."""


def _path(rng: random.Random, suffix: str = ".keras") -> str:
    stem = "".join(rng.choice(("ck/", "e", "-", "", "_")) + rng.choice(_PLACEHOLDERS[:5]) for _ in range(rng.randint(0, 2)))
    if rng.random() < 0.2:
        stem += rng.choice(_PLACEHOLDERS)
    return json.dumps((stem or "m") + suffix)


def _number(rng: random.Random) -> str:
    return rng.choice(("0.5", "0.001", "3", "1e-5", "0.9", "2", "0", "100", "-1"))


def _condition(rng: random.Random, depth: int = 0) -> str:
    if depth < 3 and rng.random() < 0.25:
        joiner = rng.choice((" or ", " and "))
        parts = [_condition(rng, depth + 1) for _ in range(rng.randint(2, 3))]
        text = joiner.join(parts)
        return f"({text})" if depth else text
    return rng.choice(_CONDITIONS).format(
        m=rng.choice(METRICS), n=rng.randint(1, 5), x=_number(rng), p=rng.choice(("1", "5", "50"))
    )


def _rule(rng: random.Random) -> str:
    return rng.choice(_RULES).format(
        c=_condition(rng),
        m=rng.choice(METRICS),
        n=rng.randint(1, 6),
        x=_number(rng),
        f=rng.choice(("0.5", "0.1", "0.9")),
        d=rng.choice(("min", "max")),
        path=_path(rng),
        wpath=_path(rng, ".weights.h5"),
        name=rng.choice(("train", "logs/run", "a b", "x")),
    )


def policy_text(rng: random.Random) -> str:
    """A policy of one to four rules drawn from the language's own phrases (usually valid)."""
    sep = rng.choice(("\n", "; ", "\n\n", ";\n"))
    return sep.join(_rule(rng) for _ in range(rng.randint(1, 4)))


_TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|[A-Za-z_][A-Za-z0-9_./]*|-?[0-9.]+(?:[eE][-+]?[0-9]+)?|>=|<=|\S')


def mutate(text: str, rng: random.Random) -> str:
    """One random edit of ``text`` (see the module docstring for the kinds)."""
    # The large edits (a long repeat, deep nesting, a long chain) cost milliseconds each to parse,
    # the rest microseconds: they are drawn less often, so a run spends its time on variety.
    kind = rng.choices(range(12), weights=(4, 4, 4, 4, 4, 4, 1, 4, 1, 1, 4, 4))[0]
    tokens = _TOKEN.findall(text) or [text]
    i = rng.randrange(len(text) + 1)
    t = rng.randrange(len(tokens))
    if kind == 0:  # insert characters
        return text[:i] + rng.choice(_ODD_TEXT) * rng.choice((1, 1, 2, 50)) + text[i:]
    if kind == 1:  # delete a span
        return text[:i] + text[i + rng.randint(1, 8) :]
    if kind == 2:  # swap two characters
        j = rng.randrange(len(text) + 1)
        chars = list(text)
        if i < len(chars) and j < len(chars):
            chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if kind == 3:  # delete a token
        return " ".join(tokens[:t] + tokens[t + 1 :])
    if kind == 4:  # insert a word of the language
        return " ".join([*tokens[:t], rng.choice(WORDS), *tokens[t:]])
    if kind == 5:  # swap two tokens
        u = rng.randrange(len(tokens))
        tokens[t], tokens[u] = tokens[u], tokens[t]
        return " ".join(tokens)
    if kind == 6:  # repeat a token many times
        return " ".join([*tokens[:t], *[tokens[t]] * rng.choice((2, 10, 100)), *tokens[t + 1 :]])
    if kind == 7:  # a number replaced by a huge, tiny or malformed one
        numbers = [k for k, tok in enumerate(tokens) if tok[:1].isdigit() or tok[:1] in "-."]
        k = rng.choice(numbers) if numbers else t
        tokens[k] = rng.choice(_HUGE_NUMBERS)
        return " ".join(tokens)
    if kind == 8:  # a condition nested deep
        depth = rng.choice((30, 33, 40, 200, 200, 1500))
        inner = "loss > 1"
        for d in range(depth):
            inner = f"(m{d} > 1 {'and' if d % 2 else 'or'} {inner})"
        return text + "\nstop when " + inner
    if kind == 9:  # a long chain, or redundant parentheses
        n = rng.choice((30, 300, 300, 1500))
        if rng.random() < 0.5:
            return text + "\nstop when " + " or ".join(f"m{k} > {k}" for k in range(n))
        return text + "\nstop when " + "(" * n + "loss > 1" + ")" * rng.choice((n, n - 1, n + 1))
    if kind == 10:  # a broken checkpoint path
        return text + f"\nsave best on val_loss to \"{rng.choice(_PLACEHOLDERS)}{rng.choice(('.keras', ''))}\""
    return text[: rng.randrange(len(text) + 1)]  # truncated


def valid_policy_text(rng: random.Random, tries: int = 6) -> str:
    """A generated policy that parses (the first of ``tries`` that does; else the last tried)."""
    from policy import parse_policy

    for _ in range(tries):
        text = policy_text(rng)
        try:
            parse_policy(text)
        except PolicyError:
            continue
        return text
    return text


def policy_input(rng: random.Random) -> str:
    """A generated policy with zero to three mutations."""
    text = policy_text(rng)
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        text = mutate(text, rng)
    return text


# --------------------------------------------------------------------------- histories and arguments


def value(rng: random.Random, wild: float = 0.4) -> Any:
    """One logged value: a number (float32 edge cases included), or with probability ``wild`` anything."""
    if rng.random() >= wild:
        return rng.choice((rng.uniform(-2, 2), 1.0, 0.5, 0.0, 1e-40, 3.5e38, 1e39))
    return rng.choice(
        (None, float("nan"), float("inf"), -float("inf"), 10**400, -(10**400), 3, True, "NA", "", "1e999", "x",
         "0.5", [1.0], {"a": 1}, b"1", 1 + 2j, (), 2**64)
    )


def history(rng: random.Random, metrics: tuple[str, ...] = METRICS, epochs: int | None = None) -> Any:
    """A history: ``History.history``-like columns or per-epoch rows, right or wrong."""
    wild = rng.choice((0.0, 0.0, 0.02, 0.4))
    epochs = rng.choice((0, 1, 3, 8)) if epochs is None else epochs
    names = list(rng.sample(metrics, rng.randint(0, 4)))
    if rng.random() < 0.05:
        names.append(rng.choice((3, None, ("t",), "epoch")))  # type: ignore[arg-type]
    shape = rng.randrange(6)
    if shape < 3:  # columns
        return {n: [value(rng, wild) for _ in range(epochs + (rng.random() < 0.05))] for n in names}
    if shape < 5:  # rows
        return [{n: value(rng, wild) for n in names if rng.random() < 0.9} for _ in range(epochs)]
    return rng.choice((None, 3, "val_loss", [[1.0]], [1.0, 2.0], {"loss": 1.0}, {"loss": "1,2"}))


def simulate_kwargs(rng: random.Random, accepted: frozenset[str], epochs: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``simulate``, right or wrong, for the parameters it has."""
    epochs = rng.choice((1, 3, 8)) if epochs is None else epochs
    wrong = (None, -1, 0, 10**400, 1.5, "3", True, float("nan"), [1], 2**63)

    def pick(*right: Any) -> Any:
        return rng.choice(wrong) if rng.random() < 0.15 else rng.choice(right)

    options: dict[str, Callable[[], Any]] = {
        "initial_lr": lambda: pick(0.001, 0.1, 1.0),
        "steps_per_epoch": lambda: pick(1, 2, 5),
        "batch_losses": lambda: [[value(rng, 0.1) for _ in range(rng.randint(0, 3))] for _ in range(epochs)],
        "step_seconds": lambda: rng.choice(
            (0.5, 10.0, 30.0, 0.5, 10**400, -1.0, [[rng.uniform(0, 100)] * 2 for _ in range(epochs)], [[1.0, -2.0]])
        ),
        "strict": lambda: rng.choice((True, False) * 5 + (None, 1)),
        "validation_freq": lambda: pick(1, 2, 3),
        "steps_per_execution": lambda: pick(1, 2, 4),
        "initial_epoch": lambda: pick(0, 1, 3),
        "backend": lambda: rng.choice(("tensorflow", "jax", "torch", None, "tensorflow", "nonsense", 3)),
    }
    often = {"initial_lr": 0.8, "steps_per_epoch": 0.7}
    chosen = {name: make() for name, make in options.items() if name in accepted and rng.random() < often.get(name, 0.3)}
    if rng.random() < 0.02:
        chosen["no_such_argument"] = 1
    return chosen


# --------------------------------------------------------------------------- config documents


def config_document(rng: random.Random) -> tuple[str, bytes, str]:
    """``(suffix, file bytes, key)`` of a config holding a (maybe mutated) policy, maybe broken."""
    text = policy_input(rng) if rng.random() < 0.5 else policy_text(rng)
    suffix = rng.choice((".json", ".yaml", ".yml", ".toml", ".policy"))
    key = rng.choice(("policy", "training.policy", "policy", "nope", "training", ""))
    doc: Any = {"policy": text} if rng.random() < 0.5 else {"training": {"policy": text.splitlines(), "epochs": 3}}
    if suffix == ".json":
        raw = json.dumps(doc)
    elif suffix in (".yaml", ".yml"):
        raw = "training:\n  policy: |\n" + "".join(f"    {line}\n" for line in text.splitlines()) + f"policy: {json.dumps(text)}\n"
    elif suffix == ".toml":
        raw = f"policy = {json.dumps(text)}\n[training]\npolicy = {json.dumps(text.splitlines())}\n"
    else:
        raw = text
    data = raw.encode("utf-8", errors="surrogatepass")
    r = rng.random()
    if r < 0.1:  # not UTF-8
        i = rng.randrange(len(data) + 1)
        data = data[:i] + rng.choice((b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\x80\x80")) + data[i:]
    elif r < 0.2:  # nested thousands deep
        # 600 is past every reader's recursion (pyyaml's at about 500); deeper only costs time.
        depth = rng.choice((50, 300, 600))
        lists = "[" * depth + "]" * depth
        if suffix == ".json":
            data = ('{"policy": ' + lists + "}").encode()
        else:
            data = (("policy = " if suffix == ".toml" else "policy: ") + lists).encode()
    elif r < 0.3:  # a byte-level mutation
        data = mutate(data.decode("utf-8", "surrogateescape"), rng).encode("utf-8", "surrogateescape")
    elif r < 0.35:  # huge integer, odd scalars
        data = rng.choice((b'{"policy": ' + b"1" * 5000 + b"}", b"policy: !!timestamp 2001-13-45",
                           b"policy: !!int 0x", b"policy: !!binary '@@'", b"policy = 1" + b"0" * 5000,
                           b"policy: &a [*a]", b"\xef\xbb\xbf" + data))
    return suffix, data, key


# --------------------------------------------------------------------------- the promise

# Our TypeErrors say what an argument should be; Python's own say an argument is unknown.
_OUR_TYPE_ERRORS = re.compile(
    r"^([\w.]+\((\w+=\.\.\.)?\) takes |policy\.rules.* must be |\w+\(\) got an unexpected keyword argument )"
)


def unexpected(exc: BaseException) -> bool:
    """Whether ``exc`` breaks the promise: anything but a PolicyError or one of our TypeErrors
    (a TypeError from deep inside, such as comparing None with a float, is a bug, not an answer)."""
    if isinstance(exc, PolicyError):
        return False
    return not (type(exc) is TypeError and _OUR_TYPE_ERRORS.match(str(exc)) is not None)


def one_input(rng: random.Random, folder: Path) -> tuple[str, Callable[[], object]]:
    """One random input as ``(entry point, thunk)``: parse, simulate or load (files go in ``folder``)."""
    from policy import parse_policy
    from policy.load import load
    from policy.reference import simulate

    accepted = frozenset(inspect.signature(simulate).parameters)
    r = rng.random()
    if r < 0.45:
        text = policy_input(rng)
        return "parse", lambda: parse_policy(text)
    if r < 0.8:
        text = policy_input(rng) if rng.random() < 0.2 else valid_policy_text(rng)
        epochs = rng.choice((0, 1, 3, 8, 20))
        hist = history(rng, epochs=epochs)
        kwargs = simulate_kwargs(rng, accepted, epochs)
        return "simulate", lambda: simulate(text, hist, **kwargs)
    suffix, data, key = config_document(rng)
    path = folder / f"config{suffix}"

    def run_load() -> object:
        path.write_bytes(data)
        return load(path, key=key)

    return "load", run_load


def run(seed: int, count: int) -> tuple[dict[tuple[str, str], int], list[tuple[str, str]]]:
    """Run ``count`` random inputs from ``seed``. Returns how many inputs each entry point got and
    how each ended, keyed ``(entry point, "accepted" | "PolicyError" | "TypeError" | "other")``,
    and every ``other`` as ``(entry point, "Type: message")``."""
    rng = random.Random(seed)
    counts: dict[tuple[str, str], int] = {}
    failures: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(count):
            name, thunk = one_input(rng, Path(folder))
            try:
                thunk()
                ending = "accepted"
            except Exception as exc:  # the promise is about every exception
                if unexpected(exc):
                    ending = "other"
                    failures.append((name, f"{type(exc).__name__}: {str(exc)[:200]}"))
                else:
                    ending = "PolicyError" if isinstance(exc, PolicyError) else "TypeError"
            counts[name, ending] = counts.get((name, ending), 0) + 1
    return counts, failures
