"""The ``keras-policy`` command (also ``python -m policy``).

Subcommands: ``check``, ``explain``, ``simulate``, ``replay``, ``tune``, ``compile --python`` and ``demo``. Only
``demo`` imports keras; the others answer in the time Python takes to start, so they
suit editors, pre-commit hooks and CI.

Exit codes: 0 success; 1 the policy (or a file it was read from, or a history file) has
errors, printed compiler-style on stderr; 2 the command line itself is wrong (unknown
option, missing argument, a file that does not exist).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from policy.ast import Policy
from policy.errors import HistoryError, PolicyError, Problem

if TYPE_CHECKING:
    import argparse

    from policy.history import History
    from policy.outcome import Outcome

# Each command imports what it needs when it runs: `check` must start in about the time Python
# and Lark take (BENCHMARKS.md, figure 5), so histories, JSON, replays and plots wait.

EXIT_OK = 0
EXIT_POLICY = 1
EXIT_USAGE = 2

_EPILOG = """\
exit codes:
  0  success
  1  the policy, the file it came from, or the history has errors (printed on stderr)
  2  usage error: unknown option, missing argument, file not found
"""

_POLICY_HELP = (
    "policy text (quote it), or a path to a .policy/.txt file or a .yaml/.yml/.toml/.json config "
    "holding the policy under --key"
)


class UsageError(Exception):
    """A command-line mistake: reported as ``keras-policy: error: ...`` with exit code 2."""


# --------------------------------------------------------------------------- output


class Style:
    """Bold and colour for a terminal; plain text for a pipe or when NO_COLOR is set."""

    def __init__(self, stream: TextIO) -> None:
        isatty = getattr(stream, "isatty", None)
        self.on = bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def red(self, text: str) -> str:
        return self._wrap("1;31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def print_policy_error(error: PolicyError, stream: TextIO) -> None:
    """Every problem, compiler-style: ``file:line:col: message``, source line, caret, hint."""
    style = Style(stream)
    for problem in error.problems:
        lines = problem.render(error.filename).splitlines()
        for i, line in enumerate(lines):
            if i == 0:
                line = style.bold(line)
            elif line.startswith("hint:"):
                line = style.cyan(line)
            elif line.strip() == "^":
                line = style.green(line)
            print(line, file=stream)
    count = len(error.problems)
    print(style.red(f"{count} error{'s' if count != 1 else ''}"), file=stream)


# --------------------------------------------------------------------------- reading the policy


def read_policy(arg: str, key: str = "policy") -> Policy:
    """The policy an argument names: a file (by its suffix) or the policy text itself."""
    # os.path, not pathlib, until a file is read: pathlib costs `check` ~4 ms of start-up; and
    # policy.load only for a name that could be a file (policy text has spaces).
    name = os.path.basename(os.path.normpath(arg))  # what Path(arg).name is, for the suffix test
    looks_like_file = "\n" not in arg and " " not in name and _has_policy_suffix(name)
    if looks_like_file or _is_file(arg):
        if not _is_file(arg):
            raise UsageError(f"no such file: {arg!r}")
        from pathlib import Path

        from policy.load import load

        return load(Path(arg), key=key)
    from policy import parse_policy

    try:
        return parse_policy(arg)
    except PolicyError as exc:
        raise exc.with_filename("<policy>") from None


def place_error(error: PolicyError, arg: str, key: str) -> PolicyError:
    """An error found after reading (in the history's light), shown where the policy came from."""
    from policy.load import place_error as place_in_file

    return place_in_file(error, arg, key) if _is_file(arg) else error.with_filename("<policy>")


def _has_policy_suffix(name: str) -> bool:
    from policy.load import ALL_SUFFIXES

    return os.path.splitext(name)[1].lower() in ALL_SUFFIXES


def _is_file(arg: str) -> bool:
    """Whether ``arg`` names a readable file; a name the OS refuses (too long) is not one."""
    try:
        return "\n" not in arg and len(arg) < 4096 and os.path.isfile(arg)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    return check(args.policy, args.key)


def check(policies: Sequence[str], key: str) -> int:
    """``keras-policy check``: one policy is printed in canonical form; several are each reported."""
    from policy.printer import canonical

    if len(policies) == 1:
        print(canonical(read_policy(policies[0], key)))
        return EXIT_OK
    # Several files (as pre-commit passes them): check every one, report every bad one.
    failed = 0
    for arg in policies:
        try:
            rules = read_policy(arg, key).rules
        except PolicyError as exc:
            print_policy_error(exc, sys.stderr)
            failed += 1
            continue
        print(f"{arg}: {len(rules)} rule{'s' if len(rules) != 1 else ''}, ok")
    if failed:
        print(f"{failed} of {len(policies)} policies have errors", file=sys.stderr)
    return EXIT_POLICY if failed else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from policy.explain import explain_rules

    style = Style(sys.stdout)
    policy = read_policy(args.policy, args.key)
    blocks = []
    for e in explain_rules(policy):
        blocks.append(f"{style.bold(e.rule)}\n    {e.sentence}\n    -> {style.cyan(e.callback.text())}")
    print("\n\n".join(blocks))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from policy.history import read_history

    policy = read_policy(args.policy, args.key)
    if not _is_file(args.history):
        raise UsageError(f"no such history file: {args.history!r}")
    if args.plot is not None:
        # Fail before the replay, not after it, when plotting cannot happen at all.
        from policy.plot import require_matplotlib

        require_matplotlib()
    history = read_history(args.history)
    if not args.no_strict:
        try:
            check_metrics(policy, history)
        except PolicyError as exc:
            raise place_error(exc, args.policy, args.key) from None
    initial_lr = args.initial_lr
    if initial_lr is None and history and "learning_rate" in history[0]:
        # Keras logs the learning rate in effect during the epoch: epoch 0's is the starting one.
        initial_lr = history[0]["learning_rate"]
    from policy.reference import simulate

    try:
        outcome = simulate(
            policy, history, initial_lr=initial_lr, steps_per_epoch=args.steps_per_epoch, backend=args.backend
        )
    except PolicyError as exc:
        raise _as_options(exc) from None
    if args.json:
        print(outcome_json(outcome))
    else:
        print(simulate_report(policy, history, outcome, Style(sys.stdout)))
    if args.plot is not None:
        from policy.plot import plot_outcome

        plot_outcome(policy, history, outcome, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK


def check_metrics(policy: Policy, history: History) -> None:
    """What ``compile_policy(strict=True)`` checks: every watched metric is logged, training metrics
    in the first epoch, ``val_*`` metrics in the first epoch that validated (any ``val_`` key;
    ``fit(validation_freq=k)`` validates only every k epochs)."""
    from policy.strictness import is_validation, missing_metrics, missing_problem

    first = history[0] if history else {}
    validated = next(((i, logs) for i, logs in enumerate(history) if any(map(is_validation, logs))), None)
    val_where, val_logs = "the history's first epoch", first
    if validated is not None and validated[0] > 0:
        val_where, val_logs = f"the history's first validated epoch ({validated[0]})", validated[1]
    judged = [("the history's first epoch", first, lambda n: not is_validation(n)), (val_where, val_logs, is_validation)]
    problems = [
        missing_problem(
            policy, metric, logs, where, "it has", "pass --no-strict to replay anyway", " (--no-strict replays anyway)"
        )
        for where, logs, wanted in judged
        for metric in missing_metrics(policy, logs, wanted)
    ]
    if problems:
        raise PolicyError(sorted(problems, key=lambda p: (p.line, p.column)))


def _as_options(error: PolicyError) -> PolicyError:
    """The reference's hints name keyword arguments; on the command line they are options."""
    words = {"initial_lr": "--initial-lr", "steps_per_epoch": "--steps-per-epoch"}
    problems = []
    for p in error.problems:
        hint = p.suggestion
        for word, option in words.items():
            hint = hint.replace(f"pass {word}", f"pass {option}") if hint else hint
        problems.append(Problem(p.message, p.line, p.column, p.source_line, hint))
    return PolicyError(problems, error.filename)


def outcome_json(outcome: Outcome) -> str:
    """The outcome as JSON, one key a line with each value compact (long lr lists stay readable)."""
    import json

    data = outcome.to_json()
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items())
    return "{\n" + body + "\n}"


def simulate_report(policy: Policy, history: History, outcome: Outcome, style: Style) -> str:
    """The per-epoch table of a replay, then how it ended and what it wrote.

    ``simulate`` returns only the decisions (an :class:`Outcome`); what fired in which epoch is
    read back from them: the saves of that epoch, the learning rate changing, the stop.
    """
    from policy.meaning import watched_names

    metrics = [m for m in watched_names(policy, learning_rate=True) if any(m in logs for logs in history)]
    has_lr = len(outcome.learning_rates) >= outcome.epochs_run > 0
    header = ["epoch", *metrics, *(["lr"] if has_lr else []), "what fired"]
    rows: list[list[str]] = []
    for epoch in range(outcome.epochs_run):
        logs = history[epoch] if epoch < len(history) else {}
        row = [str(epoch)] + [f"{logs[m]:.6g}" if m in logs else "-" for m in metrics]
        if has_lr:
            row.append(f"{outcome.learning_rates[epoch]:.6g}")
        rows.append([*row, "; ".join(epoch_events(outcome, epoch))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[-1]

    out = [style.bold(line(header).rstrip())] + [line(r).rstrip() for r in rows]
    out.append("")
    if outcome.failed is not None:
        why = f": {outcome.failed.reason}" if outcome.failed.reason else ""
        out.append(style.bold(f"fit raises in epoch {outcome.failed.epoch} ({outcome.epochs_run} of "
                              f"{len(history)} recorded epochs begun), by {outcome.failed.rule!r}{why}"))
    elif outcome.stop is not None:
        why = f": {outcome.stop.reason}" if outcome.stop.reason else ""
        out.append(style.bold(f"Stops at the end of epoch {outcome.stop.epoch} ({outcome.epochs_run} of "
                              f"{len(history)} recorded epochs run), by {outcome.stop.rule!r}{why}"))
    else:
        out.append(style.bold(f"Runs to the end: all {outcome.epochs_run} epochs, no rule stops training."))
    if outcome.saves:
        out.append(f"Checkpoints written ({len(outcome.saves)}):")
        out += [f"  epoch {epoch}: {path}" for epoch, path in outcome.saves]
    else:
        out.append("Checkpoints written: none")
    if outcome.files:
        out.append("Checkpoint files left at the end: " + ", ".join(outcome.files))
    if outcome.restored_epoch is not None:
        out.append(f"Weights at the end: restored from epoch {outcome.restored_epoch}.")
    return "\n".join(out)


def epoch_events(outcome: Outcome, epoch: int) -> list[str]:
    """What happened in one epoch, read from the outcome: lr change, saves, the stop."""
    events = []
    lrs = outcome.learning_rates
    if 0 < epoch < len(lrs) and lrs[epoch] != lrs[epoch - 1]:
        events.append(f"lr {lrs[epoch - 1]:.6g} -> {lrs[epoch]:.6g}")
    events += [f"save {path}" for e, path in outcome.saves if e == epoch]
    if outcome.stop is not None and outcome.stop.epoch == epoch:
        events.append("STOP")
    events += [f"weights of epoch {restored} put back" for e, restored in outcome.rollbacks if e == epoch]
    if outcome.failed is not None and outcome.failed.epoch == epoch:
        events.append("FAIL")
    return events


def cmd_replay(args: argparse.Namespace) -> int:
    from policy.replay_text import any_failed, report_json, runs_text
    from policy.variants import has_braces

    if has_braces(args.policy) and not _is_file(args.policy):
        raise UsageError("the policy has braces: compare its variants with `keras-policy tune`")
    policy = read_policy(args.policy, args.key)
    report = _replay(args, policy)
    print(report_json(report) if args.json else runs_text(report, report.variants[0]))
    return EXIT_POLICY if any_failed(report) else EXIT_OK


def cmd_tune(args: argparse.Namespace) -> int:
    from policy.replay_text import any_failed, report_json, variants_text

    template = args.template
    if _is_file(template):
        raise UsageError("tune takes the template text itself (quote it), not a file")
    if args.plot is not None:
        from policy.plot import require_matplotlib

        require_matplotlib()
    try:
        report = _replay(args, template)
    except PolicyError as exc:
        raise exc.with_filename("<template>") if exc.line else exc from None
    print(report_json(report) if args.json else variants_text(report, template))
    if args.plot is not None:
        from policy.plot import plot_tradeoff

        plot_tradeoff(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return EXIT_POLICY if any_failed(report) else EXIT_OK


def _replay(args: argparse.Namespace, policy: str | Policy) -> Any:
    from policy.replays import replay
    from policy.runs import find_runs

    return replay(
        policy,
        find_runs(args.history),
        objective=args.objective,
        tolerance=args.tolerance,
        strict=not args.no_strict,
        initial_lr=args.initial_lr,
        steps_per_epoch=args.steps_per_epoch,
    )


def cmd_compile(args: argparse.Namespace) -> int:
    from policy.eject import eject

    policy = read_policy(args.policy, args.key)
    print(eject(policy), end="")
    return EXIT_OK


def cmd_demo(argv: Sequence[str]) -> int:
    from policy.demo import main as demo_main

    try:
        return demo_main(list(argv))
    except SystemExit as exc:  # the demo's own --help or usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


# --------------------------------------------------------------------------- argument parsing


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="keras-policy",
        description="Check, explain, simulate and compile training-control policies for Keras.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from policy import __version__

    parser.add_argument("--version", action="version", version=f"keras-policy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=description, epilog=_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        return p

    def policy_args(p: argparse.ArgumentParser, several: bool = False) -> None:
        if several:
            p.add_argument("policy", metavar="POLICY_OR_FILE", nargs="+",
                           help=_POLICY_HELP + "; several files are each checked (as pre-commit passes them)")
        else:
            p.add_argument("policy", metavar="POLICY_OR_FILE", help=_POLICY_HELP)
        p.add_argument("--key", default="policy",
                       help="where the policy sits in a config file; dots go down tables (default: policy)")

    check = add("check", "check a policy; print its canonical form",
                "Parse and validate a policy. On success print its canonical form (one rule a line) and exit 0; "
                "otherwise print every problem as file:line:col with the source line, a caret and a hint, "
                "and exit 1. Never imports keras.")
    policy_args(check, several=True)
    check.set_defaults(func=cmd_check)

    explain = add("explain", "say in plain English what each rule does, and its Keras callback",
                  "For every rule: its canonical text, one plain-English sentence, and the callback it compiles "
                  "to with its arguments. Never imports keras.")
    policy_args(explain)
    explain.set_defaults(func=cmd_explain)

    simulate = add("simulate", "replay a recorded history through the policy",
                   "Replay a recorded training history through the reference simulator: a table per epoch "
                   "(the metrics the policy watches, the learning rate, what fired), the epoch it would stop "
                   "at and why, and the checkpoints it would write. The history is a CSVLogger CSV (epoch "
                   "column 0-based, NA = missing), the JSON of History.history, or a JSON list of per-epoch "
                   "dicts. Never imports keras.")
    policy_args(simulate)
    simulate.add_argument("--history", required=True, metavar="FILE", help="the recorded history (.csv or .json)")
    simulate.add_argument("--initial-lr", type=_positive_float, default=None, metavar="X",
                          help="the optimizer's learning rate at the start (needed by lr rules; "
                               "default: the history's learning_rate in epoch 0, if it has one)")
    simulate.add_argument("--steps-per-epoch", type=_positive_int, default=None, metavar="N",
                          help="training batches per epoch (needed by step-based rules)")
    simulate.add_argument("--no-strict", action="store_true",
                          help="replay even if a watched metric is missing from the history (Keras only warns); "
                               "by default that is an error, as with compile_policy(strict=True)")
    simulate.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                          help="the Keras backend the run was on (default: KERAS_BACKEND, else keras.json, else "
                               "tensorflow); they differ only on float32 subnormals and values beyond float32")
    simulate.add_argument("--json", action="store_true",
                          help="print epochs_run, learning_rates, saves, files, restored_epoch and stop as JSON")
    simulate.add_argument("--plot", default=None, metavar="OUT.png",
                          help="draw the watched metrics with stop, save and lr-change markers "
                               "(needs matplotlib: pip install 'keras-policy[plot]')")
    simulate.set_defaults(func=cmd_simulate)

    def replay_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--history", required=True, nargs="+", action="extend", metavar="RUN",
                       help="recorded runs: CSVLogger .csv files, History.history .json files, Keras TensorBoard "
                            "log folders (needs the tensorboard package), folders holding any of them, or glob "
                            "patterns (quote them); may be repeated")
        p.add_argument("--objective", default=None, metavar="METRIC",
                       help="the metric whose loss is measured (default: the first one the policy watches); "
                            "append min or max if its name does not say: --objective 'val_f1 max'")
        p.add_argument("--tolerance", default="1%", metavar="T",
                       help="a run is hurt when its best objective within the epochs run is worse than over "
                            "the whole run by more than T: a percentage of that best (default 1%%) or an "
                            "absolute amount (0.005)")
        p.add_argument("--no-strict", action="store_true",
                       help="replay runs whose watched metric is missing where compile_policy(strict=True) "
                            "checks it (a training metric at the first epoch end, a val_ metric at the first "
                            "epoch that validated) as Keras does with strict=False; by default they are "
                            "skipped, as that check would stop the fit")
        p.add_argument("--initial-lr", type=_positive_float, default=None, metavar="X",
                       help="the starting learning rate for lr rules (default: each run's learning_rate in epoch 0)")
        p.add_argument("--steps-per-epoch", type=_positive_int, default=None, metavar="N",
                       help="training batches per epoch (needed by step-based rules)")
        p.add_argument("--json", action="store_true", help="print the per-variant totals and per-run rows as JSON")

    replay = add("replay", "replay a policy over many recorded runs: epochs saved, metric lost",
                 "Replay a policy over recorded runs with the reference simulator's exact decisions: per run, the "
                 "epochs it would have run, where it stops and by which rule, and the objective's best within "
                 "those epochs against its best over the whole recorded run; then the epochs saved and the runs "
                 "whose stop lost more than the tolerance. Runs that cannot be read are reported and make the "
                 "exit code 1; runs the policy cannot use are reported as skipped. Never imports keras.")
    policy_args(replay)
    replay_args(replay)
    replay.set_defaults(func=cmd_replay)

    tune = add("tune", "compare variants of a policy over recorded runs and recommend one",
               "Expand a policy template (braces outside quotes: {2,3,5,8}, ranges {2..8}, several braces give "
               "every combination), replay every variant over the recorded runs and print one row per variant "
               "(epochs saved, mean and worst loss of the objective, runs hurt), most epochs saved first. The "
               "recommended variant (*) saves the most epochs with no run losing more than the tolerance. "
               "Never imports keras.")
    tune.add_argument("template", metavar="TEMPLATE", help="policy text with braces, quoted")
    replay_args(tune)
    tune.add_argument("--plot", default=None, metavar="OUT.png",
                      help="draw epochs saved against objective lost, one point per variant "
                           "(needs matplotlib: pip install 'keras-policy[plot]')")
    tune.set_defaults(func=cmd_tune)

    compile_ = add("compile", "print the equivalent hand-written Keras code",
                   "Print Python code that builds the same callbacks by hand: the imports and a "
                   "`callbacks = [...]` list, ready to paste or run. Never imports keras.")
    policy_args(compile_)
    compile_.add_argument("--python", action="store_true",
                          help="print Python source (the default, and the only format so far)")
    compile_.set_defaults(func=cmd_compile)

    demo = add("demo", "train a small model under a policy and compare with the simulator",
               "Run the README's demo: train a tiny model on generated data under a policy, then check the "
               "reference simulator predicts the same run. Imports keras. Arguments after `demo` go to it "
               "(try `keras-policy demo --help`).")
    # Never parsed here: main() hands everything after "demo" to policy.demo (see there).
    demo.add_argument("demo_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        # The demo has options of its own (--epochs, --out, --help); argparse would claim them.
        return cmd_demo(args_list[1:])
    if len(args_list) > 1 and args_list[0] == "check" and not any(a.startswith("-") for a in args_list[1:]):
        # `check` and policies, no option: what argparse would hand cmd_check, without importing and
        # building it (~5 ms, a fifth of what `check` costs beyond `import lark`: BENCHMARKS.md, figure 5).
        policies = args_list[1:]
        return _answer(lambda: check(policies, key="policy"))
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _answer(lambda: args.func(args), parser)


def _answer(command: Callable[[], int], parser: argparse.ArgumentParser | None = None) -> int:
    """Run a parsed command: its exit code, or the report and exit code of the error it raised."""
    try:
        return command()
    except PolicyError as exc:
        print_policy_error(exc, sys.stderr)
        return EXIT_POLICY
    except HistoryError as exc:
        print(f"{exc}", file=sys.stderr)
        return EXIT_POLICY
    except UsageError as exc:
        (parser or build_parser()).print_usage(sys.stderr)
        print(f"keras-policy: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `keras-policy explain ... | head`
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
