"""A real gunicorn serving Chirp on 127.0.0.1, for tests that need a live server.

    with running_gunicorn(tmp_path, workers=4) as server:
        requests.get(server.url + "/healthz")
        worker_pids(server.pid)

Each server gets its own database (a SQLite file in ``tmp_path``, or on PostgreSQL a
database of its own, see tests/databases.py) and a free port, and is always stopped (the
whole process group) when the block ends, however it ends.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import requests
from databases import ON_POSTGRES
from databases import database_name
from databases import drop_database
from databases import new_database_url

ROOT = Path(__file__).resolve().parent.parent
# Generous: a cold start imports Flask, peewee, Faker... in every worker on a busy CI box.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class LiveServer(NamedTuple):
    """A running gunicorn: its base URL, its master's pid, its database's URL (SQLite or
    PostgreSQL, for playhouse.db_url.connect) and its log file."""

    url: str
    pid: int
    database_url: str
    log: Path

    def read_log(self):
        """Return everything gunicorn and its workers have written to stdout and stderr."""
        return self.log.read_text(errors="replace")


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pids(master_pid):
    """Return the set of pids whose parent is ``master_pid`` (gunicorn's workers), from /proc."""
    return {
        pid for pid, fields in _proc_stats() if int(fields[1]) == master_pid and fields[0] != "Z"
    }


def _proc_stats():
    """Yield ``(pid, fields)`` for every process, where ``fields`` are /proc/PID/stat's
    fields from the state on: state, parent pid, process group, ..."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name (field 2) may contain spaces and parentheses: split after
        # its last closing parenthesis.
        yield int(entry.name), stat[stat.rindex(")") + 2 :].split()


def wait_for(predicate, timeout, interval=0.05):
    """Call ``predicate`` until it returns a truthy value and return that value; return
    None if ``timeout`` seconds pass first. For waiting on servers, not for assertions."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result or None
        time.sleep(interval)


def _healthy(url, statuses=(200,)):
    """Return True if ``url``/healthz answers with one of ``statuses``. The master listens
    before its workers have imported the app, so a refused or slow connection just means
    "not yet"."""
    try:
        with requests.get(url + "/healthz", timeout=5) as response:
            return response.status_code in statuses
    except (requests.ConnectionError, requests.Timeout):
        return False


@contextlib.contextmanager
def running_gunicorn(tmp_path, workers=4, env=None, args=(), upgrade=True, database_url=None):
    """Run ``gunicorn -w workers main:app`` on a free 127.0.0.1 port; yield a LiveServer.

    The server uses ``database_url``, by default a new database of its own (``tmp_path/
    chirp.db``, or a new PostgreSQL database dropped afterwards), and a test
    ``SECRET_KEY``; ``env`` adds or overrides environment variables and ``args`` adds
    gunicorn options (two servers given one ``database_url`` share it, as two hosts do).
    With ``upgrade`` the database is first brought up to date with
    `python main.py db upgrade`, as in production; without it /healthz may answer 503
    (migrations pending). Returns once ``/healthz`` answers; raises RuntimeError, with
    gunicorn's log, if it does not within START_TIMEOUT seconds. On exit the whole process
    group gets SIGTERM, then SIGKILL if it has not stopped within STOP_TIMEOUT seconds.
    """
    tmp_path = Path(tmp_path)
    own_database = database_url is None
    if own_database:
        database_url = new_database_url(tmp_path)
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    full_env = dict(os.environ)
    full_env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="live-server-test-key",
        PYTHONUNBUFFERED="1",
    )
    full_env.update(env or {})
    if upgrade:
        migrate(full_env)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        # gunicorn 27 opens a control socket in ~/.gunicorn by default; two test servers
        # (or a developer's own gunicorn) would fight over it.
        "--no-control-socket",
        # Idle sync workers stop at once; don't let a stuck one hold a test for 30 s.
        "--graceful-timeout=5",
        *args,
        "main:app",
    ]
    with open(log_path, "wb") as log:
        # A new session makes the master a process-group leader, so stopping the group
        # also stops workers that outlive a dead master.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        server = LiveServer(f"http://127.0.0.1:{port}", process.pid, database_url, log_path)
        # "Listening at" proves the port is ours: if another process took it since
        # free_port(), gunicorn cannot bind and /healthz might answer from someone else.
        listening = f"Listening at: {server.url} "

        def started():
            return process.poll() is not None or (
                listening in server.read_log()
                and _healthy(server.url, (200,) if upgrade else (200, 503))
            )

        if not wait_for(started, START_TIMEOUT):
            raise RuntimeError(f"gunicorn did not answer /healthz:\n{server.read_log()}")
        if process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {process.returncode} at start:\n{server.read_log()}"
            )
        yield server
    finally:
        _stop(process)
        if own_database and ON_POSTGRES:
            drop_database(database_name(database_url))


def migrate(env):
    """Run `python main.py db upgrade` with ``env``, as an operator does before starting
    gunicorn (its workers never create tables). Raises RuntimeError with its output."""
    result = subprocess.run(
        [sys.executable, "main.py", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"db upgrade failed:\n{result.stdout}{result.stderr}")


def _stop(process):
    """Stop ``process``'s whole process group: SIGTERM, then SIGKILL; reap the master."""
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
        # The master is gone; make sure no worker of its group lingers. The group id
        # cannot be reused while a member is alive, so this only reaches our processes.
        if _group_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return


def _group_members(pgid):
    """Return the pids of live processes in process group ``pgid``, from /proc."""
    return {pid for pid, fields in _proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"}
