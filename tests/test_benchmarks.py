"""The benchmark scripts' command lines: mistakes are usage errors before any work (they
trained for minutes and printed NaN, or ended in a traceback), and --help works everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("script", "args", "said"),
    [
        ("bench_real.py", ["--origins", "2011-03-12"], "is not ORIGIN:HORIZON"),
        ("bench_real.py", ["--origins", "2011-03-12:90", "2011-03-12:90"], "each pair once"),
        ("bench_real.py", ["--origins", "2011-13-12:90"], "is not a date"),
        ("bench_real.py", ["--seeds", "1", "1"], "each seed once"),
        ("bench_serve.py", ["--seconds", "0"], "give a number above 0"),
        ("bench_overload.py", ["--timeout", "-1"], "give a number above 0"),
        ("bench_overload.py", ["--max-in-flight", "0"], "at least 1"),
        ("bench_overload.py", ["--probe-seconds", "0"], "give a number above 0"),
    ],
)
def test_a_bad_option_is_a_usage_error_before_any_work(script, args, said):
    done = _bench(script, *args)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_bench_models_has_a_help_and_runs_nothing_for_it():
    """--help (or any option) started the whole benchmark: 87 s, exit 0."""
    done = _bench("bench_models.py", "--help")
    assert done.returncode == 0 and "usage: bench_models.py" in done.stdout
    assert "sample:" not in done.stdout
