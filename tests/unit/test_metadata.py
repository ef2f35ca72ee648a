import numpy as np
import pandas as pd
import pytest

from mobiledx.models.patient_features import MetadataEncoder, load_encoder, save_encoder


def manifest(ages, sexes, sites) -> pd.DataFrame:
    return pd.DataFrame({"age": ages, "sex": sexes, "site": sites})


def test_encoder_normalises_age_on_train_and_one_hot_encodes_sex_and_site():
    train = manifest([30.0, 50.0, np.nan], ["male", "female", "male"], ["back", "face", "back"])
    encoder = MetadataEncoder.fit(train)
    assert (encoder.age_mean, encoder.age_std) == (40.0, 10.0)
    assert encoder.feature_names == ["age", "age_missing", "sex=female", "sex=male", "site=back", "site=face"]
    features = encoder.transform(manifest([60.0, np.nan], ["female", "unknown"], ["scalp", "face"]))
    assert features.dtype == np.float32
    assert features.tolist() == [[2.0, 0.0, 1.0, 0.0, 0.0, 0.0],  # unseen site: all zeros
                                 [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]]  # unknown age: mean, flagged


def test_encoder_round_trips_and_image_only_models_save_null(tmp_path):
    encoder = MetadataEncoder.fit(manifest([20.0, 40.0], ["male", "female"], ["back", "back"]))
    save_encoder(tmp_path / "encoder.json", encoder)
    assert load_encoder(tmp_path / "encoder.json") == encoder
    save_encoder(tmp_path / "none.json", None)
    assert load_encoder(tmp_path / "none.json") is None


def test_metadata_without_ages_is_refused():
    with pytest.raises(ValueError, match="age"):
        MetadataEncoder.fit(manifest([np.nan], ["male"], ["back"]))
