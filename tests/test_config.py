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


def test_a_homes_partial_file_keeps_every_other_packaged_setting(tmp_path):
    """One setting in a home's train.yaml dropped the promotion thresholds, LightGBM params
    and monotone constraints for the code's fallbacks; now only what it names changes, and a
    mapping of free keys (LightGBM params) it gives replaces the shipped one as a whole."""
    from crm_ltv.training.config import TrainConfig

    shipped = load_config(TrainConfig, CONFIGS / "train.yaml")
    own = tmp_path / "train.yaml"
    own.write_text("snapshots: {horizon_days: 60}\nltv: {params: {num_leaves: 7}}\n")
    config = load_config(TrainConfig, own)
    assert config.snapshots.horizon_days == 60
    assert config.snapshots.min_history_days == shipped.snapshots.min_history_days == 90
    assert config.promotion == shipped.promotion and config.promotion.churn.thresholds
    assert config.churn == shipped.churn and config.churn.params["num_leaves"] == 15
    assert config.ltv.params == {"num_leaves": 7}
    assert config.ltv.monotone == shipped.ltv.monotone == {"monetary_total": 1}
    own.write_text("# every setting as shipped\n")
    assert load_config(TrainConfig, own) == shipped


def test_a_key_given_twice_a_yml_twin_a_dangling_link_and_a_folder_are_said(tmp_path):
    from crm_ltv.features.paths import Paths
    from crm_ltv.training.config import TrainConfig

    configs = tmp_path / "configs"
    configs.mkdir()
    paths = Paths(tmp_path)
    (configs / "train.yml").write_text("seed: 3\n")
    assert load_config(TrainConfig, paths.config_file("train")).seed == 3  # .yml is read
    (configs / "train.yaml").write_text("seed: 1\nsnapshots: {}\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"train\.yaml and train\.yml are both there"):
        load_config(TrainConfig, paths.config_file("train"))
    (configs / "train.yml").unlink()
    # YAML's merge key is no key given twice: one anchor shared by both models' params
    (configs / "train.yaml").write_text(
        "churn: {params: &p {metric: auc, num_leaves: 7}}\nltv: {params: {<<: *p, metric: l1}}\n"
    )
    shared = load_config(TrainConfig, paths.config_file("train"))
    assert shared.ltv.params == {"metric": "l1", "num_leaves": 7}
    (configs / "train.yaml").write_text("seed: 1\nsnapshots: {}\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"key 'seed' given twice \(lines 1 and 3\)"):
        load_config(TrainConfig, paths.config_file("train"))
    (configs / "train.yaml").unlink()
    (configs / "train.yaml").symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(ConfigError, match=r"a link to .*gone\.yaml, which does not exist"):
        load_config(TrainConfig, paths.config_file("train"))
    (configs / "train.yaml").unlink()
    (configs / "train.yaml").mkdir()
    with pytest.raises(ConfigError, match="a folder, not a config file"):
        load_config(TrainConfig, paths.config_file("train"))


@pytest.mark.parametrize(
    ("area", "text", "problem"),
    [
        ("train", "registry: {ltv_model: churn}", "churn_model and ltv_model are both 'churn'"),
        ("train", "registry: {alias: ''}", "registry.alias: Registered model alias name cannot"),
        ("train", "registry: {alias: latest}", "registry.alias: 'latest' alias name"),
        ("train", "registry: {churn_model: my/churn}", "registry.churn_model: Invalid model"),
        ("train", "registry: {experiment: ''}", "registry.experiment: Invalid experiment name"),
        ("train", "seed: -1", "seed: Input should be greater than or equal to 0"),
        ("train", "snapshots: {horizon_days: yes}", "horizon_days: True: true/false where a"),
        ("train", "refit: 'yes'", "refit: 'yes': give true or false"),  # read as true
        ("train", "refit: 0", "refit: 0: give true or false"),  # read as false
        ("train", "level: {seasonal: 'off'}", "seasonal: 'off': give true or false"),
        ("train", "churn: {monotone: {recency_days: on}}", r"monotone: \{'recency_days': True\}"),
        ("features", "windows_days: [yes, 90]", r"windows_days: \[True, 90\]: true/false"),
        ("sample", "sales_channels: {web: yes}", "sales_channels: {'web': True}: true/false"),
        ("experiments", "uplift: {seed: -1}", "uplift.seed: Input should be greater"),
        ("experiments", "policy_eval: {simulation: {seed: -2}}", "simulation.seed: Input"),
        ("experiments", "ab: {experiment: ''}", "ab.experiment: Invalid experiment name"),
        ("experiments", "cohorts: {headline_months: [0, 3, 24]}", r"\[0, 24\] are outside 1"),
        ("sample", "categories: []", "categories: Tuple should have at least 1 item"),
        ("sample", "categories: [a, a, b]", r"categories: \['a'\] given more than once"),
        ("sample", "sales_channels: {web: 0, shop: 0}", "sales_channels: shares must be"),
        ("sample", "acquisition: {}", "acquisition: Dictionary should have at least 1 item"),
        ("sample", "start_date: 1850-01-01", "reach 1853: the data contract takes the years"),
    ],
)
def test_settings_that_failed_later_with_a_traceback_are_refused_as_read(
    tmp_path, area, text, problem
):
    """Each of these ended in a traceback from MLflow or numpy, some after a whole training,
    or (two model names alike) let the LTV gate move a failed churn model's alias."""
    from crm_ltv.experiments.config import ExperimentsConfig
    from crm_ltv.training.config import TrainConfig

    model = {"train": TrainConfig, "experiments": ExperimentsConfig, "sample": SampleConfig,
             "features": FeatureConfig}  # fmt: skip
    path = tmp_path / f"{area}.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=problem) as err:
        load_config(model[area], path)
    assert str(path) in str(err.value)
