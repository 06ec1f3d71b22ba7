"""Chirp's peewee models, their constraints, and the queries that belong to them.

Timelines only ever show messages of active users: a deactivated user's messages are
hidden everywhere until the account is reactivated.
"""

import datetime
import functools
import hashlib
import importlib.resources
import json
import os
import re
import secrets
import unicodedata

from flask_peewee.auth import BaseUser
from flask_peewee.utils import is_legacy_password
from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import Check
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import SqliteDatabase
from peewee import TextField
from peewee import fn
from playhouse.migrations import Runner
from playhouse.sqlite_ext import AutoIncrementField

from app import db

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,30}")
USERNAME_MAX_LENGTH = 30
# A username's confusable skeleton is at most twice as long ("m" becomes "rn"); accounts
# that already looked alike when migration 0004 ran carry a "#<id>" suffix (docs/security.md).
USERNAME_SKELETON_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
# Characters, as clean_text counts them: Unicode code points after normalisation.
MESSAGE_MAX_LENGTH = 280
NOTE_MAX_LENGTH = 1000
# Text longer than this many times its limit is refused before it is normalised: no
# normalisation brings it back under the limit in practice, and it bounds the work.
RAW_LENGTH_FACTOR = 4
# The one answer when a username or e-mail address is in use, on every surface (web, admin,
# API, command line), so that each says the same and none says which of the two it was.
TAKEN_MESSAGE = "That username or e-mail address is taken."
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


# ---------------------------------------------------------------- the text rule
#
# docs/security.md, "Text that means what it shows". One rule for every piece of text a
# person writes (messages, admin notes): the web forms, the API, the admin and the models'
# save() all call clean_text, and the database checks the length once more.

# What the composer's trim removes: exactly ECMAScript's String.prototype.trim() (its
# WhiteSpace and LineTerminator sets), so the browser and the server trim alike.
TRIM_CHARACTERS = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# Characters refused anywhere in a text, with the reason shown to the writer:
# - control characters other than tab and line feed (carriage returns become line feeds);
# - bidirectional embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069):
#   they reorder the text after them, so "txt.exe" can show as "exe.txt";
# - invisible format characters with no use in a message: zero-width space, word joiner,
#   invisible operators, deprecated format controls, byte-order mark, interlinear
#   annotation, the Mongolian vowel separator and the Hangul fillers that render as blanks.
# Kept: zero-width (non-)joiners (emoji sequences, Persian, Indic scripts), the
# left-to-right/right-to-left marks (they reorder nothing beyond neutral characters
# next to them, and every message is shown in its own dir="auto" isolate), soft hyphens,
# variation selectors, and tag characters inside an emoji tag sequence (subdivision flags).
REFUSED_CHARACTERS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f]"
    "|[\u202a-\u202e\u2066-\u2069]"
    "|[\u200b\u2060-\u2064\u206a-\u206f\ufeff\ufff9-\ufffb\u180e"
    "\u115f\u1160\u3164\uffa0]"
)
REFUSED_NAMES = {
    range(0x202A, 0x202F): "a text direction control",
    range(0x2066, 0x206A): "a text direction control",
    range(0x00, 0xA0): "a control character",
}
# Tag characters (U+E0000..U+E007F) are allowed only as an emoji tag sequence: a black
# flag, tag letters, and the cancel tag. Anywhere else they hide text nobody sees.
EMOJI_TAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
TAG_CHARACTER = re.compile("[\U000e0000-\U000e007f]")
# General categories that show nothing by themselves: controls, format characters,
# separators (spaces, line and paragraph separators), surrogates, combining marks.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
# Letters and symbols that fonts draw as blanks (Hangul fillers, the blank Braille cell,
# the combining grapheme joiner, Khmer inherent vowels, Mongolian free variation selectors).
BLANK_LOOKING = frozenset(
    "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180b\u180c\u180d\u180f"
)


class TextRefused(ValueError):
    """Text that a rule refuses. ``str(exc)`` is a message for the person who wrote it."""


class Taken(ValueError):
    """A username or e-mail address that another account already uses (TAKEN_MESSAGE)."""

    def __init__(self):
        super().__init__(TAKEN_MESSAGE)


def normalize_text(value):
    """Return ``value`` (a str) the way Chirp stores and counts it: line breaks (CR LF, CR)
    become LF, Unicode NFC, and TRIM_CHARACTERS trimmed from both ends.

    The composer counts exactly the same way, in this order; in JavaScript::

        const text = value.replace(/\r\n?/g, "\n").normalize("NFC").trim();
        const count = Array.from(text).length;   // code points, not UTF-16 units

    so an emoji counts 1 (the browser's ``maxlength`` would count 2), a line break 1, and
    what the composer shows as "280 left" is what the server accepts.
    """
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text).strip(TRIM_CHARACTERS)


def count_characters(text):
    """Return the length of ``text`` as Chirp counts it: Unicode code points (a str's
    len). Call it on normalize_text's result; SQLite's and PostgreSQL's ``length()``
    count the same way, so the database CHECKs agree with it."""
    return len(text)


def is_visible(character):
    """Return True if ``character`` (one code point) draws something by itself: not white
    space, a control, a format character, a combining mark or a blank-looking letter."""
    return (
        unicodedata.category(character) not in INVISIBLE_CATEGORIES
        and character not in BLANK_LOOKING
    )


def refused_character(text):
    """Return a description of the first character of ``text`` that the text rule refuses
    ("U+202E, a text direction control"), or None when there is none."""
    match = REFUSED_CHARACTERS.search(text) or TAG_CHARACTER.search(
        EMOJI_TAG_SEQUENCE.sub("", text)
    )
    if match is None:
        return None
    code = ord(match.group())
    kind = next(
        (name for codes, name in REFUSED_NAMES.items() if code in codes),
        "an invisible character",
    )
    return f"U+{code:04X}, {kind}"


def clean_text(value, max_length, what="Message"):
    """Return ``value`` normalised (normalize_text) if the text rule accepts it, else raise
    TextRefused with a message naming ``what`` (e.g. "Message", "Note").

    Accepted: a str holding valid Unicode (no lone surrogates), without REFUSED_CHARACTERS
    or stray tag characters, with at least one visible character (is_visible), and 1 to
    ``max_length`` characters (count_characters) once normalised. Text longer than
    RAW_LENGTH_FACTOR times ``max_length`` is refused before any normalising work.
    """
    if not isinstance(value, str):
        raise TextRefused(f"{what} must be text.")
    if len(value) > RAW_LENGTH_FACTOR * max_length:
        raise TextRefused(f"{what} must be at most {max_length} characters long.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON can carry one, UTF-8 cannot
        raise TextRefused(f"{what} is not valid Unicode text.") from None
    text = normalize_text(value)
    refused = refused_character(text)
    if refused:
        raise TextRefused(f"{what} holds a character that is not allowed: {refused}.")
    if not any(is_visible(character) for character in text):
        raise TextRefused(
            f"{what} needs something visible: spaces, line breaks and invisible characters "
            "alone do not count."
        )
    length = count_characters(text)
    if length > max_length:
        raise TextRefused(f"{what} must be at most {max_length} characters long (it has {length}).")
    return text


def clean_message(value):
    """Return message content ``value`` normalised, or raise TextRefused (clean_text with
    MESSAGE_MAX_LENGTH)."""
    return clean_text(value, MESSAGE_MAX_LENGTH, "A message")


def clean_note(value):
    """Return an admin note's text ``value`` normalised, or raise TextRefused (clean_text
    with NOTE_MAX_LENGTH)."""
    return clean_text(value, NOTE_MAX_LENGTH, "A note")


def clean_email(value):
    """Return the e-mail address ``value`` as Chirp stores it, or raise TextRefused.

    Trimmed, NFC, lower-cased, and only then checked: EMAIL_PATTERN (one ``@``, a dot in
    the domain, no white space or controls), no character the text rule refuses, and at
    most EMAIL_MAX_LENGTH characters *after* lower-casing (``İ`` lower-cases to two code
    points, so checking before would let an address outgrow its column). Uniqueness is the
    database's ``LOWER(email)`` index and User.email_taken.
    """
    if not isinstance(value, str):
        raise TextRefused("Enter an e-mail address.")
    if len(value) > RAW_LENGTH_FACTOR * EMAIL_MAX_LENGTH:
        raise TextRefused(f"An e-mail address is at most {EMAIL_MAX_LENGTH} characters long.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TextRefused("Enter an e-mail address.") from None
    email = normalize_text(value).lower()
    if not re.fullmatch(EMAIL_PATTERN, email) or refused_character(email):
        raise TextRefused("Enter an e-mail address.")
    if len(email) > EMAIL_MAX_LENGTH:
        raise TextRefused(f"An e-mail address is at most {EMAIL_MAX_LENGTH} characters long.")
    return email


def clean_username(value):
    """Return ``value`` if it is a valid new username (1 to USERNAME_MAX_LENGTH of
    ``[A-Za-z0-9_]``), else raise TextRefused. Whether it is taken is User.username_taken."""
    if not isinstance(value, str) or not USERNAME_PATTERN.fullmatch(value):
        raise TextRefused("Use 1 to 30 letters, digits or underscores.")
    return value


@functools.cache
def confusable_prototypes():
    """Return ``{character: prototype}`` from Unicode's confusables data (TR 39), as the
    pinned ``confusable-homoglyphs`` package ships it (confusables.json).

    That file lists, for each character, what it can be confused with, both ways: a
    source lists its one prototype; a prototype lists its sources. A character listing
    exactly one entry whose own list is longer is a source of that prototype; where two
    characters list only each other, both map to the smaller one, which keeps skeletons
    equal exactly when TR 39's are. Loaded on first use (about 1 MB).
    """
    data = json.loads(
        importlib.resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text()
    )
    prototypes = {}
    for character, entries in data.items():
        if len(entries) != 1:
            continue
        target = entries[0]["c"]
        if len(data.get(target, ())) > 1:
            prototypes[character] = target
        elif character > target:
            prototypes[character] = target
    return prototypes


def confusable_skeleton(text):
    """Return the confusable skeleton of ``text`` (Unicode TR 39, section 4): NFD, each
    character replaced by its prototype, NFD again. Two strings that look alike have the
    same skeleton: ``aIice`` and ``alice`` (capital I, small L), ``f00`` and ``fOO``,
    Cyrillic ``а`` and Latin ``a``, ``rn`` and ``m``. Case is kept (username_key folds it)."""
    prototypes = confusable_prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(prototypes.get(character, character) for character in decomposed)
    return unicodedata.normalize("NFD", mapped)


def username_key(username):
    """Return what makes ``username`` one name: its confusable_skeleton, lower-cased.

    Usernames are one name in any case, so the skeleton is lower-cased too: ``AIice``
    shows like ``Alice``, which is ``alice``'s name in capitals, so the two collide, as do
    ``aIice`` and ``alice``, ``B0B`` and ``bob``. ``aiice`` and ``alice`` do not: they look
    different in any case. Stored in ``User.username_skeleton`` under a unique index.
    """
    return confusable_skeleton(username).lower()


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
    # username_key(username), unique: names that look alike are one name. Set by save();
    # "#<id>" follows it for accounts that already looked alike (migration 0004).
    username_skeleton = CharField(max_length=USERNAME_SKELETON_MAX_LENGTH, unique=True)
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
        when the account is reactivated.

        The username's skeleton follows the username. A newly set e-mail address is stored
        as clean_email returns it (TextRefused otherwise); one that was not assigned since
        the row was read is left alone, so an account with an address from before today's
        rules can still save its settings.
        """
        if not self.active:
            self.session_token = new_session_token()
        skeleton = username_key(self.username)
        if (self.username_skeleton or "").split("#")[0] != skeleton:
            self.username_skeleton = skeleton
        if "email" in self._dirty or self.id is None:
            self.email = clean_email(self.email)
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

    @classmethod
    def username_taken(cls, username, user=None):
        """Return True if another account than ``user`` (None when signing up) is called
        ``username`` in any case, or has a name that looks like it (the same username_key:
        ``aIice`` next to ``alice``). Accounts that already looked alike before migration
        0004 ("#<id>" keys) count too."""
        key = username_key(username)
        query = cls.select().where(
            (fn.LOWER(cls.username) == username.lower())
            | (cls.username_skeleton == key)
            | cls.username_skeleton.startswith(key + "#")
        )
        if user is not None and user.id is not None:
            query = query.where(cls.id != user.id)
        return query.exists()

    @classmethod
    def email_taken(cls, email, user=None):
        """Return True if an account other than ``user`` uses ``email`` (as clean_email
        returns it) in any case."""
        query = cls.select().where(fn.LOWER(cls.email) == email.lower())
        if user is not None and user.id is not None:
            query = query.where(cls.id != user.id)
        return query.exists()

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
# E-mail addresses too (migration 0004): clean_email lower-cases, and rows from before
# that rule may hold capitals.
User.add_index(User.index(fn.LOWER(User.email), unique=True, name="user_email_lower"))


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
    """A short message: 1 to MESSAGE_MAX_LENGTH characters of plain text."""

    user = ForeignKeyField(User, backref="messages", on_delete="CASCADE")
    content = TextField(constraints=[Check(f"length(content) BETWEEN 1 AND {MESSAGE_MAX_LENGTH}")])
    pub_date = DateTimeField(default=datetime.datetime.now, index=True)

    def __str__(self):
        return self.content[:40]

    def save(self, *args, **kwargs):
        """Save the row; newly set content is stored as clean_message returns it
        (TextRefused otherwise), whoever writes it: web, API, admin or a script."""
        if "content" in self._dirty or self.id is None:
            self.content = clean_message(self.content)
        return super().save(*args, **kwargs)

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


class Note(BaseModel):
    """An admin's note, posted from the admin dashboard's Notes panel."""

    LIVE = 1
    DELETED = 2
    STATUS_CHOICES = ((LIVE, "live"), (DELETED, "deleted"))

    user = ForeignKeyField(User, backref="notes", on_delete="CASCADE")
    message = TextField()
    status = IntegerField(default=LIVE, choices=STATUS_CHOICES)
    created_date = DateTimeField(default=datetime.datetime.now, index=True)

    class Meta:
        constraints = [
            Check(f"length(message) BETWEEN 1 AND {NOTE_MAX_LENGTH}", name="note_message_length")
        ]

    def __str__(self):
        return self.message[:40]

    def save(self, *args, **kwargs):
        """Save the row; newly set text is stored as clean_note returns it (TextRefused
        otherwise), from the dashboard panel, the admin form or the API alike."""
        if "message" in self._dirty or self.id is None:
            self.message = clean_note(self.message)
        return super().save(*args, **kwargs)


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
    bulk action can record a list of ids. ``actor_name`` keeps the actor's username as
    it was, so the trail still says who acted after that account is deleted.
    """

    actor = ForeignKeyField(User, null=True, backref="audit_entries", on_delete="SET NULL")
    actor_name = CharField(max_length=USERNAME_MAX_LENGTH, default="")
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
