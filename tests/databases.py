"""The database the suite runs on: SQLite files by default, PostgreSQL when
``CHIRP_TEST_DATABASE=postgresql://USER@HOST:PORT/NAME`` is set (``.ci/with-postgres``
sets it).

On PostgreSQL every test gets a fresh copy of a migrated template database
(``CREATE DATABASE ... TEMPLATE``, a file copy of a few milliseconds), and every live server
(tests/live_server.py) a database of its own, so tests never see each other's rows.
"""

import contextlib
import itertools
import os
import uuid

import psycopg2
from playhouse.db_url import parse

TEST_DATABASE_URL = os.environ.get("CHIRP_TEST_DATABASE", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith(("postgres://", "postgresql://"))
if TEST_DATABASE_URL and not ON_POSTGRES:
    raise RuntimeError(f"CHIRP_TEST_DATABASE is not a postgresql:// URL: {TEST_DATABASE_URL!r}")

_names = itertools.count()


def connection_parameters(url=TEST_DATABASE_URL):
    """Return ``url``'s connection keywords (host, port, user, password) without the
    database name, as peewee's ``Database.init(name, **params)`` takes them."""
    params = parse(url)
    params.pop("database", None)
    return params


def database_name(url=TEST_DATABASE_URL):
    """Return the database name in the PostgreSQL ``url``."""
    return parse(url)["database"]


def pooled_url(url):
    """Return the PostgreSQL ``url`` with the ``postgresql+pool://`` scheme, for which
    ``playhouse.db_url`` builds a PooledPostgresqlDatabase: closing a connection returns
    it to the pool instead of ending the server process behind it."""
    scheme, separator, rest = url.partition("://")
    assert separator and scheme in ("postgres", "postgresql"), url
    return f"postgresql+pool://{rest}"


def url_for_database(name):
    """Return TEST_DATABASE_URL with its database name replaced by ``name``."""
    base, _, _ = TEST_DATABASE_URL.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def server_connection():
    """Yield an autocommit psycopg2 connection to the server's ``postgres`` database, for
    CREATE and DROP DATABASE (which cannot run inside a transaction)."""
    params = connection_parameters()
    connection = psycopg2.connect(dbname="postgres", **params)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def recreate_database(name, template=None):
    """Drop the PostgreSQL database ``name`` if it exists (closing every connection to it)
    and create it anew, empty or as a copy of ``template``."""
    with server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        copy = f' TEMPLATE "{template}"' if template else ""
        cursor.execute(f'CREATE DATABASE "{name}"{copy}')


def drop_database(name):
    """Drop the PostgreSQL database ``name`` if it exists, closing its connections."""
    with server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_database_url(tmp_path, stem="chirp"):
    """Return the URL of a new, empty database for one server or command: the SQLite file
    ``tmp_path/<stem>.db``, or on PostgreSQL a freshly created database of its own."""
    if not ON_POSTGRES:
        return f"sqlite:///{tmp_path / f'{stem}.db'}"
    name = f"{database_name()}_{stem}_{os.getpid()}_{next(_names)}_{uuid.uuid4().hex[:6]}"
    recreate_database(name)
    return url_for_database(name)
