"""Index ``like(user_id, id)``: someone's likes page lists the messages they liked, most
recently liked first (``ORDER BY like.id DESC``). The unique ``(user_id, message_id)``
index finds their likes but not in that order, so SQLite sorted all of them in a
temporary B-tree on every page view, a cost that grew with the number of likes. With this
index the page reads the newest likes as a range. Adding an index only reads the table, so
no row changes; ``down`` drops it.
"""

INDEX = ("like", ("user_id", "id"))


def up(migrator, db):
    table, columns = INDEX
    migrator.migrate(migrator.add_index(table, columns))


def down(migrator, db):
    table, columns = INDEX
    migrator.migrate(migrator.drop_index(table, "_".join((table, *columns))))
