"""The generators themselves: every generated policy is valid and prints and parses back to itself.

If these fail, the differential tests would be testing the strategies' mistakes, so they run
first and fast (no keras): every rule kind must appear, every case must fit together.
"""

from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import ast, format_policy, parse_policy
from policy.parser import parse
from policy.testing.strategies import RULE_KINDS, Case, cases, f32, f32_neighbours, histories, policies, policy_texts
from policy.validate import validate

EXAMPLES = int(os.environ.get("POLICY_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("POLICY_RANDOM", "") == "",
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(policies())
def test_generated_policies_are_valid_and_round_trip(p: ast.Policy) -> None:
    assert validate(p) is p
    text = format_policy(p)
    assert p.source == text
    again = parse_policy(text)
    assert again == p
    # Printing is canonical: the reparsed policy prints to the very same text.
    assert format_policy(again) == text


@SETTINGS
@given(policy_texts())
def test_policy_texts_parse_to_policies_printing_the_same_text(text: str) -> None:
    assert format_policy(parse(text)) == text


@SETTINGS
@given(cases())
def test_cases_fit_together(case: Case) -> None:
    validate(case.policy)
    seen = {k for logs in case.history for k in logs}
    if any(isinstance(r, ast.LogLR | ast.ReduceLR | ast.Schedule) for r in case.policy.rules):
        seen.add("learning_rate")  # written by the policy itself, not the history
    for rule in case.policy.rules:
        watched: list[str] = []
        if isinstance(rule, ast.StopWhen):
            watched = [m.name for m in ast.metrics_of(rule.condition)]
        elif isinstance(rule, ast.ReduceLR):
            watched = [rule.when.metric.name]
        elif isinstance(rule, ast.SaveBest | ast.SaveTop):
            watched = [rule.metric.name]
        # With validation_freq k > 1, val_ metrics exist only after the epochs that validate
        # (possibly none in a short run), as Keras logs them.
        validates = [(case.initial_epoch + i + 1) % case.validation_freq == 0 for i in range(len(case.history))]
        if case.validation_freq > 1:
            watched = [w for w in watched if not w.startswith("val_")]
        assert set(watched) <= seen, (watched, seen)
        for logs, validated in zip(case.history, validates, strict=True):
            assert validated or not any(k.startswith("val_") for k in logs)
        if isinstance(rule, ast.SaveBest | ast.SaveTop | ast.SaveEvery | ast.SaveLast) and rule.path is not None:
            # A metric formatted into a checkpoint path is logged in every epoch (that validated).
            for name in ("val_loss", "loss"):
                if "{" + name + ":" in rule.path.value:
                    assert all(name in logs for logs, v in zip(case.history, validates, strict=True) if v or name == "loss")
    assert 1 <= len(case.history) <= 8
    assert 1 <= len(case.policy.rules) <= 4
    if case.batch_losses is not None:
        assert len(case.batch_losses) == len(case.history)
        for logs, losses in zip(case.history, case.batch_losses, strict=True):
            assert len(losses) == case.steps_per_epoch
            if "loss" in logs:
                assert losses[-1] == logs["loss"] or (math.isnan(losses[-1]) and math.isnan(logs["loss"]))


def _kind(rule: ast.Rule) -> str:
    if isinstance(rule, ast.StopWhen):
        c = rule.condition
        return f"stop_when:{type(c).__name__}"
    if isinstance(rule, ast.StopAfter):
        return f"stop_after:{rule.unit}"
    if isinstance(rule, ast.SaveEvery):
        return f"save_every:{rule.unit}:{rule.every > 1}"
    return type(rule).__name__


def test_every_rule_kind_and_option_is_generated() -> None:
    """Coverage of the generator itself: a few hundred draws reach every construct."""
    seen: set[str] = set()

    @settings(max_examples=600, deadline=None, derandomize=True, database=None)
    @given(policies())
    def collect(p: ast.Policy) -> None:
        for rule in p.rules:
            seen.add(_kind(rule))
            if isinstance(rule, ast.StopWhen):
                seen.update(
                    name
                    for name, on in (
                        ("restore", rule.restore_best),
                        ("restore_metric", rule.restore_metric is not None),
                        ("ignore_first", rule.ignore_first > 0),
                        ("baseline", rule.baseline is not None),
                    )
                    if on
                )
                for plateau in ast.plateaus_of(rule.condition):
                    seen.add(f"trend:{plateau.trend}")
                    if plateau.relative:
                        seen.add("relative")
            if isinstance(rule, ast.SaveEvery) and rule.keep is not None:
                seen.add("keep:steps" if rule.unit == "steps" else f"keep:epochs:{rule.every > 1}")
            if isinstance(rule, ast.SaveBest) and rule.threshold is not None:
                seen.add(f"threshold:{rule.threshold.side}")
            if isinstance(rule, ast.SaveBest | ast.SaveTop | ast.SaveEvery | ast.SaveLast) and rule.weights_only:
                seen.add("weights")
            if isinstance(rule, ast.ReduceLR):
                seen.update(n for n, on in (("cooldown", rule.cooldown > 0), ("min_lr", rule.min_lr > 0)) if on)
            if isinstance(rule, ast.Schedule):
                seen.update(f"segment:{type(s).__name__}" for s in rule.segments)
                if len(rule.segments) > 1:
                    seen.add("then")

    collect()
    tensorboard = {"LogTensorBoard"} if "tensorboard" in RULE_KINDS else set()
    expected = tensorboard | {
        "stop_when:Plateau",
        "stop_when:Threshold",
        "stop_when:NotFinite",
        "stop_when:AnyOf",
        "stop_when:AllOf",
        "stop_after:epochs",
        "stop_after:steps",
        "stop_after:s",
        "stop_after:min",
        "stop_after:h",
        "SaveBest",
        "SaveTop",
        "SaveLast",
        "save_every:epochs:False",
        "save_every:epochs:True",
        "save_every:steps:False",
        "save_every:steps:True",
        "ReduceLR",
        "Schedule",
        "LogCSV",
        "Backup",
        "LogLR",
        "keep:epochs:False",
        "keep:epochs:True",
        "keep:steps",
        "threshold:below",
        "threshold:above",
        "restore",
        "restore_metric",
        "ignore_first",
        "baseline",
        "relative",
        "trend:improving",
        "trend:decreasing",
        "trend:increasing",
        "weights",
        "cooldown",
        "min_lr",
        "segment:Warmup",
        "segment:Cosine",
        "segment:Decay",
        "then",
    }
    assert expected <= seen, sorted(expected - seen)


def test_histories_reach_the_float32_corners() -> None:
    """Ties, float32-invisible steps, next-float32 steps, NaN, +-inf and late metrics all occur."""
    found: set[str] = set()

    @settings(max_examples=400, deadline=None, derandomize=True, database=None)
    @given(histories(["val_loss"], (2, 8), deltas=(0.05,)))
    def collect(history: list[dict[str, float]]) -> None:
        values = [logs.get("val_loss") for logs in history]
        if values[0] is None:
            found.add("late")
        present = [v for v in values if v is not None]
        for v in present:
            if math.isnan(v):
                found.add("nan")
            elif math.isinf(v):
                found.add("inf")
        finite = [v for v in present if math.isfinite(v)]
        for i, v in enumerate(finite[1:], start=1):
            best = min(finite[:i])
            if v == best:
                found.add("tie")
            elif v < best and f32(v) == f32(best):
                found.add("invisible")
            elif f32(v) == f32_neighbours(best)[0]:
                found.add("ulp")
            if v == best - 0.05:
                found.add("delta")

    collect()
    assert {"late", "nan", "inf", "tie", "invisible", "ulp", "delta"} <= found, found


@given(st.data())
@settings(max_examples=50, deadline=None, derandomize=True)
def test_histories_have_the_requested_shape(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 8))
    history = data.draw(histories(["val_loss", "val_accuracy"], n, always=["val_accuracy"]))
    assert len(history) == n
    assert all("val_accuracy" in logs for logs in history)
    assert all(set(logs) <= {"val_loss", "val_accuracy"} for logs in history)


def test_cases_draw_every_fit_argument() -> None:
    """The differential cases run under each fit argument's non-default values too."""
    from policy.testing.strategies import FIT_INITIAL_EPOCHS, FIT_STEPS_PER_EXECUTION, FIT_VALIDATION_FREQS

    seen: set[tuple[str, int]] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(cases())
    def collect(case: Case) -> None:
        seen.update(
            {
                ("validation_freq", case.validation_freq),
                ("steps_per_execution", case.steps_per_execution),
                ("initial_epoch", case.initial_epoch),
            }
        )

    collect()
    expected = {("validation_freq", k) for k in FIT_VALIDATION_FREQS}
    expected |= {("steps_per_execution", k) for k in FIT_STEPS_PER_EXECUTION}
    expected |= {("initial_epoch", e) for e in FIT_INITIAL_EPOCHS}
    assert expected <= seen, expected - seen


def test_cases_draw_time_based_saves_with_a_clock() -> None:
    """``save every T`` comes from cases() (its "save:time" focus), which also gives the step times
    it needs; policies() alone does not draw it."""
    found: list[Case] = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(cases())
    def collect(case: Case) -> None:
        if any(isinstance(r, ast.SaveTimed) for r in case.policy.rules):
            found.append(case)

    collect()
    assert found and all(case.step_seconds is not None for case in found)


def test_schedules_counted_in_steps_are_generated() -> None:
    """Schedules counted in optimizer steps (cases() puts one first under its "schedule:steps"
    focus): every segment kind, lengths in steps, in % of training and in epochs, restarts, decays
    and milestones in steps; each one valid and counted in steps."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(policies(max_rules=1, steps_per_epoch=3, kinds=("schedule:steps",)))
    def collect(policy: ast.Policy) -> None:
        validate(policy)
        for rule in policy.rules:
            assert isinstance(rule, ast.Schedule) and ast.counts_steps(rule)
            for seg in rule.segments:
                seen.add(f"segment:{type(seg).__name__}")
                span = getattr(seg, "over", None)
                if span is not None:
                    seen.add(f"over:{span.unit}")
                if isinstance(seg, ast.Cosine) and seg.restart is not None:
                    seen.add(f"restart:{seg.restart.unit}")
                if isinstance(seg, ast.Decay | ast.Milestones):
                    seen.add(f"{type(seg).__name__}:{seg.unit}")
                if isinstance(seg, ast.Decay) and seg.smooth:
                    seen.add("Decay:smooth")

    collect()
    expected = {
        "segment:Warmup", "segment:Cosine", "segment:Linear", "segment:Hold", "segment:Decay",
        "segment:Milestones", "segment:InverseSqrt", "over:steps", "over:percent", "over:epochs",
        "restart:steps", "Decay:steps", "Milestones:steps", "Decay:smooth",
    }
    assert expected <= seen, sorted(expected - seen)


def test_cases_draw_each_focus_shape() -> None:
    """The shapes cases() gives a share of their own, because a free mix rarely meets them: a
    finite step schedule handing the rate over to ``multiply lr ... when`` (with and without
    ``restore best``), a lone ``by P%`` plateau, a top-k ranking of 2 or 3, a minimum followed by a
    stop, cut after cut with a cooldown and a floor."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(cases())
    def collect(case: Case) -> None:
        rules = case.policy.rules
        schedules = [r for r in rules if isinstance(r, ast.Schedule)]
        cuts = [r for r in rules if isinstance(r, ast.ReduceLR)]
        if schedules and cuts and ast.counts_steps(schedules[0]):
            assert not isinstance(schedules[0].segments[-1], ast.OPEN_ENDED)
            seen.add(f"handover restore={cuts[0].restore_best}")
        first = rules[0]
        if isinstance(first, ast.StopWhen) and isinstance(first.condition, ast.Plateau) and first.condition.relative:
            seen.add("relative plateau")
        if isinstance(first, ast.SaveTop) and first.k >= 2:
            seen.add("top-k")
        if isinstance(first, ast.TrainAtLeast) and any(isinstance(r, ast.StopWhen) for r in rules[1:2]):
            seen.add("minimum then stop")
        if isinstance(first, ast.ReduceLR) and first.cooldown and first.min_lr:
            seen.add("cuts with cooldown and floor")

    collect()
    expected = {
        "handover restore=True", "handover restore=False", "relative plateau", "top-k", "minimum then stop",
        "cuts with cooldown and floor",
    }
    assert expected <= seen, sorted(expected - seen)
