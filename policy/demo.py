"""The demo: train a small model on locally generated data under a policy, say what each rule did.

Run it with ``keras-policy demo`` (or ``python examples/demo.py``). Nothing is downloaded: the
data is a noisy two-class problem drawn with a fixed seed, so the model first learns, then
over-fits, and the policy's rules have something to do. After training, the same policy is
replayed over the recorded CSV history by the reference simulator, which must agree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEMO_POLICY = """\
# stop once validation loss has stalled, and keep the best weights
stop when val_loss not improving for 4, restore best
# halve the learning rate when it stalls for two epochs
multiply lr by 0.5 when val_loss not improving for 2
save best on val_loss min to "best.keras"
log to "train.csv"
"""


def _data(seed: int = 7) -> tuple[object, object, object, object]:
    import numpy as np

    rng = np.random.default_rng(seed)
    n, d = 600, 20
    x = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(d,))
    # Few informative features and 20% flipped labels: a small MLP over-fits within ~20 epochs.
    logits = x[:, :3] @ w[:3]
    y = (logits > 0).astype("float32")
    flip = rng.random(n) < 0.2
    y[flip] = 1.0 - y[flip]
    return x[:400], y[:400], x[400:], y[400:]


def run(out_dir: Path, epochs: int = 40, policy_text: str = DEMO_POLICY) -> int:
    """Train under ``policy_text`` in ``out_dir``; print what happened. Returns an exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from policy import compile_policy, format_policy, parse_policy, why_stopped
    from policy.history import read_history
    from policy.reference import simulate

    policy = parse_policy(policy_text)
    print("Policy:")
    for line in format_policy(policy).splitlines():
        print(f"  {line}")

    keras.utils.set_random_seed(0)
    x, y, xv, yv = _data()
    model = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    initial_lr = 0.01
    model.compile(optimizer=keras.optimizers.Adam(initial_lr), loss="binary_crossentropy", metrics=["accuracy"])

    out_dir.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    os.chdir(out_dir)  # the policy's paths are relative: write them under out_dir
    try:
        callbacks = compile_policy(policy)
        print("\nCompiled to:")
        for cb in callbacks:
            print(f"  {type(cb).__module__.split('.')[0]}.{type(cb).__name__}")
        history = model.fit(
            x, y, validation_data=(xv, yv), epochs=epochs, batch_size=32, callbacks=callbacks, verbose=0
        )
    finally:
        os.chdir(here)

    losses = history.history["val_loss"]
    best_epoch = min(range(len(losses)), key=losses.__getitem__)
    print(f"\nTrained {len(history.epoch)} of {epochs} epochs.")
    stop = why_stopped(callbacks)
    print(f"Stopped by: {stop.rule!r} at epoch {stop.epoch}: {stop.reason}" if stop else "Ran to the end.")
    print(f"Best val_loss {losses[best_epoch]:.4f} at epoch {best_epoch}; weights restored to that epoch.")
    lrs = history.history.get("learning_rate", [])
    changes = [(e, lr) for e, lr in enumerate(lrs) if e == 0 or lr != lrs[e - 1]]
    print("Learning rate: " + ", ".join(f"{lr:g} from epoch {e}" for e, lr in changes))
    files = sorted(p.name for p in out_dir.iterdir())
    print(f"Files written in {out_dir}: {', '.join(files)}")

    # The reference simulator replays the recorded history and must predict the same run.
    recorded = read_history(out_dir / "train.csv")
    predicted = simulate(policy, recorded, initial_lr=initial_lr)
    agree = predicted.epochs_run == len(history.epoch) and (predicted.stop == stop)
    print(
        f"\nReference simulator on train.csv: {predicted.epochs_run} epochs, "
        f"stop {predicted.stop.rule if predicted.stop else None!r} -> {'agrees' if agree else 'DISAGREES'}"
    )
    return 0 if agree else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keras-policy demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for checkpoints and logs (default: a new temp dir)")
    parser.add_argument("--epochs", type=int, default=40, help="the most epochs to train (default 40)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="keras-policy-demo-"))
    return run(out, epochs=args.epochs)


if __name__ == "__main__":
    raise SystemExit(main())
