from types import SimpleNamespace

import numpy as np
import pytest

from mobiledx.tracking.crossval import markdown, summarise_folds


def run(run_id, start, fold, lr="0.001", method="kfold", accuracy=0.5):
    params = {"lr": lr, "seed": "42", "train.backbone": "mobilenetv2", "split.method": method, "split.folds": "3",
              "split.fold": str(fold), "n_train_samples": str(100 + fold)}  # sizes differ per fold: not config
    metrics = {"val_accuracy": accuracy, "val_balanced_accuracy": accuracy - 0.05, "val_roc_auc_macro": 0.9,
               "test_accuracy": accuracy,
               "test_balanced_accuracy": accuracy - 0.1, "test_roc_auc_macro": 0.9}
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, start_time=start),
                           data=SimpleNamespace(params=params, metrics=metrics))


def test_folds_group_by_configuration_and_report_mean_and_sd():
    runs = [
        run("a0", 1, 0, accuracy=0.70), run("a1", 2, 1, accuracy=0.80), run("a2", 3, 2, accuracy=0.75),
        run("a1-rerun", 4, 1, accuracy=0.90),  # the latest run of a fold counts
        run("b0", 5, 0, lr="0.0001", accuracy=0.60), run("b1", 6, 1, lr="0.0001", accuracy=0.64),
        run("plain", 7, 0, method="fractions"),  # not cross-validation
    ]
    newest, older = summarise_folds(runs)
    assert older.run_ids == ["a0", "a1-rerun", "a2"] and older.complete
    assert older.mean_sd("test_accuracy") == pytest.approx(
        (np.mean([0.7, 0.9, 0.75]), np.std([0.7, 0.9, 0.75], ddof=1))
    )
    assert newest.run_ids == ["b0", "b1"] and not newest.complete
    table = markdown("demo-blood", [newest, older])
    # the validation figure configurations are compared on, with its spread, next to the test figures
    assert "| folds | lr | val_accuracy | val_balanced_accuracy | val_roc_auc_macro | test_accuracy |" in table
    assert "| 3/3 | 0.001 | 0.783 ± 0.104 | 0.733 ± 0.104 | 0.900 ± 0.000 | 0.783 ± 0.104 |" in table
    assert "| 2/3 | 0.0001 | 0.620 ± 0.028 | 0.570 ± 0.028 | 0.900 ± 0.000 | 0.620 ± 0.028 |" in table


def test_cv_command_prints_the_table_and_explains_when_there_are_no_folds(monkeypatch, capsys):
    from mobiledx import cli
    from mobiledx.tracking import model_registry

    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset: [run("a0", 1, 0), run("a1", 2, 1)])
    assert cli.main(["cv", "demo-blood", "--no-log"]) == 0
    row = "| 2/3 | 0.500 ± 0.000 | 0.450 ± 0.000 | 0.900 ± 0.000 | 0.500 ± 0.000 | 0.400 ± 0.000 | 0.900 ± 0.000 |"
    assert row in capsys.readouterr().out
    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset: [run("x", 1, 0, method="fractions")])
    assert cli.main(["cv", "demo-blood", "--no-log"]) == 2
    assert "split.method=kfold" in capsys.readouterr().err
