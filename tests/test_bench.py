"""The benchmark (bench/run.py) keeps working: its --smoke mode seeds two tiny data sets,
serves the ceiling and Chirp under gunicorn, logs in through the form, and measures every
endpoint with wrk for a second. What it measures is not checked here, only that it runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_program

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_benchmark_runs_in_smoke_mode(tmp_path):
    require_program("wrk")  # apt-get install wrk
    report, numbers = tmp_path / "report.md", tmp_path / "numbers.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--data", str(tmp_path / "data")]
        + ["--output", str(report), "--json", str(numbers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    assert "| — | hello world (ceiling) |" in text
    runs = json.loads(numbers.read_text())["runs"]
    assert set(runs) == {"smoke-small", "smoke-large"}
    for size, endpoints in runs.items():
        assert len(endpoints) == 17, size
        for name, row in endpoints.items():
            assert row["requests"] > 0 and row["non2xx"] == 0, (size, name)
            assert row["cpu_ms"] > 0, (size, name)
            assert f"| {size} | `{name}` |" in text
    assert text.count("×") == 17  # a growth ratio for every endpoint
