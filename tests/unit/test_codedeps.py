"""The package's shape: dvc.yaml's code deps derived from the imports (never hand-kept), the file contract
matching dvc.yaml, no import cycles, wings that import only the wings below them, short stage bodies."""

import ast
from collections import Counter

import yaml

from mobiledx.codedeps import (
    PACKAGE_DIR,
    check_dvc_yaml,
    code_closure,
    dvc_deps,
    import_cycles,
    layer_violations,
    wing_of,
)
from mobiledx.paths import EVALUATION_PLOTS, OPERATING_POINT_PLOT, VARIANTS, DatasetPaths
from tests.support import REPO_ROOT


def test_every_stage_declares_exactly_the_package_code_it_runs():
    assert check_dvc_yaml(REPO_ROOT / "dvc.yaml") == []


def test_an_undeclared_import_is_found(tmp_path):
    """What the check is for: a stage that imports a module its dvc.yaml entry omits would not re-run
    when that module changes, and `dvc repro` would call a stale pipeline up to date."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    deps = pipeline["stages"]["evaluate"]["do"]["deps"]
    deps.remove("src/mobiledx/models/inference.py")
    deps.append("src/mobiledx/preparation/splits.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    assert check_dvc_yaml(tmp_path / "dvc.yaml") == [
        "evaluate: runs but does not declare src/mobiledx/models/inference.py",
        "evaluate: declares but never runs src/mobiledx/preparation/splits.py",
    ]


def test_the_closure_follows_function_level_imports_and_skips_type_checking_ones():
    closure = {path.relative_to(REPO_ROOT).as_posix() for path in code_closure("stages/export.py")}
    # both imported inside functions
    assert "src/mobiledx/tflite/ondevice.py" in closure and "src/mobiledx/tracking/model_registry.py" in closure
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


def test_every_wing_imports_only_the_wings_below_it():
    assert layer_violations() == []


def test_an_import_that_reaches_up_a_layer_is_found(tmp_path, monkeypatch):
    import mobiledx.codedeps as codedeps

    package = tmp_path / "mobiledx"
    for wing in ("data", "evaluation"):
        (package / wing).mkdir(parents=True)
        (package / wing / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "paths.py").write_text("")
    (package / "evaluation" / "scores.py").write_text("from mobiledx import paths\n")
    (package / "data" / "reading.py").write_text("def late():\n    from mobiledx.evaluation import scores\n")
    monkeypatch.setattr(codedeps, "PACKAGE_DIR", package)
    assert layer_violations() == [
        "mobiledx.data.reading -> mobiledx.evaluation (data may not import evaluation)",
        "mobiledx.data.reading -> mobiledx.evaluation.scores (data may not import evaluation)"]


def _package_modules() -> list:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_the_package_root_keeps_only_what_every_wing_uses():
    root = sorted(path.stem for path in PACKAGE_DIR.glob("*.py"))
    assert len(root) <= 10, root
    assert {wing_of(f"mobiledx.{name}") for name in root} <= {"core", "tools"}


def test_no_name_is_used_for_two_modules():
    names = Counter(path.stem for path in _package_modules() if path.stem != "__init__")
    names.update(path.name for path in PACKAGE_DIR.rglob("*") if path.is_dir() and path.name != "__pycache__")
    assert [name for name, count in names.items() if count > 1] == []


def test_stage_bodies_and_functions_stay_short():
    """A stage body that outgrows 150 lines is doing a wing's work; a function over 80 lines is several."""
    long_bodies = [path.name for path in (PACKAGE_DIR / "pipeline").glob("*.py")
                   if len(path.read_text().splitlines()) > 150]
    assert long_bodies == []
    long_functions = []
    for path in _package_modules():
        if path == PACKAGE_DIR / "data" / "demo.py":  # the demo generator draws pictures: long by nature
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long_functions.append(f"{path.relative_to(PACKAGE_DIR)}:{node.name}")
    assert long_functions == []
