"""User.session_token: sessions carry a copy, and replacing it ends them all.

Existing rows get "" (the column's default), which no session made before this migration
carries: every member logs in once more, and every session cookie copied before the upgrade
stops working. The column is added NOT NULL with a database default in one statement, so
SQLite alters the table in place instead of rebuilding it.
"""

from peewee import SQL
from peewee import CharField


def up(migrator, db):
    column = CharField(max_length=32, default="", constraints=[SQL("DEFAULT ''")])
    migrator.migrate(migrator.add_column("user", "session_token", column, allow_not_null=True))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("user", "session_token"))
