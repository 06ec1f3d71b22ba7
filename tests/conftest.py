"""Test set-up: one import of main against a throwaway SQLite file, fresh tables per test."""

import os
import re
import shutil
import tempfile

import pytest
from hypothesis import settings

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


# Before the one import of main: the app reads its configuration at import time.
os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "import.db")
os.environ["SECRET_KEY"] = "test-secret-key"

import main  # noqa: E402  the one import: wires every module
from app import db  # noqa: E402
from app import limiter  # noqa: E402
from models import Message  # noqa: E402
from models import User  # noqa: E402
from models import migration_runner  # noqa: E402

PASSWORD = "correct-horse"


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    """A SQLite file with every migration applied, built once: tests get a copy of it, so
    the schema under test is exactly the one `python main.py db upgrade` makes."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    db.database.init(str(path))
    migration_runner().up()
    db.database.close()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def app(tmp_path, monkeypatch, migrated_database):
    """The one Flask app, pointed at a fresh, fully migrated SQLite file for this test."""
    # Cheap hashing, as flask-peewee's own test suite does; scrypt costs ~140 ms a hash.
    monkeypatch.setattr("flask_peewee.utils.PASSWORD_HASH_METHOD", "pbkdf2:sha256:1")
    shutil.copyfile(migrated_database, tmp_path / "test.db")
    db.database.init(str(tmp_path / "test.db"))
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


def csrf_token(client, path="/accounts/login/"):
    """GET ``path`` and return the CSRF token from its first form."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username, password=PASSWORD):
    """Log ``client`` in through the real login form; returns the response."""
    token = csrf_token(client)
    return client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "_csrf_token": token},
    )


def post(client, path, data=None, token_from="/accounts/login/", **kwargs):
    """POST a form to ``path`` with a valid CSRF token taken from ``token_from``."""
    data = dict(data or {})
    data["_csrf_token"] = csrf_token(client, token_from)
    return client.post(path, data=data, **kwargs)
