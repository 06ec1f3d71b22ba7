"""The benchmark (bench/run.py) keeps working: its --smoke mode seeds two tiny data sets,
serves the ceiling and Chirp under gunicorn, logs in through the form, and measures every
endpoint with wrk for a second. What it measures is not checked here, only that it runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_program
from databases import TEST_DATABASE_URL
from databases import server_connection

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(tmp_path, *options):
    """Run ``bench/run.py --smoke`` with ``options``; return its report and raw numbers."""
    require_program("wrk")  # apt-get install wrk
    report, numbers = tmp_path / "report.md", tmp_path / "numbers.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--data", str(tmp_path / "data")]
        + ["--output", str(report), "--json", str(numbers), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return report.read_text(), json.loads(numbers.read_text())


@pytest.mark.slow
@pytest.mark.sqlite  # the PostgreSQL pass runs the test below instead
def test_the_benchmark_runs_in_smoke_mode(tmp_path):
    text, numbers = run_smoke(tmp_path)
    assert "on 127.0.0.1, SQLite " in text
    check_report(text, numbers)


@pytest.mark.slow
@pytest.mark.postgres
def test_the_benchmark_runs_on_postgresql(tmp_path):
    text, numbers = run_smoke(tmp_path, "--database", TEST_DATABASE_URL)
    assert "on 127.0.0.1, PostgreSQL " in text
    check_report(text, numbers)
    with server_connection() as connection, connection.cursor() as cursor:
        for size in ("smoke_small", "smoke_large"):
            cursor.execute(f'DROP DATABASE IF EXISTS "chirp_bench_{size}" WITH (FORCE)')


def check_report(text, numbers):
    """Fail unless the report and numbers cover every endpoint of both data sets."""
    assert "| — | hello world (ceiling) |" in text
    runs = numbers["runs"]
    assert set(runs) == {"smoke-small", "smoke-large"}
    for size, endpoints in runs.items():
        assert len(endpoints) == 18, size
        for name, row in endpoints.items():
            assert row["requests"] > 0 and row["non2xx"] == 0, (size, name)
            assert row["cpu_ms"] > 0, (size, name)
            assert f"| {size} | `{name}` |" in text
    assert text.count("×") == 18  # a growth ratio for every endpoint
