"""``keras-policy replay`` and ``keras-policy tune``, run as a user runs them: subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "policy", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def run_checking_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """main() in a fresh interpreter; exits 99 if a framework (or tensorboard) got imported."""
    code = (
        "import sys, policy.cli\n"
        f"rc = policy.cli.main({list(args)!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'tensorboard', 'jax', 'torch'))\n"
        "if heavy:\n"
        "    print('imported', heavy, file=sys.stderr); sys.exit(99)\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}, timeout=120)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Three recorded runs: best val_loss at epoch 1, at the end, and a JSON one on a plateau."""
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "a.csv").write_text("epoch,loss,val_loss\n0,1.0,0.9\n1,0.8,0.5\n2,0.7,0.6\n3,0.6,0.7\n4,0.5,0.8\n5,0.4,0.45\n")
    (folder / "b.csv").write_text("epoch,loss,val_loss\n0,1.0,1.0\n1,0.9,1.0\n2,0.8,0.9\n3,0.7,0.8\n")
    (folder / "c.json").write_text(json.dumps({"loss": [1.0] * 6, "val_loss": [1.0, 0.5, 0.6, 0.6, 0.6, 0.6]}))
    return folder


def test_replay_prints_a_line_per_run_and_the_totals(runs: Path) -> None:
    done = run_checking_imports(runs.parent, "replay", "stop when val_loss not improving for 2", "--history", "runs")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["run", "epochs", "run", "stop", "best", "val_loss", "full-run", "best", "lost", "stopped", "by"]
    assert lines[1].split() == ["runs/a.csv", "4", "of", "6", "3", "0.5", "0.45", "0.05", "(11.1%)", "HURT",
                                "stop", "when", "val_loss", "not", "improving", "for", "2"]
    assert lines[2].split()[:9] == ["runs/b.csv", "4", "of", "4", "-", "0.8", "0.8", "0", "(runs"]
    assert lines[3].split()[:8] == ["runs/c.json", "4", "of", "6", "3", "0.5", "0.5", "0"]
    assert lines[5:] == [
        "Replayed 3 of 3 runs.",
        "Epochs saved: 4 of 16 recorded (25.0%).",
        "Runs whose best val_loss got worse by more than 1% of the run's best: 1 of 3: runs/a.csv.",
        "Lost val_loss: mean 0.0167 (3.7%), worst 0.05 (11.1%) (runs/a.csv).",
    ]


def test_replay_reports_bad_runs_by_name_and_exits_1(runs: Path) -> None:
    (runs / "ragged.csv").write_text("epoch,loss,val_loss\n0,1.0,1.0\n1,0.9\n")
    (runs / "train_only.csv").write_text("epoch,loss\n0,1.0\n1,0.9\n")
    done = run("replay", "stop when val_loss not improving for 2", "--history", "runs", "missing.csv", cwd=runs.parent)
    assert done.returncode == 1
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert "runs/ragged.csv FAILED line 3: expected 3 values as in the header, got 2" in lines
    assert "runs/train_only.csv SKIPPED val_loss is not in this run (it has loss)" in lines
    assert "missing.csv FAILED no such file or folder" in lines
    assert "Replayed 3 of 6 runs (1 skipped, 2 failed)." in lines


def test_replay_with_only_skipped_runs_exits_1_and_a_good_run_alone_exits_0(runs: Path) -> None:
    done = run("replay", "stop when val_auc not improving for 2", "--history", "runs", cwd=runs.parent)
    assert done.returncode == 1 and "Replayed 0 of 3 runs (3 skipped)." in done.stdout
    assert run("replay", "stop when val_loss not improving for 2", "--history", "runs/b.csv", cwd=runs.parent).returncode == 0


def test_replay_of_a_template_is_a_usage_error(runs: Path) -> None:
    done = run("replay", "stop when val_loss not improving for {2,3}", "--history", "runs", cwd=runs.parent)
    assert done.returncode == 2 and "compare its variants with `keras-policy tune`" in done.stderr


def test_tune_prints_one_row_per_variant_sorted_with_the_recommendation(runs: Path) -> None:
    done = run_checking_imports(runs.parent, "tune", "stop when val_loss not improving for {1..3}", "--history",
                                "runs/*.csv", "runs/c.json")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == "Template: stop when val_loss not improving for {1..3}"
    assert lines[2] == "Runs: 3."
    table = [line.split() for line in lines[4:8]]
    assert table == [
        ["variant", "epochs", "saved", "val_loss", "lost:", "mean", "worst", "runs", "hurt", "skipped"],
        ["1", "50.0%", "(8)", "12.0%", "25.0%", "2", "of", "3"],
        ["*", "2", "25.0%", "(4)", "3.7%", "11.1%", "1", "of", "3"],
        ["3", "12.5%", "(2)", "3.7%", "11.1%", "1", "of", "3"],
    ]
    # Every variant loses a.csv's late best (0.45 after 0.5): the fallback rule picks the least
    # harm, and patience 2 ties with 3 on harm while saving more.
    assert lines[9:11] == [
        "Recommended (*): stop when val_loss not improving for 2",
        "  rule: every variant hurts some run, so: the fewest runs hurt, then the smallest worst loss, then the most "
        "epochs saved.",
    ]


def test_tune_json_has_every_variant_and_run(runs: Path) -> None:
    done = run("tune", "stop when val_loss not improving for {2,4}", "--history", "runs", "--json", cwd=runs.parent)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [v["variant"] for v in data["variants"]] == ["2", "4"]
    assert len(data["runs"]) == 6
    assert data["objective"] == "val_loss" and data["tolerance"] == "1%"
    assert data["recommended"] in {"stop when val_loss not improving for 2", "stop when val_loss not improving for 4"}


def test_tune_errors_point_into_the_template(runs: Path) -> None:
    done = run("tune", "stop when val_loss not improving for {0,2}", "--history", "runs", cwd=runs.parent)
    assert done.returncode == 1
    assert done.stderr.splitlines()[:3] == [
        "<template>:1:38: patience must be at least 1, got 0 (the value '0')",
        "    stop when val_loss not improving for {0,2}",
        "                                         ^",
    ]
    done = run("tune", "stop when val_loss not improving for {2..}", "--history", "runs", cwd=runs.parent)
    assert done.returncode == 1 and "is not a range" in done.stderr


def test_tune_objective_and_absolute_tolerance(runs: Path) -> None:
    done = run("tune", "stop when val_loss not improving for {1,2}", "--history", "runs", "--objective", "loss",
               "--tolerance", "0.5", cwd=runs.parent)
    assert done.returncode == 0, done.stderr
    assert "in its own units; a run is hurt when it lost more than 0.5." in done.stdout
    assert done.stdout.splitlines()[5].split() == ["*", "1", "50.0%", "(8)", "0.167", "0.3", "0", "of", "3"]


def test_tune_plot_writes_a_png(runs: Path) -> None:
    pytest.importorskip("matplotlib")
    out = runs.parent / "tradeoff.png"
    done = run("tune", "stop when val_loss not improving for {1..4}", "--history", "runs", "--plot", str(out),
               cwd=runs.parent)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
