"""``policy.replay``: many recorded runs, every figure, and exactly ``simulate``'s decisions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings

from policy import PolicyError, ast, replay, simulate
from policy.metrics import name_direction
from policy.replays import FALLBACK_RULE, RECOMMENDATION_RULE, Tolerance
from policy.testing import cases
from policy.testing.strategies import Case

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("POLICY_EXAMPLES", "200"))

# val_loss is best at epoch 1 (0.5); patience 2 stops at epoch 3, patience 4 runs all 6.
FALLS_THEN_RISES = {"loss": [1.0, 0.8, 0.7, 0.6, 0.5, 0.4], "val_loss": [0.9, 0.5, 0.6, 0.7, 0.8, 0.45]}
# Best at the end: any early stop loses.
KEEPS_FALLING = {"loss": [1.0, 0.9, 0.8, 0.7], "val_loss": [1.0, 1.0, 0.9, 0.8]}


def test_one_policy_one_run_every_figure() -> None:
    report = replay("stop when val_loss not improving for 2", [FALLS_THEN_RISES])
    (run,) = report.runs
    assert (run.status, run.epochs_recorded, run.epochs_run, run.stop and run.stop.epoch) == ("replayed", 6, 4, 3)
    assert run.stop is not None and run.stop.rule == "stop when val_loss not improving for 2"
    # Within epochs 0..3 the best is 0.5; over all six it is 0.45: the stop lost 0.05.
    assert (run.best_run, run.best_recorded) == (0.5, 0.45)
    assert run.lost == pytest.approx(0.05)
    assert run.hurt  # 0.05 > 1% of 0.45
    assert (report.epochs_recorded, report.epochs_run, report.epochs_saved) == (6, 4, 2)
    assert report.saved_fraction == pytest.approx(2 / 6)
    assert report.objective == "val_loss" and report.direction == "min"


def test_the_outcome_is_simulates() -> None:
    report = replay("stop when val_loss not improving for 2; save best on val_loss min", {"a": FALLS_THEN_RISES})
    assert report.runs[0].outcome == simulate("stop when val_loss not improving for 2; save best on val_loss min",
                                              FALLS_THEN_RISES)


def test_tolerance_relative_and_absolute() -> None:
    def hurt(tol: str | float) -> bool:
        return bool(replay("stop when val_loss not improving for 2", [FALLS_THEN_RISES], tolerance=tol).runs[0].hurt)

    assert hurt("1%") and hurt("11%") and not hurt("12%")  # 0.05 / 0.45 = 11.1%
    assert hurt(0.04) and not hurt(0.06) and not hurt("0.06")
    assert str(Tolerance.parse("1%")) == "1%" and str(Tolerance.parse(0.5)) == "0.5"
    with pytest.raises(PolicyError, match="a tolerance is a number or a percentage"):
        Tolerance.parse("some")
    with pytest.raises(PolicyError, match=">= 0"):
        Tolerance.parse("-1%")


def test_an_accuracy_objective_is_maximised_and_lost_is_never_negative() -> None:
    history = {"val_accuracy": [0.5, 0.7, 0.6, 0.65, 0.9], "val_loss": [1.0, 0.9, 0.95, 0.97, 0.99]}
    report = replay("stop when val_loss not improving for 2", [history], objective="val_accuracy")
    (run,) = report.runs
    assert report.direction == "max"
    assert (run.epochs_run, run.best_run, run.best_recorded) == (4, 0.7, 0.9)
    assert run.lost == pytest.approx(0.2)


def test_an_objective_whose_name_says_no_direction_needs_one() -> None:
    history = {"val_loss": [1.0, 0.9], "val_thing": [1.0, 2.0]}
    with pytest.raises(PolicyError, match="cannot tell whether the objective 'val_thing'"):
        replay("stop when val_loss not improving for 2", [history], objective="val_thing")
    assert replay("stop when val_loss not improving for 2", [history], objective="val_thing max").direction == "max"


def test_variants_rows_totals_and_the_recommended_one() -> None:
    runs = {"a": FALLS_THEN_RISES, "b": KEEPS_FALLING}
    report = replay("stop when val_loss not improving for {1..4}", runs, tolerance="1%")
    by_label = {v.label: v for v in report.variants}
    assert list(by_label) == ["1", "2", "3", "4"]
    # Patience 4 never stops early on either run: nothing saved, nothing lost.
    assert (by_label["4"].epochs_saved, by_label["4"].worst_lost, len(by_label["4"].runs_hurt)) == (0, 0.0, 0)
    # Patience 1 stops run b at epoch 1 (1.0 does not improve on 1.0), losing 1.0 - 0.8.
    b1 = by_label["1"].runs[1]
    assert (b1.run, b1.epochs_run, b1.best_run, b1.best_recorded) == ("b", 2, 1.0, 0.8)
    assert report.recommended is by_label["4"] and report.rule == RECOMMENDATION_RULE
    assert [row["variant"] for row in report.summary_rows()] == ["1", "2", "3", "4"]
    assert [row["recommended"] for row in report.summary_rows()] == [False, False, False, True]
    rows = report.to_rows()
    assert len(rows) == 8 and rows[0]["variant"] == "1" and rows[0]["run"] == "a"
    assert set(rows[0]) >= {"epochs_recorded", "epochs_run", "epochs_saved", "stop_epoch", "stop_rule", "best_run",
                            "best_recorded", "lost", "hurt", "status", "reason", "policy"}
    with pytest.raises(AttributeError, match="this report has 4 variants"):
        _ = report.epochs_saved


def test_the_recommendation_saves_the_most_among_the_harmless_and_falls_back_to_fewest_hurt() -> None:
    plateau = {"val_loss": [1.0, 0.5] + [0.6] * 8}  # nothing after epoch 1 improves: stopping early is free
    report = replay("stop when val_loss not improving for {1,3,5}", [plateau])
    assert report.recommended is not None and report.recommended.label == "1"
    assert report.rule == RECOMMENDATION_RULE
    # Patience 1 stops at epoch 1 (best 1.0), patience 2 at epoch 4 (best 0.9): both miss the 0.5.
    late_best = {"val_loss": [1.0, 1.0, 0.9, 0.95, 0.96, 0.5]}
    report = replay("stop when val_loss not improving for {1,2}", [late_best])
    assert all(v.runs_hurt for v in report.variants)
    assert report.rule == FALLBACK_RULE
    assert report.recommended is not None and report.recommended.label == "2"  # loses less


def test_runs_the_policy_cannot_use_are_skipped_with_the_reason() -> None:
    runs = {
        "good": FALLS_THEN_RISES,
        "no validation": {"loss": [1.0, 0.9, 0.8]},
        "val every 2": [{"loss": 1.0}, {"loss": 0.9, "val_loss": 0.8}, {"loss": 0.8}, {"loss": 0.7, "val_loss": 0.9}],
    }
    report = replay("stop when val_loss not improving for 1", runs)
    good, novalid, every2 = report.runs
    assert good.status == "replayed"
    assert (novalid.status, novalid.reason) == ("skipped", "val_loss is not in this run (it has loss)")
    # validation_freq=2: the strict check judges val_loss at the first epoch that validated.
    assert every2.status == "replayed"
    assert every2.outcome == simulate("stop when val_loss not improving for 1", runs["val every 2"], strict=True)
    assert "val_loss logged in 2 of 4 epochs" in every2.notes
    assert (report.epochs_recorded, len(report.skipped)) == (10, 1)
    # Without strict, Keras's lenient EarlyStopping skips the epochs without val_loss.
    lenient = replay("stop when val_loss not improving for 1", runs, strict=False)
    every2 = lenient.runs[2]
    assert (every2.status, every2.epochs_run) == ("replayed", 4)
    assert every2.outcome == simulate("stop when val_loss not improving for 1", runs["val every 2"])


def test_an_lr_rule_takes_the_runs_logged_learning_rate_or_is_skipped() -> None:
    policy = "multiply lr by 0.5 when val_loss not improving for 1"
    with_lr = {"val_loss": [1.0, 1.1, 1.2], "learning_rate": [0.01, 0.01, 0.005]}
    report = replay(policy, {"logged": with_lr, "not logged": {"val_loss": [1.0, 1.1, 1.2]}})
    logged, missing = report.runs
    assert logged.outcome == simulate(policy, with_lr, initial_lr=0.01)
    assert missing.status == "skipped" and "needs the starting one" in missing.reason
    assert replay(policy, [{"val_loss": [1.0, 1.1]}], initial_lr=0.1).runs[0].status == "replayed"


def test_bad_runs_fail_one_by_one_with_their_names(tmp_path: Path) -> None:
    (tmp_path / "good.csv").write_text("epoch,loss,val_loss\n0,1.0,1.0\n1,0.9,0.8\n")
    (tmp_path / "ragged.csv").write_text("epoch,loss,val_loss\n0,1.0,1.0\n1,0.9\n")
    (tmp_path / "empty.csv").write_text("epoch,loss,val_loss\n")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("not a run")  # neither .csv nor .json: not looked at
    report = replay("stop when val_loss not improving for 2", [tmp_path, tmp_path / "missing.csv", str(tmp_path / "*.nope")])
    got = {Path(r.run).name: (r.status, r.reason) for r in report.runs}
    assert got == {
        "broken.json": ("failed", "line 1: not valid JSON (Expecting property name enclosed in double quotes)"),
        "empty.csv": ("failed", "the history has a header but no epochs"),
        "good.csv": ("replayed", ""),
        "ragged.csv": ("failed", "line 3: expected 3 values as in the header, got 2"),
        "missing.csv": ("failed", "no such file or folder"),
        "*.nope": ("failed", "no file or folder matches this pattern"),
    }


def test_globs_and_folders_find_each_run_once(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.csv", "sub/b.csv"):
        (tmp_path / name).write_text("epoch,val_loss\n0,1.0\n1,0.9\n")
    (tmp_path / "c.json").write_text(json.dumps(KEEPS_FALLING))
    report = replay("stop when val_loss not improving for 2", [tmp_path, str(tmp_path / "**" / "*.csv")])
    assert sorted(Path(r.run).relative_to(tmp_path).as_posix() for r in report.runs) == ["a.csv", "c.json", "sub/b.csv"]


def test_history_objects_and_a_single_history_dict_are_runs() -> None:
    class History:  # what keras.callbacks.History looks like to us
        history = KEEPS_FALLING

    report = replay("stop when val_loss not improving for 1", [History(), FALLS_THEN_RISES])
    assert [r.run for r in report.runs] == ["run 0", "run 1"]
    assert replay("stop when val_loss not improving for 1", KEEPS_FALLING).runs[0].run == "run 0"


def test_an_objective_first_logged_after_the_stop_is_an_infinite_loss() -> None:
    history = [{"loss": 1.0}, {"loss": 1.0}, {"loss": 0.5, "val_accuracy": 0.9}]
    run = replay("stop when loss not improving for 1", [history], objective="val_accuracy").runs[0]
    assert (run.epochs_run, run.best_run, run.best_recorded, run.lost, run.hurt) == (2, None, 0.9, math.inf, True)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases(kinds=("stop_when", "stop_after", "save", "reduce_lr", "schedule")))
def test_replay_decides_exactly_as_simulate(case: Case) -> None:
    """Checking each run once and each policy once changes no decision (the same inputs as simulate)."""
    logged = [m for m in dict.fromkeys(k for logs in case.history for k in logs) if name_direction(m)]
    assume(logged)
    # Replay gives the starting lr only to policies with an lr rule (others list no lrs).
    sets_lr = any(isinstance(rule, ast.ReduceLR | ast.Schedule) for rule in case.policy.rules)
    options = {"initial_lr": case.initial_lr if sets_lr else None, "steps_per_epoch": case.steps_per_epoch,
               "strict": case.strict}
    try:
        expected = simulate(case.policy, case.history, **options)  # type: ignore[arg-type]
    except PolicyError as exc:
        expected_error: str | None = exc.message
    else:
        expected_error = None
    report = replay(case.policy, [case.history], objective=logged[0], **options)  # type: ignore[arg-type]
    (run,) = report.runs
    if run.status == "skipped" and "is not in this run" in run.reason:
        return  # a watched metric never logged: replay refuses it where simulate runs on
    if expected_error is not None:
        assert run.status == "skipped" and run.reason.startswith(expected_error)
    else:
        assert run.status == "replayed" and run.outcome == expected


def test_replaying_csv_and_json_imports_no_framework_and_no_tensorboard(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("epoch,loss,val_loss\n0,1.0,1.0\n1,0.9,0.8\n")
    (tmp_path / "b.json").write_text(json.dumps(KEEPS_FALLING))
    code = (
        "import sys, policy\n"
        "assert 'policy.replays' not in sys.modules\n"
        f"r = policy.replay('stop when val_loss not improving for {{1,2}}', [{str(tmp_path)!r}])\n"
        "assert len(r.variants) == 2 and all(len(v.replayed) == 2 for v in r.variants)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'tensorboard', 'jax', 'torch'))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr


def _events(folder: Path, sub: str, steps: dict[int, dict[str, float]]) -> None:
    """An event file written with tensorboard's pure-Python record writer (TensorFlow stays unloaded)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    (folder / sub).mkdir(parents=True, exist_ok=True)
    count = len(list((folder / sub).glob("events.out.tfevents.*")))
    with (folder / sub / f"events.out.tfevents.{count}.host.v2").open("wb") as file:
        writer = RecordWriter(file)
        for step, values in steps.items():
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values.items()])
            writer.write(event_pb2.Event(step=step, wall_time=0.0, summary=summary).SerializeToString())


def test_tensorboard_folders_unknown_tags_and_bad_folders(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    good, only_custom, twice = tmp_path / "good", tmp_path / "only_custom", tmp_path / "twice"
    _events(good, "train", {e: {"epoch_loss": 1.0 / (e + 1), "custom_thing": 2.0, "batch_loss": 0.1} for e in range(3)})
    _events(good, "validation", {e: {"epoch_loss": [0.9, 0.5, 0.75][e]} for e in range(3)})
    _events(only_custom, "train", {0: {"custom_thing": 1.0}})
    _events(twice, "validation", {0: {"epoch_loss": 1.0}})
    _events(twice, "validation", {0: {"epoch_loss": 2.0}})  # a second fit into the same folder
    report = replay("stop when val_loss not improving for 1", [tmp_path])
    got = {Path(r.run).name: r for r in report.runs}
    assert list(got) == ["good", "only_custom", "twice"]
    assert (got["good"].status, got["good"].epochs_run, got["good"].best_run) == ("replayed", 3, 0.5)
    assert got["good"].notes == ("skipped scalar tags that are not Keras epoch logs: train/custom_thing",)
    assert got["only_custom"].status == "failed"
    assert "no epoch scalars in train/ or validation/" in got["only_custom"].reason
    assert "(scalar tags found: train/custom_thing)" in got["only_custom"].reason
    assert got["twice"].status == "failed" and "epoch 0 of 'epoch_loss' is written twice" in got["twice"].reason


def test_a_history_with_shorter_validation_lists_is_refused_not_guessed(tmp_path: Path) -> None:
    """History.history of a validation_freq=2 fit: which epochs validated is lost, so no replay guesses it."""
    history = {"loss": [1.0, 0.9, 0.8, 0.7], "val_loss": [0.5, 0.6]}
    (tmp_path / "h.json").write_text(json.dumps(history))
    for run in replay("stop when val_loss not improving for 1", [history, tmp_path / "h.json"]).runs:
        assert run.status == "failed"
        assert run.reason.startswith("'val_loss' has 2 values but 'loss' has 4: validation ran every few epochs")
