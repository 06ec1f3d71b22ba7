"""Text and e-mail rules (docs/security.md, "Text that means what it shows").

- ``user.username_skeleton``: each username's confusable skeleton (Unicode TR 39),
  lower-cased (models.username_key), with a unique index, so a new name that looks like an existing one is refused. Accounts that
  already look alike keep their names: the oldest (lowest id) holds the plain skeleton;
  each newer one gets ``<skeleton>#<id>``, which keeps the index unique, and an audit
  entry (action ``lookalike``) so admins can review and rename them.
- ``user_email_lower``: a unique index on ``LOWER(email)``. Addresses are left as they
  were (new ones are stored lower-cased). If two accounts' addresses differ only in case,
  the oldest keeps its address; each newer one gets ``duplicate-<id>@invalid`` (a domain
  that can never receive mail), recorded with the old address in an audit entry (action
  ``email-duplicate``); its owner still logs in by username and sets a new address.
- ``note``: CHECK ``length(message) BETWEEN 1 AND 1000``, as for messages. Longer notes
  (the API allowed 5000) are shortened to 999 characters and "…", empty ones become
  "(empty note)"; each change is an audit entry (action ``note-shortened``) holding the
  full old text, so nothing is lost. SQLite rebuilds the table to add the CHECK.
- ``auditentry.actor_name``: the actor's username as text, filled from the user table.

Going down drops the columns, the index and the CHECK; changed addresses and notes stay
as they are (their old values are in the audit trail).
"""

import datetime
import json

from peewee import SQL
from peewee import CharField
from peewee import SqliteDatabase

from models import username_key

# Frozen here: a later change to models.NOTE_MAX_LENGTH ships as a migration of its own.
NOTE_MAX_LENGTH = 1000
NOTE_CHECK = f"CONSTRAINT note_message_length CHECK (length(message) BETWEEN 1 AND {NOTE_MAX_LENGTH})"


def audit(db, action, model_name, object_id, changes):
    """Insert one audit entry without an actor (the migration acted)."""
    marks = ", ".join([param(db)] * 6)
    db.execute_sql(
        "INSERT INTO auditentry (actor_id, action, model_name, object_id, changes, "
        f"created_date, actor_name) VALUES (NULL, {marks})",
        (
            action,
            model_name,
            str(object_id),
            json.dumps(changes, sort_keys=True),
            datetime.datetime.now(),
            "migration 0004",
        ),
    )


def param(db):
    """The database's parameter placeholder."""
    return "?" if isinstance(db, SqliteDatabase) else "%s"


def fill_skeletons(db):
    p = param(db)
    holders = {}
    rows = db.execute_sql('SELECT id, username FROM "user" ORDER BY id').fetchall()
    for user_id, username in rows:
        skeleton = username_key(username)
        if skeleton in holders:
            audit(db, "lookalike", "User", user_id, {"username": [holders[skeleton], username]})
            skeleton = f"{skeleton}#{user_id}"
        else:
            holders[skeleton] = username
        db.execute_sql(f'UPDATE "user" SET username_skeleton = {p} WHERE id = {p}', (skeleton, user_id))


def separate_duplicate_emails(db):
    p = param(db)
    seen = set()
    rows = db.execute_sql('SELECT id, email FROM "user" ORDER BY id').fetchall()
    for user_id, email in rows:
        key = email.lower()
        if key in seen:
            replacement = f"duplicate-{user_id}@invalid"
            audit(db, "email-duplicate", "User", user_id, {"email": [email, replacement]})
            db.execute_sql(f'UPDATE "user" SET email = {p} WHERE id = {p}', (replacement, user_id))
        seen.add(key)


def fit_notes(db):
    p = param(db)
    for note_id, message in db.execute_sql("SELECT id, message FROM note ORDER BY id").fetchall():
        if 1 <= len(message) <= NOTE_MAX_LENGTH:
            continue
        new = message[: NOTE_MAX_LENGTH - 1] + "…" if message else "(empty note)"
        audit(db, "note-shortened", "Note", note_id, {"message": [message, new]})
        db.execute_sql(f"UPDATE note SET message = {p} WHERE id = {p}", (new, note_id))


def rebuild_sqlite_table(db, table, change):
    """Rebuild SQLite ``table`` with ``change(create_sql)`` as its new CREATE TABLE, keeping
    its rows, ids, indexes and AUTOINCREMENT counter (SQLite cannot add a CHECK in place).
    Nothing references ``table``, so foreign keys stay on."""
    create_sql, = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    index_sqls = [
        row[0]
        for row in db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (table,),
        ).fetchall()
    ]
    sequence = db.execute_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    new_sql = change(create_sql).replace(f'CREATE TABLE "{table}"', f'CREATE TABLE "{table}_new"', 1)
    db.execute_sql(new_sql)
    db.execute_sql(f'INSERT INTO "{table}_new" SELECT * FROM "{table}"')
    db.execute_sql(f'DROP TABLE "{table}"')
    db.execute_sql(f'ALTER TABLE "{table}_new" RENAME TO "{table}"')
    for index_sql in index_sqls:
        db.execute_sql(index_sql)
    if sequence is not None:
        db.execute_sql("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (sequence[0], table))


def with_note_check(create_sql):
    """Return note's CREATE TABLE with NOTE_CHECK as its last table constraint."""
    head, _, tail = create_sql.rpartition(")")
    return f"{head}, {NOTE_CHECK}){tail}"


def without_note_check(create_sql):
    return create_sql.replace(f", {NOTE_CHECK}", "")


def up(migrator, db):
    blank = [SQL("DEFAULT ''")]
    migrator.migrate(
        migrator.add_column(
            "user", "username_skeleton", CharField(max_length=100, default="", constraints=blank),
            allow_not_null=True,
        ),
        migrator.add_column(
            "auditentry", "actor_name", CharField(max_length=30, default="", constraints=blank),
            allow_not_null=True,
        ),
    )
    db.execute_sql(
        'UPDATE auditentry SET actor_name = COALESCE((SELECT username FROM "user" '
        'WHERE "user".id = auditentry.actor_id), \'\')'
    )
    fill_skeletons(db)
    migrator.migrate(migrator.add_index("user", ("username_skeleton",), unique=True))
    separate_duplicate_emails(db)
    db.execute_sql('CREATE UNIQUE INDEX user_email_lower ON "user" (LOWER(email))')
    fit_notes(db)
    if isinstance(db, SqliteDatabase):
        rebuild_sqlite_table(db, "note", with_note_check)
    else:
        db.execute_sql(f"ALTER TABLE note ADD {NOTE_CHECK}")


def down(migrator, db):
    if isinstance(db, SqliteDatabase):
        rebuild_sqlite_table(db, "note", without_note_check)
    else:
        db.execute_sql("ALTER TABLE note DROP CONSTRAINT note_message_length")
    db.execute_sql("DROP INDEX user_email_lower")
    migrator.migrate(
        migrator.drop_index("user", "user_username_skeleton"),
        migrator.drop_column("user", "username_skeleton"),
        migrator.drop_column("auditentry", "actor_name"),
    )

