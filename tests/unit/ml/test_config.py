"""`config.yaml` errors name the key; `--data` overrides the dataset folder."""

from pathlib import Path

import pytest

from ml.config import DEFAULT_CONFIG, ConfigError, load_config


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_shipped_config_is_valid_and_data_is_overridable(tmp_path):
    config = load_config(DEFAULT_CONFIG)
    assert config.model.input_size == 128
    assert config.model.filters == [32, 64, 128]
    assert load_config(DEFAULT_CONFIG, tmp_path).data.path == tmp_path


def test_an_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "data: {path: x}\ntraining: {epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"training\.epoch: unknown key"):
        load_config(path)


def test_a_wrong_type_is_named(tmp_path):
    path = write(tmp_path, "data: {path: x}\ntraining: {epochs: many}\n")
    with pytest.raises(ConfigError, match=r"training\.epochs: Input should be a valid integer"):
        load_config(path)


def test_an_unknown_choice_is_named(tmp_path):
    path = write(tmp_path, "data: {path: x, balance: magic}\n")
    with pytest.raises(ConfigError, match=r"data\.balance"):
        load_config(path)


def test_fractions_must_leave_training_data(tmp_path):
    path = write(tmp_path, "data: {path: x, validation_fraction: 0.5, test_fraction: 0.45}\n")
    with pytest.raises(ConfigError, match="leave room for training"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: [unclosed", "not valid YAML"),
        ("- a list\n", "mapping of sections"),
        ("model: {}\n", r"data: Field required"),
    ],
)
def test_unreadable_configs(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
