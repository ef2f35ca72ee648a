"""Seed studies (mobiledx.tracking.seeds) and the grouping they share with k-fold summaries (mobiledx.tracking.repeats).

Runs are fake MLflow ``Run`` objects: ``info.run_id``/``start_time``, ``data.params``/``metrics`` as the
train, evaluate and export stages log them.
"""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mobiledx import cli
from mobiledx.release import publish
from mobiledx.tracking import comparison, model_registry, seeds
from mobiledx.tracking.crossval import summarise_folds
from mobiledx.tracking.repeats import FOLD, SEED, Spread, configuration, group_repeats


def run(run_id, start, seed, *, lr="0.001", fold=0, method="fractions", val=0.8, status="FINISHED", **metrics):
    params = {"lr": lr, "seed": str(seed), "image_size": "96", "train.backbone": "mobilenetv2",
              "rebalance.method": "class_weight", "split.method": method, "split.folds": "3", "split.fold": str(fold),
              "n_train_samples": str(100 + seed), "classes": "akiec,bcc,mel", "demo.seed": str(seed)}  # not config
    logged = {"val_balanced_accuracy": val, "test_balanced_accuracy": None if val is None else val - 0.1, **metrics}
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, start_time=start, status=status),
                           data=SimpleNamespace(params=params, metrics={k: v for k, v in logged.items()
                                                                        if v is not None}))


# --------------------------------------------------------------------------- statistics and grouping


def test_spread_is_the_sample_sd_with_min_and_max():
    values = [0.70, 0.80, 0.90, 0.84]
    spread = Spread.of(values)
    assert (spread.n, spread.min, spread.max) == (4, 0.70, 0.90)
    assert spread.mean == pytest.approx(np.mean(values))
    assert spread.sd == pytest.approx(np.std(values, ddof=1)) and spread.sd != pytest.approx(np.std(values))
    assert spread.describe() == "0.810 ± 0.084 [0.700, 0.900]"  # the population sd would read 0.073
    one = Spread.of([0.75])
    assert one.n == 1 and math.isnan(one.sd) and one.describe() == "0.750 [0.750, 0.750]"
    assert one.as_dict("m_") == {"m_n": 1, "m_mean": 0.75, "m_sd": None, "m_min": 0.75, "m_max": 0.75}
    assert Spread.of([]) is None


def test_seeds_group_by_every_training_param_but_the_seed_and_keep_the_latest_run_per_seed():
    runs = [
        run("a0", 1, 0, val=0.70), run("a1", 2, 1, val=0.80), run("a2", 3, 2, val=0.90),
        run("a1-rerun", 4, 1, val=0.60),  # the latest run of a seed counts
        run("lr0", 5, 0, lr="0.0001"), run("lr1", 6, 1, lr="0.0001"),  # another lr: another configuration
        run("f0", 7, 0, fold=1), run("f1", 8, 1, fold=1),  # another split.fold: another configuration
    ]
    groups = group_repeats(runs, SEED)
    assert [g.run_ids for g in groups] == [["f0", "f1"], ["lr0", "lr1"], ["a0", "a1-rerun", "a2"]]  # newest first
    assert groups[2].repeats == ["0", "1", "2"] and groups[2].values("val_balanced_accuracy") == [0.70, 0.60, 0.90]
    assert "seed" not in groups[0].config and groups[0].config["split.fold"] == "1"
    # what the data gave, and the demo generator's settings, are not the configuration
    assert not {"n_train_samples", "classes", "demo.seed"} & set(groups[0].config)


def test_seeds_and_folds_share_the_grouping_each_leaving_out_only_its_own_key():
    runs = [run(f"s{seed}f{fold}", 10 * seed + fold, seed, fold=fold, method="kfold", val=0.5 + seed / 10 + fold / 100,
                val_accuracy=0.6, val_roc_auc_macro=0.8, test_accuracy=0.5, test_roc_auc_macro=0.9)
            for seed in (0, 1) for fold in (0, 1, 2)]
    by_fold = summarise_folds(runs)  # cv: one configuration per seed, three folds each
    assert [s.run_ids for s in by_fold] == [["s1f0", "s1f1", "s1f2"], ["s0f0", "s0f1", "s0f2"]]
    assert all(s.complete for s in by_fold) and [s.config["seed"] for s in by_fold] == ["1", "0"]
    by_seed = seeds.seed_groups(runs)  # seeds: one configuration per fold, two seeds each
    assert [g.run_ids for g in by_seed] == [["s0f2", "s1f2"], ["s0f1", "s1f1"], ["s0f0", "s1f0"]]
    assert configuration(runs[0].data.params, SEED) != configuration(runs[1].data.params, SEED)
    assert configuration(runs[0].data.params, FOLD) == configuration(runs[1].data.params, FOLD)


def test_runs_without_the_compared_metric_or_the_seed_param_are_left_out():
    unevaluated = run("trained-only", 9, 1, val=None)  # evaluate has not logged yet: must not hide "a1"
    no_seed = run("old", 0, 0)
    del no_seed.data.params["seed"]
    groups = seeds.seed_groups([run("a0", 1, 0), run("a1", 2, 1), unevaluated, no_seed])
    assert [g.run_ids for g in groups] == [["a0", "a1"]]


# --------------------------------------------------------------------------- the table


def study_runs():
    return [
        run("a0", 1, 0, val=0.70, val_roc_auc_macro=0.9, test_op_sensitivity=0.8),
        run("a1", 2, 1, val=0.80, val_roc_auc_macro=0.9, test_op_sensitivity=0.9),
        run("a2", 3, 2, val=0.90, val_roc_auc_macro=0.9),  # no operating point logged
        run("b0", 4, 0, lr="0.0001", val=0.60, tflite_int8_agreement_with_keras=0.98),
        run("b1", 5, 1, lr="0.0001", val=0.64, tflite_int8_agreement_with_keras=1.0),
        run("single", 6, 0, lr="0.01", val=0.99),  # one seed: not a study
    ]


def test_markdown_reports_mean_sd_min_max_per_configuration_and_blanks_what_was_not_logged():
    studies, singles = seeds.seed_studies("demo-skin", study_runs())
    assert singles == 1
    table = seeds.markdown("demo-skin", studies)
    assert "| seeds | lr | val_balanced_accuracy | val_roc_auc_macro | test_balanced_accuracy | test_op_sensitivity " \
           "| tflite_int8_agreement_with_keras |" in table  # no run logged test_op_specificity or test AUC
    assert ("| 3 (0, 1, 2) | 0.001 | 0.800 ± 0.100 [0.700, 0.900] | 0.900 ± 0.000 [0.900, 0.900] "
            "| 0.700 ± 0.100 [0.600, 0.800] | 0.850 ± 0.071 [0.800, 0.900] (n=2) | – |") in table
    assert ("| 2 (0, 1) | 0.0001 | 0.620 ± 0.028 [0.600, 0.640] | – | 0.520 ± 0.028 [0.500, 0.540] | – "
            "| 0.990 ± 0.014 [0.980, 1.000] |") in table
    assert "| 0.01 |" not in table and len(studies) == 2
    rows = seeds.log_rows("demo-skin", studies)
    assert rows[1]["run_id"] == "a0,a1,a2" and rows[1]["seeds"] == "0,1,2" and rows[1]["n_seeds"] == 3
    assert rows[1]["lr"] == "0.001" and rows[1]["val_balanced_accuracy_sd"] == pytest.approx(0.1)
    assert rows[1]["test_op_sensitivity_n"] == 2 and rows[0]["test_op_sensitivity_mean"] is None
    assert set(rows[0]) == set(rows[1])  # one MLflow table: every row has every column


def test_seeds_command_prints_the_table_and_names_the_fix_when_there_is_no_study(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset: study_runs())
    output = tmp_path / "seeds.md"
    assert cli.main(["seeds", "demo-skin", "--no-log", "--output", str(output)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Seed spread of demo-skin: mean ± sd [min, max] over seeds") and output.read_text() == out
    assert "| 3 (0, 1, 2) | 0.001 | 0.800 ± 0.100 [0.700, 0.900] |" in out
    assert "1 configuration(s) with a single seed left out" in err

    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset: [run("a0", 1, 0), run("b0", 2, 0, lr="0.1")])
    assert cli.main(["seeds", "demo-skin", "--no-log"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mobiledx: error: no configuration of demo-skin has runs of 2 ")
    assert "(2 configuration(s), each with one seed)" in err
    assert "Fix: repeat a configuration over seeds, e.g. " + seeds.SEED_STUDY_FIX in err
    assert seeds.SEED_STUDY_FIX == "dvc exp run --queue -S seed=0,1,2,3,4 && dvc queue start"


def test_seeds_command_logs_the_table_and_the_statistics_to_mlflow(monkeypatch, capsys, tmp_path):
    import json

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset: study_runs())
    assert cli.main(["seeds", "demo-skin"]) == 0
    out, err = capsys.readouterr()
    assert "logged to MLflow experiment 'mobiledx-compare'" in err
    client = model_registry.client()
    logged, = client.search_runs([client.get_experiment_by_name(comparison.COMPARE_EXPERIMENT).experiment_id])
    assert logged.data.tags["basis"] == "seeds-demo-skin"
    def artifact(name: str) -> str:
        return Path(client.download_artifacts(logged.info.run_id, name, str(tmp_path / "download"))).read_text()

    assert artifact("comparison.md") == out
    table = json.loads(artifact("comparison.json"))
    row = dict(zip(table["columns"], table["data"][1]))
    assert row["val_balanced_accuracy_mean"] == pytest.approx(0.8) and row["val_balanced_accuracy_max"] == 0.9


# --------------------------------------------------------------------------- ranking by the mean over seeds


def ranking_runs():
    """lr 0.01 has the single best seed (0.95) but the worse mean; lr 0.001 is steadier and better on average."""
    return [
        run("lucky0", 1, 0, lr="0.01", val=0.95), run("lucky1", 2, 1, lr="0.01", val=0.60),
        run("lucky2", 3, 2, lr="0.01", val=0.62),
        run("steady0", 4, 0, val=0.80), run("steady1", 5, 1, val=0.84), run("steady2", 6, 2, val=0.79),
        run("one-off", 7, 0, lr="0.1", val=0.99),  # a single seed never competes
    ]


def choose(monkeypatch, runs, best="val_balanced_accuracy", **options):
    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset, mlflow_client=None: runs)
    arguments = {"run_id": None, "best": best, "minimize": False, "select_on_test": False, **options}
    return publish.choose("demo-skin", mlflow_client=object(), over_seeds=True, **arguments)


def test_over_seeds_ranks_configurations_by_their_mean_not_by_their_luckiest_seed(monkeypatch):
    plain_best = max(ranking_runs(), key=lambda r: r.data.metrics["val_balanced_accuracy"])
    assert plain_best.info.run_id == "one-off"  # what --best without --over-seeds ships
    choice = choose(monkeypatch, ranking_runs())
    assert choice.run.info.run_id == "steady1"  # the best seed of the best configuration
    assert choice.metric == "val_balanced_accuracy" and not choice.selected_on_test
    assert choice.selection == ("best mean val_balanced_accuracy over 3 seeds (0.810 ± 0.026 [0.790, 0.840]) among "
                                "2 configuration(s) with 2 or more seeds; run of seed 1 (val_balanced_accuracy 0.840, "
                                "its configuration's best seed)")
    record = choice.over_seeds
    assert record["chosen_by"] == choice.selection and record["seed"] == "1" and record["n"] == 3
    assert record["mean"] == pytest.approx(0.81) and record["sd"] == pytest.approx(np.std([0.8, 0.84, 0.79], ddof=1))
    assert record["runs"] == {"0": "steady0", "1": "steady1", "2": "steady2"}
    assert record["configuration"]["lr"] == "0.001"
    assert record["configurations_ranked"] == 2

    lowest = choose(monkeypatch, ranking_runs(), minimize=True)  # lower is better: the lucky configuration's mean
    assert lowest.run.info.run_id == "lucky1" and lowest.selection.startswith("lowest mean val_balanced_accuracy")


def test_over_seeds_keeps_the_test_metric_guard_and_needs_a_seed_study(monkeypatch):
    with pytest.raises(publish.ReleaseError, match="--select-on-test"):
        choose(monkeypatch, ranking_runs(), best="test_balanced_accuracy")
    on_test = choose(monkeypatch, ranking_runs(), best="test_balanced_accuracy", select_on_test=True)
    assert on_test.selected_on_test and "test figures are optimistic" in on_test.selection
    with pytest.raises(seeds.SeedStudyError, match=r"dvc exp run --queue -S seed=0,1,2,3,4 && dvc queue start"):
        choose(monkeypatch, [run("a0", 1, 0), run("b0", 2, 0, lr="0.1")])


def test_compare_over_seeds_shows_the_best_configuration_per_dataset(monkeypatch, capsys):
    runs = {"demo-skin": ranking_runs(), "demo-blood": [run("b0", 1, 0), run("b1", 2, 3)], "single": [run("s", 1, 0)]}
    monkeypatch.setattr(model_registry, "client", lambda: object())
    monkeypatch.setattr(model_registry, "datasets", lambda mlflow_client=None: sorted(runs))
    monkeypatch.setattr(model_registry, "finished_runs", lambda dataset, mlflow_client=None: runs[dataset])
    assert cli.main(["compare", "--best", "val_balanced_accuracy", "--over-seeds", "--no-log"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Runs compared: per dataset, the configuration with the highest mean val_balanced_accuracy "
                          "over its seeds (only configurations with 2 or more seeds ranked)")
    assert "| val_balanced_accuracy mean over seeds | val_balanced_accuracy sd over seeds | seeds | seed |" in out
    assert "| demo-skin | `steady1` |" in out and "| 0.840 | 0.810 | 0.026 | 3 | 1 |" in out
    assert "| demo-blood | `b1` |" in out
    assert "single left out: no configuration with 2 or more seeds" in err and "seed=0,1,2,3,4" in err

    with pytest.raises(SystemExit) as usage:  # nothing to rank by: argparse's usage error
        cli.main(["compare", "--over-seeds"])
    assert usage.value.code == 2
    assert "--over-seeds only applies with --best METRIC" in capsys.readouterr().err
