"""Conversation: replies, likes, reposts and notifications.

``message`` gains ``in_reply_to_id`` (NULL once the answered message is deleted),
``is_reply`` (stays true then, so the reply still says it answered something) and three
counters. Existing rows get 0 replies, likes and reposts, which is exact: none existed.
The new columns are added NOT NULL with database defaults, so SQLite alters the table in
place. The models below are frozen copies: later changes to models.py never alter what
this migration creates.
"""

import datetime

from peewee import SQL
from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import SqliteDatabase
from playhouse.sqlite_ext import AutoIncrementField

TABLES = ("notification", "repost", "like")
COUNTERS = ("reply_count", "like_count", "repost_count")


def frozen_models(db):
    """Return the new tables' models bound to ``db``, in creation order."""
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

    class Like(BaseModel):
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        message = ForeignKeyField(Message, on_delete="CASCADE")
        created_date = DateTimeField(default=datetime.datetime.now)

        class Meta:
            table_name = "like"
            indexes = ((("user", "message"), True),)

    class Repost(BaseModel):
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        message = ForeignKeyField(Message, on_delete="CASCADE")
        created_date = DateTimeField(default=datetime.datetime.now)

        class Meta:
            table_name = "repost"
            indexes = ((("user", "message"), True),)

    class Notification(BaseModel):
        recipient = ForeignKeyField(User, on_delete="CASCADE", index=False)
        actor = ForeignKeyField(User, on_delete="CASCADE")
        kind = CharField(max_length=10)
        message = ForeignKeyField(Message, null=True, on_delete="CASCADE")
        read = BooleanField(default=False)
        created_date = DateTimeField(default=datetime.datetime.now)

        class Meta:
            table_name = "notification"
            indexes = ((("recipient", "id"), False), (("recipient", "read"), False))

    return Message, [Like, Repost, Notification]


def up(migrator, db):
    Message, tables = frozen_models(db)
    # Indexed (ForeignKeyField's default): a thread page looks replies up by parent.
    parent = ForeignKeyField(
        Message, null=True, field=Message.id, on_delete="SET NULL", column_name="in_reply_to_id"
    )
    flag = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    operations = [
        migrator.add_column("message", "in_reply_to_id", parent),
        migrator.add_column("message", "is_reply", flag, allow_not_null=True),
    ]
    for name in COUNTERS:
        counter = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
        operations.append(migrator.add_column("message", name, counter, allow_not_null=True))
    migrator.migrate(*operations)
    db.create_tables(tables)


def down(migrator, db):
    for table in TABLES:
        migrator.migrate(migrator.drop_table(table))
    operations = [migrator.drop_index("message", "message_in_reply_to_id")]
    for name in ("in_reply_to_id", "is_reply", *COUNTERS):
        operations.append(migrator.drop_column("message", name))
    migrator.migrate(*operations)
