"""The crm-ltv command line, run for real in a temporary project home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, new_home, run, run_on_full_disk

RETAIL = ROOT / "benchmarks/data"  # the real export and its data.yaml


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)


def test_sample_data_then_features(home):
    made = run(home, "data", "--n-customers", "300", "--seed", "3")
    assert made.returncode == 0, made.stderr
    assert "generating 300 customers" in made.stderr
    assert (home / "data/sample/transactions.csv").exists()
    assert (home / "data/sample/truth_customers.parquet").exists()
    built = run(home, "features")
    assert built.returncode == 0, built.stderr
    assert "loading customers" in built.stderr  # the sample's customers go with its transactions
    table = pd.read_parquet(home / "data/features.parquet")
    assert len(table) == 300 and table.index.name == "customer_id"
    assert "acquisition_channel" in table.columns
    assert "300 customers" in built.stdout and "RFM segment:" in built.stdout
    assert "Lifecycle stage:" in built.stdout


def test_own_file_with_mapped_columns_and_cutoff(home):
    own = home / "shop.csv"
    own.write_text("Cust;When;Amt\n0042;05/01/2024;10\n0042;20/02/2024;5\n0077;01/03/2024;8\n")
    out = home / "own.parquet"
    result = run(
        home, "features", "--transactions", str(own), "--sep", ";",
        "--column", "customer_id=Cust", "--column", "timestamp=When", "--column", "amount=Amt",
        "--timestamp-format", "%d/%m/%Y", "--as-of", "2024-02-28", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "loading customers" not in result.stderr
    table = pd.read_parquet(out)
    assert table.index.tolist() == ["0042"]  # 0077 buys after the cutoff
    assert table.loc["0042", "frequency"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("features", "--transactions", "nope.csv"), "nope.csv: no such file"),
        (("features", "--transactions", "."), "is a directory"),
        # the parts a Dask run reads, given to the single engine
        (("features", "--transactions", "parts/*.csv"), "pattern of parts is read by `--engine"),
        (("features", "--column", "customer_id"), "expected CONTRACT_NAME=SOURCE_COLUMN"),
        (("features", "--transactions", "bad.csv"), "rejected, above the limit"),
        # a bad cutoff is said before the file is read
        (
            ("features", "--transactions", "bad.csv", "--as-of", "soon"),
            "'soon' is not an ISO 8601 date",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(home, args, message):
    rows = "".join(f"{i},2024-01-0{1 + i % 9} 10:00:00,{'x' if i % 2 else i}\n" for i in range(20))
    (home / "bad.csv").write_text("customer_id,timestamp,amount\n" + rows)
    result = run(home, *(a if a != "bad.csv" else str(home / "bad.csv") for a in args))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]


def test_reject_limit_can_be_raised_on_the_command_line(home):
    own = home / "shop.csv"
    own.write_text("customer_id,timestamp,amount\n1,2024-01-01 10:00:00,5\n2,never,5\n")
    result = run(home, "features", "--transactions", str(own), "--max-reject-share", "0.6")
    assert result.returncode == 0, result.stderr
    assert "rejected 1 row (50.00% of 2 checked): unparsable timestamp 1" in result.stderr
    rejects = pd.read_csv(home / "reports/rejects/transactions_rejects.csv")
    assert rejects["reason"].tolist() == ["unparsable timestamp 'never'"]


def test_a_slice_of_the_real_export_loads_with_its_shipped_mapping(home):
    """Online Retail II as published (benchmarks/data): no line total, guest sales, postage and
    fee lines, duplicates. Its first 20,000 lines load with the default reject limit."""
    shutil.copyfile(RETAIL / "online_retail_ii.data.yaml", home / "configs/data.yaml")
    batch = next(pq.ParquetFile(RETAIL / "online_retail_ii.parquet").iter_batches(20_000))
    batch.to_pandas().to_parquet(home / "slice.parquet")
    result = run(home, "features", "--transactions", str(home / "slice.parquet"))
    assert result.returncode == 0, result.stderr
    summary = result.stderr
    assert "20,000 rows read" in summary and "14,900 loaded" in summary
    assert "rejected" not in summary
    assert "excluded by rule (not rejects): 69 rows: StockCode='POST' 28, StockCode='DOT' 20" in (
        summary
    )
    assert "Invoice starting 'A' 0" in summary
    assert "anonymous sales: 4,820 rows with no customer_id (column 'Customer ID')" in summary
    assert "211 exact duplicate rows dropped" in summary
    assert "columns not in the contract, ignored: Description, Country" in summary
    anonymous = pd.read_csv(home / "reports/rejects/transactions_anonymous.csv")
    assert len(anonymous) == 4_820 and anonymous["Customer ID"].isna().all()
    table = pd.read_parquet(home / "data/features.parquet")
    assert len(table) > 500 and table["monetary_total"].gt(0).mean() > 0.9


def test_bad_command_line_values_are_one_line_errors(home):
    made = run(home, "data", "--n-customers", "0")
    assert made.returncode == 2 and "Traceback" not in made.stderr
    assert "error: command line: n_customers: Input should be greater than or equal to 10" in (
        made.stderr
    )
    run(home, "data", "--n-customers", "50")
    no_sep = run(home, "features", "--sep", "")
    assert no_sep.returncode == 2 and "error: command line: sep: String should have at least 1" in (
        no_sep.stderr
    )
    late = run(home, "features", "--as-of", "someday")
    assert late.returncode == 2 and "Traceback" not in late.stderr
    assert "error: --as-of: 'someday' is not an ISO 8601 date or time" in late.stderr


def test_bad_config_is_reported_with_its_file(home):
    (home / "configs/features.yaml").write_text("windows_days: [0]\n")
    (home / "data/sample").mkdir(parents=True)
    (home / "data/sample/transactions.csv").write_text(
        "customer_id,timestamp,amount\n1,2024-01-01 10:00:00,5\n"
    )
    result = run(home, "features")
    assert result.returncode == 2
    assert "features.yaml" in result.stderr and "windows_days" in result.stderr


def test_help_lists_the_commands(home):
    result = run(home, "--help")
    assert result.returncode == 0
    assert "data" in result.stdout and "features" in result.stdout


def test_help_through_a_pipe_shows_every_option_whole():
    """Help piped (`| cat`, `| less`, a CI log) was 80 columns wide and cut option names and
    defaults: `--expected-treatm…` for --expected-treatment-share (tester I). Every command's
    help, run through a pipe with no COLUMNS set, names each of its options in full."""
    import os
    import subprocess

    import typer.main

    from crm_ltv.cli import app
    from tests.conftest import CLI

    unset = {"COLUMNS", "LINES", "TERMINAL_WIDTH", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    group = typer.main.get_command(app)
    commands = {"": group, **group.commands}  # type: ignore[attr-defined]
    for name, command in commands.items():
        done = subprocess.run(
            [CLI, *([name] if name else []), "--help"], stdout=subprocess.PIPE, text=True, env=env
        )
        assert done.returncode == 0 and "…" not in done.stdout, (name, done.stdout)
        for param in command.params:
            for option in (*param.opts, *param.secondary_opts):
                assert option in done.stdout, (name, option)


def test_the_help_width_is_not_given_to_a_usage_error():
    """The 120 columns of piped help reached the stderr console too: `crm-ltv features --bogus
    > out` drew a 120-column error box in an 80-column terminal (review 2, P5). A usage error
    keeps rich's own width (80 for a stream that is not a terminal)."""
    import os
    import subprocess

    from tests.conftest import CLI

    unset = {"COLUMNS", "LINES", "TERMINAL_WIDTH", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        [CLI, "features", "--bogus"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "No such option: --bogus" in done.stderr, done.stderr
    assert max(len(line) for line in done.stderr.splitlines()) <= 80, done.stderr


def test_output_into_a_pipe_nobody_reads_ends_quietly_with_141(tmp_path):
    """`crm-ltv --help | head -1` exited 1 with no line (BrokenPipeError, which click calls a
    failure), so `set -o pipefail` took it for a failed command (tester I); it ends as `cat`
    does there, with 128 + SIGPIPE. A pipe whose reader is gone before the first write (help;
    a command's own output, init's lines), and `head -1` for real."""
    import os
    import subprocess

    from crm_ltv.cli import READER_GONE
    from tests.conftest import CLI

    assert READER_GONE == 141
    for args in (("--help",), ("features", "--help"), ("init", str(tmp_path / "home"))):
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run([CLI, *args], stdout=write, stderr=subprocess.PIPE, text=True)
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (141, ""), args
    headed = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$0" --help | head -1 >/dev/null', CLI],
        capture_output=True, text=True,
    )  # fmt: skip
    assert (headed.returncode, headed.stderr) in ((0, ""), (141, "")), headed


def test_a_broken_pipe_that_is_not_stdouts_keeps_its_traceback(tmp_path):
    """Any BrokenPipeError in a command (a socket's, a worker pipe's) was read as stdout's
    reader gone: exit 141 and no word, with stdout a file (review 2, P4). Only stdout's own
    pipe is; another's is a defect: its traceback and exit 1. Here the sample's generation
    raises one, as a tracking server that hung up would."""
    import subprocess
    import sys

    from tests.conftest import _cli_env

    code = (
        "import sys\n"
        "import crm_ltv.features.sample as sample\n"
        "def hung_up(config):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "sample.generate_sample = hung_up\n"
        "from crm_ltv.cli import main\n"
        "sys.argv = ['crm-ltv', 'data', '--n-customers', '300']\n"
        "main()\n"
    )
    home = new_home(tmp_path / "home")
    with (tmp_path / "stdout.txt").open("w") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True,
            env=_cli_env(home), cwd=ROOT,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "BrokenPipeError: [Errno 32] Broken pipe" in done.stderr


def test_a_command_with_stdout_closed_runs_as_before(tmp_path):
    """With stdout closed (`crm-ltv data >&-`, a cron or daemon wrapper) Python has no
    sys.stdout: the help width and the reader-gone check read it and crashed every command
    with an AttributeError (review 2, P1). The command runs, its output dropped, as before."""
    import subprocess

    from tests.conftest import CLI, _cli_env

    home = new_home(tmp_path / "home")
    for args in (("--version",), ("data", "--n-customers", "300")):
        done = subprocess.run(
            ["sh", "-c", 'exec "$0" "$@" >&-', CLI, *args], stderr=subprocess.PIPE, text=True,
            env=_cli_env(home),
        )  # fmt: skip
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)
    written = sorted(p.name for p in (home / "data/sample").iterdir())
    assert written == sorted([
        "campaigns.csv", "customers.csv", "sample.json", "transactions.csv",
        "truth_campaigns.parquet", "truth_customers.parquet",
    ])  # fmt: skip


def test_init_writes_the_defaults_and_any_folder_is_a_home(tmp_path):
    """`crm-ltv init DIR` writes every default config (keeps edited ones unless --force); the
    home is --home, else CRM_LTV_HOME, else the working directory."""
    import os
    import re
    import subprocess

    from tests.conftest import CLI

    env = {k: v for k, v in os.environ.items() if k not in ("CRM_LTV_HOME", "MLFLOW_TRACKING_URI")}
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()

    def cli(*args: str, cwd: Path = elsewhere) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=cwd)

    made = cli("init", str(home))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (home / "configs").iterdir()) == [
        "data.yaml", "experiments.yaml", "features.yaml", "nba.yaml", "sample.yaml",
        "serving.yaml", "train.yaml", "tune.yaml",
    ]  # fmt: skip
    edited = re.sub(
        r"n_customers: *\d+", "n_customers: 150", (home / "configs/sample.yaml").read_text()
    )
    (home / "configs/sample.yaml").write_text(edited)
    again = cli("init", str(home))
    assert "kept" in again.stdout and (home / "configs/sample.yaml").read_text() == edited
    assert cli("--home", str(home), "data").returncode == 0  # the home's sample.yaml: 150
    built = cli("features", cwd=home)  # no --home, no CRM_LTV_HOME: the working directory
    assert built.returncode == 0, built.stderr
    assert "150 customers" in built.stdout
    assert not (elsewhere / "data").exists()
    forced = cli("init", str(home), "--force")
    assert "n_customers: 150" not in (home / "configs/sample.yaml").read_text()
    assert forced.returncode == 0
    # a .yml the home has is read in place of the .yaml: kept, even with --force (both there
    # would be refused); a file named configs is said so
    (home / "configs/train.yaml").rename(home / "configs/train.yml")
    forced = cli("init", str(home), "--force")
    said = f"kept    {home / 'configs/train.yml'} (read in place of train.yaml; --force keeps it)"
    assert said in forced.stdout
    assert not (home / "configs/train.yaml").exists()
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd/configs").write_text("")
    odd = cli("init", str(tmp_path / "odd"))
    assert odd.returncode == 2 and "odd/configs: cannot be made a folder" in odd.stderr


def _make_n(target: str, home: str, where: Path) -> tuple[int, str]:
    """`make -n -C <checkout> target` typed in `where` (the shell sets $PWD) with this home."""
    import os
    import subprocess

    env = {**os.environ, "CRM_LTV_HOME": home, "PWD": str(where)}
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], cwd=where, env=env, capture_output=True, text=True
    )
    return done.returncode, done.stdout + done.stderr


def test_make_from_elsewhere_refuses_a_relative_or_spaced_home_and_reads_a_homes_own_data(
    tmp_path,
):
    """`make -C` generated the sample into <checkout>/relhome for CRM_LTV_HOME=relhome; a home
    with a space ran `crm-ltv data` three times; a home reading its own file got the sample."""
    code, said = _make_n("train", "relhome", tmp_path)
    assert code != 0 and "CRM_LTV_HOME=relhome is relative, and make runs in" in said
    assert "give an absolute path, e.g. CRM_LTV_HOME=$PWD/relhome" in said
    code, said = _make_n("data", str(tmp_path / "my home"), tmp_path)
    assert code != 0 and f'the project home "{tmp_path}/my home" has a space' in said
    assert _make_n("lint", "relhome", tmp_path)[0] == 0  # a target that uses no home
    own = new_home(tmp_path / "own")
    (own / "configs" / "data.yaml").write_text("transactions:\n  path: /data/shop.csv  # mine\n")
    code, said = _make_n("train", str(own), tmp_path)
    assert code == 0 and "crm-ltv train" in said and "crm-ltv data" not in said, said
    for text in ("transactions:\n  path: Null\n", "customers: {path: /data/c.csv}\n"):
        (own / "configs" / "data.yaml").write_text(text)  # no transactions file of its own
        code, said = _make_n("train", str(own), tmp_path)
        assert code == 0 and "crm-ltv data" in said, (text, said)
    (own / "configs" / "data.yaml").unlink()
    (own / "configs" / "data.yml").write_text("transactions: {path: /data/shop.csv}\n")
    code, said = _make_n("train", str(own), tmp_path)
    assert code == 0 and "crm-ltv data" not in said, said
    # typed in a link to the checkout: the same folder, so a relative home is the checkout's
    (tmp_path / "link").symlink_to(ROOT)
    code, said = _make_n("train", "relhome", tmp_path / "link")
    assert "is relative" not in said, said


def test_make_experiments_in_a_home_with_its_own_data_makes_no_sample(tmp_path):
    """It generated the sample, whose campaigns `ab` then paired with the shop's transactions,
    and ended with a policy evaluation simulated on the sample (refused with own data)."""
    own = new_home(tmp_path / "own")
    (own / "configs" / "data.yaml").write_text("transactions:\n  path: /data/shop.csv\n")
    code, said = _make_n("experiments", str(own), tmp_path)
    assert code == 0 and "crm-ltv ab\n" in said and "crm-ltv data" not in said, said
    assert "crm-ltv policy-eval\n" not in said and "simulated on the sample" not in said
    code, said = _make_n("experiments", str(new_home(tmp_path / "shipped")), tmp_path)
    assert code == 0 and "crm-ltv data" in said and "crm-ltv policy-eval\n" in said, said
    # the service's log last: one the outcomes refuse (tester L: the README's call for 'c1'
    # alone) stopped the target before the simulated policy evaluation
    assert said.index("crm-ltv policy-eval\n") < said.index("crm-ltv outcomes --decisions")


def test_make_clean_with_a_home_elsewhere_removes_nothing(tmp_path):
    """`CRM_LTV_HOME=/h make -C <checkout> clean` removed the checkout's runs, registry and
    studies (its mlflow.db, mlartifacts/, optuna.db), while the targets read the home."""
    import os
    import subprocess

    code, said = _make_n("clean", str(tmp_path / "home"), tmp_path)
    assert code != 0 and "rm -rf" not in said, said
    assert f"CRM_LTV_HOME={tmp_path / 'home'} is not this checkout" in said
    assert f"to clean the checkout run `env -u CRM_LTV_HOME make -C {ROOT} clean`" in said
    assert "rm -rf data reports logs mlflow.db" in _make_n("clean", str(ROOT), tmp_path)[1]
    checkout = tmp_path / "checkout"  # a scratch copy: really run, never on a real checkout
    checkout.mkdir()
    shutil.copy(ROOT / "Makefile", checkout)
    shutil.copytree(ROOT / "configs", checkout / "configs")
    stores = [checkout / "mlflow.db", checkout / "optuna.db", checkout / "mlartifacts/1/x"]
    for store in stores:
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text("runs")
    home = new_home(tmp_path / "home")
    (home / "mlflow.db").write_text("the home's runs")
    env = {k: v for k, v in os.environ.items() if k != "CRM_LTV_HOME"}

    def clean(*home_set: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-C", str(checkout), "clean"], cwd=tmp_path, capture_output=True,
            text=True, env={**env, "PWD": str(tmp_path), **dict(h.split("=", 1) for h in home_set)},
        )  # fmt: skip

    for given in (f"CRM_LTV_HOME={home}", "CRM_LTV_HOME=home", "CRM_LTV_HOME=/no/such/home"):
        done = clean(given)
        assert done.returncode != 0 and "is not this checkout" in done.stderr, done.stderr
        assert all(store.exists() for store in stores) and (home / "mlflow.db").exists()
    done = clean(f"CRM_LTV_HOME={checkout}")  # the checkout as its own home: cleaned
    assert done.returncode == 0, done.stderr
    assert not any(store.exists() for store in stores) and (home / "mlflow.db").exists()


def test_an_output_is_replaced_whole_or_left_as_it_was(tmp_path):
    """score, features and outcomes write through this: a stop mid-write (Ctrl-C, a full
    disk) left a part of a table that ab or a service then read as the whole file."""
    from crm_ltv.features.paths import replaced_whole

    target = tmp_path / "scores.csv"
    target.write_text("earlier\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    with pytest.raises(RuntimeError), replaced_whole(link) as part:
        assert part.parent == tmp_path and part.suffix == ".csv"
        part.write_text("half a tab")
        raise RuntimeError("stopped mid-write")
    assert target.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.csv", "scores.csv"]
    target.chmod(0o600)  # scores kept from others' eyes stay so
    with replaced_whole(link) as part:
        part.write_text("whole\n")
    assert target.read_text() == "whole\n" and link.is_symlink()
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_sample_too_big_to_write_leaves_the_earlier_one_whole(tmp_path):
    """`crm-ltv data` wrote transactions.csv in place: a disk that filled left part of it, its
    last row cut mid-row, which `make data` took for done and `features` loaded without a word
    (tester I). Here the file size limit fails the write (EFBIG, no root needed)."""
    home = new_home(tmp_path / "home")
    sample = home / "data/sample"
    assert run(home, "data", "--n-customers", "300", "--seed", "3").returncode == 0
    earlier = {p.name: p.read_bytes() for p in sample.iterdir()}
    failed = run(home, "data", "--n-customers", "600", "--seed", "4", max_file_size=64_000)
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert {p.name: p.read_bytes() for p in sample.iterdir()} == earlier  # and no part file
    fresh = new_home(tmp_path / "fresh")
    failed = run(fresh, "data", "--n-customers", "300", max_file_size=64_000)
    assert failed.returncode != 0 and list((fresh / "data/sample").iterdir()) == []


def test_a_rejects_list_too_big_to_write_is_not_left_in_part(home):
    """The rejects report was written in place: a write that failed left the first rows of the
    list, read as all of them."""
    rows = "".join(f"{i:06d},2024-01-02 10:00:00,not-an-amount-{'x' * 40}\n" for i in range(2000))
    (home / "bad.csv").write_text("customer_id,timestamp,amount\n" + rows)
    failed = run(home, "features", "--transactions", str(home / "bad.csv"), max_file_size=32_000)
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert list((home / "reports/rejects").iterdir()) == []


def test_a_sample_on_a_disk_that_fills_leaves_no_table(tmp_path):
    """A real full disk: transactions.csv and customers.csv fit on it, the campaigns do not.
    Every table or none: a part of the sample is not one (ab would pair the new transactions
    with no campaigns, or with an earlier sample's)."""
    home = new_home(tmp_path)
    args = ("data", "--n-customers", "300", "--seed", "3")
    done, left = run_on_full_disk(home, home / "data", 120, *args)
    assert done.returncode != 0 and "No space left on device" in done.stderr
    assert left == []


def test_make_data_that_failed_is_run_again(tmp_path):
    """The next `make data` after a `crm-ltv data` that failed mid-write said "Nothing to be
    done" (tester I): make now deletes a target its failed recipe changed (`.DELETE_ON_ERROR`).
    A stand-in crm-ltv writes part of the file and fails, in a scratch copy of the checkout."""
    import os
    import subprocess

    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "configs", checkout / "configs")
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, checkout)
    for made in (*checkout.iterdir(), *checkout.glob("configs/*")):
        os.utime(made, (1e9, 1e9))  # older than the install below
    (checkout / ".venv/bin").mkdir(parents=True)
    (checkout / ".venv/.installed").touch()
    stand_in = checkout / ".venv/bin/crm-ltv"
    stand_in.write_text(
        "#!/bin/sh\nmkdir -p data/sample\n"
        "printf 'customer_id,timestamp\\n00007462,2025-01-17 14:3' > data/sample/transactions.csv\n"
        "exit 2\n"
    )
    stand_in.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CRM_LTV_HOME"}
    for _ in range(2):
        done = subprocess.run(
            ["make", "-C", str(checkout), "data"], cwd=checkout, capture_output=True, text=True,
            env={**env, "PWD": str(checkout)},
        )  # fmt: skip
        assert done.returncode != 0 and ".venv/bin/crm-ltv data" in done.stdout, done.stdout
        assert not (checkout / "data/sample/transactions.csv").exists(), done.stderr


def test_a_config_file_no_area_reads_is_warned_of_with_the_name_it_may_mean(tmp_path):
    """configs/trian.yaml or serve.yaml was ignored without a word: the defaults ran while
    the user took their settings for in effect."""
    home = new_home(tmp_path)
    (home / "configs/trian.yaml").write_text("snapshots: {horizon_days: 60}\n")
    (home / "configs/serve.yml").write_text("max_in_flight: 4\n")
    (home / "configs/notes.yaml").write_text("a: 1\n")
    (home / "configs/data.YAML").write_text("transactions: {}\n")
    done = run(home, "plan-ab", "--baseline-rate", "0.1", "--lift", "0.1")
    assert done.returncode == 0, done.stderr
    areas = "data, features, sample, train, tune, serving, nba, experiments"
    said = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert said == [
        f"warning: {home / 'configs' / name} is not read (configs/ holds {areas}: "
        f"<area>.yaml){meant}"
        for name, meant in [
            ("data.YAML", "; did you mean data.yaml?"),
            ("notes.yaml", ""),
            ("serve.yml", "; did you mean serving.yml?"),
            ("trian.yaml", "; did you mean train.yaml?"),
        ]
    ], done.stderr


def test_the_first_command_in_a_new_home_prints_no_mlflow_store_lines(tmp_path):
    """MLflow's INFO lines on creating its tables came amid the command's own output."""
    home = new_home(tmp_path)
    done = run(home, "plan-ab", "--baseline-rate", "0.1", "--lift", "0.1")
    assert done.returncode == 0 and (home / "mlflow.db").is_file(), done.stderr
    assert "Creating initial MLflow database tables" not in done.stderr, done.stderr
    assert "customers per group" in done.stdout
