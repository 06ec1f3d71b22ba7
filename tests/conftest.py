"""Test set-up: one import of main, and a fresh, fully migrated database for every test.

The database is a throwaway SQLite file, or on PostgreSQL (``CHIRP_TEST_DATABASE``, see
tests/databases.py and ``.ci/with-postgres``) a fresh copy of a migrated template database.
Tests marked ``sqlite`` only make sense on SQLite and are left out of the PostgreSQL pass;
tests marked ``postgres`` run only in it.

With ``CHIRP_REQUIRE_ALL=1`` (CI), a test that would be skipped because an outside program
(redis-server, chromium, PostgreSQL's binaries...) is missing fails instead: CI must never
go green by leaving tests out.
"""

import base64
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import peewee
import pytest
import redis
from chromium import CHROMIUM
from chromium import CHROMIUM_ARGS
from chromium import Browser
from databases import ON_POSTGRES
from databases import TEST_DATABASE_URL
from databases import connection_parameters
from databases import database_name
from databases import pooled_url
from databases import recreate_database
from hypothesis import settings
from live_server import free_port
from playhouse.pool import PooledDatabase
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

# Two hypothesis profiles. "ci" is thorough and explores the same examples on every run, so
# a red build always means a regression; "dev" (the default on a laptop) draws a few new
# examples each run, to keep the fast tier fast. HYPOTHESIS_PROFILE=ci picks it by hand.
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") else "dev"
)
settings.register_profile("ci", derandomize=True, max_examples=100)
settings.register_profile("dev", max_examples=20)
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(thorough):
    """Return how many examples a costly property test draws: ``thorough`` under the "ci"
    profile, a fifth of it (at least 3) under "dev"."""
    return thorough if HYPOTHESIS_PROFILE == "ci" else max(3, thorough // 5)


# Before the one import of main: the app reads its configuration at import time. On
# PostgreSQL the app pools its connections (``postgresql+pool://``, as in production): a
# new PostgreSQL connection costs a server process, several milliseconds, and the test
# client would pay it on every request. tests/test_connections.py covers both schemes
# under gunicorn; live servers and commands get plain URLs of their own.
os.environ["DATABASE_URL"] = (
    pooled_url(TEST_DATABASE_URL)
    if ON_POSTGRES
    else "sqlite:///" + os.path.join(tempfile.mkdtemp(), "import.db")
)
os.environ["SECRET_KEY"] = "test-secret-key"

import main  # noqa: E402  the one import: wires every module
from app import db  # noqa: E402
from app import limiter  # noqa: E402
from models import MODELS  # noqa: E402
from models import ApiToken  # noqa: E402
from models import Message  # noqa: E402
from models import User  # noqa: E402
from models import migration_runner  # noqa: E402

PASSWORD = "correct-horse"
REQUIRE_ALL = os.environ.get("CHIRP_REQUIRE_ALL", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    """Leave out (deselect, not skip) the tests marked ``sqlite`` on PostgreSQL, and those
    marked ``postgres`` on SQLite."""
    other = "sqlite" if ON_POSTGRES else "postgres"
    kept = [item for item in items if item.get_closest_marker(other) is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CHIRP_REQUIRE_ALL, turn every skip into a failure."""
    report = yield
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but CHIRP_REQUIRE_ALL is set: {report.longrepr}"
    return report


def require_program(path):
    """Skip the calling test unless the program ``path`` (a name on PATH or an absolute
    path) exists; under CHIRP_REQUIRE_ALL the skip becomes a failure. Returns its path."""
    found = shutil.which(path)
    if found is None:
        pytest.skip(f"{path} is not installed")
    return found


@pytest.fixture
def live_server(app):
    """Serve the app on 127.0.0.1 at a free port from a thread; yield its base URL."""
    limiter.reset()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()
    limiter.reset()


@pytest.fixture
def browser(live_server):
    """A headless Chromium page (chromium.Browser) on ``live_server``. Skips (fails under
    CHIRP_REQUIRE_ALL) without Chromium."""
    executable = require_program(CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = chromium.new_context(java_script_enabled=True)
            yield Browser(context.new_page(), live_server)
            context.close()
        finally:
            chromium.close()


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway redis-server on 127.0.0.1 and a free port, without persistence,
    stopped afterwards; yields its URL. Skips (fails under CHIRP_REQUIRE_ALL) without
    redis-server."""
    program = require_program("redis-server")
    port = free_port()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [program, *arguments, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connection = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        connection.close()
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    """A database with every migration applied, built once, so the schema under test is
    exactly the one `python main.py db upgrade` makes. On SQLite, a file that each test
    gets a copy of. On PostgreSQL, the database of CHIRP_TEST_DATABASE itself, emptied
    between tests (fresh_database); returns what a clean one holds."""
    if ON_POSTGRES:
        recreate_database(database_name())
        db.database.init(database_name(), **connection_parameters())
        migration_runner().up()
        state = schema_state()
        # CREATE DATABASE ... TEMPLATE refuses a source that anyone is connected to.
        close_connections()
        # A pristine copy, for when a test changes the schema (downgrades, empties...).
        recreate_database(database_name() + "_template", template=database_name())
        return state
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    db.database.init(str(path))
    migration_runner().up()
    db.database.close()  # the last connection checkpoints the WAL into the file
    return path


def schema_state():
    """Return Chirp's PostgreSQL database's tables and applied migrations, as a tuple."""
    tables = tuple(sorted(db.database.get_tables()))
    cursor = db.database.execute_sql("SELECT name FROM schema_migration ORDER BY name")
    return tables, tuple(name for (name,) in cursor.fetchall())


def close_connections():
    """Close every connection of Chirp's database for real, the pooled ones included (on
    PostgreSQL the app pools them, see DATABASE_URL above): before a test drops or copies
    the database, whose server would otherwise end them under the pool's feet."""
    if isinstance(db.database, PooledDatabase):
        db.database.close_all()
    else:
        db.database.close()


def empty_postgres_tables(migrated):
    """Delete every row of Chirp's PostgreSQL database but the migration history and
    restart its id sequences (ids start at 1, as in a new SQLite file). Returns False,
    changing nothing, unless the schema is still ``migrated`` (see schema_state) and the
    pooled connection still works (a test may have dropped the database under it).

    Deleting is ~30 times faster than copying a template database (CREATE DATABASE).
    """
    try:
        with db.database.connection_context():
            if schema_state() != migrated:
                return False
            ordered = [model._meta.table_name for model in reversed(MODELS)]
            tables = [t for t in migrated[0] if t not in ordered and t != "schema_migration"]
            tables += [t for t in ordered if t in migrated[0]]
            sequences = db.database.execute_sql(
                "SELECT sequence_name FROM information_schema.sequences"
                " WHERE sequence_schema = current_schema()"
            ).fetchall()
            # A leaked connection holding a lock must not hang the suite: give up instead.
            # LOCAL: the pooled connection serves the test next, without this setting.
            statements = ["SET LOCAL lock_timeout = '2s'"]
            statements += [f'DELETE FROM "{table}"' for table in tables]
            statements += [f'ALTER SEQUENCE "{name}" RESTART' for (name,) in sequences]
            with db.database.atomic():
                db.database.execute_sql("; ".join(statements))
    except (peewee.DatabaseError, peewee.InterfaceError):
        return False
    return True


def fresh_database(tmp_path, migrated_database):
    """Point Chirp's database at a fresh, fully migrated database (closing the old
    connection first): a copy of the SQLite template file, or on PostgreSQL the test
    database emptied, or copied anew from its template if a test changed its schema."""
    db.database.close()
    if ON_POSTGRES:
        db.database.init(database_name(), **connection_parameters())
        if not empty_postgres_tables(migrated_database):
            close_connections()
            recreate_database(database_name(), template=database_name() + "_template")
    else:
        shutil.copyfile(migrated_database, tmp_path / "test.db")
        db.database.init(str(tmp_path / "test.db"))


@pytest.fixture
def app(tmp_path, monkeypatch, migrated_database):
    """The one Flask app, pointed at a fresh, fully migrated database for this test."""
    # Cheap hashing, as flask-peewee's own test suite does; scrypt costs ~140 ms a hash.
    monkeypatch.setattr("flask_peewee.utils.PASSWORD_HASH_METHOD", "pbkdf2:sha256:1")
    fresh_database(tmp_path, migrated_database)
    main.app.config.update(TESTING=True)
    # Every test client is 127.0.0.1: failed logins of one test must not throttle the next.
    limiter.reset()
    yield main.app
    db.database.close()


@pytest.fixture
def client(app):
    return app.test_client()


def make_user(username, password=PASSWORD, **fields):
    """Create and return a user; e-mail defaults to <username>@example.com."""
    fields.setdefault("email", f"{username.lower()}@example.com")
    user = User(username=username, **fields)
    user.set_password(password)
    user.save()
    return user


def make_message(user, content="hello", **fields):
    return Message.create(user=user, content=content, **fields)


def text(response):
    """Return the body of ``response`` as text."""
    return response.get_data(as_text=True)


def bearer(user, name="test"):
    """Return request headers carrying a new API token of ``user``."""
    _, token = ApiToken.issue(user, name)
    return {"Authorization": f"Bearer {token}"}


def basic(username, password=PASSWORD):
    """Return request headers carrying HTTP basic credentials."""
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def csrf_token(client, path="/accounts/login/"):
    """GET ``path`` and return the CSRF token from its first form."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username, password=PASSWORD, address=None):
    """Log ``client`` in through the real login form, from client address ``address``
    (default: the test client's); returns the response."""
    token = csrf_token(client)
    return client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "_csrf_token": token},
        environ_base={"REMOTE_ADDR": address} if address else {},
    )


def post(client, path, data=None, token_from="/accounts/login/", **kwargs):
    """POST a form to ``path`` with a valid CSRF token taken from ``token_from``."""
    data = dict(data or {})
    data["_csrf_token"] = csrf_token(client, token_from)
    return client.post(path, data=data, **kwargs)


def admin_post(client, path, data=None):
    """POST ``data`` to the admin's ``path`` with a CSRF token taken from the dashboard."""
    return post(client, path, data, token_from="/admin/")


@pytest.fixture
def root(app):
    """The admin ``root``."""
    return make_user("root", admin=True)


@pytest.fixture
def as_admin(client, root):
    """A client logged in as the admin ``root``."""
    login(client, "root")
    return client


@pytest.fixture
def alice(app):
    """The member ``alice``."""
    return make_user("alice")


@pytest.fixture
def bob(app):
    """The member ``bob``."""
    return make_user("bob")


@pytest.fixture
def runner(app):
    """A click runner for Chirp's command line, on this test's database."""
    return app.test_cli_runner()
