"""Hydra users get working callbacks from the README's ``_target_`` config, as written there."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from policy import why_stopped

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_config() -> str:
    """The README's config block (the one with ``_target_: policy.compile_policy``)."""
    blocks = re.findall(r"^```yaml[^\n]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    (config,) = [b for b in blocks if "_target_: policy.compile_policy" in b]
    return config


def test_instantiating_the_readme_config_gives_working_callbacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create(yaml.safe_load(_readme_config()))
    callbacks = instantiate(cfg.callbacks)
    assert type(callbacks) is list  # a plain list, as model.fit needs
    assert any(isinstance(cb, keras.callbacks.EarlyStopping) and cb.patience == 3 for cb in callbacks)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # lr 0: val_loss never improves
    x = np.ones((8, 2), "float32")
    history = model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=10, callbacks=callbacks, verbose=0)
    assert len(history.epoch) == 4  # epoch 0 sets the best, then 3 epochs without improvement
    stop = why_stopped(callbacks)
    assert stop is not None and (stop.rule, stop.epoch) == ("stop when val_loss not improving for 3", 3)


def test_a_bad_policy_in_the_config_fails_at_instantiate() -> None:
    from policy import PolicyError

    cfg = OmegaConf.create({"_target_": "policy.compile_policy", "policy": "stop when val_loss not improving for 0"})
    with pytest.raises(Exception) as raised:
        instantiate(cfg)
    # Hydra wraps what the target raised; the PolicyError is kept as the cause.
    cause = raised.value if isinstance(raised.value, PolicyError) else raised.value.__cause__
    assert isinstance(cause, PolicyError)
