"""Figure 2: ``compile_policy`` against building the same Keras callbacks by hand.

The hand-written side is exactly what the README says the seed policy compiles to:
``EarlyStopping(monitor="val_loss", patience=3, mode="min")`` and
``ModelCheckpoint("checkpoints/best.keras", monitor="val_loss", mode="min", save_best_only=True)``.
``compile_policy`` also builds the strict-mode ``MetricCheck``; compiling from text parses too.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import SEED_POLICY, Figure, Row, alternate, calls


def hand_written() -> list[Any]:
    """The seed policy's callbacks, written by hand as a Keras user would."""
    import keras

    return [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, mode="min"),
        keras.callbacks.ModelCheckpoint("checkpoints/best.keras", monitor="val_loss", mode="min", save_best_only=True),
    ]


def run(quick: bool) -> Figure:
    """Ratio of compile time to hand construction, from text and from a parsed policy."""
    from policy import compile_policy, parse_policy

    fig = Figure(2, "compile_policy vs the same Keras callbacks built by hand")
    pairs, number = (5, 50) if quick else (15, 500)
    parsed = parse_policy(SEED_POLICY)
    hand_written()
    compile_policy(SEED_POLICY)  # imports and Lark tables outside the measurement

    from_text = alternate(calls(lambda: compile_policy(SEED_POLICY), number), calls(hand_written, number), pairs)
    from_ast = alternate(calls(lambda: compile_policy(parsed), number), calls(hand_written, number), pairs)
    lax = alternate(calls(lambda: compile_policy(parsed, strict=False), number), calls(hand_written, number), pairs)
    fig.rows += [
        Row("hand-written EarlyStopping + ModelCheckpoint", from_text.b.scaled(1e6), "µs"),
        Row("compile_policy(text), seed policy", from_text.a.scaled(1e6), "µs"),
        Row("ratio compile_policy(text) / hand", from_text.ratio, "x", note="parse + validate dominate"),
        Row("ratio compile_policy(Policy) / hand", from_ast.ratio, "x", note="strict: adds MetricCheck"),
        Row("ratio compile_policy(Policy, strict=False) / hand", lax.ratio, "x"),
    ]
    fig.details.append(
        f"Compiling an already parsed policy costs {from_ast.a.median * 1e6:.0f} µs against "
        f"{from_ast.b.median * 1e6:.0f} µs by hand; from text it is {from_text.a.median * 1e6:.0f} µs, the "
        f"difference being parse + validate (figure 1). Either is paid once per `fit`."
    )
    return fig
