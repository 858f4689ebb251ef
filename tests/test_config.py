"""Configs: the shipped files validate; bad ones name the file and field."""

from __future__ import annotations

import pytest

from crm_ltv.features.config import (
    ConfigError,
    DataConfig,
    FeatureConfig,
    SampleConfig,
    load_config,
)
from tests.conftest import CONFIGS


@pytest.mark.parametrize(
    ("model", "name"), [(DataConfig, "data"), (FeatureConfig, "features"), (SampleConfig, "sample")]
)
def test_shipped_configs_validate(model, name):
    assert isinstance(load_config(model, CONFIGS / f"{name}.yaml"), model)


def test_a_bad_field_is_named_with_its_file(tmp_path):
    path = tmp_path / "features.yaml"
    path.write_text("windows_days: [30, -1]\nlifecycle: {rules: [{stage: sleepy, when: {}}]}\n")
    with pytest.raises(ConfigError) as err:
        load_config(FeatureConfig, path)
    assert str(path) in str(err.value)
    assert "windows_days" in str(err.value) and "lifecycle.rules.0.stage" in str(err.value)


def test_missing_file_unknown_key_and_broken_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(DataConfig, tmp_path / "nope.yaml")
    (tmp_path / "extra.yaml").write_text("validation: {max_reject_share: 0.1, typo: 1}\n")
    with pytest.raises(ConfigError, match=r"validation\.typo"):
        load_config(DataConfig, tmp_path / "extra.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(DataConfig, tmp_path / "broken.yaml")


def test_configs_are_frozen():
    config = load_config(DataConfig, CONFIGS / "data.yaml")
    with pytest.raises(ValueError, match="frozen"):
        config.validation = None  # type: ignore[misc]


def test_exclusion_values_are_text_even_when_yaml_reads_numbers(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("transactions: {exclude: {StockCode: [85048, POST]}}\n")
    assert load_config(DataConfig, path).transactions.exclude == {"StockCode": ("85048", "POST")}
    path.write_text("transactions: {exclude_prefix: {Invoice: ['']}}\n")
    with pytest.raises(ConfigError, match="an empty prefix would leave out every line"):
        load_config(DataConfig, path)


def test_a_source_reads_a_typed_tab_and_refuses_unusable_number_marks():
    from crm_ltv.features.config import SourceConfig

    assert SourceConfig(sep="\\t").sep == "\t"  # what `--sep '\t'` passes from a shell
    assert SourceConfig(decimal=",", thousands=".").thousands == "."
    with pytest.raises(ValueError, match="thousands and decimal are both ','"):
        SourceConfig(decimal=",", thousands=",")
    with pytest.raises(ValueError, match="unknown encoding 'utf-9'"):
        SourceConfig(encoding="utf-9")
