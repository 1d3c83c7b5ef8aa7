"""Figure 5: ``keras-policy check`` wall time against ``python -c "import keras"`` and ``"import lark"``.

All are child processes timed from spawn to exit: ``check`` against ``import keras`` in rounds
rotating which runs first, ``check`` against ``import lark`` in pairs of their own, back to back
and alternating (more of them: a pair costs a fraction of a second). They run from
bytecode, as an installed package does: the children write and read ``.pyc`` files under a
temporary ``PYTHONPYCACHEPREFIX`` (a checkout run with ``PYTHONDONTWRITEBYTECODE`` would
otherwise compile our modules on every call, but not Lark's, which pip compiled). Separately,
a child runs the ``check`` command in-process and reports whether keras or TensorFlow got
imported, and ``python -X importtime`` says which imports the command's start-up pays for.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import (
    SEED_POLICY,
    Figure,
    Row,
    Stat,
    alternate,
    python,
    quiet_env,
    ratio,
    rotate,
    run_process,
    verdict,
)

GOAL = 0.05  # check / import keras
LARK_GOAL = 1.3  # check / import lark: the command costs little more than the parser library it needs

# What-if: the same ``check`` with the Lark parser built from Lark's on-disk cache (the file is
# written by an untimed run first). Shows what the recommendation in figure 1 would buy.
_CACHED_CHECK = """\
import functools, sys
import lark
from policy import parser

@functools.cache
def _cached_lark():
    return lark.Lark(parser._grammar_text(), parser="lalr", lexer="basic", propagate_positions=True,
                     maybe_placeholders=True, cache={cache!r})

parser._lark = _cached_lark
from policy.cli import main
sys.exit(main(["check", {text!r}]))
"""

_PROBE = """\
import sys
from policy.cli import main
code = main(["check", {text!r}])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"keras", "tensorflow", "jax", "torch"}})
print("HEAVY", code, ",".join(heavy) or "-")
"""


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m policy``."""
    script = Path(sys.executable).parent / "keras-policy"
    return [str(script)] if script.is_file() else [python(), "-m", "policy"]


# Where ``check``'s own time goes, stage by stage, in one child: process (CPU) time, which other
# jobs on the machine disturb less than wall time. Stdlib modules the stages use are imported first.
_STAGES = """\
import contextlib, io, sys, time
clock = time.process_time
marks = [clock()]
import lark
marks.append(clock())
import policy
marks.append(clock())
import policy.cli
marks.append(clock())
import policy.parser, policy.printer, policy.validate
marks.append(clock())
policy.parser._lark()
marks.append(clock())
with contextlib.redirect_stdout(io.StringIO()):
    code = policy.cli.main(["check", {text!r}])
marks.append(clock())
assert code == 0
print("STAGES", *(b - a for a, b in zip(marks, marks[1:])))
"""

STAGES = (
    "import lark (the baseline)",
    "import policy (the package: ast, errors, printer)",
    "import policy.cli",
    "import the parser, checker and printer modules",
    "build the Lark parser (from Lark's cache)",
    "check itself: first parse (Lark builds its lexer), validate, print",
)


def stage_times(env: dict[str, str], runs: int) -> list[Stat]:
    """CPU seconds of each of ``STAGES`` in a fresh child, over ``runs`` children."""
    samples: list[list[float]] = []
    for _ in range(runs):
        out = subprocess.run([python(), "-c", _STAGES.format(text=SEED_POLICY)], env=env, capture_output=True,
                             text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("STAGES"))
        samples.append([float(v) for v in line.split()[1:]])
    return [Stat.of([sample[i] for sample in samples]) for i in range(len(STAGES))]


def heavy_imports() -> tuple[int, list[str]]:
    """Exit code of ``check`` run in a child, and the heavy frameworks it imported (want none)."""
    out = subprocess.run(
        [python(), "-c", _PROBE.format(text=SEED_POLICY)], env=quiet_env(), capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("HEAVY"))
    _, code, names = line.split()
    return int(code), [] if names == "-" else names.split(",")


def import_profile(top: int = 10) -> list[tuple[float, float, str]]:
    """The ``top`` imports with the largest self time in ``check``'s start-up: (self ms, cumulative ms, name)."""
    done = subprocess.run(
        [python(), "-X", "importtime", "-c", f"from policy.cli import main; main(['check', {SEED_POLICY!r}])"],
        env=quiet_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    entries: list[tuple[float, float, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        entries.append((int(self_us) / 1000, int(cumulative_us) / 1000, name))
    return sorted(entries, reverse=True)[:top]


def run(quick: bool) -> Figure:
    """Rotating rounds of ``keras-policy check``, ``import keras`` and ``import lark``; the import check; the profile."""
    fig = Figure(5, "keras-policy check vs python -c 'import keras' (subprocesses)")
    # import keras takes seconds: --quick runs one round, enough to show the table's shape.
    pairs = 1 if quick else 9
    lark_pairs = 3 if quick else 41
    check = [*cli_command(), "check", SEED_POLICY]
    keras_import = [python(), "-c", "import keras"]
    lark_import = [python(), "-c", "import lark"]
    with tempfile.TemporaryDirectory(prefix="policy-bench-lark-") as tmp:
        env = {k: v for k, v in quiet_env(PYTHONPYCACHEPREFIX=str(Path(tmp) / "pyc")).items()
               if k != "PYTHONDONTWRITEBYTECODE"}
        cached = [python(), "-c", _CACHED_CHECK.format(cache=str(Path(tmp) / "tables.cache"), text=SEED_POLICY)]
        for argv in (check, cached, lark_import):  # warm the OS file cache, write the .pyc files and the table cache
            run_process(argv, env)
        cpu: dict[str, list[float]] = {"check": [], "lark": []}

        def timed(name: str, argv: list[str]) -> float:
            """Wall time of one child; its CPU time (user + system) is noted in ``cpu``."""
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = run_process(argv, env)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            return wall

        times = rotate(
            {
                "check": lambda: run_process(check, env),
                "keras": lambda: run_process(keras_import, env),
                "cached": lambda: run_process(cached, env),
            },
            pairs,
        )
        # check against import lark in pairs of their own, back to back: in the rounds above an
        # import keras (seconds, both cores) could fall between them. A pair takes a fraction of a
        # second, so there are more of them, which the noise of a shared machine needs.
        with_lark = alternate(lambda: timed("check", check), lambda: timed("lark", lark_import), lark_pairs)
        bare = Stat.of([run_process([python(), "-c", "pass"], env) for _ in range(3 if quick else 7)])
        stages = stage_times(env, 3 if quick else 15)
    check_vs_keras = ratio(times["check"], times["keras"])
    check_vs_lark = with_lark.ratio
    code, heavy = heavy_imports()

    fig.rows += [
        Row("keras-policy check <seed policy>", Stat.of(times["check"]), "s"),
        Row("python -c 'import keras' (TensorFlow backend)", Stat.of(times["keras"]), "s"),
        Row("python -c 'import lark'", with_lark.b, "s", note=f"{lark_pairs} rounds, paired with check back to back"),
        Row(
            "ratio check / import keras",
            check_vs_keras,
            "x",
            goal=f"<= {GOAL}",
            verdict=verdict(check_vs_keras.median <= GOAL),
            note=f"{pairs} rounds, order rotated",
        ),
        Row(
            "ratio check / import lark",
            check_vs_lark,
            "x",
            goal=f"<= {LARK_GOAL}",
            verdict=verdict(check_vs_lark.median <= LARK_GOAL),
            note=f"{lark_pairs} pairs back to back, order alternating; what check pays beyond the parser library it needs",
        ),
        Row(
            "ratio check / import lark, process CPU time",
            ratio(cpu["check"], cpu["lark"]),
            "x",
            note="same pairs; user + system time of each child, less disturbed by other jobs than wall time",
        ),
        Row(
            "what-if: check with Lark's table cache / import keras",
            ratio(times["cached"], times["keras"]),
            "x",
            note="policy.parser._lark patched to Lark(..., cache=path) in the child; the shipped code uses cache=True",
        ),
        Row("python -c pass (interpreter start, for scale)", bare, "s"),
        Row(
            "frameworks imported by check",
            Stat.of([float(len(heavy))]),
            "modules",
            goal="0",
            verdict=verdict(not heavy and code == 0),
            note=", ".join(heavy) if heavy else "no keras, tensorflow, jax or torch",
        ),
    ]
    lark_cpu = stages[0].median
    table = "\n".join(
        f"| {name} | {stat.median * 1000:.2f} | {stat.median / lark_cpu * 100:.1f} % |" for name, stat in zip(STAGES, stages, strict=True)
    )
    fig.details.append(
        f"Where `check`'s CPU time goes, stage by stage in one child (process time, medians of {stages[0].n} "
        "children, from bytecode; everything after the first row is what `check` adds to `import lark`):\n\n"
        f"| stage | CPU ms | share of import lark |\n|---|---|---|\n{table}"
    )
    profile = import_profile()
    listing = "\n".join(f"| {name} | {own:.1f} | {cumulative:.1f} |" for own, cumulative, name in profile)
    unneeded = [(c, n.strip()) for _, c, n in profile if n.strip() in ("policy.describe", "policy.explain")]
    fig.details.append(
        "Largest self import times in `check`'s start-up (`python -X importtime`, one run; importtime "
        "inflates them):\n\n"
        f"| module | self ms | cumulative ms |\n|---|---|---|\n{listing}"
    )
    if unneeded:
        fig.details.append(
            "`check` needs neither `policy.describe` nor `policy.explain` (nor `policy.plan`, which explain "
            "imports), yet they are imported by `import policy` itself (`policy/__init__.py` imports `describe` "
            "and `explain` at module level): "
            + ", ".join(f"{name} {ms:.0f} ms cumulative" for ms, name in unneeded)
            + ". Importing them inside the functions that use them would take that off every CLI call "
            "and every `import policy`."
        )
    return fig
