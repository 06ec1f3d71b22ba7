"""Chirp's peewee models, their constraints, and the queries that belong to them.

Timelines only ever show messages of active users: a deactivated user's messages are
hidden everywhere until the account is reactivated.
"""

import datetime
import hashlib
import os
import re
import secrets

from flask_peewee.auth import BaseUser
from flask_peewee.utils import is_legacy_password
from peewee import SQL
from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import Check
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Select
from peewee import SqliteDatabase
from peewee import TextField
from peewee import fn
from playhouse.migrations import Runner
from playhouse.sqlite_ext import AutoIncrementField

from app import db

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,30}")
USERNAME_MAX_LENGTH = 30
EMAIL_MAX_LENGTH = 254
MESSAGE_MAX_LENGTH = 280
PASSWORD_MIN_LENGTH = 8
# Bounds the hashing work an attacker can ask for with one request (characters).
PASSWORD_MAX_LENGTH = 256
TOKEN_NAME_MAX_LENGTH = 50
# White space and control characters, as explicit ranges: ``\s`` differs between Python
# and ECMA-262 (the API's OpenAPI clients), e.g. for U+001C. Shared by forms and the API.
BLANK_CHARACTERS = r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
EMAIL_PATTERN = rf"^[^@{BLANK_CHARACTERS}]+@[^@{BLANK_CHARACTERS}]+\.[^@{BLANK_CHARACTERS}]+$"
# Text with something visible in it (not only white space or control characters), no NUL.
TEXT_PATTERN = rf"^[^\u0000]*[^{BLANK_CHARACTERS}][^\u0000]*$"


# SQLite hands a deleted row's id to the next insert unless the key is AUTOINCREMENT, and ids
# are public (URLs, API cursors): an old link must never reach someone else's new message.
# PostgreSQL sequences never reuse ids.
PrimaryKeyField = AutoIncrementField if isinstance(db.database, SqliteDatabase) else AutoField


class BaseModel(db.Model):
    """Base of Chirp's models: an id that is never reused."""

    id = PrimaryKeyField()


def new_session_token():
    """Return a fresh random value for ``User.session_token`` (32 hex digits)."""
    return secrets.token_hex(16)


class User(BaseModel, BaseUser):
    """A person with an account. ``password`` holds a werkzeug hash, never the password.

    ``username`` is unique case-insensitively (``Alice`` and ``alice`` are one user) but
    keeps the case it was registered with for display.

    ``session_token`` is copied into each session at login; a session whose copy differs
    is logged out (auth.ChirpAuth). Replacing it ends every session of the user at once:
    that happens at logout, at a password change, at deactivation and on "log out
    everywhere". It is not a secret (sessions are signed, not encrypted); it only has to
    change. Rows from before it existed hold "", which no older session carries.
    """

    username = CharField(max_length=USERNAME_MAX_LENGTH, unique=True)
    email = CharField(max_length=EMAIL_MAX_LENGTH, unique=True)
    password = CharField(max_length=255)
    join_date = DateTimeField(default=datetime.datetime.now, index=True)
    active = BooleanField(default=True, index=True)
    admin = BooleanField(default=False)
    session_token = CharField(max_length=32, default=new_session_token)

    class Meta:
        table_name = "user"

    def __str__(self):
        return self.username

    def save(self, *args, **kwargs):
        """Save the row; saving a deactivated user ends their sessions, so they stay ended
        when the account is reactivated."""
        if not self.active:
            self.session_token = new_session_token()
        return super().save(*args, **kwargs)

    def set_password(self, password):
        """Hash ``password`` into ``password`` and end every session (once saved)."""
        super().set_password(password)
        self.session_token = new_session_token()

    def end_sessions(self):
        """End every session of this user now (written at once, not at the next save)."""
        self.session_token = new_session_token()
        User.update(session_token=self.session_token).where(User.id == self.id).execute()

    @classmethod
    def set_active(cls, ids, active):
        """Activate or deactivate the users with these ``ids`` in one UPDATE, ending their
        sessions (as ``save`` does for one user). Returns the number of rows updated."""
        query = cls.update(active=active, session_token=new_session_token())
        return query.where(cls.id << list(ids)).execute()

    def has_usable_password(self):
        """Return True if ``password`` is a hash some password could match: werkzeug's
        ``method$salt$hash`` or a legacy ``salt$sha1``. Accounts created through the API
        hold "!" until a password is set; checking a password against it costs nothing."""
        return self.password.count("$") == 2 or is_legacy_password(self.password)

    @classmethod
    def by_username(cls, username):
        """Return a query for the user named ``username``, ignoring case."""
        return cls.select().where(fn.LOWER(cls.username) == username.lower())

    def timeline(self, before=None, limit=None):
        """Return this user's own messages, newest (highest id) first: their user timeline.

        ``before`` (a message id) keeps only older messages, ``limit`` caps the rows: one
        range of the ``message(user_id, id)`` index, however many messages the user has.
        """
        query = Message.visible().where(Message.user == self)
        return keyset(query, Message.id, before, limit)

    def home_timeline(self, before=None, limit=None):
        """Return the messages of everyone this user follows, and their own, newest (highest
        id) first, ``before`` a message id and at most ``limit`` of them (2 queries).

        Why this shape: "my messages or my followees'" as one ``user_id IN (...)`` filter
        sorted by id makes the database either sort every matching message (hundreds of
        thousands for a popular followee) or walk the whole table newest first until enough
        rows match (all of it, for someone who follows a few quiet people). Instead, each
        followed user contributes one small range of the ``message(user_id, id)`` index,
        the ``limit`` newest ids below ``before``, and the database merges those
        ``followees x limit`` ids and keeps the newest ``limit``: the work is bounded by what
        the page shows, not by the data. Fan-out on write (a per-reader inbox table) would
        make reads cheaper still, but costs a write per follower for each message and a
        backfill on every follow.

        Beyond HOME_MERGE_MAX_FOLLOWEES followees the union grows too long to be cheap;
        such a reader's followees post so often between them that scanning messages newest
        first finds a page almost at once, so the plain ``IN`` filter is used instead.
        """
        followed = (
            Relationship.select(Relationship.to_user)
            .join(User, on=Relationship.to_user)
            .where(Relationship.from_user == self, User.active)
            .limit(HOME_MERGE_MAX_FOLLOWEES + 1)
        )
        authors = [self.id, *(row.to_user_id for row in followed)]
        if len(authors) > HOME_MERGE_MAX_FOLLOWEES + 1:
            everyone = Relationship.select(Relationship.to_user).where(
                Relationship.from_user == self
            )
            query = Message.visible().where((Message.user == self) | (Message.user << everyone))
            return keyset(query, Message.id, before, limit)
        per_author = limit if limit is not None else HOME_MERGE_DEFAULT_LIMIT
        ranges = []
        for number, author in enumerate(authors):
            newest = keyset(
                Message.select(Message.id).where(Message.user == author),
                Message.id,
                before,
                per_author,
            )
            # SQLite refuses ORDER BY/LIMIT directly inside a UNION member: wrap each one.
            ranges.append(Select(from_list=[newest.alias(f"r{number}")], columns=[SQL("id")]))
        merged = ranges[0]
        for other in ranges[1:]:
            merged = merged.union_all(other)
        query = Message.visible().where(Message.id.in_(merged))
        return keyset(query, Message.id, None, limit)

    def following(self, before=None, limit=None):
        """Return the active users this user follows, most recently followed first.

        Each row carries ``follow_id``, the id of the follow: the cursor for ``before``
        (keyset paging on ``relationship(from_user_id, id)``); ``limit`` caps the rows.
        """
        query = (
            User.select(*User.LIST_COLUMNS, Relationship.id.alias("follow_id"))
            .join(Relationship, on=Relationship.to_user)
            .where(Relationship.from_user == self, User.active)
            .objects()  # follow_id lands on the User row
        )
        return keyset(query, Relationship.id, before, limit)

    def followers(self, before=None, limit=None):
        """Return the active users who follow this user, most recent follower first.

        Rows carry ``follow_id`` as in ``following`` (index ``relationship(to_user_id, id)``).
        """
        query = (
            User.select(*User.LIST_COLUMNS, Relationship.id.alias("follow_id"))
            .join(Relationship, on=Relationship.from_user)
            .where(Relationship.to_user == self, User.active)
            .objects()  # follow_id lands on the User row
        )
        return keyset(query, Relationship.id, before, limit)

    def follower_count(self):
        """Return how many active users follow this user (one COUNT over the
        ``relationship(to_user_id, id)`` index range, each follower's row by primary key)."""
        return (
            Relationship.select()
            .join(User, on=Relationship.from_user)
            .where(Relationship.to_user == self, User.active)
            .count()
        )

    def following_count(self):
        """Return how many active users this user follows (one COUNT over an index range)."""
        return (
            Relationship.select()
            .join(User, on=Relationship.to_user)
            .where(Relationship.from_user == self, User.active)
            .count()
        )

    @classmethod
    def directory(cls, after=None, limit=None):
        """Return active users by username (byte order), only LIST_COLUMNS: those whose
        username sorts after ``after`` (keyset paging on the username index), at most
        ``limit`` of them."""
        query = cls.select(*cls.LIST_COLUMNS).where(cls.active)
        return keyset(query, cls.username, after, limit, descending=False)

    def is_following(self, other):
        """Return True if this user follows ``other``."""
        return (
            Relationship.select()
            .where(Relationship.from_user == self, Relationship.to_user == other)
            .exists()
        )

    def follow(self, other):
        """Make this user follow ``other``; following twice is a no-op.

        Raises ValueError when ``other`` is this user.
        """
        if other.id == self.id:
            raise ValueError("You cannot follow yourself.")
        Relationship.insert(from_user=self, to_user=other).on_conflict_ignore().execute()

    def unfollow(self, other):
        """Stop following ``other``; returns the number of relationships removed (0 or 1)."""
        return (
            Relationship.delete()
            .where(Relationship.from_user == self, Relationship.to_user == other)
            .execute()
        )


# What a list of people shows of each (the directory, followers, following): never the
# password hash or e-mail. Add a column here when a list starts showing it.
User.LIST_COLUMNS = (User.id, User.username, User.join_date)

# Case-insensitive uniqueness: the database, not just the join form, refuses "Alice"
# next to "alice", so two racing sign-ups cannot both win.
User.add_index(User.index(fn.LOWER(User.username), unique=True, name="user_username_lower"))


class Relationship(BaseModel):
    """``from_user`` follows ``to_user``. One row per pair; nobody follows themself."""

    # No single-column indexes on the foreign keys: the indexes below start with them.
    from_user = ForeignKeyField(User, backref="relationships", on_delete="CASCADE", index=False)
    to_user = ForeignKeyField(User, backref="related_to", on_delete="CASCADE", index=False)
    created_date = DateTimeField(default=datetime.datetime.now, index=True)

    class Meta:
        indexes = (
            (("from_user", "to_user"), True),
            # Keyset pages of someone's follows and followers, newest first.
            (("from_user", "id"), False),
            (("to_user", "id"), False),
        )
        constraints = [Check("from_user_id <> to_user_id")]

    def __str__(self):
        return f"{self.from_user} follows {self.to_user}"


class Message(BaseModel):
    """A short message: 1 to MESSAGE_MAX_LENGTH characters of plain text."""

    # The indexes below start with user_id, so it needs none of its own.
    user = ForeignKeyField(User, backref="messages", on_delete="CASCADE", index=False)
    content = TextField(constraints=[Check(f"length(content) BETWEEN 1 AND {MESSAGE_MAX_LENGTH}")])
    pub_date = DateTimeField(default=datetime.datetime.now, index=True)

    class Meta:
        indexes = (
            # A user's timeline and each range of the home timeline, newest id first.
            (("user", "id"), False),
            # A user's messages by date (API filters and ordering on pub_date).
            (("user", "pub_date"), False),
        )

    def __str__(self):
        return self.content[:40]

    @classmethod
    def visible(cls, author_columns=None):
        """Return messages of active users, newest (highest id) first, each with its author
        joined in (``message.user``) holding only ``author_columns`` (default
        AUTHOR_COLUMNS): never a password hash, and nothing a page does not show."""
        author_columns = author_columns or cls.AUTHOR_COLUMNS
        return (
            cls.select(cls, *author_columns).join(User).where(User.active).order_by(cls.id.desc())
        )

    @classmethod
    def public_timeline(cls, before=None, limit=None):
        """Return every visible message, newest first; ``before`` a message id, at most
        ``limit`` rows (keyset paging on the primary key)."""
        return keyset(cls.visible(), cls.id, before, limit)


# The author columns a timeline shows with each message. Others (display name, avatar)
# are added here when templates start showing them; the API adds its own.
Message.AUTHOR_COLUMNS = (User.id, User.username)


def keyset(query, key, cursor=None, limit=None, descending=True):
    """Return ``query`` ordered by ``key`` (a unique column), newest/largest first unless
    ``descending`` is False, keeping only rows past ``cursor`` (``key < cursor``, or
    ``key > cursor`` ascending) and at most ``limit`` of them.

    This is keyset paging: the next page starts from the last row shown, so page 1000
    costs what page 1 costs, unlike OFFSET, which reads and drops every earlier row.
    ``cursor=None`` is the first page; ``limit=None`` means no limit.
    """
    query = query.order_by(key.desc() if descending else key.asc())
    if cursor is not None:
        query = query.where(key < cursor if descending else key > cursor)
    return query.limit(limit) if limit is not None else query


# The most followees whose messages User.home_timeline merges index range by index range.
HOME_MERGE_MAX_FOLLOWEES = 500
# The per-followee range of User.home_timeline when the caller sets no limit.
HOME_MERGE_DEFAULT_LIMIT = 1000


class Note(BaseModel):
    """An admin's note, posted from the admin dashboard's Notes panel."""

    LIVE = 1
    DELETED = 2
    STATUS_CHOICES = ((LIVE, "live"), (DELETED, "deleted"))

    user = ForeignKeyField(User, backref="notes", on_delete="CASCADE")
    message = TextField()
    status = IntegerField(default=LIVE, choices=STATUS_CHOICES)
    created_date = DateTimeField(default=datetime.datetime.now, index=True)

    def __str__(self):
        return self.message[:40]


class ApiToken(BaseModel):
    """A personal API token. Only its SHA-256 is stored; the token is shown once."""

    user = ForeignKeyField(User, backref="api_tokens", on_delete="CASCADE")
    name = CharField(max_length=TOKEN_NAME_MAX_LENGTH)
    token_hash = CharField(max_length=64, unique=True)
    created_date = DateTimeField(default=datetime.datetime.now)
    last_used = DateTimeField(null=True)

    def __str__(self):
        return self.name

    @staticmethod
    def hash_token(token):
        """Return the hex SHA-256 of ``token`` (a str). A plain hash suffices: tokens are
        256 random bits, so unlike passwords they need no slow, salted hash."""
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    @classmethod
    def issue(cls, user, name):
        """Create a token called ``name`` for ``user``; return ``(row, token)``.

        ``token`` is the only copy of the secret: show it to the user once.
        """
        token = secrets.token_urlsafe(32)
        return cls.create(user=user, name=name, token_hash=cls.hash_token(token)), token

    @classmethod
    def lookup(cls, token):
        """Return the ApiToken row for ``token`` if its user is active, else None."""
        return (
            cls.select(cls, User)
            .join(User)
            .where(cls.token_hash == cls.hash_token(token), User.active)
            .first()
        )


class AuditEntry(BaseModel):
    """One admin action: who did it, when, to which row of which model, and what changed.

    ``changes`` is a JSON object of ``{field: [old, new]}``; ``object_id`` is text so a
    bulk action can record a list of ids.
    """

    actor = ForeignKeyField(User, null=True, backref="audit_entries", on_delete="SET NULL")
    action = CharField(max_length=50)
    model_name = CharField(max_length=50)
    object_id = TextField(default="")
    changes = TextField(default="{}")
    created_date = DateTimeField(default=datetime.datetime.now, index=True)


MODELS = [User, Relationship, Message, Note, ApiToken, AuditEntry]

# Schema changes ship as numbered migrations here (peewee's playhouse.migrations, the
# `pwmigrate` tool); `python main.py db upgrade` applies them.
MIGRATIONS_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def migration_runner(database=None):
    """Return peewee's migration Runner for ``database`` (default: Chirp's) and
    MIGRATIONS_DIRECTORY. Its history lives in the table ``schema_migration``."""
    return Runner(database or db.database, MIGRATIONS_DIRECTORY)


def pending_migrations(database=None):
    """Return the names of the migrations not yet applied to ``database`` (default:
    Chirp's), oldest first. Raises peewee's OperationalError if the database is down."""
    return [
        migration.name for migration in migration_runner(database).status() if not migration.applied
    ]
