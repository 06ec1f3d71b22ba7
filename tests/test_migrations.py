"""Schema migrations: they build exactly models.py's schema, upgrade a database that holds
data without losing a row, step back, and gate the server and the command line."""

import datetime
import json
import sqlite3
from pathlib import Path

import pytest
import requests
from conftest import close_connections
from databases import ON_POSTGRES
from databases import connection_parameters
from databases import database_name
from databases import drop_database
from databases import new_database_url
from databases import recreate_database
from live_server import running_gunicorn
from peewee import IntegrityError
from peewee import SqliteDatabase
from playhouse.db_url import connect
from playhouse.schema_diff import diff_models

from app import db
from models import MIGRATIONS_DIRECTORY
from models import MODELS
from models import migration_runner
from models import pending_migrations

DATA = Path(__file__).resolve().parent / "data"
ALL_MIGRATIONS = sorted(path.stem for path in Path(MIGRATIONS_DIRECTORY).glob("[0-9]*.py"))
NOW = datetime.datetime(2026, 11, 20, 12, 30, 15, 123456)

# Rows as Chirp's first release stored them, one or more in every table, with the awkward
# values real data holds: mixed-case names, microseconds, NULLs, text near the length limit.
OLD_ROWS = {
    "user": [
        (1, "Alice", "alice@example.com", "pbkdf2:sha256:1$salt$hash", NOW, 1, 1),
        (2, "bob_2", "bob@example.com", "!", NOW, 0, 0),
        (3, "carol", "Carol@Example.com", "!", NOW, 1, 0),
    ],
    "message": [
        (1, 1, "hello, world", NOW),
        (2, 2, "x" * 280, NOW),
        (5, 1, "line one\nline two ✓", NOW),
    ],
    "relationship": [(1, 1, 2, NOW), (2, 2, 1, NOW)],
    "note": [(1, 1, "an admin note", 1, NOW), (2, 1, "gone", 2, NOW)],
    "apitoken": [(1, 1, "cli", "a" * 64, NOW, None), (2, 2, "laptop", "b" * 64, NOW, NOW)],
    "auditentry": [
        (1, 1, "edit", "User", "2", '{"active": [true, false]}', NOW),
        (2, None, "delete", "Message", "3,4", "{}", NOW),
    ],
}


def sqlite_file(path):
    """Return a peewee SqliteDatabase for the file ``path`` with foreign keys enforced."""
    return SqliteDatabase(str(path), pragmas={"foreign_keys": 1})


def build_database_before_migrations(path):
    """Create ``path`` with the schema and rows of Chirp before migrations existed."""
    with sqlite3.connect(path) as connection:
        connection.executescript((DATA / "schema-before-migrations.sqlite.sql").read_text())
        for table, rows in OLD_ROWS.items():
            marks = ", ".join("?" * len(rows[0]))
            connection.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
    connection.close()


def table_rows(database, table, columns):
    """Return every row of ``table`` (only ``columns``), ordered by id, as tuples."""
    names = ", ".join(f'"{column}"' for column in columns)
    cursor = database.execute_sql(f'SELECT {names} FROM "{table}" ORDER BY id')
    return [tuple(row) for row in cursor.fetchall()]


def old_columns(table):
    """Return the column names ``table`` had before migrations, in order."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript((DATA / "schema-before-migrations.sqlite.sql").read_text())
        return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
    finally:
        connection.close()


@pytest.fixture
def empty_database(tmp_path):
    """A new, empty database outside the app: a SQLite file with foreign keys enforced, or
    on PostgreSQL a database of its own, dropped afterwards."""
    url = new_database_url(tmp_path, "empty")
    database = connect(url) if ON_POSTGRES else sqlite_file(tmp_path / "empty.db")
    yield database
    database.close()
    if ON_POSTGRES:
        drop_database(database_name(url))


def test_migrations_build_exactly_the_schema_of_models_py(empty_database):
    database = empty_database
    assert migration_runner(database).up() == ALL_MIGRATIONS
    drift = diff_models(database, MODELS)
    assert not drift, f"models.py and migrations/ disagree:\n{drift}"
    assert pending_migrations(database) == []


@pytest.mark.sqlite
def test_a_database_made_before_migrations_upgrades_with_every_row_intact(tmp_path):
    path = tmp_path / "old.db"
    build_database_before_migrations(path)
    database = sqlite_file(path)
    expected = {table: table_rows(database, table, old_columns(table)) for table in OLD_ROWS}
    assert pending_migrations(database) == ALL_MIGRATIONS

    assert migration_runner(database).up() == ALL_MIGRATIONS

    for table, rows in expected.items():
        assert table_rows(database, table, old_columns(table)) == rows, table
    assert len(expected["user"]) == len(OLD_ROWS["user"])
    assert not diff_models(database, MODELS)
    assert database.execute_sql("PRAGMA foreign_key_check").fetchall() == []
    assert database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_every_migration_steps_down_and_up_again(empty_database):
    database = empty_database
    runner = migration_runner(database)
    runner.up()
    for name in reversed(ALL_MIGRATIONS):
        assert runner.down() == [name]
        assert pending_migrations(database)[0] == name
    assert set(database.get_tables()) - {"sqlite_sequence"} == {"schema_migration"}
    assert runner.up() == ALL_MIGRATIONS
    assert not diff_models(database, MODELS)


@pytest.mark.sqlite
def test_the_baseline_adopts_a_database_that_already_has_the_tables(tmp_path):
    """A database made by the first release holds the tables but no history: the baseline
    records itself without touching them."""
    path = tmp_path / "old.db"
    build_database_before_migrations(path)
    database = sqlite_file(path)
    migration_runner(database).up(ALL_MIGRATIONS[0])
    assert table_rows(database, "message", ["id", "content"])[1] == (2, "x" * 280)


@pytest.fixture
def unmigrated(app, tmp_path):
    """The app pointed at an empty database: every migration pending."""
    close_connections()  # pooled ones too: recreating the database ends them
    if ON_POSTGRES:
        recreate_database(database_name())
        db.database.init(database_name(), **connection_parameters())
    else:
        db.database.init(str(tmp_path / "empty.db"))
    return app


def test_healthz_is_503_and_names_pending_migrations(unmigrated):
    response = unmigrated.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "migrations pending"
    assert response.json["pending_migrations"] == ALL_MIGRATIONS


def test_healthz_is_200_with_the_database_round_trip_once_migrated(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["pending_migrations"] == []
    assert response.json["database_ms"] >= 0


def test_db_status_exits_1_while_migrations_are_pending_then_0(unmigrated):
    runner = unmigrated.test_cli_runner()
    result = runner.invoke(args=["db", "status"])
    assert result.exit_code == 1
    assert f"[ ] {ALL_MIGRATIONS[0]}" in result.output
    assert "pending: run python main.py db upgrade" in result.output

    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    assert f"Applying {ALL_MIGRATIONS[-1]} ... done" in upgrade.output

    result = runner.invoke(args=["db", "status"])
    assert result.exit_code == 0, result.output
    assert f"[x] {ALL_MIGRATIONS[-1]}  applied " in result.output
    assert runner.invoke(args=["db", "upgrade"]).output.strip() == "The database is up to date."


def test_db_downgrade_reverts_the_newest_migration(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "downgrade"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Reverted {ALL_MIGRATIONS[-1]}"
    assert pending_migrations() == [ALL_MIGRATIONS[-1]]


def test_db_upgrade_refuses_an_unknown_target(unmigrated):
    result = unmigrated.test_cli_runner().invoke(args=["db", "upgrade", "--target", "9999_nope"])
    assert result.exit_code != 0
    assert "'9999_nope' is not a pending migration." in result.output
    assert pending_migrations() == ALL_MIGRATIONS


@pytest.mark.parametrize("command", [["create-admin", "root"], ["create-token", "x"], ["seed"]])
def test_commands_that_need_the_schema_say_to_upgrade_first(unmigrated, command):
    result = unmigrated.test_cli_runner().invoke(args=command, input="a-good-password\n" * 2)
    assert result.exit_code != 0
    assert "Run: python main.py db upgrade" in result.output
    assert db.database.get_tables() == []


@pytest.mark.slow
def test_gunicorn_never_migrates_and_says_so(tmp_path):
    """Workers started on a database with pending migrations leave it alone, log what to
    run, and report it on /healthz (503), so a load balancer keeps traffic away."""
    with running_gunicorn(tmp_path, workers=2, upgrade=False) as server:
        response = requests.get(server.url + "/healthz", timeout=10)
        assert response.status_code == 503
        assert response.json()["pending_migrations"] == ALL_MIGRATIONS
        assert "run `python main.py db upgrade`" in server.read_log()
        assert connect(server.database_url).get_tables() == []


@pytest.mark.sqlite
def test_0004_keeps_lookalikes_and_duplicate_addresses_and_audits_what_it_changed(tmp_path):
    """Rows from before the text rules: two names that look alike, two addresses that differ
    only in case, a note over 1000 characters. 0004 keeps every account and every word."""
    path = tmp_path / "old.db"
    build_database_before_migrations(path)
    long_note = "n" * 1500
    with sqlite3.connect(path) as connection:
        connection.executemany(
            'INSERT INTO "user" VALUES (?, ?, ?, ?, ?, ?, ?)',
            [
                (4, "aIice", "ALICE@example.com", "!", NOW, 1, 0),
                (5, "carole", "carol@example.com", "!", NOW, 1, 0),
            ],
        )
        connection.execute("INSERT INTO note VALUES (3, 1, ?, 1, ?)", (long_note, NOW))
    connection.close()
    database = sqlite_file(path)
    runner = migration_runner(database)
    runner.up()

    users = dict(table_rows(database, "user", ["id", "username_skeleton"]))
    assert users == {1: "alice", 2: "bob_2", 3: "carol", 4: "alice#4", 5: "carole"}
    emails = dict(table_rows(database, "user", ["id", "email"]))
    assert emails[4] == "duplicate-4@invalid" and emails[5] == "duplicate-5@invalid"
    assert emails[1] == "alice@example.com" and emails[3] == "Carol@Example.com"
    (note,) = database.execute_sql("SELECT message FROM note WHERE id = 3").fetchone()
    assert len(note) == 1000 and note.endswith("…")
    audit = table_rows(database, "auditentry", ["action", "object_id", "changes", "actor_name"])
    assert ("lookalike", "4") in {row[:2] for row in audit}
    shortened = [row for row in audit if row[0] == "note-shortened"]
    assert json.loads(shortened[0][2])["message"][0] == long_note  # nothing lost
    assert audit[0][3] == "Alice"  # the actor's name, filled in from the user table
    with pytest.raises(IntegrityError), database.atomic():  # the CHECK now holds
        database.execute_sql("UPDATE note SET message = ? WHERE id = 1", ("x" * 1001,))
    with pytest.raises(IntegrityError), database.atomic():
        database.execute_sql("UPDATE \"user\" SET email = 'BOB@example.com' WHERE id = 1")
    assert database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
    runner.down()
    runner.up()
    assert not diff_models(database, MODELS)
