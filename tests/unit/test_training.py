import numpy as np
import pandas as pd
import pytest

from mobiledx.data.batches import make_dataset
from mobiledx.models.inference import predict_probabilities
from mobiledx.training.loop import one_hot
from tests.support import CLASSES, SMALL, colour_task, fit_on, training_config


def test_dataset_gathers_the_requested_rows_in_order():
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 4, 4, 3), np.uint8)
    rows = np.array([3, 1, 4])
    batches = list(make_dataset(images, rows, np.eye(3, dtype=np.float32), np.ones(3), batch_size=2))
    pixels = np.concatenate([b[0].numpy() for b in batches])
    assert pixels.dtype == np.float32 and list(pixels[:, 0, 0, 0]) == [3.0, 1.0, 4.0]
    assert len(batches[0]) == 3  # (pixels, targets, sample weights)


def test_shuffle_is_seeded():
    images = np.zeros((20, 2, 2, 3), np.uint8)
    targets = np.arange(20, dtype=np.float32)[:, None]

    def order(seed):
        data = make_dataset(images, np.arange(20), targets, None, batch_size=20, shuffle_seed=seed)
        return next(iter(data))[1].numpy().ravel().tolist()

    assert order(3) == order(3) and order(3) != order(4) and sorted(order(3)) == list(range(20))


def test_one_hot_refuses_unknown_labels():
    with pytest.raises(ValueError, match="green"):
        one_hot(pd.Series(["red", "green"]), CLASSES)


def test_from_scratch_eval_mode_accuracy_tracks_training():
    """The BatchNorm trap: moving statistics lag in a short from-scratch run and inference collapses
    to one class (measured: 0.47 accuracy here without calibration); calibration must prevent it."""
    images, labels = colour_task()
    rows = np.arange(len(images))
    cfg = training_config(epochs=6, batch_size=8)
    model, history = fit_on(cfg, images, CLASSES, rows[:64], labels[:64], np.ones(64), rows[64:], labels[64:])
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    predicted = predict_probabilities(model, images, rows[64:], cfg.batch_size).argmax(axis=1)
    accuracy = np.mean(np.array(CLASSES)[predicted] == labels[64:].to_numpy())
    best = history.loc[history["val_loss"].idxmin()]
    assert accuracy >= 0.7  # chance is 0.5; the uncalibrated model scores 0.47
    assert accuracy == pytest.approx(best["val_accuracy"], abs=1e-6)  # validation saw the calibrated model
    assert accuracy >= best["accuracy"] - 0.15  # inference mode tracks training mode


def test_same_seed_same_model():
    images, labels = colour_task(48)
    rows = np.arange(48)
    cfg = training_config(epochs=1, augmentation="paper000", dropout=0.3, backbone=SMALL)
    first, _ = fit_on(cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    second, _ = fit_on(cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))


def test_focal_and_crossentropy_losses_match_their_formulas():
    from mobiledx.training.losses import make_loss

    y = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    p = np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]], np.float32)
    true_p = (p * y).sum(axis=1)
    ce = float(make_loss("crossentropy")(y, p))
    focal = float(make_loss("focal", focal_gamma=2.0)(y, p))
    assert ce == pytest.approx(np.mean(-np.log(true_p)), rel=1e-5)
    assert focal == pytest.approx(np.mean(-((1 - true_p) ** 2) * np.log(true_p)), rel=1e-5)
    with pytest.raises(ValueError, match="train.loss"):
        make_loss("hinge")


def test_freeze_then_fine_tune_runs_two_phases_at_the_right_rates():
    images, labels = colour_task(48)
    rows = np.arange(48)
    cfg = training_config(epochs=3, freeze_epochs=1, fine_tune_lr_factor=0.1, bn_calibration_images=0, backbone=SMALL)
    model, history = fit_on(cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    assert list(history["phase"]) == ["frozen", "fine_tune", "fine_tune"]
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-4, 1e-4])
    assert model.get_layer("backbone").trainable


def test_backbone_freezing_and_partial_unfreezing():
    import keras

    from mobiledx.models import build_classifier
    from mobiledx.training.loop import set_backbone_trainable

    model = build_classifier(num_classes=2, image_size=32, alpha=0.35, weights="none", dense_units=8)
    backbone = model.get_layer("backbone")
    set_backbone_trainable(model, trainable=False)
    assert not backbone.trainable_weights and len(model.trainable_weights) == 4  # head: 2 Dense layers
    set_backbone_trainable(model, trainable=True, top_layers=10)
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert trainable and all(backbone.layers.index(layer) >= len(backbone.layers) - 10 for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    set_backbone_trainable(model, trainable=True)
    assert all(layer.trainable for layer in backbone.layers)


def test_metadata_model_trains_on_image_and_metadata_inputs():
    images, labels = colour_task(32)
    rows = np.arange(32)
    metadata = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)
    cfg = training_config(epochs=1, bn_calibration_images=8, backbone=SMALL)
    model, _ = fit_on(cfg, images, CLASSES, rows[:24], labels[:24], np.ones(24), rows[24:], labels[24:],
                   train_metadata=metadata[:24], val_metadata=metadata[24:])
    assert [tensor.name for tensor in model.inputs] == ["image", "metadata"]
    probabilities = predict_probabilities(model, images, rows[24:], cfg.batch_size, metadata=metadata[24:])
    assert probabilities.shape == (8, 2) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


class _Interrupt(Exception):
    pass


def _interrupt_at(epoch_index: int):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == epoch_index:
                raise _Interrupt(f"killed before epoch {epoch + 1}")

    return Interrupt()


def test_resumed_training_ends_exactly_like_an_uninterrupted_one(tmp_path, capsys):
    """Interrupted in the fine-tuning phase and resumed from the backup, the training reproduces the
    uninterrupted one bit for bit: weights, optimizer, data order, augmentation and dropout random
    states, early stopping's counters and best weights are all restored. A finished training is not
    trained again."""
    import keras

    from mobiledx.training.backup import TrainingBackup

    images, labels = colour_task(48)
    rows = np.arange(48)
    cfg = training_config(epochs=3, freeze_epochs=1, augmentation="paper000", dropout=0.3, bn_calibration_images=16,
                 backbone=SMALL)
    args = (cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    reference, reference_history = fit_on(*args)

    backup = TrainingBackup(tmp_path / "backup")
    with pytest.raises(_Interrupt):
        fit_on(*args, callbacks=[_interrupt_at(2)], backup=backup)
    assert backup.latest()["epoch"] == 2 and backup.latest()["phase"] == 1
    capsys.readouterr()
    model, history = fit_on(*args, backup=backup)
    assert "resuming from epoch 2" in capsys.readouterr().out
    pd.testing.assert_frame_equal(history, reference_history)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))

    epochs_run = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_run.append(epoch)

    again, again_history = fit_on(*args, callbacks=[Count()], backup=backup)
    assert epochs_run == [] and "training had already finished" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again_history, reference_history)
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), reference.get_weights()))


def test_backup_survives_a_torn_write_and_keeps_two_states(tmp_path):
    from mobiledx.training.backup import TrainingBackup

    backup = TrainingBackup(tmp_path / "b")
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)]
    for epoch in (1, 2, 3):
        backup.save({"epoch": epoch, "phase": 0, "finished": False, "history": []},
                    weights=[w * epoch for w in weights], optimizer=[np.int64(epoch)],
                    best_weights=weights if epoch == 1 else None)
    assert backup.available() == [2, 3]  # older states pruned
    assert sorted(p.name for p in backup.directory.iterdir()) == [
        "best-000001.npz", "lock", "optimizer-000002.npz", "optimizer-000003.npz", "state-000002.json",
        "state-000003.json", "weights-000002.npz", "weights-000003.npz"]  # best weights carried over
    latest = backup.latest()
    assert latest["epoch"] == 3 and latest["best_weights"] == "best-000001.npz"
    assert np.array_equal(backup.read_arrays(latest["weights"])[0], weights[0] * 3)

    # killed while writing state 4: its weights are there, its state file is not -> state 3 is used
    (backup.directory / "weights-000004.npz").write_bytes(b"partial")
    assert backup.latest()["epoch"] == 3
    # a state whose weights file is missing, or an unreadable state file, is skipped
    (backup.directory / "weights-000003.npz").unlink()
    (backup.directory / "state-000005.json").write_text('{"epoch": 5, "weigh')
    assert backup.latest()["epoch"] == 2

    with pytest.raises(BlockingIOError):  # one live process per backup
        TrainingBackup(tmp_path / "b")
    backup.remove()
    assert not (tmp_path / "b").exists()


def test_backups_live_under_dvc_tmp_and_stale_ones_are_dropped(tmp_path):
    from mobiledx.training.backup import TrainingBackup

    assert TrainingBackup.for_training("ds", "key1", root=tmp_path) is None  # not a DVC repository
    (tmp_path / ".dvc").mkdir()
    stale = TrainingBackup.for_training("ds", "old", root=tmp_path)
    stale.set_run_id("run-of-old")
    live = TrainingBackup.for_training("ds", "live", root=tmp_path)
    stale._lock, lock = None, stale._lock  # the process of "old" died: its lock is gone
    import os

    os.close(lock)
    backup = TrainingBackup.for_training("ds", "new", root=tmp_path)
    assert backup.directory == tmp_path / ".dvc" / "tmp" / "train-backup" / "ds" / "new" / "chief"
    assert backup.stale_run_ids == ["run-of-old"]
    base = tmp_path / ".dvc" / "tmp" / "train-backup" / "ds"
    assert sorted(p.name for p in base.iterdir()) == ["live", "new"]  # a live training's backup is kept
    assert TrainingBackup.for_training("ds", "new", root=tmp_path) is None  # same training already running
    live.remove()
    backup.remove()
    assert not any(base.iterdir())


def test_training_key_covers_params_inputs_and_code(tmp_path):
    from mobiledx.codedeps import code_closure
    from mobiledx.params import parse_params
    from mobiledx.training.backup import training_key

    data = tmp_path / "images.npy"
    data.write_bytes(b"one")
    code = code_closure("stages/train.py")
    assert any(path.name == "loop.py" for path in code) and not any(path.name == "evaluation.py" for path in code)

    def key(raw=None, inputs=(data,), files=code, workers=1):
        params = parse_params({"lr": 0.001, "seed": 1, "train": {"epochs": 3}, **(raw or {})})
        return training_key(params.train_config(), inputs, files, workers=workers)

    reference = key()
    assert reference == key({"evaluate": {"bootstrap_samples": 99}})  # not a training setting
    assert reference != key({"lr": 0.01}) and reference != key({"train": {"epochs": 4}})
    assert reference != key(workers=2)
    stage = tmp_path / "train.py"
    stage.write_text("# v1")
    assert key(files=[*code, stage]) != reference
    data.write_bytes(b"two")
    assert key() != reference


def test_resume_after_early_stopping_restores_its_best_weights(tmp_path, capsys):
    """Killed after early stopping ended the training but before it restored the best weights: the
    resumed run trains no more epochs and ends with the best epoch's weights, from the backup."""
    import keras

    from mobiledx.training.backup import TrainingBackup

    images, labels = colour_task(48)
    rows = np.arange(48)
    cfg = training_config(epochs=6, patience=0, monitor="val_accuracy", bn_calibration_images=16, backbone=SMALL)
    # measured: val_accuracy 1.0 then 0.5, so early stopping ends it after epoch 2 and restores epoch 1
    args = (cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    backup = TrainingBackup(tmp_path / "backup")
    reference, reference_history = fit_on(*args, backup=backup)
    assert len(reference_history) < 6  # early stopping ended it
    finished = backup.latest()
    assert finished["finished"]
    (backup.directory / f"state-{finished['number']:06d}.json").unlink()  # "killed" before the phase ended
    last_epoch = backup.latest()
    assert last_epoch["stopped"] and last_epoch["early_stopping"]["best_epoch"] + 1 < last_epoch["epoch"]
    assert not all(np.array_equal(a, b) for a, b in zip(backup.read_arrays(last_epoch["weights"]),
                                                          reference.get_weights()))

    epochs_run = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_run.append(epoch)

    model, history = fit_on(*args, callbacks=[Count()], backup=backup)
    assert epochs_run == []
    pd.testing.assert_frame_equal(history, reference_history)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))


class _RecordingImages:
    """An image source that records the size of every read (what fit/predict gather at once)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images, self.shape, self.reads = images, images.shape, []

    def __getitem__(self, rows):
        self.reads.append(len(rows))
        return self.images[rows]


def test_mapped_cache_trains_and_predicts_exactly_like_the_in_memory_array(tmp_path):
    import keras

    from mobiledx.data.cache import MappedImages
    from mobiledx.tflite.conversion import convert

    images, labels = colour_task(48)
    np.save(tmp_path / "images.npy", images)
    rows = np.arange(48)
    cfg = training_config(epochs=1, augmentation="paper000", backbone=SMALL, bn_calibration_images=16)
    results = []
    for source in (images, MappedImages(tmp_path / "images.npy")):
        keras.utils.clear_session()  # same layer names, so that the .tflite bytes can be compared
        model, history = fit_on(cfg, source, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
        results.append((model, history, predict_probabilities(model, source, rows[32:], cfg.batch_size)))
    (memory_model, memory_history, memory_p), (mapped_model, mapped_history, mapped_p) = results
    assert all(np.array_equal(a, b) for a, b in zip(memory_model.get_weights(), mapped_model.get_weights()))
    assert memory_history.equals(mapped_history) and np.array_equal(memory_p, mapped_p)
    assert convert(memory_model, "float32") == convert(mapped_model, "float32")


def test_training_calibration_and_prediction_never_read_more_than_a_batch():
    images, labels = colour_task(48)
    source = _RecordingImages(images)
    rows = np.arange(48)
    cfg = training_config(epochs=2, batch_size=8, bn_calibration_images=40, backbone=SMALL)
    model, _ = fit_on(cfg, source, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
    predict_probabilities(model, source, rows, cfg.batch_size)
    assert max(source.reads) == 8 and sum(source.reads) > 2 * 40  # calibration sample read batch by batch, twice


def test_a_training_that_cannot_fit_in_memory_stops_before_it_starts(monkeypatch):
    from mobiledx.training import loop, memory

    images, labels = colour_task(32)
    monkeypatch.setattr(memory, "available_memory", lambda: 512 << 20)  # 0.5 GiB left on this machine
    epochs = []
    monkeypatch.setattr(loop, "make_dataset", lambda *a, **k: epochs.append(1))
    with pytest.raises(memory.TrainingMemoryError, match=r"lower train.batch_size \(at 8: about .* GiB\)"):
        fit_on(training_config(batch_size=16, backbone=SMALL), images, CLASSES, np.arange(24), labels[:24], np.ones(24),
            np.arange(24, 32), labels[24:])
    assert epochs == []  # refused before any data pipeline was built


def test_memory_estimate_grows_with_batch_and_image_size():
    from mobiledx.models import build_classifier
    from mobiledx.training.memory import MEMORY_BASE_BYTES, estimate_training_memory

    small = build_classifier(2, 64, backbone="mobilenetv2", alpha=0.35, weights="none")
    large = build_classifier(2, 128, backbone="mobilenetv2", alpha=0.35, weights="none")
    assert MEMORY_BASE_BYTES < estimate_training_memory(small, 8) < estimate_training_memory(small, 16)
    per_image = estimate_training_memory(small, 16) - estimate_training_memory(small, 8)
    per_large_image = estimate_training_memory(large, 16) - estimate_training_memory(large, 8)
    assert per_large_image == pytest.approx(4 * per_image, rel=0.05)


def test_calibrating_batchnorm_never_changes_the_training_that_follows():
    """Calibration runs the model in training mode (dropout draws random numbers): the generators are put
    back, so the training losses are the same with any calibration sample, or none."""
    images, labels = colour_task(48)
    rows = np.arange(48)
    histories = []
    for count in (0, 8, 40):
        cfg = training_config(
            epochs=3, batch_size=8, bn_calibration_images=count, dropout=0.5, backbone=SMALL, patience=10
        )
        _, history = fit_on(cfg, images, CLASSES, rows[:32], labels[:32], np.ones(32), rows[32:], labels[32:])
        histories.append(history[["loss", "accuracy"]])
    assert histories[0].equals(histories[1]) and histories[0].equals(histories[2])


def test_the_train_stage_loads_tensorflow_and_mlflow_only_after_its_weights_preflight():
    """Offline, the train stage stops within about two seconds, before TensorFlow is imported (docs/guides/models.md):
    its module imports neither, the training wing (Keras and TensorFlow at its top) is imported after the preflight."""
    import subprocess
    import sys

    code = ("import sys; import mobiledx.pipeline.train; "
            "print(sorted(name for name in ('keras', 'mlflow', 'tensorflow') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
