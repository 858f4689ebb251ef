"""`make bento`: a Bento built from the project's wheel and the runtime lock only (no training
or development packages), carrying the champion bundles from the BentoML model store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

from crm_ltv.features.config import ConfigError
from crm_ltv.serving.store import PINNED_FILE

SERVICE = "crm_ltv.serving.service:CrmLtv"
BENTO_NAME = "crm-ltv"
RUNTIME_LOCK = "requirements-runtime.lock"


def source_root() -> Path:
    """The checkout this package is installed from (editable install): wheel and lock live there."""
    return Path(__file__).resolve().parents[1]


def checkout() -> Path:
    """The checkout to build from, checked before any work (tester P: an installed package
    copied the models into the store first, then failed)."""
    root = source_root()
    if not (root / "pyproject.toml").exists():
        raise ConfigError(
            f"crm-ltv is installed as a package here ({root}), not from a checkout: "
            f"`crm-ltv bento` builds the Bento from a checkout's sources and {RUNTIME_LOCK}; "
            "run it from an editable install of one (`pip install -e <checkout>`, or `make "
            "bento` in it)"
        )
    if not (root / RUNTIME_LOCK).exists():
        raise ConfigError(
            f"{root / RUNTIME_LOCK}: no such file; the Bento installs its packages from it "
            "(`make runtime-lock` makes it from requirements.lock)"
        )
    return root


def build_bento(progress: Callable[[str], None], pinned: dict[str, str]) -> tuple[int, str]:
    """`bentoml build` of the project's wheel with the store copies `pinned` (store name ->
    exact tag: this home's, as `crm-ltv bento` synced them); its exit code and the Bento's tag."""
    root = checkout()
    lock = root / RUNTIME_LOCK
    with tempfile.TemporaryDirectory(prefix="crm-ltv-bento-") as tmp:
        build = Path(tmp)
        progress("building the project's wheel")
        source = _wheel_source(root, build / "source")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "-w",
                str(build / "wheels"),
                str(source),
            ],
            check=False,
        )
        if done.returncode != 0:
            return done.returncode, ""
        wheel = next((build / "wheels").glob("crm_ltv-*.whl"), None)
        if wheel is None:
            raise ConfigError(f"pip wheel {root}: no crm_ltv wheel was built")
        shutil.copyfile(lock, build / RUNTIME_LOCK)
        (build / PINNED_FILE).write_text(json.dumps(pinned, indent=2) + "\n")
        progress("pinned: " + ", ".join(pinned.values()))
        (build / "bentofile.yaml").write_text(_bentofile(wheel.relative_to(build)))
        progress(f"bentoml build ({wheel.name}, {RUNTIME_LOCK})")
        bentoml = Path(sys.executable).parent / "bentoml"
        done = subprocess.run(
            [str(bentoml), "build", "-f", "bentofile.yaml", str(build)], cwd=build, check=False
        )
    return done.returncode, (_built(pinned) if done.returncode == 0 else "")


def _built(pinned: dict[str, str]) -> str:
    """The tag of the newest Bento that pins these copies: the one just built (every home's
    Bento is named crm-ltv, so `crm-ltv:latest` may be another home's)."""
    import bentoml

    try:
        built = bentoml.bentos.list(BENTO_NAME)
    except bentoml.exceptions.NotFound:
        built = []
    ours = [
        b
        for b in built
        if (Path(b.path) / "src" / PINNED_FILE).is_file()
        and json.loads((Path(b.path) / "src" / PINNED_FILE).read_text()) == pinned
    ]
    newest = max(ours, key=lambda b: b.info.creation_time, default=None)
    if newest is None:  # `crm-ltv:latest` could be another home's: no guess
        raise ConfigError(f"bentoml build: no {BENTO_NAME} Bento pins {', '.join(pinned.values())}")
    return str(newest.tag)


def _wheel_source(root: Path, dst: Path) -> Path:
    """What the wheel is built from, copied out of the checkout (pyproject.toml, its readme and
    the package folders it names): pip builds in the source tree, so building in the checkout
    wrote its build/ there, which fails on a read-only checkout and is shared by two builds."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    folders = project["tool"]["setuptools"]["package-dir"].values()
    dst.mkdir()
    for name in ("pyproject.toml", project["project"]["readme"]):
        shutil.copy2(root / name, dst / name)
    for folder in sorted(set(folders)):
        shutil.copytree(root / folder, dst / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _bentofile(wheel: Path) -> str:
    return f"""service: "{SERVICE}"
name: {BENTO_NAME}
include: ["{PINNED_FILE}"]  # the model tags it serves, whatever the store gets later
python:
  requirements_txt: "./{RUNTIME_LOCK}"  # every runtime package, pinned: nothing else resolves
  lock_packages: false
  pip_args: "--no-deps"  # the wheel's own training dependencies (mlflow, optuna) stay out
  wheels:
    - "./{wheel}"
"""
