"""Running Chirp in production: database errors caused by the request, the CI's own rules
(no silently skipped test), and the PostgreSQL pass of the suite."""

import logging
import multiprocessing
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import require_program
from databases import ON_POSTGRES
from live_server import running_gunicorn
from live_server import wait_for
from peewee import DataError
from peewee import PostgresqlDatabase

from app import MAX_ID
from app import db
from models import Message

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["/public/", "/api/message/"])
def test_a_value_the_database_refuses_is_a_400_not_a_500(app, path):
    """PostgreSQL raises DataError for a value its column cannot hold (SQLite stores
    anything): the request was wrong, so it is a 400, JSON under /api/."""
    with app.test_request_context(path):
        response = app.make_response(app.handle_user_exception(DataError("value too long")))
    assert response.status_code == 400
    if path.startswith("/api/"):
        assert response.get_json() == {"error": "A value in the request does not fit its field."}


def test_ids_beyond_the_databases_integers_are_404s(client):
    """Ids are bounded by the database's integer type: 64-bit on SQLite, 32-bit
    (serial) on PostgreSQL, where a larger number would be an error, not "no such row"."""
    assert MAX_ID == (2**31 - 1 if ON_POSTGRES else 2**63 - 1)
    assert client.get(f"/api/message/{MAX_ID + 1}/").status_code == 404
    assert client.get(f"/api/message/{MAX_ID}/").status_code == 404


def test_the_suite_runs_on_the_database_it_was_asked_for(app):
    """`.ci/with-postgres` sets CHIRP_TEST_DATABASE: then every test's database really
    is PostgreSQL, and not SQLite by mistake."""
    assert isinstance(db.database, PostgresqlDatabase) == ON_POSTGRES
    assert bool(os.environ.get("CHIRP_TEST_DATABASE")) == ON_POSTGRES


def test_skip_probe():
    """Skips when CHIRP_TEST_SKIP_PROBE is set, like a test whose program is missing; run
    by the next test."""
    if os.environ.get("CHIRP_TEST_SKIP_PROBE"):
        require_program("chirp-no-such-program")


@pytest.mark.slow  # a new pytest process each
@pytest.mark.parametrize("require_all, outcome", [("1", "1 failed"), ("", "1 skipped")])
def test_under_chirp_require_all_a_skip_is_a_failure(require_all, outcome):
    """CI sets CHIRP_REQUIRE_ALL, so a missing redis-server or Chromium turns the build
    red instead of quietly leaving their tests out."""
    env = dict(os.environ, CHIRP_REQUIRE_ALL=require_all, CHIRP_TEST_SKIP_PROBE="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "ignore", "-rA"]
        + ["tests/test_operations.py::test_skip_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "chirp-no-such-program is not installed" in result.stdout


def request_lines(caplog):
    """Return the messages of RequestLog's one-line-per-request records."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]


def test_every_request_is_one_log_line_with_id_method_path_status_and_duration(client, caplog):
    with caplog.at_level(logging.INFO, logger="app"):
        response = client.get("/users/nobody/")
        response.close()  # the line is written once the response is sent
    request_id = response.headers["X-Request-ID"]
    [line] = request_lines(caplog)
    match = re.fullmatch(r"request (\S+) GET /users/nobody/ 404 (\d+\.\d) ms", line)
    assert match, line
    assert match.group(1) == request_id and float(match.group(2)) >= 0


def test_the_logged_path_cannot_break_or_forge_a_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="app"):
        client.get("/users/a%0d%0arequest%20forged%20GET%20/%20200\\%C3%A9/").close()
    [line] = request_lines(caplog)
    assert "\n" not in line and "\r" not in line
    escaped = "/users/a\\x0d\\x0arequest\\x20forged\\x20GET\\x20/\\x20200\\x5c\\xc3\\xa9/"
    assert f" GET {escaped} 404 " in line


@pytest.mark.parametrize(
    "incoming, kept",
    [("edge-7f3a.42:9", True), ("x" * 128, True), ("x" * 129, False), ("a b", False)]
    + [("evil\tline", False), ("<script>", False), ("-starts-with-dash", False), ("", False)],
)
def test_a_sane_incoming_request_id_is_kept(client, caplog, incoming, kept):
    with caplog.at_level(logging.INFO, logger="app"):
        response = client.get("/public/", headers={"X-Request-ID": incoming})
        response.close()
    request_id = response.headers["X-Request-ID"]
    assert (request_id == incoming) == kept
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert request_lines(caplog)[0].startswith(f"request {request_id} GET /public/ 200 ")


def test_an_error_logs_its_traceback_with_the_request_lines_id(app, client, caplog, monkeypatch):
    def crash(cls):
        raise RuntimeError("boom")

    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # as in production
    monkeypatch.setattr(Message, "public_timeline", classmethod(crash))
    with caplog.at_level(logging.INFO, logger="app"):
        response = client.get("/public/", headers={"X-Request-ID": "trace-me"})
        response.close()
    assert response.status_code == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info and "trace-me" in errors[0].getMessage()
    assert request_lines(caplog) == [request_lines(caplog)[0]]
    assert request_lines(caplog)[0].startswith("request trace-me GET /public/ 500 ")


def test_gunicorn_conf_sizes_workers_from_the_cores(monkeypatch):
    monkeypatch.delenv("CHIRP_WORKERS", raising=False)
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["workers"] == 2 * multiprocessing.cpu_count() + 1
    assert settings["timeout"] > 0 and settings["graceful_timeout"] > 0
    monkeypatch.setenv("CHIRP_WORKERS", "3")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"] == 3


@pytest.mark.slow
def test_gunicorn_conf_logs_requests_with_their_id_and_warns_about_memory_limits(tmp_path):
    """The production command: gunicorn's access line and Chirp's own line carry the same
    request id, and several workers on memory:// rate limits are warned about."""
    config = ("--config", str(ROOT / "gunicorn.conf.py"))
    with running_gunicorn(tmp_path, workers=2, args=config) as server:
        headers = {"X-Request-ID": "conf-test"}
        assert requests.get(server.url + "/users/nobody/", headers=headers).status_code == 404
        # gunicorn writes its access line after the response, so after Chirp's own line
        access = r'127\.0\.0\.1 conf-test "GET /users/nobody/ HTTP/1\.1" 404 \d+ \d+ms'
        log = wait_for(lambda: re.search(access, server.read_log()) and server.read_log(), 10)
    assert log is not None and re.search(access, log)
    assert re.search(r"request conf-test GET /users/nobody/ 404 \d+\.\d ms", log)
    assert "2 workers keep separate rate-limit counters (memory://)" in log
