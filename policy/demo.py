"""The demo: train a small model on locally generated data under a policy, say what each rule did.

Run it with ``keras-policy demo`` (or ``python examples/demo.py``). Nothing is downloaded: the
data is a noisy two-class problem drawn with a fixed seed, so the model first learns, then
over-fits, and the policy's rules have something to do. After training, the same policy is
replayed over the recorded CSV history by the reference simulator, which must predict the same
epochs, learning rates, checkpoint writes and stop.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_POLICY = """\
# stop once validation loss has stalled, and keep the best weights
stop when val_loss not improving for 4, restore best
# ...or as soon as the model is clearly good enough
stop when val_accuracy >= 0.97
# halve the learning rate when it stalls for two epochs
multiply lr by 0.5 when val_loss not improving for 2
save best on val_loss min to "best.keras"
save top 2 on val_accuracy to "top/{epoch:02d}.keras"
log to "train.csv"
"""

INITIAL_LR = 0.01


def _data(seed: int = 7) -> tuple[Any, Any, Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    n, d = 600, 20
    x = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(3,))
    # Three informative features and 20% flipped labels: a small MLP over-fits within ~10 epochs.
    y = (x[:, :3] @ w > 0).astype("float32")
    flip = rng.random(n) < 0.2
    y[flip] = 1.0 - y[flip]
    return x[:400], y[:400], x[400:], y[400:]


def _checkpoint_watcher(out_dir: Path) -> Any:
    """A callback that notes, after each epoch, which ``.keras`` files were (re)written."""
    import keras

    class Watch(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[Path, int] = {}
            self.writes: list[tuple[int, str]] = []

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            for path in sorted(out_dir.rglob("*.keras")):
                stamp = path.stat().st_mtime_ns
                if self.seen.get(path) != stamp:
                    self.seen[path] = stamp
                    self.writes.append((epoch, path.relative_to(out_dir).as_posix()))

    return Watch()


def run(out_dir: Path, epochs: int = 40, policy_text: str = DEMO_POLICY) -> int:
    """Train under ``policy_text`` in ``out_dir``; print what each rule did. Returns an exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from policy import compile_policy, format_policy, parse_policy, simulate, why_stopped
    from policy.history import read_history
    from policy.printer import rule as rule_text

    policy = parse_policy(policy_text)
    print("Policy:")
    for line in format_policy(policy).splitlines():
        print(f"  {line}")

    keras.utils.set_random_seed(0)
    x, y, xv, yv = _data()
    model = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.Adam(INITIAL_LR), loss="binary_crossentropy", metrics=["accuracy"])

    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = compile_policy(policy)
    print("\nCompiled to: " + ", ".join(type(cb).__name__ for cb in callbacks))
    watch = _checkpoint_watcher(out_dir)
    here = Path.cwd()
    os.chdir(out_dir)  # the policy's paths are relative: write them under out_dir
    try:
        history = model.fit(
            x, y, validation_data=(xv, yv), epochs=epochs, batch_size=32, callbacks=[*callbacks, watch], verbose=0
        )
    finally:
        os.chdir(here)

    logs = history.history
    stop = why_stopped(callbacks)
    lrs = [float(v) for v in logs.get("learning_rate", [])]
    print(f"\nTrained {len(history.epoch)} of {epochs} epochs. What each rule did:")
    for rule in policy.rules:
        text = rule_text(rule)
        print(f"- {text}")
        if stop is not None and stop.rule == text:
            print(f"    stopped training at the end of epoch {stop.epoch}: {stop.reason}")
        elif text.startswith("stop"):
            print("    did not fire")
        if "restore best" in text:
            best = min(range(len(logs["val_loss"])), key=logs["val_loss"].__getitem__)
            print(f"    put back the weights of epoch {best} (val_loss {logs['val_loss'][best]:.4f})")
        if text.startswith("multiply lr"):
            changes = [
                f"{lrs[e - 1]:g} -> {lrs[e]:g} after epoch {e - 1}" for e in range(1, len(lrs)) if lrs[e] != lrs[e - 1]
            ]
            print("    " + ("; ".join(changes) if changes else "never changed the learning rate"))
        if text.startswith("save"):
            path = text.rsplit(" to ", 1)[-1].strip('"')
            prefix = path.split("{", 1)[0]
            mine = [(e, p) for e, p in watch.writes if p.startswith(prefix)]
            print("    wrote " + ", ".join(f"{p} (epoch {e})" for e, p in mine))
        if text.startswith("log to"):
            print(f"    logged {len(history.epoch)} epochs")
    kept = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    print(f"Files now in {out_dir}: {', '.join(kept)}")

    # The reference simulator replays the recorded history and must predict the same run.
    predicted = simulate(policy, read_history(out_dir / "train.csv"), initial_lr=INITIAL_LR)
    checks = {
        "epochs run": predicted.epochs_run == len(history.epoch),
        "stop": predicted.stop == stop,
        "learning rates": list(predicted.learning_rates) == lrs,
        "checkpoint writes": list(predicted.saves) == watch.writes,
    }
    verdict = (
        "agrees on " + ", ".join(checks)
        if all(checks.values())
        else "DISAGREES on " + ", ".join(k for k, ok in checks.items() if not ok)
    )
    print(f"\nThe reference simulator, replaying train.csv without Keras, {verdict}.")
    return 0 if all(checks.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keras-policy demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for checkpoints and logs (default: a new temp dir)"
    )
    parser.add_argument("--epochs", type=int, default=40, help="the most epochs to train (default 40)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="keras-policy-demo-"))
    return run(out, epochs=args.epochs)


if __name__ == "__main__":
    raise SystemExit(main())
