"""A user's mistakes on the command line: one `error:` line naming what is wrong, exit code 2,
before any long work; never a traceback (each of these was one, or a silent wrong result)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from crm_ltv.cli import _user_errors, app
from crm_ltv.features.config import ConfigError, FeatureConfig, load_config
from crm_ltv.training.config import TrainConfig, TuneConfig
from tests.conftest import CONFIGS, new_home, run, run_on_full_disk


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = new_home(tmp_path_factory.mktemp("mistakes"))
    made = run(home, "data", "--n-customers", "200")
    assert made.returncode == 0, made.stderr
    sample = home / "data" / "sample"
    tx = (sample / "transactions.csv").read_text().splitlines()
    # every line anonymous: no customer id
    (home / "anonymous.csv").write_text(
        "\n".join([tx[0], *(",".join(["", *line.split(",")[1:]]) for line in tx[1:40])]) + "\n"
    )
    campaigns = (sample / "campaigns.csv").read_text().splitlines()
    header = campaigns[0].split(",")
    blank = [header.index("converted"), header.index("revenue")]
    rows = [line.split(",") for line in campaigns[1:60]]
    for row in rows:
        for i in blank:
            row[i] = ""
    (home / "no_outcomes.csv").write_text(
        "\n".join([campaigns[0], *(",".join(r) for r in rows)]) + "\n"
    )
    (home / "day_first.csv").write_text("customer_id,timestamp,amount\nA,13/01/2024 10:00,5\n")
    (home / "a_folder.csv").mkdir()
    (home / "a_file").write_text("x")
    return home


MISTAKES = [
    (["features", "--as-of", "2300-01-01"], "cutoff '2300-01-01': year 2300 is outside 1900..2199"),
    (["features", "--as-of", ""], "cutoff '' is not a date or timestamp"),  # an unset variable
    # pandas guessed: 01/02/2025 was 2 January, 13/02/2025 13 February
    (["features", "--as-of", "01/02/2025"],
     "--as-of: '01/02/2025' is not an ISO 8601 date or time (YYYY-MM-DD"),
    (["features", "--as-of", "now"], "--as-of: 'now' is not an ISO 8601 date"),  # the clock
    (["features", "--timestamp-format", "%Q-%m"], "'%Q-%m' is not a usable format"),
    (["train", "--horizon-days", "99999999999"], "less than or equal to 3650"),
    (["data", "--seed", "-1"], "seed: Input should be greater than or equal to 0"),
    (["data", "--out", "{home}/a_file"], "--out {home}/a_file: cannot be made a folder"),
    (["init", "{home}/a_file"], "cannot be made a folder"),
    (["--home", "{home}/a_file", "features"],  # was blamed on --out, under a file
     "project home {home}/a_file (--home or $CRM_LTV_HOME): is a file"),
    (["--home", "{home}/a_file/sub", "features"],
     "project home {home}/a_file/sub (--home or $CRM_LTV_HOME): cannot be a folder: "
     "{home}/a_file is a file"),
    (["score", "--as-of", "2025-01-01", "--out", "{home}/a_folder.csv"], "is a folder"),
    (["features", "--out", "{home}/a_folder.csv"], "--out {home}/a_folder.csv: is a folder"),
    # root may write where the file system may not: a traceback once all the work was done
    (["features", "--out", "/sys/features.parquet"],
     "--out: /sys/features.parquet cannot be made: /sys is not writable (Permission denied)"),
    (["score", "--as-of", "2025-01-01", "--out", "/sys/scores.csv"],
     "--out: /sys/scores.csv cannot be made: /sys is not writable"),
    (["features", "--transactions", "{home}/anonymous.csv"], "no usable row in"),
    (["ab", "--campaigns", "{home}/no_outcomes.csv"], "has an outcome yet"),
    (["ab", "--no-balance", "--transactions", "{home}/anonymous.csv"],
     "read for the balance check and the segments of --by only"),
    (["outcomes", "--decisions", "{home}/a_folder.csv"], "not a file"),
    (["outcomes", "--out", "{home}/o.parquet"], "give a .csv name"),
    (["cohorts", "--to", "1990-01-01"], "no purchase up to 1990-01-01"),
    (["cohorts", "--to", "2030-01-01"],  # was every customer lapsed, channels under target
     "--to 2030-01-01 00:00 is after the data's last line"),
    (["cohorts", "--from", "notadate"], "--from: 'notadate' is not an ISO 8601 date"),
    (["features", "--column", "bogus=x"],  # said once the files were read (Dask: cluster up)
     "transactions.columns names 'bogus', which the contract does not have"),
    (["cohorts", "--to", ""], "--to: cutoff '' is not a date"),  # was the default
    (["cohorts", "--from", "2025-06-01", "--to", "2025-01-01"],  # was said after the load
     "--from 2025-06-01 00:00 is not before --to 2025-01-01 00:00"),
    (["features", "--out", "{home}/f.txt"], "--out {home}/f.txt: expected a .csv or .parquet"),
    (["features", "--sep", ";;"], "sep: ';;' is not one character"),  # was pandas' wording
    (["features", "--transactions", "{home}/anonymous.csv", "--out", "{home}/anonymous.csv"],
     "--out {home}/anonymous.csv: is an input of this run"),  # it was overwritten
    # said after every line was loaded (this file's are all rejected: said before reading it)
    (["policy-eval", "--transactions", "{home}/day_first.csv"],
     "policy-eval without --decisions simulates decisions on the built-in sample"),
    # the sample's (or configs/data.yaml's) files were overwritten with scores or features
    (["score", "--as-of", "2025-06-30", "--out", "{home}/data/sample/transactions.csv"],
     "is an input of this run ({home}/data/sample/transactions.csv)"),
    (["features", "--out", "{home}/data/sample/customers.csv"],
     "is an input of this run ({home}/data/sample/customers.csv)"),
    (["features", "--transactions", "{home}/day_first.csv"],  # the common first mistake
     "give it with --timestamp-format (e.g. '%d/%m/%Y %H:%M')"),
    # the hint above said to give the format the user had given, wrongly
    (["features", "--transactions", "{home}/day_first.csv", "--timestamp-format", "%Y/%m/%d"],
     "timestamps were read with the format '%Y/%m/%d': check it against the file's"),
    (["features", "--timestamp-format", "dd/mm/yyyy"],  # was: every row rejected, after the load
     "'dd/mm/yyyy' has no strftime directive, so it matches no timestamp"),
    (["plan-ab", "--baseline-rate", "0.1", "--lift", "1e-12"],  # was a statsmodels NaN
     "lift 1e-12: too small to plan a test for"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "said"), MISTAKES, ids=[" ".join(m[0][:2]) for m in MISTAKES])
def test_a_mistake_gets_one_error_line_and_exit_code_2(home, args, said):
    argv = [a.format(home=home) for a in args]
    result = CliRunner().invoke(app, argv, env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, (argv, result.exit_code, result.output, result.exception)
    assert "error: " in result.output and said.format(home=home) in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "what"),
    [(["train"], "transactions"), (["ab"], "campaigns"), (["uplift"], "campaigns")],
)
def test_a_home_without_the_sample_says_how_to_make_it(tmp_path, args, what):
    """`ab` and `uplift` said only '.../campaigns.csv: no such file'."""
    home = new_home(tmp_path)
    result = CliRunner().invoke(app, args, env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert f"no {what} given (--{what}, or {what}.path in configs/data.yaml) and the built-in " \
        "sample is not in this home" in result.output  # fmt: skip
    assert "generate it with `crm-ltv data`" in result.output


@pytest.mark.parametrize("sample", [False, True], ids=["no sample", "sample made"])
@pytest.mark.parametrize("command", ["ab", "uplift"])
def test_a_home_with_its_own_transactions_is_sent_to_outcomes_not_the_sample(
    tmp_path, command, sample
):
    """A home whose data.yaml names its own transactions was told to generate the sample
    (`crm-ltv data`), whose campaigns are not its own: `crm-ltv outcomes` makes them. With the
    sample there (`make experiments` made it), its campaigns were paired with the shop's
    transactions, with only a warning that most contacts were not in them."""
    home = new_home(tmp_path)
    if sample:
        (home / "data/sample").mkdir(parents=True)
        (home / "data/sample/campaigns.csv").write_text(CAMPAIGN_ROWS)
    data = home / "configs/data.yaml"
    data.write_text(data.read_text().replace("  path: null", f"  path: {tmp_path / 'tx.csv'}", 1))
    made = home / "data/outcomes/campaigns.csv"
    env = {"CRM_LTV_HOME": str(home)}
    said = (
        "error: no campaigns given (--campaigns, or campaigns.path in configs/data.yaml), and "
        f"this home reads its own transactions ({tmp_path / 'tx.csv'}), whose customers the "
        "sample's campaigns are not of: `crm-ltv outcomes` writes campaigns from the service's "
        f"decision log to {made}, read by default once it is there: run it first (or give your "
        "own campaigns file)"
    )
    result = CliRunner().invoke(app, [command], env=env)
    assert result.exit_code == 2, result.output
    assert said in result.output and "crm-ltv data" not in result.output
    made.parent.mkdir(parents=True)
    made.write_text(CAMPAIGN_ROWS)  # outcomes ran: its campaigns are read, not the sample's
    result = CliRunner().invoke(app, [command], env=env)
    assert f"no campaigns given: reading those `crm-ltv outcomes` wrote, {made}" in result.output
    assert "loading campaigns from " + str(made) in result.output, result.output


CAMPAIGN_ROWS = "customer_id,sent_at,action,group,converted\nc1,2024-01-05,email,treatment,1\n"


@pytest.mark.parametrize("args", [["uplift"], ["ab", "--by", "rfm_segment"]])
def test_own_transactions_on_the_command_line_are_not_paired_with_the_samples_campaigns(
    tmp_path, args
):
    """`--transactions shop.csv` in a home with the sample read the sample's campaigns."""
    home = new_home(tmp_path)
    (home / "data/sample").mkdir(parents=True)
    (home / "data/sample/campaigns.csv").write_text(CAMPAIGN_ROWS)
    shop = tmp_path / "shop.csv"
    shop.write_text("customer_id,timestamp,amount\nc1,2024-01-01,10\n")
    argv = [*args, "--transactions", str(shop)]
    result = CliRunner().invoke(app, argv, env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert f"and --transactions names your own transactions ({shop}), whose" in result.output
    given = CliRunner().invoke(  # the sample's campaigns named: a choice, not a default
        app, [*argv, "--campaigns", str(home / "data/sample/campaigns.csv")],
        env={"CRM_LTV_HOME": str(home)},
    )  # fmt: skip
    assert "whose customers the sample's campaigns" not in given.output
    assert "1 of 1 contacts' customers found in transactions" in given.output


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_misspelt_monotone_feature_is_refused_before_any_work(tmp_path, command):
    """It failed in the model's fit, after the snapshots, with a traceback and a FAILED run."""
    home = new_home(tmp_path)
    (home / "configs").mkdir(exist_ok=True)
    raw = yaml.safe_load((CONFIGS / "train.yaml").read_text())
    raw["churn"]["monotone"] = {"recency_dayz": 1}
    (home / "configs/train.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, [command], env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert (
        "churn.monotone.recency_dayz: no feature of that name (did you mean 'recency_days'?)"
        in (result.output)
    )
    assert "loading transactions" not in result.output and not (home / "mlflow.db").exists()


def test_a_misspelt_uplift_excluded_feature_is_refused_before_any_work(tmp_path):
    """It was ignored: the feature meant to be left out was learnt from."""
    home = new_home(tmp_path)
    (home / "configs").mkdir(exist_ok=True)
    raw = yaml.safe_load((CONFIGS / "experiments.yaml").read_text())
    raw["uplift"]["exclude_features"] = ["r_score", "rfm_segmnt"]
    (home / "configs/experiments.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["uplift"], env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, result.output
    said = "uplift.exclude_features.rfm_segmnt: no feature of that name"
    said += " (did you mean 'rfm_segment'?)"
    assert said in result.output
    assert "loading" not in result.output and not (home / "mlflow.db").exists()


def test_monotone_bgnbd_inputs_only_where_the_models_read_them(tmp_path):
    from crm_ltv.training.pipeline import check_monotone

    features = load_config(FeatureConfig, CONFIGS / "features.yaml")

    def bgnbd_monotone(fed: bool):
        def change(c: dict) -> None:
            c["baselines"]["bgnbd_as_features"] = fed
            c["churn"]["monotone"] = {"bgnbd_value": -1}

        return load_config(TrainConfig, _config_with(tmp_path, "train", change))

    check_monotone(bgnbd_monotone(True), features, "train.yaml")  # fed: a feature
    with pytest.raises(ConfigError, match=r"churn\.monotone\.bgnbd_value: no feature of that"):
        check_monotone(bgnbd_monotone(False), features, "train.yaml")


def test_a_file_the_system_refuses_is_one_error_line(capsys):
    """An output checked writable may still fail when written (a full disk, /proc as root)."""

    @_user_errors
    def command() -> None:
        raise PermissionError(13, "Permission denied", "/data/out.parquet")

    with pytest.raises(typer.Exit) as exit_:
        command()
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err == "error: /data/out.parquet: Permission denied\n"


def _one_error_line(done) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_a_full_disk_is_one_error_line_naming_the_file_written(home, tmp_path):
    """A disk that filled gave a 107-line traceback and exit 1: its OSError (ENOSPC, from a
    write or close) names no file (tester I). A real full disk: a tmpfs, mounted without root."""
    disk = tmp_path / "disk"
    out = disk / "features.parquet"  # pyarrow's error ("Error writing bytes to file ...")
    done, left = run_on_full_disk(home, disk, 16, "features", "--out", str(out))
    assert _one_error_line(done) == (
        f"error: {out}: No space left on device (the disk is full: free some space, or write "
        "elsewhere, and run again)"
    )
    assert left == []
    fresh = new_home(tmp_path / "fresh")  # pandas' CSV writer
    done, _ = run_on_full_disk(fresh, fresh / "data", 64, "data", "--n-customers", "300")
    said = _one_error_line(done)
    assert said.startswith(f"error: {fresh / 'data/sample/transactions.csv'}: No space left")


def test_a_file_over_the_size_limit_is_one_error_line_naming_it(home, tmp_path):
    """The same where no tmpfs can be mounted: the file size limit (EFBIG)."""
    out = tmp_path / "features.csv"
    done = run(home, "features", "--out", str(out), max_file_size=8_000)
    assert _one_error_line(done) == (
        f"error: {out}: File too large (over the largest file this process may write: `ulimit -f`)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_under_the_tracking_database_is_one_error_line(home, tmp_path):
    """A full disk under the home reaches MLflow's SQLite first ("database or disk is full"),
    not an OSError: a 473-line traceback and exit 1 (review 2, P2). A tmpfs holds the
    tracking database here; plan-ab logs a run to it."""
    disk = tmp_path / "disk"
    uri = f"sqlite:///{disk / 'mlflow.db'}"
    args = ("plan-ab", "--baseline-rate", "0.09", "--lift", "0.1")
    done, _ = run_on_full_disk(home, disk, 16, *args, env={"MLFLOW_TRACKING_URI": uri})
    assert _one_error_line(done) == (
        f"error: {uri} (MLflow's tracking database): No space left on device (the disk is "
        "full: free some space, or write elsewhere, and run again)"
    )
    limited = new_home(tmp_path / "limited")  # SQLite's "disk I/O error" under `ulimit -f`
    done = run(limited, *args, max_file_size=8192)
    assert _one_error_line(done) == (
        f"error: sqlite:///{limited / 'mlflow.db'} (MLflow's tracking database): disk I/O "
        "error, under a file size limit (over the largest file this process may write: "
        "`ulimit -f`)"
    )


def test_another_database_error_keeps_its_traceback():
    """Only no room is said in one line: another SQLite error is a defect to see."""
    import sqlite3

    @_user_errors
    def command() -> None:
        raise sqlite3.OperationalError("disk I/O error")  # no file size limit here

    with pytest.raises(sqlite3.OperationalError):
        command()


def test_init_that_fails_mid_copy_leaves_no_part_of_a_config(tmp_path):
    """init copied each default in place: a disk that filled left part of one (3,072 of
    train.yaml's 5,139 bytes), which a rerun kept ("exists") and every command then read over
    the defaults; its error named the packaged file copied from, not the one written."""
    from crm_ltv.features.paths import CONFIG_AREAS, default_config_file

    defaults = {f"{area}.yaml": default_config_file(area).read_bytes() for area in CONFIG_AREAS}
    largest = max(defaults, key=lambda name: len(defaults[name]))
    configs = tmp_path / "home/configs"
    done = run(tmp_path, "init", str(configs.parent), max_file_size=len(defaults[largest]) - 1)
    assert _one_error_line(done).startswith(f"error: {configs / largest}: File too large")
    assert {p.name: p.read_bytes() for p in configs.iterdir()}.items() <= defaults.items()
    assert not (configs / largest).exists()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.ENOSPC, "No space left"), "error: No space left on device (the disk is"),
        (OSError(errno.EDQUOT, "Quota"), "error: Disk quota exceeded (your disk quota is"),
        (OSError(errno.EROFS, "Read-only"), "error: Read-only file system\n"),
    ],
)
def test_a_disk_error_that_names_no_file_is_still_one_line(capsys, error, said):
    """Written by something other than the outputs' own writer (MLflow's artifact copies)."""

    @_user_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as exit_:
        command()
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err.startswith(said)


def test_an_os_error_of_the_code_keeps_its_traceback():
    """One that names no file and is not a disk's (a socket's, a pipe's) is a defect to see."""

    @_user_errors
    def command() -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        command()


def test_lightgbms_network_errors_are_not_worded_as_a_setting_it_refused(capsys):
    """A worker lost during lightgbm.dask's training ("Socket recv error, Connection reset by
    peer") read "LightGBM refused a setting (params in configs/train.yaml ...)", a config that
    was fine (tester L). Real LightGBM errors: a port it cannot bind, a value it refuses."""
    import socket

    import lightgbm
    import numpy as np

    rows = lightgbm.Dataset(np.arange(60.0).reshape(20, 3), np.arange(20.0))

    @_user_errors
    def command(params: dict[str, object]) -> None:
        lightgbm.train({"verbose": -1, **params}, rows, 2)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        machines = f"127.0.0.1:{port},127.0.0.1:{port + 1}"
        with pytest.raises(typer.Exit) as exit_:
            command({"num_machines": 2, "machines": machines, "local_listen_port": port})
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err == (
        "error: LightGBM's training on the cluster lost a worker, or the network between the "
        f"workers broke (Binding port {port} failed): run the command again (a worker that "
        "keeps dying: its log says why, e.g. its memory limit; a port taken: train.yaml's "
        "local_listen_port, if set)\n"
    )
    with pytest.raises(typer.Exit) as exit_:
        command({"num_leaves": 1})
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err.startswith(
        "error: LightGBM refused a setting (params in configs/train.yaml or the tuned ones): "
        "Check failed: (num_leaves) > (1)"
    )


def test_the_mixed_timestamp_format_is_used_with_a_warning(home):
    argv = ["features", "--timestamp-format", "mixed", "--as-of", "2024-01-01"]
    result = CliRunner().invoke(app, argv, env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert "warning: timestamp_format 'mixed' guesses each value's layout" in result.output


def test_a_port_outside_1_to_65535_is_refused(home):
    result = CliRunner().invoke(app, ["serve", "--port", "99999"], env={"CRM_LTV_HOME": str(home)})
    said = " ".join(result.output.replace("│", " ").split())  # the error box wraps its lines
    assert result.exit_code == 2 and "less than or equal to 65535" in said


def test_promoting_uplift_without_versions_names_the_command_that_makes_them(tmp_path):
    home = new_home(tmp_path)  # its own: a store is made in it below
    done = run(home, "promote", "--model", "uplift")
    assert done.returncode == 2
    # a home without a store at all (a misspelt --home?) is said so, with the same command
    assert "`crm-ltv uplift` (`make experiments` in the checkout) there first" in done.stderr
    assert run(home, "plan-ab", "--baseline-rate", "0.1", "--lift", "0.1").returncode == 0
    done = run(home, "promote", "--model", "uplift")  # a store, but no uplift version in it
    assert done.returncode == 2
    assert "model 'uplift' has no versions yet: run `crm-ltv uplift` first" in done.stderr


def test_a_lightgbm_value_of_the_wrong_type_is_one_error_line_naming_the_file(home):
    path = home / "configs" / "train.yaml"
    original = path.read_text()
    raw = yaml.safe_load(original)
    raw["churn"]["params"]["num_leaves"] = "many"
    path.write_text(yaml.safe_dump(raw))
    try:
        done = run(home, "train")
    finally:
        path.write_text(original)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {path}: churn: " in done.stderr and "loading" not in done.stderr  # no work
    assert len(done.stderr.splitlines()) == 1  # LightGBM's own [Fatal] line silenced
    assert 'Parameter num_leaves should be of type int, got "many"' in done.stderr


def test_a_port_in_use_is_refused_before_any_link_is_printed(home):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in ("mlflow-ui", "serve"):
            argv = [command, "--port", str(port)]
            result = CliRunner().invoke(app, argv, env={"CRM_LTV_HOME": str(home)})
            assert result.exit_code == 2, result.output
            assert result.output == f"error: --port {port} on 127.0.0.1: already in use; " \
                "choose another\n"  # fmt: skip
        # serve's options from the environment, as a platform passes them (tester A)
        env = {"CRM_LTV_HOME": str(home), "CRM_LTV_PORT": str(port), "CRM_LTV_HOST": "127.0.0.1"}
        result = CliRunner().invoke(app, ["serve"], env=env)
        assert result.exit_code == 2 and f"--port {port} on 127.0.0.1: already" in result.output


def _config_with(tmp_path: Path, area: str, change) -> Path:
    raw = yaml.safe_load((CONFIGS / f"{area}.yaml").read_text())
    change(raw)
    path = tmp_path / f"{area}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_lightgbm_settings_are_checked_when_the_config_is_read(tmp_path):
    """LightGBM ignored a misspelt name silently and refused a wrong type only in training."""
    typo = _config_with(tmp_path, "train", lambda c: c["ltv"]["params"].update(learning_rat=0.1))
    with pytest.raises(ConfigError, match=r"ltv: not LightGBM parameters: params\.learning_rat "
                       r"\(did you mean 'learning_rate'\?\)"):  # fmt: skip
        load_config(TrainConfig, typo)
    # names LightGBM knows pass, whatever their values need (machines, per-feature lists)
    known = {"machines": "h1:12400,h2:12400", "max_bin_by_feature": [63, 63, 63]}
    fine = _config_with(tmp_path, "train", lambda c: c["churn"]["params"].update(known))
    assert load_config(TrainConfig, fine).churn.params["machines"] == "h1:12400,h2:12400"
    space = _config_with(
        tmp_path, "tune", lambda c: c["search_space"].update(num_leave={"low": 8, "high": 64})
    )
    with pytest.raises(ConfigError, match=r"not LightGBM parameters: search_space\.num_leave"):
        load_config(TuneConfig, space)
    # the closest alias's own name: 'num_leaf' (an alias of num_leaves) was suggested
    leafs = _config_with(tmp_path, "train", lambda c: c["ltv"]["params"].update(num_leafs=7))
    with pytest.raises(ConfigError, match=r"params\.num_leafs \(did you mean 'num_leaves'\?\)"):
        load_config(TrainConfig, leafs)
    assert load_config(TrainConfig, CONFIGS / "train.yaml").churn.params  # the shipped ones pass


def test_a_nan_in_a_config_is_refused(tmp_path):
    """`.nan` (YAML's NaN) as a lifecycle threshold was taken: a rule that never holds."""
    nan = {"recency_days": {"gt": float("nan")}}
    path = _config_with(tmp_path, "features", lambda c: c["lifecycle"]["rules"][0].update(when=nan))
    assert ".nan" in path.read_text()
    with pytest.raises(
        ConfigError, match=r"rules\.0\.when\.recency_days\.gt: Input should be a finite"
    ):
        load_config(FeatureConfig, path)


TUNE_MISTAKES = [
    ({"feature_fraction": {"low": 0.9, "high": 1.5}},
     r"LightGBM refuses search_space\.feature_fraction\.high \(feature_fraction=1\.5\): Check "
     r"failed: \(feature_fraction\) <= \(1\.0\)"),
    ({"min_data_in_leaf": {"low": 0.5, "high": 30, "log": True, "integer": True}},
     "integer: needs whole numbers"),
    ({"num_leaves": {"low": 1, "high": 8, "integer": True}},
     r"Check failed: \(num_leaves\) > \(1\)"),
    ({"min_data_in_leaf": {"low": 0, "high": 30, "log": True, "integer": True}}, "low > 0"),
    ({"num_iterations": {"low": 10, "high": 500, "integer": True}},  # would override the rounds
     r"search_space: \['num_iterations'\] are set by the project"),
    # LightGBM took any number as a metric, none: the first trial failed with a traceback
    *(({name: {"low": 1, "high": 2}}, rf"search_space: \['{name}'\] is the validation metric "
       "early stopping and the study watch, set in train.yaml params, not in search_space")
      for name in ("metric", "metrics", "metric_types")),
    # text-valued parameters: no number is one of their values
    ({"boosting": {"low": 1, "high": 2}},
     r"LightGBM refuses search_space\.boosting\.low \(boosting=1\.0\): Unknown boosting type"),
    ({"tree_learner": {"low": 0, "high": 3, "integer": True}},
     r"search_space\.tree_learner\.low \(tree_learner=0\): Unknown tree learner type 0"),
]  # fmt: skip


@pytest.mark.parametrize(("space", "said"), TUNE_MISTAKES)
def test_search_space_values_lightgbm_refuses_are_named_when_tune_yaml_is_read(
    tmp_path, space, said
):
    path = _config_with(tmp_path, "tune", lambda c: c.update(search_space=space))
    with pytest.raises(ConfigError, match=said):
        load_config(TuneConfig, path)


def test_a_metric_in_the_search_space_is_one_error_line_before_any_work(tmp_path):
    """`crm-ltv tune --trials 1` read the sample, then crashed in LightGBM (228 lines)."""
    home = new_home(tmp_path)
    (home / "configs/tune.yaml").write_text("search_space: {metric: {low: 1, high: 2}}\n")
    result = CliRunner().invoke(app, ["tune", "--trials", "1"], env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "search_space: ['metric'] is the validation metric" in result.output
    assert "loading transactions" not in result.output  # before the data (no sample here)


# Early stopping is the project's (`early_stopping_rounds` beside `params`, first metric only,
# no minimum gain): LightGBM's names for it, each alias, were taken and a second early stopping
# ran beside the project's (and a refit, with no validation set, failed).
EARLY_STOPPING = [
    "early_stopping_round", "early_stopping_rounds", "early_stopping", "n_iter_no_change",
    "first_metric_only", "early_stopping_min_delta",
]  # fmt: skip


@pytest.mark.parametrize("name", EARLY_STOPPING)
def test_early_stopping_in_params_or_the_search_space_is_refused_by_file_and_key(tmp_path, name):
    params = _config_with(tmp_path, "train", lambda c: c["ltv"]["params"].update({name: 10}))
    with pytest.raises(ConfigError, match=rf"train\.yaml: ltv: params: \['{name}'\] are set by"):
        load_config(TrainConfig, params)
    space = {name: {"low": 5, "high": 50, "integer": True}}
    tuned = _config_with(tmp_path, "tune", lambda c: c.update(search_space=space))
    with pytest.raises(ConfigError, match=rf"tune\.yaml: search_space: \['{name}'\] are set by"):
        load_config(TuneConfig, tuned)


def test_an_empty_search_space_and_a_fraction_over_1_in_train_yaml_are_refused(tmp_path):
    empty = _config_with(tmp_path, "tune", lambda c: c.update(search_space={}))
    with pytest.raises(ConfigError, match="search_space: Dictionary should have at least 1"):
        load_config(TuneConfig, empty)
    over = _config_with(tmp_path, "train", lambda c: c["ltv"]["params"].update(bagging_fraction=2))
    with pytest.raises(ConfigError, match=r"ltv: .*Check failed: \(bagging_fraction\) <= \(1\.0\)"):
        load_config(TrainConfig, over)


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_bytes((CONFIGS / "train.yaml").read_bytes() + b"\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"train\.yaml: not UTF-8 text \(invalid"):
        load_config(TrainConfig, path)


def test_a_tracking_server_that_cannot_be_reached_is_one_error_line(home):
    env = {
        "CRM_LTV_HOME": str(home),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens on the discard port
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    result = CliRunner().invoke(app, ["promote", "--model", "churn"], env=env)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: MLflow (http://127.0.0.1:9): API request to")
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1


def test_uplift_lightgbm_params_are_checked_as_training_s_are(tmp_path):
    from crm_ltv.experiments.config import ExperimentsConfig

    typo = _config_with(
        tmp_path, "experiments", lambda c: c["uplift"].update(params={"num_leavs": 8})
    )
    with pytest.raises(ConfigError, match=r"uplift: not LightGBM parameters: params\.num_leavs"):
        load_config(ExperimentsConfig, typo)
    over = _config_with(
        tmp_path, "experiments", lambda c: c["uplift"].update(params={"bagging_fraction": 3})
    )
    with pytest.raises(
        ConfigError, match=r"uplift: LightGBM refuses params \(bagging_fraction=3\)"
    ):
        load_config(ExperimentsConfig, over)
    # what the project sets itself: the objective, the seed, the rounds (any alias)
    rounds = _config_with(
        tmp_path, "experiments", lambda c: c["uplift"].update(params={"num_boost_round": 5})
    )
    with pytest.raises(ConfigError, match=r"\['num_boost_round'\] are set by the project"):
        load_config(ExperimentsConfig, rounds)
    assert load_config(ExperimentsConfig, CONFIGS / "experiments.yaml").uplift  # shipped: fine


def test_a_half_life_of_no_days_is_refused_by_name(tmp_path):
    zero = _config_with(tmp_path, "train", lambda c: c["churn"].update(cutoff_half_life_days=0))
    with pytest.raises(ConfigError, match=r"churn\.cutoff_half_life_days: Input should be greater"):
        load_config(TrainConfig, zero)
    off = _config_with(tmp_path, "train", lambda c: c["churn"].update(cutoff_half_life_days=None))
    assert load_config(TrainConfig, off).churn.cutoff_half_life_days is None  # equal weights


def _database_call(seconds: float):
    """A function of a `sqlalchemy` module (as the stores call it) that stops the process
    (SIGTERM to itself), then works for `seconds`."""
    code = (
        "import os, signal, time\n"
        "def query():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        f"    time.sleep({seconds})  # a statement the stop lands in\n"
        "    return 'rows'\n"
    )
    scope = {"__name__": "sqlalchemy.engine.fake"}
    exec(code, scope)
    return scope["query"]


def test_a_stop_that_lands_in_a_database_call_is_raised_once_it_returns(capsys):
    """SIGTERM raised inside SQLAlchemy left SQLite locked (the KILLED update failed, exit 1)
    or made SQLAlchemy log a traceback: the stop waits until the call has returned, then
    wakes a main thread blocked in a wait at once."""
    import signal
    import threading
    import time

    from crm_ltv.cli import _interruptible

    got, before = [], signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    with pytest.raises(typer.Exit) as exit_, _interruptible("training"):
        got.append(_database_call(0.2)())  # returns: the stop did not land in it
        threading.Event().wait(30)  # the stop lands here, outside the database call
        got.append("not stopped")
    assert got == ["rows"] and exit_.value.exit_code == 143
    assert time.monotonic() - started < 5  # not when the wait ended
    assert capsys.readouterr().err == "interrupted: training\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_a_database_call_that_outlasts_the_grace_is_stopped_anyway(monkeypatch):
    """A stuck lock must not make SIGTERM and Ctrl-C do nothing."""
    import time

    import crm_ltv.cli as cli

    monkeypatch.setattr(cli, "_MAX_DEFER_SECONDS", 0.3)
    started = time.monotonic()
    with pytest.raises(typer.Exit) as exit_, cli._interruptible("training"):
        _database_call(30)()
    assert exit_.value.exit_code == 143
    assert 0.3 <= time.monotonic() - started < 5


def test_a_stop_whose_killed_update_fails_still_ends_as_the_stop(tmp_path, capsys):
    """Stopped while another process holds MLflow's database locked: the KILLED update fails
    (after SQLite's busy timeout, 20 s in MLflow), and the command still ends with the stop's
    line and exit status, plus a warning, not exit 1 with the store's error."""
    import sqlite3

    import mlflow

    from crm_ltv.cli import _interruptible, _Stopped
    from crm_ltv.training.tracking import killable_run

    db = tmp_path / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    experiment = mlflow.create_experiment("t", artifact_location=tmp_path.as_uri())
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        with (
            pytest.raises(typer.Exit) as exit_,
            _interruptible("training"),
            killable_run(experiment_id=experiment),
        ):
            holder.execute("BEGIN EXCLUSIVE")
            raise _Stopped  # as the SIGTERM handler raises it
    finally:
        holder.close()
        while mlflow.active_run() is not None:  # a guard: MLflow 3.17 pops the run first
            mlflow.end_run("KILLED")
        mlflow.set_tracking_uri(None)
    assert exit_.value.exit_code == 143
    err = capsys.readouterr().err.splitlines()  # after MLflow's own log lines
    said = err[err.index("interrupted: training") + 1 :]
    assert said == [
        "warning: the MLflow runs could not all be marked KILLED ((sqlite3.OperationalError) "
        "database is locked): they may read RUNNING or FAILED"
    ]


def test_what_a_stop_does_not_explain_keeps_its_own_outcome(capsys):
    """A cleanup that fails after Ctrl-C: 130, and a defect in it shows its traceback; an
    error with no stop behind it, or a deliberate exit made while handling one, is left as
    it is."""
    from crm_ltv.cli import _interruptible

    with pytest.raises(typer.Exit) as exit_, _interruptible("tuning"):
        try:
            raise KeyboardInterrupt
        finally:
            {}["not a key"]  # a cleanup with a bug
    assert exit_.value.exit_code == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: tuning\nwarning: cleaning up after the stop failed:\n")
    assert "Traceback" in err and "KeyError: 'not a key'" in err
    with pytest.raises(KeyError), _interruptible("tuning"):
        {}["no stop"]
    with pytest.raises(typer.Exit) as exit_, _interruptible("tuning"):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise typer.Exit(2) from None
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err == ""


def test_a_misspelt_churn_action_of_policy_eval_is_named_before_any_data_is_read(tmp_path):
    """It was a ValueError traceback after the transactions were loaded and scored."""
    home = new_home(tmp_path)
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "experiments.yaml").write_text("policy_eval: {churn_action: winback}\n")
    result = CliRunner().invoke(app, ["policy-eval"], env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert "experiments.yaml: policy_eval.churn_action 'winback' is not an action of" in (
        result.output
    )
    assert "(welcome_offer, recommendation, thank_you, vip_invitation, win_back)" in result.output
    assert "reading" not in result.output and "Traceback" not in result.output


def test_a_damaged_store_of_the_home_is_one_error_line_naming_it(tmp_path):
    """A mlflow.db or optuna.db that is not a database was a 300-line SQLAlchemy traceback."""
    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "300").returncode == 0
    (home / "mlflow.db").write_text("garbage\n")
    scored = run(home, "score", "--as-of", "2025-06-30", "--out", str(home / "s.csv"))
    assert scored.returncode == 2 and "Traceback" not in scored.stderr, scored.stderr
    assert scored.stderr.strip().splitlines()[-1] == (
        f"error: {home / 'mlflow.db'}: cannot be read as a SQLite database (file is not a "
        "database); move it away to start that store afresh"
    )
    (home / "mlflow.db").unlink()
    (home / "optuna.db").write_text("garbage\n")
    tuned = run(home, "tune", "--trials", "1")
    assert tuned.returncode == 2 and "Traceback" not in tuned.stderr, tuned.stderr
    assert f"error: {home / 'optuna.db'}: cannot be read as a SQLite database" in tuned.stderr


def test_serve_refuses_a_token_that_is_set_but_blank(home):
    """An empty secret file would have opened an API meant to be closed."""
    env = {"CRM_LTV_HOME": str(home), "CRM_LTV_API_TOKEN": " \n"}
    from tests.conftest import free_port

    result = CliRunner().invoke(app, ["serve", "--port", str(free_port())], env=env)
    assert result.exit_code == 2, result.output
    assert "error: CRM_LTV_API_TOKEN is set but blank: set the token, or unset it" in result.output


@pytest.mark.parametrize(
    ("command", "nothing"),
    [
        (["cohorts"], "nothing to make cohorts of"),
        (["train"], "no customer to train on"),
        (["tune", "--trials", "1"], "no customer to train on"),
        (["train", "--engine", "dask", "--partitions", "2"], "no customer to train on"),
    ],
)
def test_a_file_of_refunds_only_is_said_to_have_no_purchase(tmp_path, command, nothing):
    """cohorts asked for a later --to, which could never help; train and tune built snapshots
    and then said they held 0 customers with 0 churn outcomes."""
    home = new_home(tmp_path)
    refunds = tmp_path / "refunds_only.csv"
    refunds.write_text(
        "customer_id,timestamp,amount\nc1,2023-01-01,-5\nc2,2024-06-01,-7.5\nc1,2025-01-01,0\n"
    )
    argv = [*command, "--transactions", str(refunds)]
    result = CliRunner().invoke(app, argv, env={"CRM_LTV_HOME": str(home)})
    assert result.exit_code == 2, result.output
    said = (
        f"error: transactions {refunds}: the file has no purchase at all (only refunds or zero "
        f"amounts): {nothing}"
    )
    assert said in result.output and "--to" not in result.output, result.output
    assert "loading the training libraries" not in result.output  # before any work
    assert "time split" not in result.output


@pytest.mark.parametrize(
    "argv",
    [["score", "--as-of", "2025-01-01"], ["promote", "--model", "churn", "--version", "1"]],
    ids=["score", "promote"],
)
def test_a_misspelt_home_gets_no_new_store_and_says_so(tmp_path, argv):
    """score and promote in a home that does not exist made it, with an empty mlflow.db, and
    said to train first, as if the home were right."""
    missing = tmp_path / "hmoe"
    out = ["--out", str(tmp_path / "s.csv")] if argv[0] == "score" else []
    done = run(missing, *argv, *out)
    assert done.returncode == 2, done.stderr
    said = (
        f"error: no mlflow.db in {missing}: nothing was trained in this home (--home or "
        "$CRM_LTV_HOME: is it the one you trained in?); `crm-ltv train` (`make train` in the "
        "checkout) there first"
    )
    assert said in done.stderr, done.stderr
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["features"],
        ["features", "--out", "{home}/out/features.csv"],
        ["score", "--as-of", "2025-01-01", "--out", "{home}/out/scores.csv"],
    ],
    ids=["features", "features --out", "score --out"],
)
def test_a_mistyped_home_is_left_unmade(tmp_path, args):
    """`--home` with a typo failed (no transactions there) but left {home}/data made: output
    folders are made when the command writes, not when it checks them."""
    home = tmp_path / "x" / "nonexist"
    argv = ["--home", str(home), *(a.format(home=home) for a in args)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "error: " in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_a_stop_before_an_interruptible_command_reaches_its_work_ends_it_there(capsys):
    """A SIGINT in a tune's first moments, under the SIG_IGN a background job of a script
    inherits, was lost (the tune ran all its trials) and a SIGTERM ended it with no line: from
    the command's start the stop is put off (`_put_off`) and raised where its work begins."""
    import os
    import signal

    from crm_ltv import cli

    assert {c.name or c.callback.__name__ for c in app.registered_commands} >= cli.INTERRUPTIBLE
    for stop, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        before = signal.signal(stop, cli._put_off)  # as the callback sets before the command
        try:
            os.kill(os.getpid(), stop)  # lands before the work: kept
            worked = []
            with pytest.raises(typer.Exit) as stopped, cli._interruptible("what is kept"):
                worked.append(True)
            assert stopped.value.exit_code == code and not worked
            assert capsys.readouterr().err == "interrupted: what is kept\n"
        finally:
            signal.signal(stop, before)
            cli._pending.clear()


@pytest.mark.parametrize("odd", ["?", "%"])
def test_a_home_whose_path_a_sqlite_uri_cannot_hold_is_refused(tmp_path, odd):
    """'?' began the URI's query, so the MLflow store went beside the home (a file named by
    the path's part before it); '%' began an escape, a traceback."""
    home = new_home(tmp_path / f"h{odd}q")
    done = run(home, "train")
    assert done.returncode == 2, done.stderr
    assert f"its path holds {odd!r}, which the SQLite URIs" in done.stderr
    assert not (tmp_path / "h").exists() and not (home / "mlflow.db").exists()


def test_bento_from_an_installed_package_says_so_before_touching_the_store(tmp_path, monkeypatch):
    """Tester P: `crm-ltv bento` of a package installed without -e copied the champions into
    the store, then failed for want of the checkout's pyproject.toml and runtime lock."""
    from crm_ltv.serving import packaging

    installed = tmp_path / "site-packages/crm_ltv"
    installed.mkdir(parents=True)
    monkeypatch.setattr(packaging, "source_root", lambda: installed)
    home, store = new_home(tmp_path), tmp_path / "bentoml"
    env = {"CRM_LTV_HOME": str(home), "BENTOML_HOME": str(store)}
    result = CliRunner().invoke(app, ["bento"], env=env)
    assert result.exit_code == 2, result.output
    assert f"crm-ltv is installed as a package here ({installed}), not from a checkout" in (
        result.output
    )
    assert "pip install -e <checkout>" in result.output
    assert not store.exists()
    (installed / "pyproject.toml").write_text("")  # a checkout without its runtime lock
    result = CliRunner().invoke(app, ["bento"], env=env)
    assert result.exit_code == 2 and "requirements-runtime.lock: no such file" in result.output
    assert "make runtime-lock" in result.output and not store.exists()


def test_version_and_command_summaries():
    """Tester P: no --version; and the command list broke a summary mid-sentence where a
    docstring's first paragraph ran over two lines (typer keeps the line break)."""
    import crm_ltv

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"crm-ltv {crm_ltv.__version__}\n"
    for command in app.registered_commands:
        summary = (command.callback.__doc__ or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, (command.callback.__name__, summary)


def test_the_bento_serve_command_pastes_into_a_shell_whatever_the_paths():
    """Review: the whole `VAR=value` was quoted for a home with a space, which the shell then
    read as a command name."""
    import shlex

    from crm_ltv.cli import _bento_serve_command, _bentoml

    said = _bento_serve_command(Path("/tmp/my home"), "/tmp/a store", "crm-ltv:abc")
    assert shlex.split(said) == [
        "CRM_LTV_HOME=/tmp/my home", "BENTOML_HOME=/tmp/a store", _bentoml()[0], "serve",
        "crm-ltv:abc",
    ]  # fmt: skip
    assert said.startswith("CRM_LTV_HOME='/tmp/my home' BENTOML_HOME='/tmp/a store' ")
    assert _bento_serve_command(Path("/h"), None, "crm-ltv:abc").startswith("CRM_LTV_HOME=/h ")


def test_a_relative_bentoml_home_is_made_absolute_for_the_processes_started(tmp_path, monkeypatch):
    """Tester Q: `BENTOML_HOME=relstore crm-ltv bento` copied the models into ./relstore, then
    `bentoml build`, run in a folder of its own, found none."""
    from crm_ltv.cli import _absolute_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENTOML_HOME", "relstore")
    _absolute_store()
    assert os.environ["BENTOML_HOME"] == str(tmp_path / "relstore")
    monkeypatch.setenv("BENTOML_HOME", "/abs/store")
    _absolute_store()
    assert os.environ["BENTOML_HOME"] == "/abs/store"


def test_an_uplift_exclusion_list_of_an_older_init_is_warned_of(tmp_path):
    """A home's list replaces the default whole: one written before history_share existed let
    the uplift model learn it, though the service builds it from the churn champion's history
    start, without a word (tester U)."""
    home = new_home(tmp_path)
    (home / "configs").mkdir(exist_ok=True)
    raw = yaml.safe_load((CONFIGS / "experiments.yaml").read_text())
    raw["uplift"]["exclude_features"] = ["r_score", "f_score", "m_score", "rfm_segment"]
    (home / "configs/experiments.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["uplift"], env={"CRM_LTV_HOME": str(home)})
    said = "uplift.exclude_features does not list history_share, which the service builds"
    assert said in result.output, result.output
    raw["uplift"]["exclude_features"].append("history_share")
    (home / "configs/experiments.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["uplift"], env={"CRM_LTV_HOME": str(home)})
    assert "does not list" not in result.output, result.output


def test_serve_and_policy_eval_name_rules_an_older_init_wrote(tmp_path):
    """The rules the service and the policies follow: said where each command starts, before
    anything else can stop it (here: no model trained, no sample)."""
    from tests.conftest import free_port

    home = new_home(tmp_path)
    path = home / "configs/nba.yaml"
    raw = yaml.safe_load(path.read_text())
    del raw["actions"]["welcome_offer"]["eligible"]["min_recency_days"]
    path.write_text(yaml.safe_dump(raw))
    env = {"CRM_LTV_HOME": str(home)}
    for args in (["serve", "--port", str(free_port())], ["policy-eval"]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, result.output
        assert f"warning: {path}: eligibility as an older `crm-ltv init` wrote it" in (
            result.output
        ), args
