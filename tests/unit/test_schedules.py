import math

import numpy as np
import pytest

from mobiledx.training.schedules import learning_rate, schedule_callbacks


def test_constant_schedule_is_the_learning_rate():
    assert learning_rate("constant", 1e-3, steps_per_epoch=10) == 1e-3
    assert schedule_callbacks("constant", "val_loss", patience=2) == []
    with pytest.raises(ValueError, match="train.schedule"):
        learning_rate("triangular", 1e-3, steps_per_epoch=10)


def test_cosine_restarts_follow_sgdr():
    schedule = learning_rate("cosine_restarts", 0.1, steps_per_epoch=5, restart_epochs=2)  # first cycle: 10 steps
    actual = [float(schedule(step)) for step in range(40)]

    def sgdr(step):  # cycles of 10, 20, 40 ... steps, each from 0.1 down to 0
        length, start = 10, 0
        while step >= start + length:
            start, length = start + length, length * 2
        return 0.1 * 0.5 * (1 + math.cos(math.pi * (step - start) / length))

    assert actual == pytest.approx([sgdr(step) for step in range(40)], abs=1e-7)
    assert actual[0] == pytest.approx(0.1) and actual[10] == pytest.approx(0.1)  # warm restart after cycle 1
    assert actual[9] < 0.01


def test_plateau_multiplies_by_0_2_down_to_the_floor():
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-5), loss="mse")
    (callback,) = schedule_callbacks("plateau", "val_loss", patience=1, min_lr=1e-7)
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for epoch, val_loss in enumerate([1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95]):
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
        rates.append(float(np.asarray(model.optimizer.learning_rate)))
    # improvement at epoch 1; each non-improving epoch after it exhausts patience 1 (cooldown 0)
    assert rates == pytest.approx([1e-5, 1e-5, 2e-6, 4e-7, 1e-7, 1e-7, 1e-7], rel=1e-5)
