"""Packaging and layers: one import root, arrows one way, a model runtime without mlflow."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("features", "training", "serving", "experiments")
# Which packages each may import: arrows run features -> training -> serving / experiments.
ALLOWED = {
    "features": {"features", "configs"},
    "training": {"features", "training", "configs"},
    "serving": {"features", "training", "serving", "configs"},
    "experiments": {"features", "training", "experiments", "configs"},
}
# The model runtime and everything a serving worker imports: no mlflow, no optuna.
RUNTIME = ("training.bundle", "training.scoring", "training.models", "training.attributions",
           "training.baselines", "training.errors")  # fmt: skip
TRAINING_ONLY = ("mlflow", "optuna")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (per-command imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _python(code: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
    )  # fmt: skip


def test_this_distribution_alone_owns_the_import_root():
    owners = packages_distributions()
    assert set(owners["crm_ltv"]) == {"crm-ltv"}  # (an editable install may list it twice)
    for name in PACKAGES:  # nothing installed at the top level under these common names
        assert "crm-ltv" not in owners.get(name, [])


def test_folders_named_like_the_packages_in_the_working_directory_do_not_shadow(tmp_path):
    for name in PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('shadowed')\n")
    done = _python("import crm_ltv.training.pipeline, crm_ltv.serving.scorer", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_packages_import_only_along_the_arrows():
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] != "crm_ltv" or len(parts) < 2:
                    continue
                assert parts[1] in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name}"


def test_the_runtime_and_serving_never_import_mlflow_or_optuna():
    files = [ROOT / f"{m.replace('.', '/')}.py" for m in RUNTIME]
    files += list((ROOT / "serving").glob("*.py"))
    for path in files:
        heavy = {n for n in _imports(path) if n.split(".")[0] in TRAINING_ONLY}
        assert not heavy, f"{path.relative_to(ROOT)} imports {heavy}"
    modules = ", ".join(f"crm_ltv.{m}" for m in RUNTIME)
    done = _python(
        f"import sys, json, {modules}, crm_ltv.serving.service\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert not loaded & set(TRAINING_ONLY)


def test_no_config_is_read_on_import(tmp_path):
    (tmp_path / "configs").mkdir()
    for area in ("serving", "features", "train", "nba"):
        (tmp_path / "configs" / f"{area}.yaml").write_text("not: [valid\n")
    done = _python("import crm_ltv.serving.service, crm_ltv.cli", CRM_LTV_HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr


def test_the_cli_imports_no_library_before_a_command_needs_it():
    done = _python(
        "import sys, crm_ltv.cli\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'mlflow', 'lightgbm', 'matplotlib', "
        "'bentoml', 'sklearn') if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_default_configs_ship_in_the_package_and_a_home_overrides_them_file_by_file(tmp_path):
    from crm_ltv.experiments.config import ExperimentsConfig
    from crm_ltv.features.config import DataConfig, FeatureConfig, SampleConfig, load_config
    from crm_ltv.features.paths import CONFIG_AREAS, Paths, default_config_file
    from crm_ltv.serving.config import NbaConfig, ServingConfig
    from crm_ltv.training.config import TrainConfig, TuneConfig

    kinds = {
        "data": DataConfig,
        "features": FeatureConfig,
        "sample": SampleConfig,
        "train": TrainConfig,
        "tune": TuneConfig,
        "serving": ServingConfig,
        "nba": NbaConfig,
        "experiments": ExperimentsConfig,
    }
    assert set(kinds) == set(CONFIG_AREAS)
    home = Paths(tmp_path)
    for area, kind in kinds.items():
        assert home.config_file(area) == default_config_file(area)
        load_config(kind, home.config_file(area))  # every default validates
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.yaml").write_text("seed: 7\n")
    assert home.config_file("train") == tmp_path / "configs" / "train.yaml"
    assert load_config(TrainConfig, home.config_file("train")).seed == 7
    assert home.config_file("features") == default_config_file("features")
