"""One policy, two processes: data-parallel training with Keras's distribution API on JAX (CPU).

    KERAS_BACKEND=jax python examples/two_processes.py

Run without arguments, the script starts itself twice (process 0 and process 1) on a free
localhost port, each under ``timeout -k`` so that nothing can hang for ever, and prints what each
process decided. Each process trains on its own half of the data; the compiled policy is the same
text and the same ``fit`` call as with one process. Only process 0 writes ``runs/best.keras`` and
``runs/train.csv``; both processes stop at the same epoch and report the same ``why_stopped``.
On a real cluster, start the same script on every host with its process id and the coordinator's
address instead (see README, "Multi-process training").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

POLICY = """
stop when val_loss not improving for 2, restore best
multiply lr by 0.5 when val_loss not improving for 1
save best on val_loss to "runs/best.keras"
log to "runs/train.csv"
stop after 10 min
"""


def train(port: int, process_id: int, processes: int) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras
    import numpy as np

    from policy import compile_policy, why_stopped

    keras.distribution.initialize(f"localhost:{port}", num_processes=processes, process_id=process_id)
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))

    rng = np.random.default_rng(0)  # the same data on every process; each takes its own half
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = ((x[:, :3].sum(axis=1) + rng.normal(scale=1.5, size=2048)) > 0).astype("float32")
    keras.utils.set_random_seed(0)  # the same initial weights on every process
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")

    callbacks = compile_policy(POLICY)
    history = model.fit(
        x[:1536][process_id::processes],
        y[:1536][process_id::processes],
        validation_data=(x[1536:][process_id::processes], y[1536:][process_id::processes]),
        batch_size=64 // processes,  # per process: the global batch is 64
        epochs=30,
        callbacks=callbacks,
        verbose=0,
    )
    print(f"process {process_id}: {len(history.epoch)} epochs, stopped: {why_stopped(callbacks)}", flush=True)


def main() -> int:
    if len(sys.argv) == 4:
        train(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
        return 0
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    command = ["timeout", "-k", "5", "300", sys.executable, __file__, str(port)]
    children = [subprocess.Popen([*command, str(i), "2"], env=env) for i in range(2)]
    codes = [child.wait() for child in children]
    files = sorted(os.listdir("runs")) if os.path.isdir("runs") else []
    print(f"exit codes {codes}; runs/ holds {files}")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
