"""params.yaml as one typed model: defaults, types, unknown keys, per-dataset recipes."""

import dataclasses

import pytest
import yaml

from mobiledx.params import Params, ParamsError, TrainParams, UndeclaredParamError, load_params, parse_params
from tests.support import REPO_ROOT


def test_the_repository_params_are_the_models_defaults():
    """params.yaml lists every key (so DVC tracks it) with the very values the code defaults to."""
    params = load_params(REPO_ROOT / "params.yaml")
    defaults = Params()
    for section in ("seed", "lr", "demo", "ingest", "validate", "split", "rebalance", "train", "evaluate", "export"):
        assert getattr(params, section) == getattr(defaults, section), section
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for field in dataclasses.fields(Params):
        if dataclasses.is_dataclass(field.type) or field.name in ("seed", "lr"):
            section = getattr(defaults, field.name)
            keys = {f.name for f in dataclasses.fields(section)} if dataclasses.is_dataclass(section) else None
            assert field.name in raw and (keys is None or set(raw[field.name]) == keys), field.name


def test_values_are_typed_strictly_with_the_key_named():
    parsed = parse_params({"lr": 0.01, "seed": 3, "train": {"epochs": 2, "adam_epsilon": 1, "metadata": True,
                                                             "bn_momentum": None}})
    assert parsed.train_config().epochs == 2 and parsed.train.adam_epsilon == 1.0 and parsed.train.bn_momentum is None
    assert parsed.train_config().lr == 0.01 and parsed.train.backbone == TrainParams.backbone
    for bad, message in [({"train": {"epochs": "2"}}, r"train.epochs must be a whole number, got '2'"),
                         ({"train": {"epochs": 2.5}}, r"train.epochs must be a whole number"),
                         ({"train": {"metadata": "yes"}}, r"train.metadata must be true or false"),
                         ({"lr": "fast"}, r"lr must be a number"),
                         ({"split": {"fold": True}}, r"split.fold must be a whole number"),
                         ({"evaluate": {"calibration": "platt"}},
                          r"evaluate.calibration must be one of \('temperature', 'none'\), got 'platt'"),
                         ({"evaluate": {"gallery_errors": -1}}, r"evaluate.gallery_errors must be 0 or more, got -1")]:
        with pytest.raises(ParamsError, match=message):
            parse_params(bad)


def test_unknown_keys_are_refused_with_the_closest_known_one():
    with pytest.raises(ParamsError, match=r"unknown key\(s\) train.augment \(train.augment: did you mean "
                                          r"train.augmentation\?\)"):
        parse_params({"train": {"augment": True}})  # the old name: refused, not silently ignored
    with pytest.raises(ParamsError, match=r"unknown key\(s\) splt"):
        parse_params({"splt": {}})
    with pytest.raises(ParamsError, match=r"datasets.skin.train.hed"):
        parse_params({"datasets": {"skin": {"kind": "ham10000", "path": "x", "train": {"hed": "dense"}}}})


def test_impossible_settings_are_refused():
    for bad, message in [({"split": {"test_fraction": 0.9}}, "sum to less than 1"),
                         ({"split": {"method": "random"}}, "split.method must be one of"),
                         ({"rebalance": {"method": "augment"}}, "target_per_class"),
                         ({"ingest": {"image_size": 4}}, "at least 8 pixels"),
                         ({"export": {"int8_range_percentile": 50}}, r"export.int8_range_percentile must be in \(50"),
                         ({"datasets": {"x": {"kind": "ham10000"}}}, "'kind' and 'path'")]:
        with pytest.raises(ParamsError, match=message):
            parse_params(bad)


def test_a_dataset_recipe_overrides_the_shared_sections_for_that_dataset_only():
    params = parse_params({
        "lr": 0.01, "train": {"epochs": 7},
        "datasets": {"skin": {"kind": "ham10000", "path": "a", "ingest": {"image_size": 224},
                              "train": {"head": "soft_attention", "metadata": True}},
                     "blood": {"kind": "cnmc", "path": "b", "train": {"head": "sigmoid"}}}})
    skin, blood = params.for_dataset("skin"), params.for_dataset("blood")
    assert (skin.train.head, skin.train.metadata, skin.train.epochs, skin.ingest.image_size) == (
        "soft_attention",
        True,
        7,
        224,
    )
    assert (blood.train.head, blood.train.metadata, blood.ingest.image_size) == ("sigmoid", False, 96)
    assert skin.lr == blood.lr == 0.01  # shared: `dvc exp run -S lr=...` changes every dataset
    with pytest.raises(ParamsError, match="not registered"):
        params.for_dataset("isic")


def test_a_missing_or_broken_params_file_names_the_problem(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_a_stage_sees_only_the_keys_its_dvc_yaml_entry_declares():
    """Reading an undeclared key fails at once (DVC would not re-run the stage when it changes)."""
    from mobiledx.pipeline import declared_params

    declared = declared_params("ingest", REPO_ROOT / "dvc.yaml")
    assert set(declared) == {"datasets", "ingest"}
    params = load_params(REPO_ROOT / "params.yaml").for_dataset("demo-skin")
    narrowed = params.declared(["datasets", "ingest.image_size", "seed"], "ingest")
    assert narrowed.ingest.image_size == 96 and narrowed.seed == 42
    assert narrowed.dataset("demo-skin").kind == "ham10000"
    with pytest.raises(UndeclaredParamError,
                       match=r"stage ingest reads params.yaml key ingest.min_image_side.*`- ingest.min_image_side`"):
        _ = narrowed.ingest.min_image_side
    with pytest.raises(UndeclaredParamError, match="key lr, which dvc.yaml does not declare"):
        _ = narrowed.lr
    with pytest.raises(UndeclaredParamError, match="key train,"):
        _ = narrowed.train
    assert params.ingest.min_image_side == 16  # the full params are unchanged
    assert declared_params("no_such_stage", REPO_ROOT / "dvc.yaml") is None


@pytest.mark.parametrize(("key", "value"), [("backbone", "mobilenetv9"), ("head", "transformer"),
                                            ("augmentation", "paper001"), ("loss", "hinge"),
                                            ("schedule", "linear"), ("strategy", "tpu")])
def test_every_train_choice_is_refused_when_params_are_read(key, value):
    """Before any stage works (ingest reads the same params), not as a ValueError deep inside training."""
    with pytest.raises(ParamsError, match=rf"train.{key} must be one of \(.*\), got '{value}'"):
        parse_params({"train": {key: value}})
    with pytest.raises(ParamsError, match=rf"datasets.skin.train.{key} must be one of"):
        parse_params({"datasets": {"skin": {"kind": "ham10000", "path": "x", "train": {key: value}}}})


def test_the_backbone_choices_are_the_backbones_the_models_can_build():
    from mobiledx.models.backbones import BACKBONES
    from mobiledx.params import BACKBONE_NAMES

    assert tuple(BACKBONES) == BACKBONE_NAMES


def test_the_offline_augmentation_preset_is_refused_when_params_are_read():
    with pytest.raises(ParamsError, match=r"rebalance.augmentation must be one of \(.*\), got 'paper001'"):
        parse_params({"rebalance": {"method": "augment", "target_per_class": 50, "augmentation": "paper001"}})
