"""Reading a policy out of a config file (YAML, TOML, JSON) or a plain ``.policy`` file.

``load("train.yaml", key="training.policy")`` finds the value under the (dotted) key, which
may be one string or a list of rule strings, and parses and validates it. Errors point into
the config file itself: the file name, the line and column where the offending word sits in
that file, and that file's line under the caret. We find the policy's lines in the file by
looking for their text after the key; where a line cannot be found (YAML folded scalars,
unusual escapes) the error keeps the policy's own line numbers.

YAML needs pyyaml (``pip install keras-policy[yaml]``); TOML uses ``tomllib`` (Python 3.11+).
No keras import here.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policy.ast import Policy
from policy.errors import PolicyError, Problem, closest

if TYPE_CHECKING:
    from pathlib import Path

YAML_SUFFIXES = (".yaml", ".yml")
TOML_SUFFIXES = (".toml",)
JSON_SUFFIXES = (".json",)
TEXT_SUFFIXES = (".policy", ".txt")
CONFIG_SUFFIXES = YAML_SUFFIXES + TOML_SUFFIXES + JSON_SUFFIXES
ALL_SUFFIXES = TEXT_SUFFIXES + CONFIG_SUFFIXES


def load(source: str | os.PathLike[str] | Mapping[str, Any], key: str = "policy") -> Policy:
    """Parse and validate the policy found in a config file or an already-loaded mapping.

    Args:
        source: a path to a ``.yaml``/``.yml``, ``.toml``, ``.json`` config, a ``.policy``/``.txt``
            file holding only policy text, or a mapping (e.g. a loaded Hydra/OmegaConf config
            converted with ``OmegaConf.to_container``).
        key: where the policy sits; dots go down nested tables (``"training.policy"``).

    Raises:
        PolicyError: the file is missing or unreadable, the key is absent (naming the keys that
            exist), the value is not text or a list of text, or the policy itself is invalid.
    """
    if not isinstance(key, str):
        raise TypeError(
            f"load(key=...) takes a dotted key as text, such as 'policy' or 'training.policy'; "
            f"got {type(key).__name__}"
        )
    if isinstance(source, Mapping):
        return _parse(policy_text(source, key), None, None)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            "load() takes a path to a config or .policy file (a str or os.PathLike) or a mapping "
            f"holding the policy; got {type(source).__name__}"
        )
    from pathlib import Path  # not at the top: `keras-policy check` imports this module for its suffixes

    path = Path(source)
    raw = read_text(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        # Anything else is read as policy text itself, line for line.
        return _parse(raw, str(path), None)
    data = read_config(raw, suffix, str(path))
    return _parse(policy_text(data, key, str(path)), str(path), (raw, key))


def read_text(path: Path) -> str:
    """A file's text, decoded as UTF-8 (a leading byte-order mark is dropped); every failure is a
    PolicyError naming the file, and for bytes that are not UTF-8 the line, column and byte offset."""
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError.plain(f"cannot read {str(path)!r}: {reason}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(data, exc, str(path)) from None


def not_utf8(data: bytes, exc: UnicodeDecodeError, filename: str) -> PolicyError:
    """The error for a file that is not UTF-8, at the first offending byte."""
    start = exc.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line = data.count(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    # The column counts characters (the part of the line before the byte decodes cleanly).
    before = data[line_start:start].decode("utf-8", errors="replace")
    shown_line = data[line_start : line_end if line_end >= 0 else len(data)].decode("utf-8", errors="replace")
    return PolicyError(
        [
            Problem(
                f"the file is not UTF-8 text: byte 0x{data[start]:02x} at byte offset {start} cannot be decoded",
                line,
                len(before) + 1,
                shown_line,
                "save the file as UTF-8",
            )
        ],
        filename,
    )


def read_config(raw: str, suffix: str, filename: str) -> Any:
    """The parsed content of a YAML/TOML/JSON file; syntax errors become PolicyErrors with a line."""
    if suffix in JSON_SUFFIXES:
        import json  # not at the top: `keras-policy check` reads this module for its suffixes only

        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PolicyError([Problem(f"not valid JSON: {exc.msg}", exc.lineno, exc.colno, _line(raw, exc.lineno))],
                              filename) from None
        except RecursionError:
            raise _too_deep("JSON", filename) from None
        except ValueError as exc:  # e.g. an integer longer than Python's int-from-text limit
            raise PolicyError([Problem(f"not valid JSON: {exc}")], filename) from None
    if suffix in TOML_SUFFIXES:
        try:
            tomllib: Any = importlib.import_module("tomllib")
        except ImportError:  # Python 3.10
            try:
                tomllib = importlib.import_module("tomli")
            except ImportError:
                raise PolicyError.plain("reading TOML needs Python 3.11+ or the tomli package",
                                        "pip install tomli") from None
        try:
            return tomllib.loads(raw)
        except RecursionError:
            raise _too_deep("TOML", filename) from None
        except ValueError as exc:  # TOMLDecodeError is one; so is an over-long integer
            raise PolicyError([Problem(f"not valid TOML: {exc}")], filename) from None
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise PolicyError.plain("reading YAML needs pyyaml", "pip install 'keras-policy[yaml]'") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([Problem(f"not valid YAML: {what}", line, column, _line(raw, line))], filename) from None
    except RecursionError:
        raise _too_deep("YAML", filename) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # pyyaml's constructors can fail on a tagged scalar they cannot build (``!!int 0x``, an
        # impossible ``!!timestamp``) with a plain Python error rather than a YAMLError.
        raise PolicyError([Problem(f"not valid YAML: {exc}")], filename) from None


def _too_deep(kind: str, filename: str) -> PolicyError:
    return PolicyError(
        [
            Problem(
                f"not valid {kind}: it nests lists or tables deeper than the reader can follow "
                f"(Python's recursion limit, {sys.getrecursionlimit()})",
                suggestion="a policy config needs only a few levels of nesting",
            )
        ],
        filename,
    )


def policy_text(data: Any, key: str = "policy", filename: str | None = None) -> str:
    """The policy text under a dotted ``key``: one string, or a list of rules joined by newlines."""
    node = data
    walked: list[str] = []
    for part in key.split("."):
        if not isinstance(node, Mapping):
            where = ".".join(walked) or "the top level"
            raise _error(f"{where!r} is a {type(node).__name__}, not a table, so it has no key {part!r}", filename)
        if part not in node:
            raise _missing_key(part, walked, node, filename)
        node = node[part]
        walked.append(part)
    if isinstance(node, str):
        return node
    if isinstance(node, list) and all(isinstance(item, str) for item in node):
        return "\n".join(node)
    raise _error(f"expected the policy under {key!r} to be text or a list of rules, got {type(node).__name__}",
                 filename, 'e.g. policy: "stop when val_loss not improving for 3"')


def _missing_key(part: str, walked: list[str], table: Mapping[Any, Any], filename: str | None) -> PolicyError:
    where = f"under {'.'.join(walked)!r}" if walked else "at the top level"
    keys = [str(k) for k in table]
    if not keys:
        return _error(f"no key {part!r} {where}: it is empty", filename)
    guess = closest(part, keys)
    nested = _nested_key(table, part)
    if guess is not None:
        hint = f"did you mean {'.'.join([*walked, guess])!r}?"
    elif nested is not None:
        hint = f"did you mean {'.'.join([*walked, nested])!r}?"
    else:
        hint = "pass key=... (or --key) to say where the policy is"
    listed = ", ".join(repr(k) for k in keys)
    return _error(f"no key {part!r} {where}; the keys there are {listed}", filename, hint)


def _nested_key(table: Mapping[Any, Any], name: str, depth: int = 3) -> str | None:
    """The dotted path of a key called ``name`` deeper in ``table`` (breadth-first), if any."""
    level: list[tuple[str, Mapping[Any, Any]]] = [("", table)]
    for _ in range(depth):
        deeper: list[tuple[str, Mapping[Any, Any]]] = []
        for prefix, sub in level:
            for k, v in sub.items():
                dotted = f"{prefix}{k}"
                if str(k) == name and prefix:
                    return dotted
                if isinstance(v, Mapping):
                    deeper.append((dotted + ".", v))
        level = deeper
    return None


def _error(message: str, filename: str | None, hint: str | None = None) -> PolicyError:
    return PolicyError([Problem(message, suggestion=hint)], filename)


def _parse(text: str, filename: str | None, located: tuple[str, str] | None) -> Policy:
    from policy import parse_policy

    try:
        return parse_policy(text)
    except PolicyError as exc:
        if filename is None:
            raise
        if located is None:
            raise exc.with_filename(filename) from None
        raw, key = located
        raise _relocate(exc, text, raw, key, filename) from None


# --------------------------------------------------------------------------- locating lines


def place_error(error: PolicyError, path: str | os.PathLike[str], key: str = "policy") -> PolicyError:
    """An error found later in a policy loaded from ``path`` (a missing metric, say), placed in that file."""
    from pathlib import Path

    path = Path(path)
    raw = read_text(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        return error.with_filename(str(path))
    text = policy_text(read_config(raw, suffix, str(path)), key, str(path))
    return _relocate(error, text, raw, key, str(path))



def _relocate(exc: PolicyError, text: str, raw: str, key: str, filename: str) -> PolicyError:
    """The same problems, with lines, columns and source lines taken from the config file."""
    where = locate_lines(text, raw, key)
    moved = []
    for p in exc.problems:
        found = where.get(p.line) if p.line else None
        if found is None:
            moved.append(p)
            continue
        file_line, offset = found
        moved.append(Problem(p.message, file_line, p.column + offset, _line(raw, file_line), p.suggestion))
    return PolicyError(moved, filename)


def locate_lines(text: str, raw: str, key: str) -> dict[int, tuple[int, int]]:
    """Map each policy line (1-based) to ``(file line, column offset)`` where its text sits in ``raw``.

    The search starts at the last part of ``key`` and moves forward line by line, so a rule
    quoted earlier in a comment is not mistaken for the policy. A column offset is exact
    when the line appears unescaped, and approximate when escapes precede the error.
    """
    file_lines = raw.splitlines()
    start = _key_line(file_lines, key.split(".")[-1])
    out: dict[int, tuple[int, int]] = {}
    cursor_line, cursor_col = start, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        found = _find_forward(file_lines, line, cursor_line, cursor_col)
        if found is None:
            continue
        file_index, col, _ = found
        out[number] = (file_index + 1, col)
        cursor_line, cursor_col = file_index, col + 1
    return out


def _key_line(file_lines: list[str], last_key: str) -> int:
    for index, line in enumerate(file_lines):
        stripped = line.lstrip().lstrip('"\'')
        if stripped.startswith(last_key) and stripped[len(last_key):].lstrip('"\' \t').startswith(("=", ":")):
            return index
    return 0


def _find_forward(file_lines: list[str], line: str, from_line: int, from_col: int) -> tuple[int, int, str] | None:
    # A line as it may be spelled inside the file: as is (YAML block scalars, TOML multi-line
    # strings), JSON/TOML/YAML double-quoted escapes, YAML single-quoted doubling.
    import json

    candidates = dict.fromkeys([line, json.dumps(line)[1:-1], line.replace("'", "''")])
    for index in range(from_line, len(file_lines)):
        column0 = from_col if index == from_line else 0
        for spelled in candidates:
            col = file_lines[index].find(spelled, column0)
            if col >= 0:
                return index, col, spelled
    return None


def _line(raw: str, line: int) -> str:
    lines = raw.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""
