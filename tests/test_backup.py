"""`python main.py backup FILE` and `restore FILE --yes`: a consistent copy taken while
the site keeps writing, and a restore that brings every row back."""

import sqlite3
import threading

import pytest
from conftest import make_message
from conftest import make_user
from conftest import require_program
from databases import ON_POSTGRES

from app import db
from models import Message
from models import User


def run(app, *arguments):
    """Invoke a `python main.py` command in-process; return click's result."""
    return app.test_cli_runner().invoke(args=list(arguments))


@pytest.fixture
def filled(app):
    """Alice with 300 messages."""
    alice = make_user("alice")
    Message.insert_many([{"user": alice.id, "content": f"m{i}"} for i in range(300)]).execute()
    return alice


@pytest.mark.sqlite
def test_a_backup_taken_while_writes_go_on_is_a_consistent_copy(app, filled, tmp_path):
    """A writer keeps adding a message and a follow-up edit in one transaction each;
    the copy holds a whole number of those transactions, never half of one."""
    stop = threading.Event()
    written = []

    def writer():
        connection = sqlite3.connect(db.database.database, timeout=10, isolation_level=None)
        try:
            while not stop.is_set():
                connection.execute("BEGIN IMMEDIATE")
                cursor = connection.execute(
                    "INSERT INTO message (user_id, content, pub_date) VALUES (?, 'half', ?)",
                    (filled.id, "2026-12-01 10:00:00"),
                )
                connection.execute(
                    "UPDATE message SET content = 'whole' WHERE id = ?", (cursor.lastrowid,)
                )
                connection.execute("COMMIT")
                written.append(cursor.lastrowid)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:  # the writer is well under way
            stop.wait(0.01)
        before = len(written)
        result = run(app, "backup", str(tmp_path / "copy.db"))
        during = len(written) - before
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.output
    assert during > 0, "no write happened during the backup"

    copy = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        contents = [c for (c,) in copy.execute("SELECT content FROM message WHERE id > 300")]
        names = [n for (n,) in copy.execute("SELECT name FROM schema_migration")]
    finally:
        copy.close()
    assert "half" not in contents and contents == ["whole"] * len(contents)
    assert before <= len(contents) <= len(written)
    assert names and not (tmp_path / "copy.db.partial").exists()


def test_backup_then_restore_brings_every_row_back(app, filled, tmp_path):
    if ON_POSTGRES:  # PostgreSQL's backups are pg_dump's and pg_restore's
        require_program("pg_dump")
        require_program("pg_restore")
    backup = tmp_path / "chirp.backup"
    result = run(app, "backup", str(backup))
    assert result.exit_code == 0, result.output
    if ON_POSTGRES:
        assert backup.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    Message.delete().execute()
    make_user("mallory")

    refused = run(app, "restore", str(backup))
    assert refused.exit_code != 0 and "--yes" in refused.output
    assert Message.select().count() == 0

    restored = run(app, "restore", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert Message.select().count() == 300
    assert [u.username for u in User.select()] == ["alice"]
    make_message(filled, "after the restore")  # ids and sequences carry on


def test_backup_never_overwrites_without_force(app, filled, tmp_path):
    target = tmp_path / "kept.db"
    target.write_text("precious")
    result = run(app, "backup", str(target))
    assert result.exit_code != 0 and "--force" in result.output
    assert target.read_text() == "precious"
    assert run(app, "backup", str(target), "--force").exit_code == 0


@pytest.mark.sqlite
def test_restore_refuses_a_file_that_is_no_chirp_database(app, filled, tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    for path in (other, garbage):
        result = run(app, "restore", str(path), "--yes")
        assert result.exit_code != 0
    assert Message.select().count() == 300
