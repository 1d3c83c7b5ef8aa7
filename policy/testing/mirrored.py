"""Run policies under TensorFlow's ``MirroredStrategy`` over 2 logical CPU devices, in one process.

    KERAS_BACKEND=tensorflow python -m policy.testing.mirrored WORKDIR REQUEST_JSON

The request is ``{"cases": [{"name", "policy", "history", "steps_per_epoch", "batch_losses"}]}``;
each case runs in the harness's real ``fit`` (:func:`policy.testing.run_in_keras`) inside the
strategy's scope, in ``WORKDIR/name``, and the answer is one JSON line with each case's outcome.
The logical devices must be configured before TensorFlow initialises them, hence a process of its
own. Each training batch holds 2 samples (one per replica): the harness's usual 1-sample batches
cannot be split over two replicas.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Run every case of the request under a 2-replica MirroredStrategy; print one JSON line."""
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    from policy.testing import harness, run_in_keras

    workdir, request = pathlib.Path(argv[0]), json.loads(argv[1])
    answer: dict[str, object] = {"replicas": int(strategy.num_replicas_in_sync), "cases": {}}
    cases: dict[str, object] = {}
    for case in request["cases"]:
        steps = int(case.get("steps_per_epoch", 1))
        # The harness's prebuilt data for this many steps, with 2-sample batches: the harness
        # model's input has the step-rate probe's columns after the Dense unit's (left zero here:
        # these cases compare decisions, not the rate of each step).
        x = np.zeros((2 * steps, 1 + harness.PROBE_STEPS), dtype="float32")
        y = np.zeros((2 * steps, 1), dtype="float32")
        harness._data[steps] = {
            "x": tf.data.Dataset.from_tensor_slices((x, y)).batch(2),
            "validation_data": tf.data.Dataset.from_tensor_slices((x[:2], y[:2])).batch(2),
        }
        with strategy.scope():
            out = run_in_keras(
                case["policy"],
                case["history"],
                steps_per_epoch=steps,
                batch_losses=case.get("batch_losses"),
                workdir=workdir / case["name"],
            )
        cases[case["name"]] = out.to_json()
    answer["cases"] = cases
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
