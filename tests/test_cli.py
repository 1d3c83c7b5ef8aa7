"""The keras-policy command line, run as a user runs it: in a subprocess, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = "stop when val_loss not improving for 3; save best on val_loss min"


def _python(code: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout's package."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout)


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "policy", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=120)


def run_without_keras(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run main() in a fresh interpreter and fail if keras or TensorFlow got imported."""
    code = (
        "import sys, policy.cli\n"
        f"rc = policy.cli.main({list(args)!r})\n"
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules)\n"
        "assert not heavy, f'imported {heavy}'\n"
        "sys.exit(rc)\n"
    )
    return _python(code, tmp_path)


CSV = """epoch,loss,val_loss
0,1.0,1.0
1,0.8,0.9
2,0.7,0.95
3,0.6,0.96
4,0.5,0.97
5,0.4,0.98
"""


@pytest.fixture
def history_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    return path


# --------------------------------------------------------------------------- check


def test_check_imports_only_the_parser_checker_and_printer(tmp_path: Path) -> None:
    """`check` loads no module of ours it does not use, nor argparse (figure 5 times it against `import lark`)."""
    code = (
        "import sys, policy.cli\n"
        "rc = policy.cli.main(['check', 'stop when val_loss not improving for 3'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('policy') or m in ('json', 'csv', 'argparse')))\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = set(eval(result.stdout.splitlines()[-1]))
    assert loaded == {"policy", "policy.ast", "policy.cli", "policy.errors", "policy.frozen", "policy.meaning",
                      "policy.metrics", "policy.parser", "policy.printer", "policy.shape", "policy.validate"}


def test_lazy_package_names_stay_functions_after_their_modules_load(tmp_path: Path) -> None:
    """`policy.describe`, `.explain`, `.load` are imported on first use; their submodules never hide them."""
    code = (
        "import types, policy\n"
        "import policy.describe, policy.explain, policy.load\n"
        "from policy import *\n"
        "names = ('describe', 'explain', 'load')\n"
        "assert all(isinstance(getattr(policy, n), types.FunctionType) for n in names)\n"
        "assert all(hasattr(policy, n) for n in policy.__all__)\n"
        "assert policy.explain('stop after 5 epochs').startswith('stop after 5 epochs')\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_prints_the_canonical_form() -> None:
    result = run("check", GOOD)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "stop when val_loss not improving for 3\nsave best on val_loss min\n"


def test_check_prints_every_error_compiler_style() -> None:
    result = run("check", "save best on val_los to 'a.h5'")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "<policy>:1:14: cannot tell whether 'val_los' should go up or down\n"
        "    save best on val_los to 'a.h5'\n"
        "                 ^\n"
        "hint: did you mean 'val_loss'? If not, add \"min\" or \"max\" after val_los\n"
        "<policy>:1:25: a model file must end in .keras, got 'a.h5'\n"
        "    save best on val_los to 'a.h5'\n"
        "                            ^\n"
        "hint: write \"a.keras\"\n"
        "2 errors\n"
    )


def test_check_a_yaml_config_points_into_the_file(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: mlp\ntraining:\n  policy: |\n    stop when val_loss not improving for 3\n"
                      "    stop whn x\n")
    result = run("check", str(config), "--key", "training.policy")
    assert result.returncode == 1
    assert result.stderr.startswith(f"{config}:5:10: unexpected word 'whn'\n        stop whn x\n             ^\n")
    ok = tmp_path / "ok.policy"
    ok.write_text(GOOD.replace("; ", "\n"))
    assert run("check", str(ok)).stdout == "stop when val_loss not improving for 3\nsave best on val_loss min\n"


def test_check_missing_key_and_missing_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[training]\npolicy = "stop after 3 epochs"\n')
    result = run("check", str(config))
    assert result.returncode == 1
    assert "hint: did you mean 'training.policy'?" in result.stderr
    missing = run("check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


@pytest.mark.parametrize("case", ["good", "bad", "missing file", "several files"])
def test_check_without_options_answers_as_with_them(tmp_path: Path, case: str) -> None:
    """`check` with policies only skips argparse (figure 5); an option sends it through argparse: same answer."""
    ok, broken = tmp_path / "ok.policy", tmp_path / "broken.policy"
    ok.write_text(GOOD)
    broken.write_text("stop when\n")
    policies = {"good": [GOOD], "bad": ["save best on val_los to 'a.h5'"], "missing file": [str(tmp_path / "no.yaml")],
                "several files": [str(ok), str(broken), str(ok)]}[case]
    plain = run("check", *policies, cwd=tmp_path)
    parsed = run("check", *policies, "--key", "policy", cwd=tmp_path)
    assert (plain.returncode, plain.stdout, plain.stderr) == (parsed.returncode, parsed.stdout, parsed.stderr)
    assert plain.returncode == {"good": 0, "bad": 1, "missing file": 2, "several files": 1}[case]


@pytest.mark.parametrize("args", [[], ["nope"], ["check"], ["check", GOOD, "--bogus"], ["simulate", GOOD]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage: keras-policy" in result.stderr


@pytest.mark.parametrize("command", ["check", "explain", "simulate", "compile", "demo"])
def test_help_documents_exit_codes(command: str) -> None:
    result = run(command, "--help") if command != "demo" else run("--help")
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    assert "2  usage error" in result.stdout


def test_demo_gets_its_own_options() -> None:
    result = run("demo", "--help")
    assert result.returncode == 0
    assert "--epochs" in result.stdout


def test_check_never_imports_keras(tmp_path: Path) -> None:
    assert run_without_keras(tmp_path, "check", GOOD).returncode == 0
    bad = run_without_keras(tmp_path, "check", "stop when")
    assert bad.returncode == 1, bad.stderr
    assert "AssertionError" not in bad.stderr


def test_colour_only_on_a_terminal(tmp_path: Path) -> None:
    pty = pytest.importorskip("pty")  # POSIX only
    piped = run("check", "stop when")
    assert "\033[" not in piped.stderr
    # Under a pseudo-terminal the same error is bold; NO_COLOR turns that off again.
    for no_color, expect_colour in (("", True), ("1", False)):
        leader, follower = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": no_color, "TERM": "xterm"}
        proc = subprocess.run([sys.executable, "-m", "policy", "check", "stop when"], stdout=subprocess.PIPE,
                              stderr=follower, env=env, timeout=60)
        os.close(follower)
        output = os.read(leader, 65536).decode()
        os.close(leader)
        assert proc.returncode == 1
        assert ("\033[1m" in output) is expect_colour


# --------------------------------------------------------------------------- explain and compile


def test_explain(tmp_path: Path) -> None:
    result = run_without_keras(tmp_path, "explain", GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "stop when val_loss not improving for 3",
        "    Stop training at the end of the first epoch where val_loss has not gone down for 3 epochs in a row.",
        "    -> EarlyStopping(monitor='val_loss', patience=3, mode='min')",
    ]
    assert "ModelCheckpoint('checkpoints/best.keras', monitor='val_loss', mode='min', save_best_only=True)" in (
        result.stdout)


def test_compile_python_prints_runnable_code(tmp_path: Path) -> None:
    result = run_without_keras(tmp_path, "compile", "--python", GOOD)
    assert result.returncode == 0, result.stderr
    compile(result.stdout, "<compiled>", "exec")
    assert "callbacks = [\n" in result.stdout
    script = tmp_path / "callbacks.py"
    script.write_text(result.stdout + "print(len(callbacks))\n")
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "2"


# --------------------------------------------------------------------------- simulate

def _has_simulate() -> bool:
    try:
        from policy.reference import simulate  # noqa: F401
    except ImportError:
        return False
    return True


needs_reference = pytest.mark.skipif(not _has_simulate(), reason="policy.reference.simulate is not written yet")


@needs_reference
def test_simulate_table(tmp_path: Path, history_csv: Path) -> None:
    result = run_without_keras(tmp_path, "simulate", "stop when val_loss not improving for 3; save best on val_loss",
                               "--history", str(history_csv))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["epoch", "val_loss", "what", "fired"]
    assert lines[1].split() == ["0", "1", "save", "checkpoints/best.keras"]
    assert lines[5].split() == ["4", "0.97", "STOP"]
    assert "Stops at the end of epoch 4 (5 of 6 recorded epochs run)" in result.stdout
    assert "  epoch 1: checkpoints/best.keras" in lines


@needs_reference
def test_simulate_json(tmp_path: Path, history_csv: Path) -> None:
    result = run_without_keras(tmp_path, "simulate", "stop when val_loss not improving for 3, restore best",
                               "--history", str(history_csv), "--json", "--initial-lr", "0.01")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["epochs_run"] == 5
    assert data["restored_epoch"] == 1
    assert data["stop"]["epoch"] == 4
    assert data["stop"]["rule"] == "stop when val_loss not improving for 3, restore best"
    assert set(data) == {"epochs_run", "learning_rates", "saves", "files", "restored_epoch", "stop", "failed", "rollbacks"}


@needs_reference
def test_simulate_reads_history_json(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"loss": [1.0, 0.9, 0.8], "val_loss": [1.0, 1.1, None]}))
    result = run("simulate", "stop when val_loss not improving for 1", "--history", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stop"]["epoch"] == 1


@needs_reference
def test_simulate_plot(tmp_path: Path, history_csv: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "run.png"
    result = run("simulate", "stop when val_loss not improving for 3; save best on val_loss",
                 "--history", str(history_csv), "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_plot_without_matplotlib(tmp_path: Path, history_csv: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "import policy.cli\n"
        f"sys.exit(policy.cli.main(['simulate', {GOOD!r}, '--history', {str(history_csv)!r}, '--plot', 'x.png']))\n"
    )
    result = _python(code, tmp_path, timeout=60)
    assert result.returncode == 1
    assert "--plot needs matplotlib" in result.stderr
    assert "hint: pip install 'keras-policy[plot]'" in result.stderr


def test_simulate_bad_history_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n0,1.0\n1,oops\n")
    result = run("simulate", GOOD, "--history", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{bad}:3: 'loss': 'oops' is not a number"
    assert run("simulate", GOOD, "--history", str(tmp_path / "none.csv")).returncode == 2


@needs_reference
def test_simulate_missing_metric_is_an_error_like_strict_compile(tmp_path: Path, history_csv: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  policy: |\n    stop when val_los not decreasing for 2\n")
    result = run("simulate", str(config), "--key", "training.policy", "--history", str(history_csv))
    assert result.returncode == 1
    assert result.stderr.splitlines()[:4] == [
        f"{config}:3:15: metric 'val_los' is not in the history's first epoch (it has: loss, val_loss)",
        "        stop when val_los not decreasing for 2",
        "                  ^",
        "hint: did you mean 'val_loss'? (--no-strict replays anyway)",
    ]
    lenient = run("simulate", str(config), "--key", "training.policy", "--history", str(history_csv), "--no-strict")
    assert lenient.returncode == 0, lenient.stderr
    assert "Runs to the end: all 6 epochs" in lenient.stdout


@needs_reference
def test_simulate_takes_the_starting_lr_from_the_history(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("epoch,learning_rate,val_loss\n0,0.1,1.0\n1,0.1,1.0\n2,0.05,1.0\n")
    policy = "multiply lr by 0.5 when val_loss not improving for 1"
    result = run("simulate", policy, "--history", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["learning_rates"] == pytest.approx([0.1, 0.1, 0.05])
    no_lr = tmp_path / "n.csv"
    no_lr.write_text("epoch,val_loss\n0,1.0\n")
    missing = run("simulate", policy, "--history", str(no_lr))
    assert missing.returncode == 1
    assert "--initial-lr" in missing.stderr


def test_simulate_backend_option(tmp_path: Path) -> None:
    """A subnormal history: TensorFlow flushes 1e-40 to 0 (no improvement, stop at epoch 1), torch
    does not (an improvement; stop at epoch 2)."""
    history = tmp_path / "h.json"
    history.write_text('{"val_loss": [2e-40, 1e-40, 0.5]}')
    stops = {}
    for backend in ("tensorflow", "torch"):
        done = run("simulate", "stop when val_loss not improving for 1", "--history", str(history),
                       "--json", "--backend", backend)
        assert done.returncode == 0, done.stderr
        stops[backend] = json.loads(done.stdout)["stop"]["epoch"]
    assert stops == {"tensorflow": 1, "torch": 2}
