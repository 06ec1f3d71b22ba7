"""Indexes for pages whose cost does not grow with the data.

- ``message(user_id, id)``: a user's timeline, newest first, and each followed user's
  range of the home timeline, read straight from the index;
- ``message(user_id, pub_date)``: a user's messages by date (API filters and ordering);
- ``relationship(from_user_id, id)`` / ``relationship(to_user_id, id)``: someone's follows
  and followers, newest first, paged by the follow's id;
- ``relationship(created_date)``: follows by date (admin, API).

The single-column indexes on ``message.user_id``, ``relationship.from_user_id`` and
``relationship.to_user_id`` are dropped: each is the first column of one of the above
(or of the unique ``(from_user_id, to_user_id)``), which serves every lookup it served,
including the foreign-key checks of ``ON DELETE CASCADE``. Adding indexes only reads
the tables, so no row changes; ``down`` restores the old indexes exactly.
"""

NEW_INDEXES = (
    ("message", ("user_id", "id")),
    ("message", ("user_id", "pub_date")),
    ("relationship", ("from_user_id", "id")),
    ("relationship", ("to_user_id", "id")),
    ("relationship", ("created_date",)),
)
REDUNDANT_INDEXES = (
    ("message", ("user_id",)),
    ("relationship", ("from_user_id",)),
    ("relationship", ("to_user_id",)),
)


def index_name(table, columns):
    """peewee's name for a plain index on ``table(columns)``, as models.py would make it."""
    return "_".join((table, *columns))


def up(migrator, db):
    operations = [migrator.add_index(table, columns) for table, columns in NEW_INDEXES]
    operations += [
        migrator.drop_index(table, index_name(table, columns))
        for table, columns in REDUNDANT_INDEXES
    ]
    migrator.migrate(*operations)


def down(migrator, db):
    operations = [migrator.add_index(table, columns) for table, columns in REDUNDANT_INDEXES]
    operations += [
        migrator.drop_index(table, index_name(table, columns)) for table, columns in NEW_INDEXES
    ]
    migrator.migrate(*operations)
