"""The baseline: Chirp's schema as its first release created it, before migrations existed.

Tables are created only where missing (``safe=True``), so a database made by that release,
which holds data but no migration history, adopts this migration without change, and a new
database gets the same schema. The models are frozen copies: later changes to models.py
never alter what this migration creates.
"""

import datetime

from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import Check
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import SqliteDatabase
from peewee import TextField
from peewee import fn
from playhouse.sqlite_ext import AutoIncrementField

TABLES = ("relationship", "note", "message", "auditentry", "apitoken", "user")


def frozen_models(db):
    """Return the baseline's models bound to ``db``, in creation order."""
    # SQLite ids are AUTOINCREMENT, so a deleted row's id is never handed out again.
    primary_key = AutoIncrementField if isinstance(db, SqliteDatabase) else AutoField

    class BaseModel(Model):
        id = primary_key()

        class Meta:
            database = db

    class User(BaseModel):
        username = CharField(max_length=30, unique=True)
        email = CharField(max_length=254, unique=True)
        password = CharField(max_length=255)
        join_date = DateTimeField(default=datetime.datetime.now, index=True)
        active = BooleanField(default=True, index=True)
        admin = BooleanField(default=False)

        class Meta:
            table_name = "user"

    User.add_index(User.index(fn.LOWER(User.username), unique=True, name="user_username_lower"))

    class ApiToken(BaseModel):
        user = ForeignKeyField(User, on_delete="CASCADE")
        name = CharField(max_length=50)
        token_hash = CharField(max_length=64, unique=True)
        created_date = DateTimeField(default=datetime.datetime.now)
        last_used = DateTimeField(null=True)

        class Meta:
            table_name = "apitoken"

    class AuditEntry(BaseModel):
        actor = ForeignKeyField(User, null=True, on_delete="SET NULL")
        action = CharField(max_length=50)
        model_name = CharField(max_length=50)
        object_id = TextField(default="")
        changes = TextField(default="{}")
        created_date = DateTimeField(default=datetime.datetime.now, index=True)

        class Meta:
            table_name = "auditentry"

    class Message(BaseModel):
        user = ForeignKeyField(User, on_delete="CASCADE")
        content = TextField(constraints=[Check("length(content) BETWEEN 1 AND 280")])
        pub_date = DateTimeField(default=datetime.datetime.now, index=True)

        class Meta:
            table_name = "message"

    class Note(BaseModel):
        user = ForeignKeyField(User, on_delete="CASCADE")
        message = TextField()
        status = IntegerField(default=1)
        created_date = DateTimeField(default=datetime.datetime.now, index=True)

        class Meta:
            table_name = "note"

    class Relationship(BaseModel):
        from_user = ForeignKeyField(User, on_delete="CASCADE")
        to_user = ForeignKeyField(User, on_delete="CASCADE")
        created_date = DateTimeField(default=datetime.datetime.now)

        class Meta:
            table_name = "relationship"
            indexes = ((("from_user", "to_user"), True),)
            constraints = [Check("from_user_id <> to_user_id")]

    return [User, ApiToken, AuditEntry, Message, Note, Relationship]


def up(migrator, db):
    db.create_tables(frozen_models(db), safe=True)


def down(migrator, db):
    for table in TABLES:
        migrator.migrate(migrator.drop_table(table))
