"""Chirp's benchmark: what each page costs, against Flask's own ceiling, on small and large data.

    python bench/run.py                      small and large data sets, 5 s per endpoint, 2 rounds
    python bench/run.py --sizes large -d 5   one data set, shorter runs
    python bench/run.py --smoke              tiny data, 1 s per endpoint (CI keeps it working)
    python bench/run.py --output bench/latest.md
    python bench/run.py --database postgresql://postgres@127.0.0.1:5432/   on PostgreSQL
    .ci/with-postgres sh -c 'python bench/run.py --database "$CHIRP_TEST_DATABASE"'
                                             the same on a throwaway PostgreSQL server

Needs the test tools (requirements-dev.txt: requests) and wrk (Debian package `wrk`).

Each run starts the hello-world ceiling (bench/hello.py) and then Chirp under the same
``gunicorn -w 2`` on 127.0.0.1, seeds each data set with ``python main.py seed`` (into
``bench/data/``, reused by later runs unless ``--reseed``; with ``--database URL`` of a
PostgreSQL server, into its databases ``chirp_bench_<data set>``, created when missing),
logs in through the real login
form, makes a real API token, and drives each endpoint with ``wrk`` for a fixed time at a
fixed concurrency. Server CPU comes from /proc (utime + stime of gunicorn's master and
workers, and of workers it has already reaped), so "CPU ms per request" is what the server
spent, whoever else shares the machine. Before each measurement the script waits for a
quiet machine, and it measures again (up to twice) when other processes used more than
``--noise`` cores meanwhile. Every data set has its own server, all running at once: each
endpoint is measured on the small set and straight after on the large one, so the growth
ratio compares measurements made under the same conditions; the whole sweep runs
``--rounds`` times and the lowest CPU per request of each row is kept (interference from
other processes only ever adds to it).

Columns: req/s; % of the ceiling by req/s and by CPU (the ceiling's CPU ms per request
divided by the endpoint's); p50 and p99 latency; responses that were not 2xx or 3xx;
server CPU ms per request; peak resident memory of the largest worker; growth = CPU per
request on the large set divided by that on the small one. This is not a test: the test
suite only runs ``--smoke`` (tests/test_bench.py).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import psycopg2
import requests
from playhouse.db_url import parse

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READER = "bench_reader"
PASSWORD = "bench-reader-password"
# How many of the most prolific people the benchmark's reader follows (their home timeline).
READER_FOLLOWS = 100
# python main.py seed arguments of each data set.
DATA_SETS = {
    "small": ["--size", "small"],
    "large": ["--size", "large"],
    "smoke-small": ["--users", "30", "--messages", "300", "--follows", "100"],
    "smoke-large": ["--users", "60", "--messages", "1200", "--follows", "300"],
}
# Chirp's connection pool on PostgreSQL, as docs/deploy.md configures it in production.
POOL_OPTIONS = "max_connections=4&stale_timeout=300"
# Generous limits: the benchmark's single client must never be throttled (a 429 is cheap
# and would flatter the numbers), but the limiter stays in the request path.
SERVER_ENV = {
    "FLASK_API_RATE_LIMIT": "1000000000 per minute",
    "FLASK_LOGIN_RATE_LIMIT": "1000 per minute",
    "FLASK_LOGIN_ADDRESS_RATE_LIMIT": "1000 per minute",
    "PYTHONUNBUFFERED": "1",
}

# Runs inside the seeded database: the reader follows the most prolific people and gets a
# token; prints what the endpoints need as JSON.
PREPARE = """
import json
import main
from peewee import fn
from app import db
from models import ApiToken, Message, Relationship, User
with db.database.connection_context():
    me = User.get(User.username == %(reader)r)
    # The conversation pages: a popular message of the reader's, liked by up to 200
    # people and answered by 50 (the reader's notifications), and 100 messages the reader
    # liked. Made once: later runs find the message.
    hot = me.messages.order_by(Message.id).first()
    if hot is None:
        hot = me.post("a hot take")
        fans = User.select().where(User.id != me.id, User.active).limit(200)
        for number, fan in enumerate(fans):
            fan.like(hot)
            if number < 50:
                fan.reply(hot, "@%(reader)s a reply")
        for message in Message.select().order_by(Message.id.desc()).limit(100):
            me.like(message)
    by_count = (Message.select(Message.user, fn.COUNT(Message.id).alias("n"))
                .group_by(Message.user).order_by(fn.COUNT(Message.id).desc()))
    ranked = [row.user_id for row in by_count.limit(%(follows)d + 1) if row.user_id != me.id]
    Relationship.insert_many([{"from_user": me.id, "to_user": uid} for uid in ranked[:%(follows)d]]
                             ).on_conflict_ignore().execute()
    prolific = User.get_by_id(ranked[0])
    total = Message.select().count()
    def deep(query, depth):
        row = query.order_by(Message.id.desc()).offset(depth).limit(1).first()
        return row.id if row else None
    own = Message.select(Message.id).where(Message.user == prolific)
    info = {
        "prolific": prolific.username,
        "public_deep": deep(Message.select(Message.id), min(10000, total // 2)),
        "prolific_deep": deep(own, min(10000, own.count() // 2)),
        "token": ApiToken.issue(me, "bench")[1],
        "messages": total,
        # The same old page number on both full data sets (offset 5 000): its redirect's
        # cost grows with the page number, which is capped (MAX_PAGE_OFFSET), not the data.
        "legacy_page": max(2, min(250, total // 40)),
        "hot": hot.id,
    }
print(json.dumps(info))
"""


def endpoints(info):
    """Return ``[(name, path, credentials)]``: what is measured. ``credentials`` is None,
    "session" (logged in through the form) or "token" (Authorization: Bearer)."""
    return [
        # No database work: what Flask, the extensions and Chirp's request hooks cost.
        ("/avatars/<id>.svg (floor)", "/avatars/1.svg", None),
        ("/public/", "/public/", None),
        ("/public/ older page", f"/public/?before={info['public_deep']}", None),
        ("/public/?page=N (301)", f"/public/?page={info['legacy_page']}", None),
        ("/users/<prolific>/", f"/users/{info['prolific']}/", None),
        (
            "/users/<prolific>/ older page",
            f"/users/{info['prolific']}/?before={info['prolific_deep']}",
            None,
        ),
        ("/users/", "/users/", None),
        ("/private/", "/private/", "session"),
        ("/api/message/", "/api/message/", None),
        ("/api/relationship/", "/api/relationship/", None),
        ("/api/timeline/public/", "/api/timeline/public/", None),
        ("/api/timeline/home/", "/api/timeline/home/", "token"),
        ("/admin/message/", "/admin/message/", "session"),
        ("/messages/<popular>/ (thread)", f"/messages/{info['hot']}/", "session"),
        ("/users/<reader>/likes/", f"/users/{READER}/likes/", "session"),
        ("/notifications/", "/notifications/", "session"),
        ("/api/message/<popular>/context/", f"/api/message/{info['hot']}/context/", None),
        ("/api/notifications/", "/api/notifications/", "token"),
    ]


# ---------------------------------------------------------------- processes and /proc


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_stat(pid):
    """Return /proc/PID/stat's fields after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def server_pids(master):
    """Return gunicorn's master pid and its workers' pids."""
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = process_stat(entry.name)
            if fields and int(fields[1]) == master:
                pids.append(int(entry.name))
    return pids


def cpu_seconds(master):
    """Return the CPU seconds (user + system) gunicorn's ``master`` and its workers have
    used so far, counting workers that have already exited: gunicorn restarts workers on
    its own, and a reaped worker's time moves into the master's cutime + cstime. Counting
    only the workers alive at the start would lose it (a negative measurement)."""
    fields = process_stat(master)
    total = sum(int(value) for value in fields[11:15]) if fields else 0
    for pid in server_pids(master)[1:]:
        worker = process_stat(pid)
        if worker:
            total += int(worker[11]) + int(worker[12])
    return total / CLOCK_TICKS


def peak_rss_mb(pids):
    """Return the largest peak resident set size (VmHWM) among ``pids``, in MB."""
    peak = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            peak = max(peak, int(match[1]) if match else 0)
    return peak / 1024


def database_server_seconds():
    """Return the CPU seconds (user + system) PostgreSQL's processes on this machine have
    used so far: its backends, and through the postmaster's cutime + cstime those that
    have exited. With ``--database`` the benchmark's requests make that work, so it is
    not counted as other processes' noise (a measurement would be repeated for it)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "postgres":
                fields = process_stat(entry.name) or [0] * 15
                total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def machine_busy_seconds():
    """Return the CPU seconds every process on the machine has used since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def wait_for_quiet(max_cores, timeout):
    """Wait (up to ``timeout`` seconds) until the machine uses less than ``max_cores``
    cores over one second; return the cores in use at the last look."""
    if timeout <= 0:
        return None
    deadline = time.monotonic() + timeout
    while True:
        before = machine_busy_seconds()
        time.sleep(1)
        busy = machine_busy_seconds() - before
        if busy < max_cores or time.monotonic() >= deadline:
            return busy


@contextlib.contextmanager
def gunicorn(app_spec, directory, env, log_path, probe="/"):
    """Run ``gunicorn -w 2 app_spec`` in ``directory`` on a free port; yield
    ``(base_url, master_pid)``; stop the whole process group afterwards."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers=2",
        f"--bind=127.0.0.1:{port}",
        "--no-control-socket",
        "--graceful-timeout=5",
        app_spec,
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + probe, timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {log_path}")
            time.sleep(0.2)
        # Warm both workers (imports, first-request work) before anything is measured.
        for _ in range(20):
            requests.get(url + probe, timeout=10)
        yield url, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# ---------------------------------------------------------------- wrk


def seconds(text):
    """Return a wrk duration (``950.00us``, ``2.31ms``, ``1.20s``) in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(match[1]), match[2]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output):
    """Return requests, req/s, p50 and p99 (ms) and non-2xx/3xx count from wrk's output."""
    requests_done = int(re.search(r"(\d+) requests in", output)[1])
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    p50 = seconds(re.search(r"\s50%\s+(\S+)", output)[1])
    p99 = seconds(re.search(r"\s99%\s+(\S+)", output)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests": requests_done,
        "rps": rate,
        "p50": p50,
        "p99": p99,
        "non2xx": int(errors[1]) if errors else 0,
        "socket_errors": socket_errors[1] if socket_errors else "",
    }


def measure(url, headers, master, options):
    """Drive ``url`` with wrk for ``options.duration`` seconds; return its numbers plus
    the server's CPU ms per request, its peak RSS and how many cores other processes
    used meanwhile (``noise``). A noisy measurement is repeated, up to twice; the
    quietest is kept."""
    best = None
    for _ in range(3):
        wait_for_quiet(options.noise, options.quiet_timeout)
        command = ["wrk", f"-t{options.threads}", f"-c{options.connections}"]
        command += [f"-d{options.duration}s", "--latency", "--timeout", "10s"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        server_before = cpu_seconds(master)
        database_before = database_server_seconds() if options.database else 0
        machine_before = machine_busy_seconds()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        output = subprocess.run(command + [url], capture_output=True, text=True, check=True)
        elapsed = time.monotonic() - started
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = cpu_seconds(master) - server_before
        client = (children_after.ru_utime - children_before.ru_utime) + (
            children_after.ru_stime - children_before.ru_stime
        )
        database = database_server_seconds() - database_before if options.database else 0
        others = machine_busy_seconds() - machine_before - server - client - database
        result = parse_wrk(output.stdout)
        result["cpu_ms"] = 1000 * server / max(result["requests"], 1)
        result["noise"] = max(0.0, others / elapsed)
        result["rss_mb"] = peak_rss_mb(server_pids(master)[1:])
        if best is None or result["noise"] < best["noise"]:
            best = result
        if result["noise"] <= options.noise:
            break
    return best


# ---------------------------------------------------------------- Chirp


def chirp_env(database_url):
    """The environment of every Chirp command and server for ``database_url``."""
    return {**SERVER_ENV, "DATABASE_URL": database_url, "SECRET_KEY": "bench-secret-key"}


def postgres_admin(server_url):
    """Return an autocommit psycopg2 connection to the ``postgres`` database of the server
    ``server_url`` (a postgresql:// URL; its database name is ignored), for CREATE and
    DROP DATABASE."""
    params = parse(server_url)
    params.pop("database", None)
    connection = psycopg2.connect(dbname="postgres", **params)
    connection.autocommit = True
    return connection


def data_set_database(data_set, options):
    """Return ``(database_url, fresh)`` for ``data_set``: a SQLite file in ``--data``, or
    with ``--database`` the PostgreSQL database ``chirp_bench_<data set>`` on that server,
    through a connection pool as docs/deploy.md advises (without one, every request would
    start a PostgreSQL backend). ``fresh`` is True when it was (re)made empty and must be
    seeded: on ``--reseed`` or when it did not exist yet."""
    if not options.database:
        data = Path(options.data)
        data.mkdir(parents=True, exist_ok=True)
        database = data / f"{data_set}.db"
        fresh = options.reseed or not database.exists()
        if fresh:
            for path in data.glob(f"{data_set}.db*"):
                path.unlink()
        return f"sqlite:///{database}", fresh
    name = "chirp_bench_" + re.sub(r"\W", "_", data_set)
    connection = postgres_admin(options.database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            fresh = options.reseed or cursor.fetchone() is None
            if fresh:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    url = urlsplit(options.database)._replace(scheme="postgresql+pool", path="/" + name)
    return urlunsplit(url._replace(query=POOL_OPTIONS)), fresh


def run_main(env, *args, stdin=None):
    """Run ``python main.py ARGS`` with ``env``; return its standard output."""
    result = subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"main.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def prepare(data_set, options):
    """Seed ``data_set`` into bench/data (unless already there), make the reader, its
    follows and token; return ``(env, info)``."""
    database_url, fresh = data_set_database(data_set, options)
    env = chirp_env(database_url)
    if fresh:
        started = time.monotonic()
        run_main(env, "db", "upgrade")
        run_main(env, "seed", *DATA_SETS[data_set], "--seed", "1")
        print(f"  seeded {data_set} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    else:
        run_main(env, "db", "upgrade")
    run_main(env, "create-admin", READER, "--password-stdin", stdin=PASSWORD + "\n")
    script = PREPARE % {"reader": READER, "follows": READER_FOLLOWS}
    output = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if options.database:
        vacuum(database_url)
    return env, json.loads(output.strip().splitlines()[-1])


def vacuum(database_url):
    """``VACUUM ANALYZE`` the PostgreSQL database at ``database_url``, as autovacuum would
    after a bulk load: fresh statistics for the planner, and visibility maps for
    index-only scans. Measured straight after ``seed``, autovacuum ran during the first
    endpoints instead, and their p99 reached seconds."""
    params = parse(database_url)
    wanted = ("database", "user", "password", "host", "port")
    connection = psycopg2.connect(**{k: v for k, v in params.items() if k in wanted})
    connection.autocommit = True  # VACUUM cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        connection.close()


def log_in(url):
    """Log in as the reader through the real login form; return the Cookie header."""
    session = requests.Session()
    form = session.get(url + "/accounts/login/", timeout=10).text
    token = re.search(r'name="_csrf_token" value="([^"]+)"', form)[1]
    response = session.post(
        url + "/accounts/login/",
        data={"username": READER, "password": PASSWORD, "_csrf_token": token},
        timeout=30,
    )
    if "/accounts/login/" in response.url:
        raise RuntimeError("Logging in through the form failed.")
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


@contextlib.contextmanager
def chirp_servers(sizes, options, log_path):
    """Seed and prepare every data set in ``sizes``, and serve each under its own
    ``gunicorn -w 2``; yield ``{data set: (url, master pid, credentials, info)}``, where
    ``credentials`` maps each kind of endpoint (see ``endpoints``) to its headers. All
    servers run at once, so an endpoint can be measured on every data set back to back;
    only the one being measured is busy."""
    with contextlib.ExitStack() as stack:
        servers = {}
        for size in sizes:
            print(f"data set: {size}", file=sys.stderr)
            env, info = prepare(size, options)
            url, master = stack.enter_context(
                gunicorn("main:app", ROOT, env, log_path, probe="/healthz")
            )
            credentials = {
                None: {},
                "session": {"Cookie": log_in(url)},
                "token": {"Authorization": f"Bearer {info['token']}"},
            }
            servers[size] = (url, master, credentials, info)
        yield servers


def bench_chirp(servers, ceiling, options):
    """Measure every endpoint on every data set; return ``{data set: {endpoint: numbers}}``.

    Each endpoint is measured on all data sets one after the other, so the growth ratio
    compares measurements taken under the same machine conditions, and the whole sweep is
    repeated ``options.rounds`` times, keeping each (data set, endpoint)'s lowest CPU per
    request: what other processes add can only raise it."""
    runs = {size: {} for size in servers}
    for number in range(options.rounds):
        print(f"round {number + 1} of {options.rounds}", file=sys.stderr)
        names = [name for name, _, _ in endpoints(next(iter(servers.values()))[3])]
        for name in names:
            if options.only and options.only not in name:
                continue
            for size, (url, master, credentials, info) in servers.items():
                path, kind = {n: (p, k) for n, p, k in endpoints(info)}[name]
                result = measure_endpoint(url + path, credentials[kind], master, options)
                result["cpu_share"] = 100 * ceiling["cpu_ms"] / max(result["cpu_ms"], 1e-9)
                result["rps_share"] = 100 * result["rps"] / ceiling["rps"]
                kept = runs[size].get(name)
                if kept is None or result["cpu_ms"] < kept["cpu_ms"]:
                    runs[size][name] = result
                print(
                    f"  {size:12} {name:32} {result['rps']:8.0f} req/s "
                    f"{result['cpu_ms']:7.2f} CPU ms/req  p99 {result['p99']:6.1f} ms",
                    file=sys.stderr,
                )
    return runs


def measure_endpoint(url, headers, master, options):
    """Check that ``url`` answers below 400, then ``measure`` it.

    Raises RuntimeError when it does not: an error page is cheap and would flatter the
    numbers."""
    check = requests.get(url, headers=headers, timeout=30, allow_redirects=False)
    if check.status_code >= 400:
        raise RuntimeError(f"{url} answered {check.status_code} before measuring")
    return measure(url, headers, master, options)


# ---------------------------------------------------------------- report


def machine_description():
    """Return the CPU model, core count and Python version, as one line (the database's
    is in database_description)."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        match = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        model = match[1] if match else model
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def database_description(options):
    """Return which database the run used, with its version: "SQLite 3.40.1" or
    "PostgreSQL 15.18"."""
    if not options.database:
        return f"SQLite {sqlite3.sqlite_version}"
    connection = postgres_admin(options.database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    finally:
        connection.close()


def table(ceiling, runs, sizes):
    """Return the Markdown results table."""
    lines = [
        "| data | endpoint | req/s | % ceiling (req/s) | % ceiling (CPU) | p50 ms | p99 ms "
        "| non-2xx/3xx | CPU ms/req | peak RSS MB | growth |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| — | hello world (ceiling) | {ceiling['rps']:.0f} | 100 % | 100 % "
        f"| {ceiling['p50']:.2f} | {ceiling['p99']:.2f} | {ceiling['non2xx']} "
        f"| {ceiling['cpu_ms']:.2f} | {ceiling['rss_mb']:.0f} | |",
    ]
    first, last = sizes[0], sizes[-1]
    for size in sizes:
        for name, r in runs[size].items():
            growth = ""
            if size == last and len(sizes) > 1 and name in runs[first]:
                growth = f"{r['cpu_ms'] / max(runs[first][name]['cpu_ms'], 1e-9):.2f}×"
            lines.append(
                f"| {size} | `{name}` | {r['rps']:.0f} | {r['rps_share']:.1f} % "
                f"| {r['cpu_share']:.1f} % | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} "
                f"| {r['cpu_ms']:.2f} | {r['rss_mb']:.0f} | {growth} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small,large", help="data sets, comma-separated")
    parser.add_argument("-d", "--duration", type=int, default=5, help="seconds per endpoint")
    parser.add_argument(
        "--rounds", type=int, default=2, help="sweeps; the lowest CPU per request is kept"
    )
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.3, help="cores others may use")
    parser.add_argument("--quiet-timeout", type=float, default=60, help="seconds to wait")
    parser.add_argument("--data", default=str(BENCH / "data"), help="where data sets live")
    parser.add_argument(
        "--database",
        help="a PostgreSQL server's URL (postgresql://user@host:port/): run on PostgreSQL, "
        "in its databases chirp_bench_<data set>, instead of SQLite files in --data",
    )
    parser.add_argument("--reseed", action="store_true", help="seed the data sets afresh")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1 s per endpoint")
    parser.add_argument("--only", help="measure only endpoints whose name contains this")
    parser.add_argument("--output", help="also write the report (Markdown) to this file")
    parser.add_argument("--json", help="also write the raw numbers (JSON) to this file")
    options = parser.parse_args(argv)
    if options.smoke:  # checks that the benchmark works, not what it measures
        options.sizes, options.duration, options.rounds = "smoke-small,smoke-large", 1, 1
        options.quiet_timeout, options.noise = 0, float("inf")
    sizes = options.sizes.split(",")
    unknown = [size for size in sizes if size not in DATA_SETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(DATA_SETS)}")
    log_path = Path(options.data) / "gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)

    print("ceiling: bench/hello.py", file=sys.stderr)
    with gunicorn("hello:app", BENCH, {}, log_path) as (url, master):
        rounds = [measure(url + "/", {}, master, options) for _ in range(options.rounds)]
        ceiling = min(rounds, key=lambda result: result["cpu_ms"])
    print(f"  {ceiling['rps']:.0f} req/s, {ceiling['cpu_ms']:.2f} CPU ms/req", file=sys.stderr)
    with chirp_servers(sizes, options, log_path) as servers:
        runs = bench_chirp(servers, ceiling, options)
        infos = {size: server[3] for size, server in servers.items()}

    report = "\n".join(
        [
            f"Run {started:%Y-%m-%d %H:%M} UTC on {machine_description()}.",
            f"`gunicorn -w 2` on 127.0.0.1, {database_description(options)}; "
            f"wrk -t{options.threads} "
            f"-c{options.connections}, {options.duration} s per endpoint, "
            f"best of {options.rounds} round(s), data sets measured back to back.",
            "",
            table(ceiling, runs, sizes),
            "",
        ]
    )
    print(report)
    if options.output:
        Path(options.output).write_text(report)
    if options.json:
        document = {"ceiling": ceiling, "runs": runs, "data": infos, "started": str(started)}
        Path(options.json).write_text(json.dumps(document, indent=1, default=str))
    noisy = [(size, name) for size in sizes for name, r in runs[size].items() if r["non2xx"] > 0]
    return 1 if noisy else 0


if __name__ == "__main__":
    sys.exit(main())
