"""Message counts per user, kept by the database: ``messagecount`` (user_id, messages).

A profile shows how many messages its owner wrote. Counting them (``COUNT(*)`` over the
owner's range of ``message(user_id, id)``) cost ~12 ms for someone with 100 000 messages,
and grew with them. Now triggers on ``message`` keep one row per author up to date on
every insert, delete and change of author, whoever writes (web, API, admin, ``seed``,
bulk inserts), so the profile reads one row by primary key. Filled here from the
messages already stored.

SQLite: row triggers. PostgreSQL: statement triggers over transition tables for inserts
and deletes, so a bulk insert of many messages (``seed``) updates each author's row once
per statement, not once per message; a row trigger when an author changes.
"""

from peewee import SQL
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import PostgresqlDatabase

SQLITE_TRIGGERS = [
    "CREATE TRIGGER message_count_insert AFTER INSERT ON message BEGIN "
    "INSERT INTO messagecount (user_id, messages) VALUES (new.user_id, 1) "
    "ON CONFLICT (user_id) DO UPDATE SET messages = messages + 1; END",
    "CREATE TRIGGER message_count_delete AFTER DELETE ON message BEGIN "
    "UPDATE messagecount SET messages = messages - 1 WHERE user_id = old.user_id; END",
    "CREATE TRIGGER message_count_move AFTER UPDATE OF user_id ON message "
    "WHEN old.user_id <> new.user_id BEGIN "
    "UPDATE messagecount SET messages = messages - 1 WHERE user_id = old.user_id; "
    "INSERT INTO messagecount (user_id, messages) VALUES (new.user_id, 1) "
    "ON CONFLICT (user_id) DO UPDATE SET messages = messages + 1; END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS message_count_insert",
    "DROP TRIGGER IF EXISTS message_count_delete",
    "DROP TRIGGER IF EXISTS message_count_move",
]
# PostgreSQL: what each statement trigger runs, over its transition tables.
POSTGRES_ADD = (
    "INSERT INTO messagecount AS c (user_id, messages) "
    "SELECT {user}, COUNT(*) FROM {rows} GROUP BY {user} "
    "ON CONFLICT (user_id) DO UPDATE SET messages = c.messages + EXCLUDED.messages;"
)
# An UPDATE, not an upsert: when a user is deleted, their row is already gone.
POSTGRES_REMOVE = (
    "UPDATE messagecount AS c SET messages = c.messages - gone.n "
    "FROM (SELECT {user} AS user_id, COUNT(*) AS n FROM {rows} GROUP BY {user}) AS gone "
    "WHERE c.user_id = gone.user_id;"
)
POSTGRES_BODIES = {
    "message_count_insert": POSTGRES_ADD.format(user="user_id", rows="new_rows"),
    "message_count_delete": POSTGRES_REMOVE.format(user="user_id", rows="old_rows"),
    # Row by row, and only when the author changes (an admin's edit): a statement
    # trigger would run on every counter bump of a like or repost.
    "message_count_move": (
        "UPDATE messagecount SET messages = messages - 1 WHERE user_id = OLD.user_id; "
        "INSERT INTO messagecount AS c (user_id, messages) VALUES (NEW.user_id, 1) "
        "ON CONFLICT (user_id) DO UPDATE SET messages = c.messages + 1;"
    ),
}
POSTGRES_TRIGGERS = [
    *(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {body} RETURN NULL; END $$"
        for name, body in POSTGRES_BODIES.items()
    ),
    "CREATE TRIGGER message_count_insert AFTER INSERT ON message "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION message_count_insert()",
    "CREATE TRIGGER message_count_delete AFTER DELETE ON message "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION message_count_delete()",
    "CREATE TRIGGER message_count_move AFTER UPDATE OF user_id ON message FOR EACH ROW "
    "WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id) EXECUTE FUNCTION message_count_move()",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS message_count_insert ON message",
    "DROP TRIGGER IF EXISTS message_count_delete ON message",
    "DROP TRIGGER IF EXISTS message_count_move ON message",
    "DROP FUNCTION IF EXISTS message_count_insert()",
    "DROP FUNCTION IF EXISTS message_count_delete()",
    "DROP FUNCTION IF EXISTS message_count_move()",
]


def frozen_model(db):
    """Return the messagecount table's model, bound to ``db``."""

    class User(Model):
        class Meta:
            database = db
            table_name = "user"

    class MessageCount(Model):
        user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
        messages = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])

        class Meta:
            database = db
            table_name = "messagecount"

    return MessageCount


def up(migrator, db):
    db.create_tables([frozen_model(db)])
    db.execute_sql(
        "INSERT INTO messagecount (user_id, messages) "
        "SELECT user_id, COUNT(*) FROM message GROUP BY user_id"
    )
    for statement in POSTGRES_TRIGGERS if isinstance(db, PostgresqlDatabase) else SQLITE_TRIGGERS:
        db.execute_sql(statement)


def down(migrator, db):
    for statement in POSTGRES_DOWN if isinstance(db, PostgresqlDatabase) else SQLITE_DOWN:
        db.execute_sql(statement)
    migrator.migrate(migrator.drop_table("messagecount"))
