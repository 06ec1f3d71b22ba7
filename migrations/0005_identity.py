"""Identity and discovery: profiles, edit marks, tags, mentions and full-text search.

- ``user.display_name`` (≤ 50) and ``user.bio`` (≤ 160), "" for existing rows (added NOT
  NULL with a database default in one statement, so SQLite alters the table in place);
- ``message.edited_date`` (NULL: never edited);
- ``tag``, ``messagetag`` (tag, message) and ``mention`` (user, message), each pair unique
  and indexed in the order the pages read them; filled for existing messages here;
- search: on SQLite an FTS5 index ``message_fts`` over ``message.content`` (external
  content: the text is stored once) kept in step by triggers on insert, update and
  delete; on PostgreSQL a GIN index on ``to_tsvector('simple', content)``, the
  expression models.message_search_vector queries.
"""

import re

from peewee import SQL
from peewee import AutoField
from peewee import CharField
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import Model
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase
from playhouse.sqlite_ext import AutoIncrementField

# Kept in step with models.TAG_PATTERN / MENTION_PATTERN as they were when this ran.
TAG_PATTERN = r"(?<![\w#&])#(?=\w*[^\W\d])(\w{1,50})(?!\w)"
MENTION_PATTERN = r"(?<![\w@/])@([A-Za-z0-9_]{1,30})(?![\w@])"

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE message_fts USING fts5(content, content='message', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN "
    "INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "END",
    "CREATE TRIGGER message_fts_update AFTER UPDATE OF content ON message BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content); END",
    "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
]
SQLITE_SEARCH_DOWN = [
    "DROP TRIGGER IF EXISTS message_fts_insert",
    "DROP TRIGGER IF EXISTS message_fts_delete",
    "DROP TRIGGER IF EXISTS message_fts_update",
    "DROP TABLE IF EXISTS message_fts",
]
POSTGRES_SEARCH = [
    "CREATE INDEX message_content_search ON message USING GIN (to_tsvector('simple', content))"
]
POSTGRES_SEARCH_DOWN = ["DROP INDEX IF EXISTS message_content_search"]


def frozen_models(db):
    """Return the new tables' models (Tag, MessageTag, Mention) bound to ``db``."""
    primary_key = AutoIncrementField if isinstance(db, SqliteDatabase) else AutoField

    class BaseModel(Model):
        id = primary_key()

        class Meta:
            database = db

    class User(BaseModel):
        class Meta:
            table_name = "user"

    class Message(BaseModel):
        class Meta:
            table_name = "message"

    class Tag(BaseModel):
        name = CharField(max_length=50, unique=True)

        class Meta:
            table_name = "tag"

    class MessageTag(BaseModel):
        tag = ForeignKeyField(Tag, on_delete="CASCADE", index=False)
        message = ForeignKeyField(Message, on_delete="CASCADE")

        class Meta:
            table_name = "messagetag"
            indexes = ((("tag", "message"), True),)

    class Mention(BaseModel):
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        message = ForeignKeyField(Message, on_delete="CASCADE")

        class Meta:
            table_name = "mention"
            indexes = ((("user", "message"), True),)

    return Tag, MessageTag, Mention


def extract_existing(db, Tag, MessageTag, Mention):
    """Fill the tag and mention tables from the messages already stored."""
    users = {
        name.lower(): user_id for user_id, name in db.execute_sql('SELECT id, username FROM "user"')
    }
    tag_ids = {}
    for message_id, content in db.execute_sql("SELECT id, content FROM message").fetchall():
        for name in dict.fromkeys(tag.lower() for tag in re.findall(TAG_PATTERN, content)):
            if name not in tag_ids:
                tag_ids[name] = Tag.create(name=name).id
            MessageTag.create(tag=tag_ids[name], message=message_id)
        for name in dict.fromkeys(n.lower() for n in re.findall(MENTION_PATTERN, content)):
            if name in users:
                Mention.create(user=users[name], message=message_id)


def up(migrator, db):
    profile_text = {"default": "", "constraints": [SQL("DEFAULT ''")]}
    migrator.migrate(
        migrator.add_column(
            "user", "display_name", CharField(max_length=50, **profile_text), allow_not_null=True
        ),
        migrator.add_column(
            "user", "bio", CharField(max_length=160, **profile_text), allow_not_null=True
        ),
        migrator.add_column("message", "edited_date", DateTimeField(null=True)),
    )
    models = frozen_models(db)
    db.create_tables(models)
    extract_existing(db, *models)
    if isinstance(db, SqliteDatabase):
        statements = SQLITE_SEARCH
    elif isinstance(db, PostgresqlDatabase):
        statements = POSTGRES_SEARCH
    else:
        statements = []
    for statement in statements:
        db.execute_sql(statement)


def down(migrator, db):
    if isinstance(db, SqliteDatabase):
        statements = SQLITE_SEARCH_DOWN
    elif isinstance(db, PostgresqlDatabase):
        statements = POSTGRES_SEARCH_DOWN
    else:
        statements = []
    for statement in statements:
        db.execute_sql(statement)
    for table in ("mention", "messagetag", "tag"):
        migrator.migrate(migrator.drop_table(table))
    migrator.migrate(
        migrator.drop_column("message", "edited_date"),
        migrator.drop_column("user", "bio"),
        migrator.drop_column("user", "display_name"),
    )
