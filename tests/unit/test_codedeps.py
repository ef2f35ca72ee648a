"""dvc.yaml's code deps are derived from the imports, never hand-kept; the file contract matches dvc.yaml."""

import yaml

from mobiledx.codedeps import check_dvc_yaml, code_closure, dvc_deps, import_cycles
from mobiledx.paths import EVALUATION_PLOTS, OPERATING_POINT_PLOT, VARIANTS, DatasetPaths
from tests.support import REPO_ROOT


def test_every_stage_declares_exactly_the_package_code_it_runs():
    assert check_dvc_yaml(REPO_ROOT / "dvc.yaml") == []


def test_an_undeclared_import_is_found(tmp_path):
    """What the check is for: a stage that imports a module its dvc.yaml entry omits would not re-run
    when that module changes, and `dvc repro` would call a stale pipeline up to date."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    deps = pipeline["stages"]["evaluate"]["do"]["deps"]
    deps.remove("src/mobiledx/inference.py")
    deps.append("src/mobiledx/splits.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    assert check_dvc_yaml(tmp_path / "dvc.yaml") == [
        "evaluate: runs but does not declare src/mobiledx/inference.py",
        "evaluate: declares but never runs src/mobiledx/splits.py",
    ]


def test_the_closure_follows_function_level_imports_and_skips_type_checking_ones():
    closure = {path.relative_to(REPO_ROOT).as_posix() for path in code_closure("stages/export.py")}
    assert "src/mobiledx/ondevice.py" in closure and "src/mobiledx/registry.py" in closure  # imported inside functions
    assert "src/mobiledx/training/loop.py" not in closure  # evaluation and export never run training code
    assert dvc_deps("stages/train.py")[0] == "stages/train.py" and "src/mobiledx/training" in dvc_deps(
        "stages/train.py"
    )


def test_the_package_has_no_import_cycles():
    assert import_cycles() == []


def test_an_import_inside_a_function_closes_a_cycle(tmp_path, monkeypatch):
    """Python tolerates a cycle whose one side imports inside a function; the design check does not."""
    import mobiledx.codedeps as codedeps

    package = tmp_path / "mobiledx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "metrics.py").write_text("def table():\n    from mobiledx.threshold import at  # late\n    return at\n")
    (package / "threshold.py").write_text("from mobiledx.metrics import table\n\nat = 1\n")
    (package / "typing_only.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                            "    from mobiledx.metrics import table\n")
    monkeypatch.setattr(codedeps, "PACKAGE_DIR", package)
    assert import_cycles() == [["mobiledx.metrics", "mobiledx.threshold", "mobiledx.metrics"]]


def test_dvc_yaml_outputs_are_the_file_contract():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    paths = DatasetPaths("${key}")

    def declared(stage: str) -> set[str]:
        body = stages[stage]["do"]
        entries = [*body.get("outs", []), *body.get("metrics", []), *body.get("plots", [])]
        return {entry if isinstance(entry, str) else next(iter(entry)) for entry in entries}

    expected = {
        "ingest": [paths.images, paths.manifest, paths.quarantine, paths.dataset_info],
        "validate": [paths.validation, paths.validation_report],
        "split": [paths.assignment, paths.split_settings, paths.split_summary, paths.class_counts],
        "rebalance": [paths.train_index, paths.augmented, paths.class_weights],
        "train": [
            paths.keras_model,
            paths.encoder,
            paths.run_record,
            paths.train_metrics,
            paths.history,
            paths.training_curves,
        ],
        "evaluate": [paths.metrics, paths.validation_metrics, paths.calibration, paths.operating_point,
                     paths.evaluation_headline, paths.predictions, paths.subgroups, paths.gallery, paths.gallery_tiles,
                     *(paths.evaluation / png for png in (*EVALUATION_PLOTS, OPERATING_POINT_PLOT))],
        "export": [*(paths.tflite(v) for v in VARIANTS), paths.labels, *paths.model_cards, paths.export_report,
                   paths.export_headline],
    }
    for stage, files in expected.items():
        assert declared(stage) == {f.as_posix() for f in files}, stage
