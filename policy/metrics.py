"""Which way a metric should go, judged from its name alone.

Keras's own ``mode="auto"`` only decides after the first epoch, from the compiled metric
object. A policy is checked before training, so it decides from the name: losses and
error-like names are minimised, accuracy-like names maximised, anything else must say
``min``/``max`` (or ``not decreasing``/``not increasing``).
"""

from __future__ import annotations

import re

from policy.ast import Direction, Trend

# Whole words of a metric name (split on "_") that settle its direction.
MINIMISED = frozenset(
    {
        "loss",
        "error",
        "err",
        "mae",
        "mse",
        "rmse",
        "msle",
        "mape",
        "logcosh",
        "hinge",
        "crossentropy",
        "kld",
        "kl",
        "perplexity",
        "ppl",
        "wer",
        "cer",
        "fpr",
        "fnr",
    }
)
MAXIMISED = frozenset(
    {
        "accuracy",
        "acc",
        "auc",
        "precision",
        "recall",
        "f1",
        "fbeta",
        "iou",
        "miou",
        "dice",
        "r2",
        "bleu",
        "rouge",
        "map",
        "ap",
        "tpr",
        "tnr",
        "specificity",
        "sensitivity",
        "score",
        "top1",
        "top5",
    }
)

# Names Keras logs for common compiled metrics, for "did you mean" hints on a typo.
COMMON_METRICS: tuple[str, ...] = tuple(
    prefix + name
    for name in (
        "loss", "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
        "auc", "precision", "recall", "mae", "mse", "rmse", "mean_absolute_error", "mean_squared_error",
        "top_k_categorical_accuracy", "f1_score", "iou",
    )
    for prefix in ("", "val_")
)  # fmt: skip


def name_direction(name: str) -> Direction | None:
    """``"min"``, ``"max"`` or None when the name does not say.

    The last word that settles it wins, so ``val_accuracy_loss`` is a loss and
    ``val_loss_auc`` an AUC. A leading ``val_`` is ignored, as Keras does.
    """
    words = [w for w in re.split(r"[_\W]+", name.lower()) if w]
    if words and words[0] == "val":
        words = words[1:]
    for word in reversed(words):
        if word in MINIMISED or word.endswith("loss") or word.endswith("error"):
            return "min"
        if word in MAXIMISED or word.endswith("accuracy"):
            return "max"
    return None


def trend_direction(metric: str, trend: Trend, explicit: Direction | None = None) -> Direction | None:
    """The direction a plateau or checkpoint watches: explicit words first, then the name."""
    if explicit is not None:
        return explicit
    if trend == "decreasing":
        return "min"
    if trend == "increasing":
        return "max"
    return name_direction(metric)
