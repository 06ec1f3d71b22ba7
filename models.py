"""Chirp's peewee models, their constraints, and the queries that belong to them.

Timelines only ever show messages of active users: a deactivated user's messages are
hidden everywhere until the account is reactivated.
"""

import datetime
import hashlib
import os
import re
import secrets
from urllib.parse import quote

from flask_peewee.auth import BaseUser
from flask_peewee.utils import is_legacy_password
from markupsafe import Markup
from markupsafe import escape
from peewee import SQL
from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import Check
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase
from peewee import TextField
from peewee import Value
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
DISPLAY_NAME_MAX_LENGTH = 50
BIO_MAX_LENGTH = 160
# One line of text without control characters (display names and bios; may be empty).
PROFILE_TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
TAG_MAX_LENGTH = 50
# A #tag: letters, digits or underscores of any script, at least one of them not a digit
# (so "#1" is not a tag), not glued to a word before it ("a#b") nor running on past
# TAG_MAX_LENGTH characters.
TAG_PATTERN = rf"(?<![\w#&])#(?=\w*[^\W\d])(\w{{1,{TAG_MAX_LENGTH}}})(?!\w)"
# An @mention of a username; never inside an e-mail address ("bob@example.com").
MENTION_PATTERN = rf"(?<![\w@/])@([A-Za-z0-9_]{{1,{USERNAME_MAX_LENGTH}}})(?![\w@])"
# A web address: http(s)://, up to white space or a character no URL holds unescaped.
URL_PATTERN = r"\bhttps?://[^\s<>\"'`{}|\\^]+"
# Punctuation that ends a sentence rather than the address it follows ("see https://x.org.").
URL_TRAILING_PUNCTUATION = ".,:;!?)]'\""
# The one regular expression that splits a message into links and plain text; the URL
# alternative comes first, so "#frag" inside an address stays part of the address.
# Groups: 1 an address, 2 a mentioned username, 3 a tag.
MESSAGE_TOKENS = re.compile(f"({URL_PATTERN})|{MENTION_PATTERN}|{TAG_PATTERN}")
# Where tags and mentions link to (the web routes in views.py serve these paths).
TAG_PATH = "/tags/{}/"
USER_PATH = "/users/{}/"
AVATAR_PATH = "/avatars/{}.svg"


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
    # Shown instead of the username where a name is wanted; "" means "use the username".
    display_name = CharField(max_length=DISPLAY_NAME_MAX_LENGTH, default="")
    bio = CharField(max_length=BIO_MAX_LENGTH, default="")

    class Meta:
        table_name = "user"

    def __str__(self):
        return self.username

    @property
    def name(self):
        """The name to show: the display name, or the username when there is none."""
        return self.display_name or self.username

    @property
    def avatar_url(self):
        """The path of this user's generated avatar (an SVG identicon, see identicon_svg)."""
        return AVATAR_PATH.format(self.id)

    def update_profile(self, display_name, bio):
        """Set the display name and bio (already checked against PROFILE_TEXT_PATTERN and
        their maximum lengths by the form or the API), trimmed, and save them."""
        self.display_name = display_name.strip()
        self.bio = bio.strip()
        self.save(only=[User.display_name, User.bio])

    def profile_counts(self):
        """Return ``{"messages": n, "followers": n, "following": n}`` for the profile
        header: visible messages, and follows with active users only."""
        return {
            "messages": Message.select().where(Message.user == self).count(),
            "followers": self.followers().count(),
            "following": self.following().count(),
        }

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

    def timeline(self):
        """Return this user's own messages, newest first (their user timeline)."""
        return Message.visible().where(Message.user == self)

    def home_timeline(self):
        """Return the messages of everyone this user follows, and their own, newest first."""
        followed = Relationship.select(Relationship.to_user).where(Relationship.from_user == self)
        return Message.visible().where((Message.user == self) | (Message.user << followed))

    def following(self):
        """Return the active users this user follows, by username."""
        return (
            User.select()
            .join(Relationship, on=Relationship.to_user)
            .where(Relationship.from_user == self, User.active)
            .order_by(fn.LOWER(User.username))
        )

    def followers(self):
        """Return the active users who follow this user, by username."""
        return (
            User.select()
            .join(Relationship, on=Relationship.from_user)
            .where(Relationship.to_user == self, User.active)
            .order_by(fn.LOWER(User.username))
        )

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


# Case-insensitive uniqueness: the database, not just the join form, refuses "Alice"
# next to "alice", so two racing sign-ups cannot both win.
User.add_index(User.index(fn.LOWER(User.username), unique=True, name="user_username_lower"))


class Relationship(BaseModel):
    """``from_user`` follows ``to_user``. One row per pair; nobody follows themself."""

    from_user = ForeignKeyField(User, backref="relationships", on_delete="CASCADE")
    to_user = ForeignKeyField(User, backref="related_to", on_delete="CASCADE")
    created_date = DateTimeField(default=datetime.datetime.now)

    class Meta:
        indexes = ((("from_user", "to_user"), True),)
        constraints = [Check("from_user_id <> to_user_id")]

    def __str__(self):
        return f"{self.from_user} follows {self.to_user}"


class Message(BaseModel):
    """A short message: 1 to MESSAGE_MAX_LENGTH characters of plain text.

    Saving a message (re)extracts its #tags and @mentions into MessageTag and Mention in
    the same transaction, so tag pages and mention lists are index look-ups, never scans
    of the text. ``edited_date`` is set when the author changes the text (``edit``).
    """

    user = ForeignKeyField(User, backref="messages", on_delete="CASCADE")
    content = TextField(constraints=[Check(f"length(content) BETWEEN 1 AND {MESSAGE_MAX_LENGTH}")])
    pub_date = DateTimeField(default=datetime.datetime.now, index=True)
    edited_date = DateTimeField(null=True)

    def __str__(self):
        return self.content[:40]

    def save(self, *args, **kwargs):
        """Save the row and, in the same transaction, its tags and mentions."""
        with db.database.atomic():
            result = super().save(*args, **kwargs)
            self.extract_links()
        return result

    def edit(self, content):
        """Replace the text with ``content`` (already validated), mark the message as
        edited now, and save it (tags and mentions follow the new text)."""
        self.content = content
        self.edited_date = datetime.datetime.now()
        self.save()

    def extract_links(self):
        """Replace this message's MessageTag and Mention rows with those its text holds
        now: each distinct tag (lower case) and each mentioned user that exists."""
        MessageTag.delete().where(MessageTag.message == self.id).execute()
        Mention.delete().where(Mention.message == self.id).execute()
        tags = extract_tags(self.content)
        if tags:
            Tag.insert_many([{"name": name} for name in tags]).on_conflict_ignore().execute()
            tag_ids = Tag.select(Tag.id, Value(self.id)).where(Tag.name << tags)
            MessageTag.insert_from(tag_ids, [MessageTag.tag, MessageTag.message]).execute()
        names = extract_mentions(self.content)
        if names:
            users = User.select(User.id, Value(self.id)).where(fn.LOWER(User.username) << names)
            Mention.insert_from(users, [Mention.user, Mention.message]).execute()

    def links(self):
        """Return ``{"mentions": [...], "tags": [...], "urls": [...]}`` in the order the
        text holds them: the usernames of the existing users it mentions, its tags (lower
        case) and its web addresses. What the API shows beside the text."""
        names = extract_mentions(self.content)
        users = User.select(User.username).where(fn.LOWER(User.username) << names)
        known = {user.username.lower(): user.username for user in users} if names else {}
        return {
            "mentions": [known[name] for name in names if name in known],
            "tags": extract_tags(self.content),
            "urls": extract_urls(self.content),
        }

    @classmethod
    def visible(cls):
        """Return messages of active users with their author joined in, newest first."""
        return (
            cls.select(cls, User)
            .join(User)
            .where(User.active)
            .order_by(cls.pub_date.desc(), cls.id.desc())
        )

    @classmethod
    def public_timeline(cls):
        """Return every visible message, newest first."""
        return cls.visible()

    @classmethod
    def tagged(cls, name):
        """Return the visible messages tagged ``name`` (any case), newest first by id.

        Walks the (tag, message) index of MessageTag backwards, so a page costs the same
        however many messages exist.
        """
        return (
            cls.visible()
            .join_from(cls, MessageTag)
            .join(Tag)
            .where(Tag.name == name.lower())
            .order_by(MessageTag.message.desc())
        )

    @staticmethod
    def mentioned_names(messages):
        """Return ``{message id: {lower-case username, ...}}``: the active users each of
        ``messages`` mentions, in one query for the whole page (linkify needs them)."""
        ids = [message.id for message in messages]
        names = {}
        if not ids:
            return names
        query = (
            Mention.select(Mention.message, User.username)
            .join(User)
            .where(Mention.message << ids, User.active)
            .tuples()
        )
        for message_id, username in query:
            names.setdefault(message_id, set()).add(username.lower())
        return names


# PostgreSQL's full-text index on messages (created by migration 0005; on SQLite the FTS5
# table message_fts plays its part). Declared here so models and migrations agree.
SEARCH_CONFIGURATION = "simple"
if isinstance(db.database, PostgresqlDatabase):
    Message.add_index(
        Message.index(
            fn.to_tsvector(SQL(f"'{SEARCH_CONFIGURATION}'"), Message.content),
            using="GIN",
            name="message_content_search",
        )
    )


class Tag(BaseModel):
    """A #tag, stored in lower case; created the first time a message uses it."""

    name = CharField(max_length=TAG_MAX_LENGTH, unique=True)

    def __str__(self):
        return self.name


class MessageTag(BaseModel):
    """``message`` carries ``tag``. One row per pair; written by Message.save."""

    # The (tag, message) index serves both the tag page and uniqueness.
    tag = ForeignKeyField(Tag, backref="message_tags", on_delete="CASCADE", index=False)
    message = ForeignKeyField(Message, backref="message_tags", on_delete="CASCADE")

    class Meta:
        indexes = ((("tag", "message"), True),)

    def __str__(self):
        return f"#{self.tag_id} on message {self.message_id}"


class Mention(BaseModel):
    """``message`` mentions ``user`` (an existing user). Written by Message.save."""

    # The (user, message) index serves "messages mentioning me" and uniqueness.
    user = ForeignKeyField(User, backref="mentions", on_delete="CASCADE", index=False)
    message = ForeignKeyField(Message, backref="mentions", on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "message"), True),)

    def __str__(self):
        return f"@{self.user_id} in message {self.message_id}"


def extract_tags(text):
    """Return the distinct #tags of ``text``, lower case, in order of first use."""
    return list(dict.fromkeys(tag.lower() for tag in re.findall(TAG_PATTERN, text)))


def extract_mentions(text):
    """Return the distinct @usernames of ``text``, lower case, in order of first use
    (whether or not such users exist)."""
    return list(dict.fromkeys(name.lower() for name in re.findall(MENTION_PATTERN, text)))


def extract_urls(text):
    """Return the web addresses in ``text``, in order, without trailing punctuation."""
    return [match.rstrip(URL_TRAILING_PUNCTUATION) for match in re.findall(URL_PATTERN, text)]


def linkify(text, known_usernames):
    """Return ``text`` as safe HTML (Markup) with its addresses, mentions and tags as links.

    Everything else is escaped. Addresses open with ``rel="nofollow ugc noopener"``;
    an @mention links only when its lower-cased name is in ``known_usernames`` (the
    active users the message mentions, see Message.mentioned_names), else stays text.
    """
    parts = []
    position = 0
    for match in MESSAGE_TOKENS.finditer(text):
        url, username, tag = match.groups()
        start, end = match.span()
        if url is not None:
            url = url.rstrip(URL_TRAILING_PUNCTUATION)
            end = start + len(url)
        parts.append(escape(text[position:start]))
        visible = escape(text[start:end])
        if url is not None:
            parts.append(f'<a href="{escape(url)}" rel="nofollow ugc noopener">{visible}</a>')
        elif username is not None and username.lower() in known_usernames:
            parts.append(f'<a class="mention" href="{USER_PATH.format(username)}">{visible}</a>')
        elif tag is not None:
            path = TAG_PATH.format(quote(tag.lower()))
            parts.append(f'<a class="tag" href="{path}">{visible}</a>')
        else:
            parts.append(visible)
        position = end
    parts.append(escape(text[position:]))
    return Markup("".join(parts))


def identicon_svg(user_id):
    """Return an SVG identicon for ``user_id``: a symmetric 5×5 pattern in one colour,
    derived from a hash of the id, so it is the same everywhere, for ever, and costs
    no storage and no third party. Returns text (image/svg+xml)."""
    digest = hashlib.sha256(f"chirp-avatar:{user_id}".encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    cells = []
    for row in range(5):
        for column in range(3):  # the right two columns mirror the left two
            if digest[2 + row * 3 + column] % 2:
                for x in {column, 4 - column}:
                    cells.append(f'<rect x="{x + 1}" y="{row + 1}" width="1" height="1"/>')
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 7 7" shape-rendering="crispEdges">'
        f'<rect width="7" height="7" fill="hsl({hue},45%,92%)"/>'
        f'<g fill="hsl({hue},55%,42%)">{"".join(cells)}</g></svg>'
    )


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


MODELS = [User, Relationship, Message, Note, ApiToken, AuditEntry, Tag, MessageTag, Mention]

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
