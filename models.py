"""Chirp's peewee models, their constraints, and the queries that belong to them.

Timelines only ever show messages of active users: a deactivated user's messages are
hidden everywhere until the account is reactivated. The same holds for their likes, reposts
and replies, which leave the counters of the messages they touched, and for notifications
they caused.
"""

import contextlib
import csv
import datetime
import functools
import hashlib
import importlib.resources
import io
import itertools
import json
import operator
import os
import re
import secrets
import unicodedata
from typing import NamedTuple
from urllib.parse import quote

from flask_peewee.auth import BaseUser
from flask_peewee.serializer import Serializer
from flask_peewee.utils import is_legacy_password
from markupsafe import Markup
from markupsafe import escape
from peewee import EXCLUDED
from peewee import JOIN
from peewee import SQL
from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import Check
from peewee import DateTimeField
from peewee import Expression
from peewee import Field
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import PostgresqlDatabase
from peewee import Select
from peewee import SqliteDatabase
from peewee import TextField
from peewee import Value
from peewee import fn
from playhouse.migrations import Runner
from playhouse.sqlite_ext import AutoIncrementField
from playhouse.sqlite_ext import FTS5Model
from playhouse.sqlite_ext import RowIDField
from playhouse.sqlite_ext import SearchField
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import NotFound
from werkzeug.exceptions import UnprocessableEntity

from app import count_up_to
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
DISPLAY_NAME_MAX_LENGTH = 50
BIO_MAX_LENGTH = 160
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
# next to them, and every message is shown as its own isolate), soft hyphens,
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
    """A value that must be unique and is already used: a username or e-mail address of
    another account (TAKEN_MESSAGE, the default ``message``), a follow that exists."""

    def __init__(self, message=TAKEN_MESSAGE):
        super().__init__(message)


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


def clean_profile_text(value, max_length, what):
    """Return a display name or bio ``value`` normalised (clean_text, one line, at most
    ``max_length`` characters), or "" when it is empty or only white space (the profile
    then shows none). Raises TextRefused naming ``what``."""
    if isinstance(value, str) and not value.strip(TRIM_CHARACTERS):
        return ""
    text = clean_text(value, max_length, what)
    if "\n" in text or "\t" in text:
        raise TextRefused(f"{what} must be one line, without tabs.")
    return text


def clean_display_name(value):
    """Return a display name (≤ DISPLAY_NAME_MAX_LENGTH) as clean_profile_text does."""
    return clean_profile_text(value, DISPLAY_NAME_MAX_LENGTH, "A display name")


def clean_bio(value):
    """Return a bio (≤ BIO_MAX_LENGTH) as clean_profile_text does."""
    return clean_profile_text(value, BIO_MAX_LENGTH, "A bio")


def clean_note(value):
    """Return an admin note's text ``value`` normalised, or raise TextRefused (clean_text
    with NOTE_MAX_LENGTH)."""
    return clean_text(value, NOTE_MAX_LENGTH, "A note")


def clean_token_name(value):
    """Return an API token's name ``value`` normalised, or raise TextRefused (clean_text
    with TOKEN_NAME_MAX_LENGTH, one line): its owner reads it in their settings."""
    text = clean_text(value, TOKEN_NAME_MAX_LENGTH, "A token name")
    if "\n" in text or "\t" in text:
        raise TextRefused("A token name must be one line, without tabs.")
    return text


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
    """Return ``value`` trimmed (normalize_text) if it is then a valid username (1 to
    USERNAME_MAX_LENGTH of ``[A-Za-z0-9_]``), else raise TextRefused. Whether it is taken
    is User.username_taken."""
    if isinstance(value, str) and len(value) <= RAW_LENGTH_FACTOR * USERNAME_MAX_LENGTH:
        value = normalize_text(value)
        if USERNAME_PATTERN.fullmatch(value):
            return value
    raise TextRefused("Use 1 to 30 letters, digits or underscores.")


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


# Comparisons a Filter makes: "eq" for ids and choices; a date filter is one of the others.
FILTER_COMPARISONS = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class Filter(NamedTuple):
    """One way a list of a model's rows may be narrowed (the API's ``?user=3``): which
    ``field`` it tests and how (``kind``); ``what`` names the related row, for the API's
    description. A model lists its own in ``FILTERS`` (``{query key: Filter}``); anything
    not listed cannot be filtered on, so no secret column can be probed (N1).

    Kinds: ``"id"``, the field equals a row id; ``"username"``, the field is the user of
    that username (any case); ``"choice"``, the field equals one of its ``choices``;
    ``"date"``, the field is after or before a date (``__gt``, ``__gte``, ``__lt``,
    ``__lte`` appended to the key: FILTER_COMPARISONS).
    """

    field: str
    kind: str
    what: str = ""

    def where(self, model, value, op="eq"):
        """Return the peewee expression keeping ``model``'s rows that match ``value`` (an
        int, str or naive local datetime, as the kind takes), compared by ``op``."""
        field = model._meta.fields[self.field]
        if self.kind == "username":
            return field.in_(User.by_username(value).select(User.id))
        return FILTER_COMPARISONS[op](field, value)


class BaseModel(db.Model):
    """Base of Chirp's models: an id that is never reused."""

    id = PrimaryKeyField()
    # The filters a list of these rows accepts (see Filter): none unless a model says so;
    # and the fields it may be sorted on (``?ordering=[-]field``), ties broken by id.
    FILTERS = {}
    ORDERING = ("id",)

    def assign(self, values):
        """Set each field of ``values`` (``{name: value}``) on this row to what the model's
        ``clean_<name>`` rule returns for it (the value itself where there is no rule).
        Raises Taken, or TextRefused naming the field (``"content: ..."``); fields set
        before the refused one stay set."""
        for name, value in values.items():
            clean = getattr(self, f"clean_{name}", None)
            try:
                setattr(self, name, value if clean is None else clean(value))
            except TextRefused as exc:
                raise TextRefused(f"{name}: {exc}") from exc

    @classmethod
    @functools.cache
    def filter_keys(cls):
        """Return ``{key: (Filter, comparison)}`` for every key of FILTERS a list takes; a
        date's gives four keys (``pub_date__gt``, ``__gte``, ``__lt``, ``__lte``)."""
        found = {}
        for name, rule in cls.FILTERS.items():
            ops = [op for op in FILTER_COMPARISONS if op != "eq"] if rule.kind == "date" else []
            found.update({f"{name}__{op}": (rule, op) for op in ops} or {name: (rule, "eq")})
        return found

    @classmethod
    def ordering_options(cls):
        """Return every accepted ``ordering`` value, ascending and descending."""
        return [prefix + name for name in cls.ORDERING for prefix in ("", "-")]

    @classmethod
    def ordered(cls, query, ordering, keys=()):
        """Return ``query`` ordered by ``ordering`` (``[-]field``, a field of ORDERING; ties
        broken by id), else BadRequest; None keeps its own order. A list narrowed by a date
        (one of filter_keys() in ``keys``) is ordered by that date, newest first unless
        ``ordering`` says otherwise (another field: UnprocessableEntity), so one index
        range serves both."""
        rules = [cls.filter_keys()[key][0] for key in keys]
        dated = next((rule.field for rule in rules if rule.kind == "date"), None)
        if ordering is None:
            if dated is None:
                return query
            ordering = "-" + dated
        column = ordering.removeprefix("-")
        if column not in cls.ORDERING:
            raise BadRequest(f"ordering must be one of {', '.join(cls.ordering_options())}.")
        if dated is not None and column != dated:
            raise UnprocessableEntity(
                f"A list filtered by {dated} is ordered by {dated} (or -{dated})."
            )
        fields = (cls._meta.fields[column], cls._meta.primary_key)
        descending = ordering.startswith("-")
        return query.order_by(*(field.desc() if descending else field.asc() for field in fields))

    @classmethod
    def narrowed(cls, query, values):
        """Return ``query`` keeping the rows that match every one of ``values``: ``{key of
        filter_keys(): value, as its Filter takes}``."""
        for key, value in values.items():
            rule, op = cls.filter_keys()[key]
            query = query.where(rule.where(cls, value, op))
        return query

    def dependents(self, shown, cap):
        """Return the rows deleting this row deletes with it, by kind, for a confirmation
        page: ``[(model, rows, total)]`` sorted by model name, at most ``shown`` rows of each
        kind, and ``total`` their number when there are more (app.count_up_to with
        ``cap``), else None. Rows whose key may be null stay (the delete empties the key).
        A query or two per kind, however many rows go: a prolific author has 100 000."""
        kinds = []
        for condition, key in self.dependencies():
            if not key.null:
                query = key.model.select().where(condition)
                rows = list(query.limit(shown + 1))
                if rows:
                    total = count_up_to(query, cap) if len(rows) > shown else None
                    kinds.append((key.model, rows[:shown], total))
        return sorted(kinds, key=lambda kind: kind[0].__name__)


# Stand-ins for the values of a prepared query (see prepared): huge negative numbers and
# odd strings, so that none can be taken for one of the query's own constants.
STAND_IN_INT = -918_273_645_000
STAND_IN_TEXT = " Stand-In {}\u0000 "
# The longest list argument a prepared query renders a shape for (one per length): page
# sizes are at most 100 (app.MAX_PAGE_SIZE); longer lists are rendered at every call.
PREPARED_MAX_LIST = 128


class PreparedQuery:
    """Mixed into the peewee SELECT classes that ``prepared`` returns: a query whose SQL
    text was rendered once for its shape, carrying this call's values (``_prepared``:
    the text, the parameters, and how to build the same query the ordinary way).

    Running it (iterating, ``len``, indexing, ``get``, ``execute``) sends the rendered
    text with this call's parameters, and ``sql()`` returns both. Anything else builds
    the ordinary peewee query with the real values and acts on that: chaining
    (``.where()``, ``.limit()``, ``.tuples()``... all clone), ``first()``, ``count()``,
    and using it as a subquery. So a prepared query is always the query its function
    returns, only cheaper to run as it is.
    """

    def real(self):
        """Return the ordinary peewee query for this call's values (built once)."""
        if self._prepared_real is None:
            build, args = self._prepared[2:]
            self._prepared_real = build(*args)
        return self._prepared_real

    def sql(self):
        return self._prepared[0], self._prepared[1]

    def _execute(self, database):
        if self._cursor_wrapper is None:
            cursor = database.execute_sql(self._prepared[0], self._prepared[1])
            self._cursor_wrapper = self._get_cursor_wrapper(cursor)
        return self._cursor_wrapper

    def clone(self):
        return self.real().clone()

    def first(self, *args, **kwargs):
        # SelectBase.first changes the query's LIMIT in place: do it to a new real one.
        build, arguments = self._prepared[2:]
        return build(*arguments).first(*args, **kwargs)

    def select_extend(self, *columns):
        """The same query with ``columns`` selected too, itself prepared (the API adds
        its author columns to the web's timelines this way)."""
        build, args = self._prepared[2:]
        return prepared_extension(build, columns)(*args)

    def __sql__(self, ctx):
        return self.real().__sql__(ctx)


# Prepared functions that extend another's query with more columns, by the function and
# the columns' identities (see PreparedQuery.select_extend).
PREPARED_EXTENSIONS = {}


def prepared_extension(build, columns):
    """Return the prepared function building ``build``'s query with ``columns`` added."""
    key = (build, tuple(map(id, columns)))
    if key not in PREPARED_EXTENSIONS:

        def extended(*args):
            return build(*args).select_extend(*columns)

        extended.__qualname__ = f"{build.__qualname__}+columns"
        # The columns stay referenced here, so their ids in the key stay theirs.
        PREPARED_EXTENSIONS[key] = (prepared(extended), columns)
    return PREPARED_EXTENSIONS[key][0]


@functools.cache
def prepared_class(query_class):
    """Return the subclass of peewee's ``query_class`` with PreparedQuery mixed in."""
    return type(f"Prepared{query_class.__name__}", (PreparedQuery, query_class), {})


# The kinds of value a prepared query binds, and the kinds of list of them.
BOUND_KINDS = {int: "int", str: "text", datetime.datetime: "datetime"}
LIST_KINDS = {"int": "ints", "text": "texts", "datetime": "datetimes"}


def argument_shape(value):
    """Return what of ``value``, an argument of a prepared query function, decides its
    SQL text, or raise TypeError for a value a prepared query cannot bind."""
    if value is None or isinstance(value, (bool, type)):
        return ("constant", value)
    if isinstance(value, Field):  # a column: part of the text
        return ("field", value.model, value.name)
    if type(value) in BOUND_KINDS:
        return BOUND_KINDS[type(value)]
    if isinstance(value, Model) and type(value.get_id()) is int:
        return ("row", type(value))
    if isinstance(value, (list, tuple)) and value and len(value) <= PREPARED_MAX_LIST:
        kinds = {type(item) for item in value}
        if len(kinds) == 1 and kinds.pop() in BOUND_KINDS:
            return (LIST_KINDS[BOUND_KINDS[type(value[0])]], len(value))
    if isinstance(value, (list, tuple)) and not value:
        return ("ints", 0)
    raise TypeError(f"a prepared query cannot bind {type(value).__name__} values")


def argument_values(value, shape):
    """Return the values that ``value`` (of ``shape``, see argument_shape) binds."""
    if shape in LIST_KINDS:
        return (value,)
    if shape[0] == "row":
        return (value.get_id(),)
    if shape[0] in LIST_KINDS.values():
        return value
    return ()


def stand_ins(shapes, family):
    """Return ``(arguments, positions)``: arguments of the given ``shapes`` whose values
    are stand-ins (of the first or second ``family``: 0 or 1), and ``{stand-in: its
    position among the values that real arguments of these shapes bind}`` (see
    argument_values). Stand-in dates are in the year 1001 or 1002."""
    arguments, positions = [], {}
    base = STAND_IN_INT // (family + 1)

    def stand_in(kind):
        position = len(positions)
        value = base - position
        if kind == "text":
            value = STAND_IN_TEXT.format(value)
        elif kind == "datetime":
            value = datetime.datetime(1001 + family, 2, 3) + datetime.timedelta(seconds=position)
        positions[value] = position
        return value

    kind_of_list = {kinds: kind for kind, kinds in LIST_KINDS.items()}
    for shape in shapes:
        if shape in LIST_KINDS:
            arguments.append(stand_in(shape))
        elif shape[0] == "row":
            model = shape[1]
            arguments.append(model(**{model._meta.primary_key.name: stand_in("int")}))
        elif shape[0] in kind_of_list:
            arguments.append([stand_in(kind_of_list[shape[0]]) for _ in range(shape[1])])
        elif shape[0] == "field":
            arguments.append(shape[1]._meta.fields[shape[2]])
        else:
            arguments.append(shape[1])
    return arguments, positions


def render_shape(build, shapes):
    """Return ``(query, sql, slots)`` for ``build`` called with arguments of ``shapes``:
    the query built with stand-ins, its SQL text, and for each of its parameters either
    ``(position, None)`` (the position of the call's value) or ``(None, constant)``.

    The query is built twice, with different stand-ins: a function that computes with its
    arguments (``limit + 1``, ``name.lower()``) or chooses by their values instead of by
    None-ness would bake one call's values into every call, so it raises ValueError."""
    renders = []
    for family in (0, 1):
        arguments, numbers = stand_ins(shapes, family)
        query = build(*arguments)
        renders.append((query, *query.sql(), numbers))
    (query, sql, params, numbers), (_, other_sql, other_params, other_numbers) = renders
    slots = []
    for value, other in zip(params, other_params, strict=False):
        if value in numbers and other in other_numbers and numbers[value] == other_numbers[other]:
            slots.append((numbers[value], None))
        elif value == other and value not in numbers:
            slots.append((None, value))
        else:
            slots = None
            break
    if slots is None or sql != other_sql or len(params) != len(other_params):
        raise ValueError(
            f"{build.__qualname__} cannot be prepared: it changes its arguments or "
            "chooses by their values (only None-ness may choose the query's shape)."
        )
    return query, sql, slots


def prepared(build):
    """Decorate ``build``, a function returning a peewee SELECT, so that peewee renders
    its SQL text once per shape and database, and each call only binds its values.

    Why: building a chained peewee query and rendering its SQL costs ~0.1-1 ms of Python
    per query, more than SQLite spends running a page's indexed range; a page runs
    several. The decorated function returns a PreparedQuery: the same query, run with the
    text rendered the first time (``models.newest_ids_sql`` did this by hand for one
    statement).

    The shape of a call is what decides the text: which arguments are None, the length
    of list arguments, the classes, columns (peewee fields) and the database. Other values
    are bound parameters: ``int``, ``str``, ``datetime``, model instances (their id) and
    lists of one of the first three.
    ``select_extend`` on the result is prepared too. ``build`` must pass
    its arguments into the query unchanged and choose only by None-ness (render_shape
    checks this); a call with another kind of argument, or with keywords, gets ``build``'s
    ordinary query.
    """
    shapes_seen = {}

    @functools.wraps(build)
    def prepared_build(*args, **kwargs):
        if kwargs:
            return build(*args, **kwargs)
        try:
            shapes = tuple(argument_shape(value) for value in args)
        except TypeError:
            return build(*args)
        database = db.database
        key = (type(database), database.param, shapes)
        entry = shapes_seen.get(key)
        if entry is None:
            entry = shapes_seen[key] = render_shape(build, shapes)
        template, sql, slots = entry
        values = [
            v
            for value, shape in zip(args, shapes, strict=True)
            for v in argument_values(value, shape)
        ]
        params = [constant if at is None else values[at] for at, constant in slots]
        query_class = prepared_class(type(template))
        query = query_class.__new__(query_class)
        query.__dict__ = template.__dict__.copy()
        query._cursor_wrapper = None
        query._prepared = (sql, params, build, args)
        query._prepared_real = None
        return query

    prepared_build.build = build
    return prepared_build


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
    # What ``password`` holds until a password is set: werkzeug's hashes are
    # "method$salt$hash", so no password matches it (see has_usable_password).
    NO_PASSWORD = "!"
    FILTERS = {
        "id": Filter("id", "id", "user"),
        "username": Filter("id", "username", "user"),
        "join_date": Filter("join_date", "date"),
    }
    ORDERING = ("id", "username", "join_date")
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

    # clean_<field>(value): the value to store in <field> of this row, or TextRefused, or
    # Taken. One rule per field for the web forms, the admin, the API and the CLI.

    def clean_username(self, value):
        """Return ``value`` as this user's username: clean_new_username."""
        return User.clean_new_username(value, self)

    def clean_email(self, value):
        """Return ``value`` as this user's e-mail address: clean_new_email."""
        return User.clean_new_email(value, self)

    def clean_display_name(self, value):
        """Return ``value`` as clean_display_name accepts it ("" for none)."""
        return clean_display_name(value)

    def clean_bio(self, value):
        """Return ``value`` as clean_bio accepts it ("" for none)."""
        return clean_bio(value)

    def update_profile(self, display_name, bio):
        """Set and save the display name and bio, each as clean_display_name / clean_bio
        return it ("" for none). Raises TextRefused, saving nothing, if either is refused."""
        display_name, bio = clean_display_name(display_name), clean_bio(bio)
        self.display_name, self.bio = display_name, bio
        self.save(only=[User.display_name, User.bio])

    def profile_counts(self):
        """Return ``{"messages": n, "followers": n, "following": n}`` for the profile
        header: the messages this user wrote (MessageCount: one row, however many), and
        follows with active users only (_follow_counts). One query."""
        ((messages, followers, gone_followers, following, gone_following),) = list(
            self._profile_counts()
        )
        return {
            "messages": messages or 0,
            "followers": followers - gone_followers,
            "following": following - gone_following,
        }

    @prepared
    def _profile_counts(self):
        """One row: the message count, then the two counts of _follow_counts for followers
        and for followees, as scalar subqueries of one statement."""
        messages = MessageCount.select(MessageCount.messages).where(MessageCount.user == self)
        counts = [*self._follow_counts(Relationship.to_user, Relationship.from_user)]
        counts += self._follow_counts(Relationship.from_user, Relationship.to_user)
        return Select(columns=[messages, *counts]).bind(db.database).tuples()

    @staticmethod
    def with_message_counts(query):
        """Return ``query`` (a SELECT of users) with each one's number of messages as
        ``message_count``: their MessageCount row, joined in, so a list of users costs one
        query however many messages they wrote."""
        count = fn.COALESCE(MessageCount.messages, 0).alias("message_count")
        return query.join(MessageCount, JOIN.LEFT_OUTER).select_extend(count).switch(User)

    def _follow_counts(self, mine, theirs):
        """``(everyone, gone)``: SELECTs counting the follows whose ``mine`` side is this
        user, and those of them whose ``theirs`` side is a deactivated user; their
        difference counts the follows with active users only.

        Counted as all follows from the relationship index alone, minus those of
        deactivated users (few, found through the ``user.active`` index): joining each
        follower's row to check ``active`` cost ~30 ms for someone with 10 000 followers,
        and it grew with them."""
        inactive = User.select(User.id).where(User.active == 0)  # a range of its index
        everyone = Relationship.select(fn.COUNT(SQL("1"))).where(mine == self)
        return everyone, everyone.where(theirs.in_(inactive))

    def save(self, *args, **kwargs):
        """Save the row; saving a deactivated user ends their sessions, so they stay ended
        when the account is reactivated.

        An account created without a password (the API creates them so) gets NO_PASSWORD.
        The username's skeleton follows the username. A newly set e-mail address is stored
        as clean_email returns it (TextRefused otherwise); one that was not assigned since
        the row was read is left alone, so an account with an address from before today's
        rules can still save its settings.
        """
        if self.password is None:  # created without one (the API): nothing matches "!"
            self.password = self.NO_PASSWORD
        if not self.active:
            self.session_token = new_session_token()
        skeleton = username_key(self.username)
        if (self.username_skeleton or "").split("#")[0] != skeleton:
            self.username_skeleton = skeleton
        if "email" in self._dirty or self.id is None:
            self.email = clean_email(self.email)
        recount = self.id is not None and "active" in self.dirty_fields
        with db.database.atomic():
            result = super().save(*args, **kwargs)
            if recount:  # their likes, reposts and replies leave or rejoin the counts
                Message.refresh_counts(Message.touched_by([self.id]))
        return result

    def delete_instance(self, *args, **kwargs):
        """Delete this user (their messages, likes and reposts go with them) and recount
        the messages they had replied to, liked or reposted."""
        with db.database.atomic():
            touched = list(Message.touched_by([self.id]))
            result = super().delete_instance(*args, **kwargs)
            Message.refresh_counts(touched)
        return result

    # What nobody may do to their own account, with the refusal: an admin who did would
    # lock themself out (see except_self).
    SELF_REFUSALS = {
        "delete": "You cannot delete yourself.",
        "deactivate": "You cannot deactivate yourself.",
        "demote": "You cannot remove your own admin rights.",
    }

    @classmethod
    def except_self(cls, actor, ids, action):
        """Return ``(kept, refusal)``: the user ``ids`` other than the admin ``actor``'s
        own, and the refusal for ``action`` (a key of SELF_REFUSALS) when ``actor`` was
        among them, else None. The admin's forms and bulk actions and the API all ask
        this before deleting, deactivating or demoting users."""
        kept = [pk for pk in ids if pk != actor.id]
        return kept, (cls.SELF_REFUSALS[action] if len(kept) < len(ids) else None)

    def set_password(self, password):
        """Hash ``password`` into ``password`` and end every session (once saved)."""
        super().set_password(password)
        self.session_token = new_session_token()

    def end_sessions(self):
        """End every session of this user now (written at once, not at the next save)."""
        self.session_token = new_session_token()
        User.update(session_token=self.session_token).where(User.id == self.id).execute()

    @classmethod
    def set_active(cls, ids, active, actor=None):
        """Activate or deactivate those of the users ``ids`` that are not so yet, in one
        UPDATE that ends their sessions (as ``save`` does for one user), and recount the
        messages they touched. With ``actor`` (the admin doing it), one audit entry lists
        the ids, in the same transaction. Returns the ids changed."""
        with db.database.atomic():
            query = cls.select(cls.id).where(cls.id << list(ids), cls.active != active)
            changed = [pk for (pk,) in query.tuples()]
            if changed:
                update = cls.update(active=active, session_token=new_session_token())
                update.where(cls.id << changed).execute()
                Message.refresh_counts(Message.touched_by(changed))
            if changed and actor is not None:
                action = "reactivate" if active else "deactivate"
                AuditEntry.record(actor, action, cls, changed, {"active": [not active, active]})
        return changed

    def has_usable_password(self):
        """Return True if ``password`` is a hash some password could match: werkzeug's
        ``method$salt$hash`` or a legacy ``salt$sha1``. Accounts created through the API
        hold "!" until a password is set; checking a password against it costs nothing."""
        return self.password.count("$") == 2 or is_legacy_password(self.password)

    @classmethod
    def visible_to(cls, viewer):
        """Return the users ``viewer`` (a User or None) may see, by id: everyone for an
        admin, else active users only (a deactivated account disappears until it is
        reactivated)."""
        query = cls.select().order_by(cls.id)
        return query if viewer is not None and viewer.admin else query.where(cls.active)

    @classmethod
    def by_username(cls, username):
        """Return a query for the user named ``username``, ignoring case."""
        return cls.by_lower_username(username.lower())

    @classmethod
    def by_lower_username(cls, lowered):
        """Return a query for the user whose username in lower case is ``lowered``."""
        return cls.select().where(fn.LOWER(cls.username) == lowered)

    @classmethod
    def active_named(cls, username):
        """Return the active user named ``username`` (ignoring case), or None."""
        return cls._active_by_lower_name(username.lower()).peek()

    @classmethod
    def active_by_id(cls, user_id):
        """Return the active user with id ``user_id``, or None."""
        return cls._active_by_id(user_id).peek()

    @classmethod
    @prepared
    def _active_by_lower_name(cls, lowered):
        return cls.by_lower_username(lowered).where(cls.active)

    @classmethod
    @prepared
    def _active_by_id(cls, user_id):
        return cls.select().where(cls.active, cls.id == user_id)

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

    @classmethod
    def clean_new_username(cls, value, user=None):
        """Return the username ``value`` that ``user`` (None when signing up) may take, or
        raise TextRefused (clean_username) or Taken (username_taken). The web forms, the
        admin, the API and the CLI all judge a username here.

        ``user``'s current username, sent back unchanged, is accepted as it is: an account
        named before today's rules can still save its other fields.
        """
        if user is not None and user.id is not None and value == user.username:
            return value
        value = clean_username(value)
        if cls.username_taken(value, user):
            raise Taken()
        return value

    @classmethod
    def clean_new_email(cls, value, user=None):
        """Return the e-mail address ``value`` as ``user`` (None when signing up) may store
        it, or raise TextRefused (clean_email) or Taken (email_taken). ``user``'s current
        address, sent back unchanged, is accepted as it is (see clean_new_username)."""
        if user is not None and user.id is not None and value == user.email:
            return value
        value = clean_email(value)
        if cls.email_taken(value, user):
            raise Taken()
        return value

    @prepared
    def timeline(self, before=None, limit=None):
        """Return this user's own messages, newest (highest id) first: their user timeline.

        ``before`` (a message id) keeps only older messages, ``limit`` caps the rows: one
        range of the ``message(user_id, id)`` index, however many messages the user has.
        """
        query = Message.visible().where(Message.user == self)
        return keyset(query, Message.id, before, limit)

    def liked_messages(self):
        """Return the visible messages this user liked, most recently liked first."""
        return (
            Message.select(Message, *Message.AUTHOR_COLUMNS)
            .join(User)
            .switch(Message)
            .join(Like)
            .where(Like.user == self, User.active)
            .order_by(Like.id.desc())
        )

    def home_timeline(self, before=None, limit=None):
        """Return the messages of everyone this user follows, and their own, plus the
        messages those people (or this user) reposted, in their place by id: newest (highest
        id) first, ``before`` a message id, at most ``limit`` of them. Two queries: the
        active followees, then the page. Reposts by deactivated users do not count
        (Message.annotate marks who reposted).

        Why this shape: "my messages or my followees'" as one ``user_id IN (...)`` filter
        sorted by id makes the database either sort every matching message (hundreds of
        thousands for a popular followee) or walk the whole table newest first until enough
        rows match (all of it, for someone who follows a few quiet people). Instead, each
        followed user contributes two small index ranges: their ``limit`` newest ids below
        ``before`` of their messages (``message(user_id, id)``) and of their reposts
        (``repost(user_id, message_id)``). The database merges those ``followees x 2 x
        limit`` ids and keeps the newest ``limit``: the work is bounded by what the page
        shows, not by the data (newest_ids_sql says how, in one short statement). Fan-out
        on write (a per-reader inbox table) would make reads cheaper still, but costs a
        write per follower for each message and a backfill on every follow.

        Beyond HOME_MERGE_MAX_FOLLOWEES followees the merge reads too many ranges to be
        cheap; such a reader's followees post so often between them that scanning messages
        newest first finds a page almost at once, so the plain ``IN`` filter is used instead.
        """
        if list(self._followees_beyond(HOME_MERGE_MAX_FOLLOWEES)):
            return keyset(self._home_timeline_by_scan(), Message.id, before, limit)
        per_author = limit if limit is not None else HOME_MERGE_DEFAULT_LIMIT
        return self._home_timeline_by_merge(before, per_author - 1, limit)

    @prepared
    def _followees_beyond(self, count):
        """The active users this user follows past the first ``count``: a row if they
        follow more than ``count``, else none."""
        return (
            Relationship.select(Relationship.to_user)
            .join(User, on=Relationship.to_user)
            .where(Relationship.from_user == self, User.active)
            .offset(count)
            .limit(1)
        )

    @prepared
    def _home_timeline_by_merge(self, before, offset, limit):
        """The home timeline as newest_ids_sql merges it (``offset``: a page less one)."""
        newest = Message.id.in_(newest_ids_sql(self.id, before, offset))
        return keyset(Message.visible().where(newest), Message.id, None, limit)

    def _home_timeline_by_scan(self):
        """The home timeline as one filter (for readers following very many people)."""
        followed = Relationship.select(Relationship.to_user).where(Relationship.from_user == self)
        reposted = (
            Repost.select(Repost.message)
            .join(User)
            .where((Repost.user == self) | (Repost.user << followed), User.active)
        )
        return Message.visible().where(
            (Message.user == self) | (Message.user << followed) | (Message.id << reposted)
        )

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
        with db.database.atomic():
            query = Relationship.insert(from_user=self, to_user=other).on_conflict_ignore()
            if query.as_rowcount().execute():
                Notification.notify(other, self, Notification.FOLLOW)

    def unfollow(self, other):
        """Stop following ``other``; returns the number of relationships removed (0 or 1)."""
        return (
            Relationship.delete()
            .where(Relationship.from_user == self, Relationship.to_user == other)
            .execute()
        )

    def post(self, content, in_reply_to=None):
        """Publish ``content`` (already validated) as this user's message, optionally as a
        reply to the message ``in_reply_to``. The parent's reply count, its author's
        notification and those of the people the text mentions (not the author, and not
        the replied-to author twice) are written in the same transaction. Returns the new
        Message."""
        with db.database.atomic():
            message = Message.create(
                user=self,
                content=content,
                in_reply_to=in_reply_to,
                is_reply=in_reply_to is not None,
            )
            skip = {self.id}
            if in_reply_to is not None:
                Message.bump(in_reply_to.id, reply_count=1)
                Notification.notify(in_reply_to.user, self, Notification.REPLY, message)
                skip.add(in_reply_to.user_id)  # told of the reply already: once is enough
            # Message.save has recorded who the text mentions.
            mentioned = Mention.select(Mention.user).where(
                Mention.message == message.id, Mention.user.not_in(list(skip))
            )
            rows = [
                {
                    "recipient": row.user_id,
                    "actor": self.id,
                    "kind": Notification.MENTION,
                    "message": message.id,
                }
                for row in mentioned
            ]
            if rows:
                Notification.insert_many(rows).execute()
        return message

    def reply(self, message, content):
        """Reply to ``message`` with ``content``; returns the new Message (see post)."""
        return self.post(content, in_reply_to=message)

    # The reactions a user gives a message: name -> (the method doing it, the one undoing it).
    REACTIONS = {"like": ("like", "unlike"), "repost": ("repost", "unrepost")}

    def react(self, name, message, on=True):
        """Give (``on``) or withdraw the reaction ``name`` (a key of REACTIONS) to
        ``message``; returns True if that changed anything (see like, unlike...)."""
        do, undo = self.REACTIONS[name]
        return getattr(self, do if on else undo)(message)

    def like(self, message):
        """Like ``message``. Idempotent and safe under concurrent requests: the unique
        (user, message) pair lets only one insert through, and only that one bumps the
        counter. Returns True if this call created the like."""
        return self._react(Like, message, "like_count", Notification.LIKE)

    def unlike(self, message):
        """Withdraw this user's like of ``message``; returns True if there was one."""
        return self._unreact(Like, message, "like_count", Notification.LIKE)

    def repost(self, message):
        """Repost ``message`` into this user's followers' home timelines. Idempotent like
        ``like``; returns True if this call created the repost."""
        return self._react(Repost, message, "repost_count", Notification.REPOST)

    def unrepost(self, message):
        """Undo this user's repost of ``message``; returns True if there was one."""
        return self._unreact(Repost, message, "repost_count", Notification.REPOST)

    def _react(self, model, message, counter, kind):
        with db.database.atomic():
            query = model.insert(user=self, message=message).on_conflict_ignore()
            created = bool(query.as_rowcount().execute())
            if created:
                Message.bump(message.id, **{counter: 1})
                Notification.notify(message.user, self, kind, message)
        return created

    def _unreact(self, model, message, counter, kind):
        with db.database.atomic():
            deleted = bool(
                model.delete().where(model.user == self, model.message == message).execute()
            )
            if deleted:
                Message.bump(message.id, **{counter: -1})
                Notification.withdraw(message.user, self, kind, message)
        return deleted

    def reactions(self, message_ids):
        """Return ``(liked, reposted)``: the sets of ``message_ids`` this user liked and
        reposted, in one query."""
        if not message_ids:
            return set(), set()
        liked, reposted = set(), set()
        for row in self._reactions_to(list(message_ids)):
            (liked if row["kind"] == "like" else reposted).add(row["message_id"])
        return liked, reposted

    @prepared
    def _reactions_to(self, message_ids):
        """This user's likes and reposts of ``message_ids``: dicts of message_id, kind."""
        likes = Like.select(Like.message.alias("message_id"), Value("like").alias("kind"))
        reposts = Repost.select(Repost.message.alias("message_id"), Value("repost").alias("kind"))
        query = likes.where(Like.user == self, Like.message << message_ids) | reposts.where(
            Repost.user == self, Repost.message << message_ids
        )
        return query.dicts()

    @prepared
    def notifications(self, before=None, since=None, limit=None):
        """Return this user's notifications from active users, newest first: only those
        with an id below ``before`` and above ``since`` (None: no bound), at most ``limit``
        (keyset paging on the id, and polling for new ones)."""
        actor = User.alias()
        author = User.alias()
        # Only what the page and the API show of each person: never the password hash.
        people = [column for user in (actor, author) for column in user_summary(user)]
        query = (
            Notification.select(Notification, Message, *people)
            .join(actor, on=(Notification.actor == actor.id), attr="actor")
            .switch(Notification)
            .join(Message, JOIN.LEFT_OUTER)
            .join(author, JOIN.LEFT_OUTER, on=(Message.user == author.id), attr="user")
            .where(Notification.recipient == self, actor.active)
        )
        if since is not None:
            query = query.where(Notification.id > since)
        return keyset(query, Notification.id, before, limit)

    def unread_notification_count(self, limit=None):
        """Return how many unread notifications from active users this user has, counting
        at most ``limit`` of them (None: all), so that a badge shown on every page costs
        the same however many pile up."""
        ((count,),) = self._unread_notifications(limit)
        return count

    @prepared
    def _unread_notifications(self, limit):
        """The number of unread_notification_count, as one row of one column."""
        query = (
            Notification.select(Notification.id)
            .join(User, on=(Notification.actor == User.id))
            .where(Notification.recipient == self, ~Notification.read, User.active)
        )
        if limit is not None:
            query = query.limit(limit)
        return counted(query)

    def mark_notifications_read(self):
        """Mark every notification of this user read; returns how many changed."""
        query = Notification.update(read=True)
        return query.where(Notification.recipient == self, ~Notification.read).execute()


def user_summary(user):
    """Return the columns of ``user`` (User or an alias) a notification shows (the API's
    user fields)."""
    return (user.id, user.username, user.display_name, user.bio, user.join_date)


# What a list of people shows of each (the directory, followers, following): never the
# password hash or e-mail. Add a column here when a list starts showing it.
User.LIST_COLUMNS = (User.id, User.username, User.display_name, User.join_date)
# What the API shows of a person beside each message, notification or search result.
User.SUMMARY_COLUMNS = user_summary(User)

# Case-insensitive uniqueness: the database, not just the join form, refuses "Alice"
# next to "alice", so two racing sign-ups cannot both win.
User.add_index(User.index(fn.LOWER(User.username), unique=True, name="user_username_lower"))
# E-mail addresses too (migration 0004): clean_email lower-cases, and rows from before
# that rule may hold capitals.
User.add_index(User.index(fn.LOWER(User.email), unique=True, name="user_email_lower"))


class Relationship(BaseModel):
    """``from_user`` follows ``to_user``. One row per pair; nobody follows themself."""

    # No single-column indexes on the foreign keys: the indexes below start with them.
    from_user = ForeignKeyField(User, backref="relationships", on_delete="CASCADE", index=False)
    to_user = ForeignKeyField(User, backref="related_to", on_delete="CASCADE", index=False)
    created_date = DateTimeField(default=datetime.datetime.now, index=True)
    FILTERS = {
        "from_user": Filter("from_user", "id", "follower"),
        "to_user": Filter("to_user", "id", "followed user"),
        "from_user__username": Filter("from_user", "username", "follower"),
        "to_user__username": Filter("to_user", "username", "followed user"),
        "created_date": Filter("created_date", "date"),
    }
    ORDERING = ("id", "created_date")

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

    @classmethod
    def between_active_users(cls):
        """Return the follows whose two users are both active, by id (the API's list)."""
        # Each follow's two users are looked up by primary key: "user_id IN (every active
        # user)" made the database pair every active user with every other (28 s a page
        # at 10 000 users).
        follower, followed = User.alias(), User.alias()
        return (
            cls.select(cls)
            .join(follower, on=cls.from_user == follower.id)
            .switch(cls)
            .join(followed, on=cls.to_user == followed.id)
            .where(follower.active, followed.active)
            .order_by(cls.id)
        )

    def clean_to_user(self, value):
        """Return ``value``, the id of the user ``from_user`` is to follow: TextRefused
        unless it is another, active user; Taken if ``from_user`` already follows them."""
        if value == self.from_user_id:
            raise TextRefused("You cannot follow yourself.")
        if not User.select().where(User.id == value, User.active).exists():
            raise TextRefused("There is no such active user.")
        already = Relationship.select().where(
            Relationship.from_user == self.from_user_id, Relationship.to_user == value
        )
        if self.id is not None:
            already = already.where(Relationship.id != self.id)
        if already.exists():
            raise Taken("You already follow that user.")
        return value


class Message(BaseModel):
    """A short message: 1 to MESSAGE_MAX_LENGTH characters of plain text.

    Saving a message (re)extracts its #tags and @mentions into MessageTag and Mention in
    the same transaction, so tag pages and mention lists are index look-ups, never scans
    of the text. ``edited_date`` is set when the author changes the text (``edit``).
    """

    # The indexes below start with user_id, so it needs none of its own.
    user = ForeignKeyField(User, backref="messages", on_delete="CASCADE", index=False)
    content = TextField(constraints=[Check(f"length(content) BETWEEN 1 AND {MESSAGE_MAX_LENGTH}")])
    pub_date = DateTimeField(default=datetime.datetime.now, index=True)
    edited_date = DateTimeField(null=True)
    # The message this one answers. Deleting it leaves the reply in place with NULL here and
    # is_reply still True, so the reply can say it answered a deleted message.
    in_reply_to = ForeignKeyField(
        "self", null=True, backref="replies", on_delete="SET NULL", index=True
    )
    is_reply = BooleanField(default=False)
    # Counters of active users' replies, likes and reposts, kept in step in the transaction
    # that changes them (and recounted when users are deactivated, reactivated or deleted),
    # so a page of messages shows its counts without counting anything.
    reply_count = IntegerField(default=0)
    like_count = IntegerField(default=0)
    repost_count = IntegerField(default=0)
    FILTERS = {
        "user": Filter("user", "id", "author"),
        "user__username": Filter("user", "username", "author"),
        "pub_date": Filter("pub_date", "date"),
    }
    ORDERING = ("id", "pub_date")

    class Meta:
        indexes = (
            # A user's timeline and each range of the home timeline, newest id first.
            (("user", "id"), False),
            # A user's messages by date (API filters and ordering on pub_date).
            (("user", "pub_date"), False),
        )

    def __str__(self):
        return self.content[:40]

    def excerpt(self):
        """The first 60 characters of the content, with an ellipsis if cut."""
        return self.content if len(self.content) <= 60 else self.content[:59] + "…"

    def replying_to(self):
        """The id of the message this one answers, "deleted" once that is gone, or "" (not
        a reply). The id, not the message: a list showing it would cost a query per row."""
        if self.in_reply_to_id is not None:
            return self.in_reply_to_id
        return "deleted" if self.is_reply else ""

    def save(self, *args, **kwargs):
        """Save the row; newly set content is stored as clean_message returns it
        (TextRefused otherwise), whoever writes it: web, API, admin or a script, and its
        tags and mentions are extracted anew in the same transaction."""
        content_changed = "content" in self._dirty or self.id is None
        if content_changed:
            self.content = clean_message(self.content)
        with db.database.atomic():
            result = super().save(*args, **kwargs)
            if content_changed:
                self.extract_links()
        return result

    def clean_content(self, value):
        """Return ``value`` as clean_message accepts it (TextRefused otherwise)."""
        return clean_message(value)

    def clean_in_reply_to(self, value):
        """Return the visible message with id ``value`` (None: none) for a new message to
        answer; TextRefused if there is none. A message keeps what it answers: for a saved
        one ``value`` may only repeat it."""
        if self.id is not None:
            if value != self.in_reply_to_id:
                raise TextRefused("A message answers what it answered when it was posted.")
            return self.in_reply_to
        if value is None:
            return None
        parent = Message.visible().where(Message.id == value).first()
        if parent is None:
            raise TextRefused("There is no such message to reply to.")
        return parent

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

    def links(self, known=None):
        """Return ``{"mentions": [...], "tags": [...], "urls": [...]}`` in the order the
        text holds them: the usernames of the existing users it mentions, its tags (lower
        case) and its web addresses. What the API shows beside the text.

        ``known``: Message.mention_spellings of a page holding this message, so that a
        page costs one query, not one per message; None looks the names up now."""
        names = extract_mentions(self.content)
        if known is None:
            known = Message.mention_spellings([self])
        return {
            "mentions": [known[name] for name in names if name in known],
            "tags": extract_tags(self.content),
            "urls": extract_urls(self.content),
        }

    def delete_instance(self, *args, **kwargs):
        """Delete this message; its replies stay (answering a deleted message), its likes,
        reposts and notifications go, and the message it answered counts one reply less."""
        with db.database.atomic():
            # Explicitly: a recursive delete would only set their nullable message to NULL.
            Notification.delete().where(Notification.message == self).execute()
            result = super().delete_instance(*args, **kwargs)
            if self.in_reply_to_id is not None:
                Message.refresh_counts([self.in_reply_to_id])
        return result

    @classmethod
    def bump(cls, message_id, **deltas):
        """Add ``deltas`` (``like_count=1``...) to message ``message_id``'s counters in one
        UPDATE, computed by the database so concurrent bumps never lose one."""
        changes = {getattr(cls, name): getattr(cls, name) + delta for name, delta in deltas.items()}
        cls.update(changes).where(cls.id == message_id).execute()

    @classmethod
    def touched_by(cls, user_ids):
        """Return a query of the ids of messages that ``user_ids`` replied to, liked or
        reposted: the counters their (de)activation changes."""
        replied = cls.select(cls.in_reply_to.alias("id")).where(
            cls.user << user_ids, cls.in_reply_to.is_null(False)
        )
        liked = Like.select(Like.message.alias("id")).where(Like.user << user_ids)
        reposted = Repost.select(Repost.message.alias("id")).where(Repost.user << user_ids)
        return [row.id for row in (replied | liked | reposted).objects()]

    @classmethod
    def refresh_counts(cls, message_ids):
        """Recount the replies, likes and reposts by active users of ``message_ids``."""
        message_ids = list(message_ids)
        if not message_ids:
            return
        active = User.select(User.id).where(User.active)
        reply = cls.alias()
        counts = {
            cls.reply_count: reply.select(fn.COUNT(reply.id)).where(
                reply.in_reply_to == cls.id, reply.user << active
            ),
            cls.like_count: Like.select(fn.COUNT(Like.id)).where(
                Like.message == cls.id, Like.user << active
            ),
            cls.repost_count: Repost.select(fn.COUNT(Repost.id)).where(
                Repost.message == cls.id, Repost.user << active
            ),
        }
        cls.update(counts).where(cls.id << message_ids).execute()

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
    def get_visible(cls, message_id, author_columns=None):
        """Return message ``message_id`` if it is visible (its author is active), its author
        holding ``author_columns`` as in visible(); else raise NotFound (a 404 on the web
        and in the API alike)."""
        message = cls._visible_by_id(message_id, author_columns).peek()
        if message is None:
            raise NotFound("No such message.")
        return message

    @classmethod
    @prepared
    def _visible_by_id(cls, message_id, author_columns=None):
        return cls.visible(author_columns).where(cls.id == message_id)

    @classmethod
    @prepared
    def public_timeline(cls, before=None, limit=None):
        """Return every visible message, newest first; ``before`` a message id, at most
        ``limit`` rows (keyset paging on the primary key)."""
        return keyset(cls.visible(), cls.id, before, limit)

    def ancestors(self, limit=100, author_columns=None):
        """Return the visible messages this one answers, up the chain to the root, root
        first, at most ``limit`` of them (one recursive query); ``author_columns`` as for
        ``visible``."""
        if self.in_reply_to_id is None:
            return []
        # Columns are bound by ``prepared`` only as single fields: with a tuple of them
        # the call gets the ordinary query.
        return list(Message._ancestors_from(self.in_reply_to_id, limit, author_columns))

    @staticmethod
    @prepared
    def _ancestors_from(parent_id, limit, author_columns=None):
        """The visible messages from ``parent_id`` up the chain, root first (ancestors)."""
        base = Message.alias()
        level = Value(1).alias("level")
        top = (
            base.select(base.id, base.in_reply_to, level)
            .where(base.id == parent_id)
            .cte("ancestors", recursive=True, columns=("id", "parent", "level"))
        )
        step = Message.alias()
        chain = top.union_all(
            step.select(step.id, step.in_reply_to, top.c.level + 1)
            .join(top, on=(step.id == top.c.parent))
            .where(top.c.level < limit)
        )
        ids = chain.select_from(chain.c.id)
        query = Message.visible(author_columns).where(Message.id << ids).order_by(Message.id)
        return query.with_cte(chain)

    @prepared
    def thread_replies(self, author_columns=None, after=None, limit=None):
        """Return the visible replies to this message, oldest first (newest last), only
        those with an id above ``after`` (None: all), at most ``limit``; ``author_columns``
        as for ``visible``."""
        query = Message.visible(author_columns).where(Message.in_reply_to == self)
        return keyset(query, Message.id, after, limit, descending=False)

    @staticmethod
    def annotate(messages, viewer=None, context=True, links=False):
        """Prepare a page of ``messages`` (a list) for display in a constant number of
        queries, whatever its length: sets ``liked`` and ``reposted`` (by ``viewer``, a
        User or None: one query) and, with ``context`` (web pages), ``parent`` (the visible
        message each answers, or None), ``reposted_by`` (the users ``viewer`` follows, or
        ``viewer``, who reposted it) and ``known_mentions`` (the @mentions linkify makes
        links of): one query each. With ``links`` (the API), ``link_lists``: each
        message's ``links()``, one query for the page. Returns ``messages``."""
        ids = [message.id for message in messages]
        parents = {}
        reposters = {}
        mentioned = {}
        liked, reposted = viewer.reactions(ids) if viewer else (set(), set())
        if context:
            parent_ids = {m.in_reply_to_id for m in messages if m.in_reply_to_id is not None}
            if parent_ids:
                query = Message.visible_among(sorted(parent_ids))
                parents = {parent.id: parent for parent in query}
            if viewer and ids:
                reposters = Message._reposters(ids, viewer)
            mentioned = Message.mentioned_names(messages)
        spellings = Message.mention_spellings(messages) if links else None
        for message in messages:
            if links:
                message.link_lists = message.links(spellings)
            message.known_mentions = mentioned.get(message.id, set())
            message.parent = parents.get(message.in_reply_to_id)
            message.liked = message.id in liked
            message.reposted = message.id in reposted
            message.reposted_by = reposters.get(message.id, [])
        return messages

    @staticmethod
    def _reposters(ids, viewer):
        """Return ``{message id: [users]}``: who among ``viewer`` and the people they
        follow (active ones) reposted each of the messages ``ids``, first reposter first."""
        reposters = {}
        for row in Message._reposts_seen_by(list(ids), viewer):
            reposters.setdefault(row.message_id, []).append(row.user)
        return reposters

    @staticmethod
    @prepared
    def _reposts_seen_by(ids, viewer):
        """The reposts of messages ``ids`` by ``viewer`` and the active users they follow,
        oldest first, each with its reposter (``user``)."""
        followed = Relationship.select(Relationship.to_user).where(Relationship.from_user == viewer)
        return (
            Repost.select(Repost, *Message.AUTHOR_COLUMNS)
            .join(User)
            .where(
                Repost.message << ids,
                User.active,
                (Repost.user == viewer) | (Repost.user << followed),
            )
            .order_by(Repost.id)
        )

    @classmethod
    @prepared
    def visible_among(cls, ids):
        """Return the visible messages among ``ids`` (a list), newest first, each with its
        author as in visible()."""
        return cls.visible().where(cls.id << ids)

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

    @classmethod
    def tag_timeline(cls, tag, before=None, limit=None):
        """Return the visible messages tagged ``tag`` (any case), newest first, keyset-paged
        like public_timeline (``before`` a message id, at most ``limit``)."""
        return keyset(cls.tagged(tag), MessageTag.message, before, limit)

    @staticmethod
    def mention_spellings(messages):
        """Return ``{lower-case name: username}`` for every existing user that the texts
        of ``messages`` mention, in one query (none when nobody is mentioned)."""
        names = {name for message in messages for name in extract_mentions(message.content)}
        if not names:
            return {}
        return {username.lower(): username for (username,) in Message._named(sorted(names))}

    @staticmethod
    @prepared
    def _named(names):
        """``(username,)`` of the users whose lower-case username is among ``names``."""
        return User.select(User.username).where(fn.LOWER(User.username) << names).tuples()

    @staticmethod
    def mentioned_names(messages):
        """Return ``{message id: {lower-case username, ...}}``: the active users each of
        ``messages`` mentions, in one query for the whole page (linkify needs them)."""
        ids = [message.id for message in messages]
        names = {}
        if not ids:
            return names
        for message_id, username in Message._mentions_in(ids):
            names.setdefault(message_id, set()).add(username.lower())
        return names

    @staticmethod
    @prepared
    def _mentions_in(ids):
        """``(message id, username)`` of the active users the messages ``ids`` mention."""
        return (
            Mention.select(Mention.message, User.username)
            .join(User)
            .where(Mention.message << ids, User.active)
            .tuples()
        )


# The author columns a timeline shows with each message (the avatar needs only the id).
# Add one here when templates start showing it; the API adds its own.
Message.AUTHOR_COLUMNS = (User.id, User.username, User.display_name)


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


def counted(query):
    """Return a SELECT of one row holding the number of rows of ``query`` (as peewee's
    ``count()`` runs it), as a tuple: a query ``prepared`` functions can return."""
    wrapped = query.order_by().alias("_wrapped")
    return Select([wrapped], [fn.COUNT(SQL("1"))]).bind(query._database).tuples()


def with_related(query, names):
    """Return ``query`` (a SELECT of one model) with the row of each foreign key among
    ``names`` (field names of that model; others are skipped) joined in once and selected,
    but for its SECRET_FIELDS: ``row.<key>`` then costs no query of its own, so a list of
    rows and the rows they point at is one query, not one per row and key.

    A key that may be null is a LEFT JOIN. The first key to a model joins that model, so a
    filter or search through it (peewee's ``ensure_join``) reuses the join; a further key
    to the same model (a follow's two users), or a key to the query's own model (a
    reply's message), joins an alias of it."""
    model, joined = query.model, {query.model}
    for key in [model._meta.fields.get(name) for name in dict.fromkeys(names)]:
        if isinstance(key, ForeignKeyField):
            target = key.rel_model.alias() if key.rel_model in joined else key.rel_model
            joined.add(key.rel_model)
            kind = JOIN.LEFT_OUTER if key.null else JOIN.INNER
            fields = [f for f in key.rel_model._meta.sorted_fields if f not in SECRET_FIELDS]
            columns = [getattr(target, field.name) for field in fields]
            query = query.switch(model).join(target, kind, on=key).select_extend(*columns)
    return query.switch(model)


def newest_ids_sql(reader_id, before, offset):
    """Return SQL (a peewee SQL node, for ``IN``) selecting the ids that can be among the
    ``offset + 1`` newest below ``before`` (a message id; None: no bound) of the messages
    written by user ``reader_id`` and the active users they follow, and of the messages
    those people reposted.

    How: every author's messages are one range of the ``message(user_id, id)`` index. An
    author's ``offset + 1``-th newest message id below ``before`` (one short step back
    along that index) is a floor: those messages are visible and at least as new, so
    no older id can make the page. The newest such floor of all authors bounds the rest;
    the statement then reads, for each author, the range of their messages and of their
    reposts (``repost(user_id, message_id)``) from that floor up to ``before``. The work
    is two short index walks per author plus the ids in that window, however many
    messages exist. (The former shape, a UNION ALL of one ``ORDER BY id DESC LIMIT n``
    subquery per author, took milliseconds just to plan with a hundred followees and
    merged ``followees x 2 x limit`` ids.)

    The statement's text depends only on whether ``before`` is given: peewee renders each
    shape once (newest_ids_template), and each call only binds its numbers. Rendering
    this nested query costs peewee about 3 ms, twice per page (``IN`` renders its right
    side once more to see whether it is empty), more than the database spends on it.
    (The web's page query around it is ``prepared`` as a whole; the API extends it with
    more author columns, so it renders the outer query anew, but not this statement.)
    """
    text, slots = newest_ids_template(before is not None, db.database.param)
    values = {"reader": reader_id, "before": before, "offset": offset}
    return SQL(text, [values.get(slot, slot) for slot in slots])


# Stand-ins for the numbers newest_ids_template leaves to each call: negative, so they
# cannot be confused with the constants peewee binds (the LIMIT 1, the 0 of COALESCE).
NEWEST_IDS_SLOTS = {-1_000_001: "reader", -1_000_002: "before", -1_000_003: "offset"}


@functools.cache
def newest_ids_template(bounded, param):
    """Return ``(sql, slots)``: the text of newest_ids_sql's statement, with ``before``
    (when ``bounded``) and rendered for the database whose placeholder is ``param``,
    and its parameters in order, each a constant or the name of a value newest_ids_sql
    binds (``"reader"``, ``"before"``, ``"offset"``)."""
    reader, before, offset = NEWEST_IDS_SLOTS
    followee = User.alias()
    followed = (
        Relationship.select(Relationship.to_user)
        .join(followee, on=(Relationship.to_user == followee.id))
        .where(Relationship.from_user == reader, followee.active)
    )
    authors = User.select(User.id.alias("uid")).where(User.id == reader).union_all(followed)
    probe = Message.alias()
    listed = authors.alias("floor_authors")
    nth_newest = probe.select(probe.id).where(probe.user == listed.c.uid)
    if bounded:
        nth_newest = nth_newest.where(probe.id < before)
    nth_newest = nth_newest.order_by(probe.id.desc()).offset(offset).limit(1)
    floor = Select([listed], [fn.MAX(fn.COALESCE(nth_newest, 0))])
    parts = []
    for number, (model, key) in enumerate(((Message, Message.id), (Repost, Repost.message))):
        author_ids = authors.alias(f"home_authors{number}")
        bounds = [key >= floor, key < before] if bounded else [key >= floor]
        parts.append(
            model.select(key.alias("id"))
            .from_(author_ids)
            .join(model, on=(model.user == author_ids.c.uid))
            .where(*bounds)
        )
    sql, params = db.database.get_sql_context().sql(parts[0].union_all(parts[1])).query()
    return "(" + sql + ")", [NEWEST_IDS_SLOTS.get(value, value) for value in params]


# The most followees whose messages User.home_timeline merges index range by index range.
HOME_MERGE_MAX_FOLLOWEES = 500
# The per-followee range of User.home_timeline when the caller sets no limit.
HOME_MERGE_DEFAULT_LIMIT = 1000


class MessageCount(db.Model):
    """How many messages ``user`` has written: one row per author, kept by triggers on
    ``message`` (migration 0007) on every insert, delete and change of author, however
    the rows are written. Counting a prolific author's messages for each profile view
    cost time in step with them; reading this row costs the same for everyone."""

    user = ForeignKeyField(User, primary_key=True, backref="message_counts", on_delete="CASCADE")
    messages = IntegerField(default=0)

    # The trigger that counts new messages (migration 0007), on both databases.
    INSERT_TRIGGER = "message_count_insert"

    @classmethod
    def of(cls, user):
        """Return how many messages ``user`` (a User or an id) has written."""
        count = cls.select(cls.messages).where(cls.user == user).scalar()
        return count or 0

    @classmethod
    def recount(cls):
        """Set every author's row to a fresh count of their messages: for bulk loads that
        pause the insert trigger (PostgreSQL's ``seed``). Two statements, in the caller's
        transaction."""
        counted = Message.select(Message.user, fn.COUNT(Message.id)).group_by(Message.user)
        cls.insert_from(counted, [cls.user, cls.messages]).on_conflict(
            conflict_target=[cls.user], update={cls.messages: EXCLUDED.messages}
        ).execute()
        authors = Message.select(Message.user).distinct()
        cls.update(messages=0).where(cls.user.not_in(authors)).execute()


class Reaction(BaseModel):
    """What a like and a repost share: the message they count towards has to be recounted
    when one is deleted. Not a table of its own (it is not in MODELS)."""

    def delete_instance(self, *args, **kwargs):
        """Delete this row (say from the admin) and recount its message."""
        with db.database.atomic():
            result = super().delete_instance(*args, **kwargs)
            Message.refresh_counts([self.message_id])
        return result


class Like(Reaction):
    """``user`` likes ``message``: at most once (the unique pair refuses a second)."""

    # No index of its own: the unique (user, message) index serves lookups by user.
    user = ForeignKeyField(User, backref="likes_given", on_delete="CASCADE", index=False)
    message = ForeignKeyField(Message, backref="likes", on_delete="CASCADE")
    created_date = DateTimeField(default=datetime.datetime.now)

    class Meta:
        # (user, id): someone's likes, most recent first, read as a range (their likes page).
        indexes = ((("user", "message"), True), (("user", "id"), False))

    def __str__(self):
        return f"{self.user} likes {self.message_id}"


class Repost(Reaction):
    """``user`` reposted ``message`` to their followers: at most once."""

    user = ForeignKeyField(User, backref="reposts_made", on_delete="CASCADE", index=False)
    message = ForeignKeyField(Message, backref="reposts", on_delete="CASCADE")
    created_date = DateTimeField(default=datetime.datetime.now)

    class Meta:
        indexes = ((("user", "message"), True),)

    def __str__(self):
        return f"{self.user} reposted {self.message_id}"


class Notification(BaseModel):
    """Tells ``recipient`` that ``actor`` did something (``kind``), often to ``message``.

    Never written for someone's own action; hidden while the actor is deactivated.
    """

    FOLLOW = "follow"
    MENTION = "mention"
    REPLY = "reply"
    LIKE = "like"
    REPOST = "repost"
    KINDS = (FOLLOW, MENTION, REPLY, LIKE, REPOST)
    # Kinds shown as one entry per message: "alice and 3 others liked your message".
    GROUPED = (LIKE, REPOST)
    KIND_CHOICES = tuple((kind, kind) for kind in KINDS)

    recipient = ForeignKeyField(
        User, backref="notifications_received", on_delete="CASCADE", index=False
    )
    actor = ForeignKeyField(User, backref="notifications_caused", on_delete="CASCADE")
    kind = CharField(max_length=10, choices=KIND_CHOICES)
    message = ForeignKeyField(Message, null=True, backref="notifications", on_delete="CASCADE")
    read = BooleanField(default=False)
    created_date = DateTimeField(default=datetime.datetime.now)

    class Meta:
        # Newest first per recipient, by keyset (id), and the unread count.
        indexes = ((("recipient", "id"), False), (("recipient", "read"), False))

    def __str__(self):
        return f"{self.actor} {self.kind} → {self.recipient}"

    @classmethod
    def notify(cls, recipient, actor, kind, message=None):
        """Record that ``actor`` did ``kind`` (to ``message``) for ``recipient``, unless
        they are the same person. Returns the Notification or None."""
        if recipient.id == actor.id:
            return None
        return cls.create(recipient=recipient, actor=actor, kind=kind, message=message)

    @classmethod
    def withdraw(cls, recipient, actor, kind, message):
        """Delete the notification an undone like or repost had caused."""
        cls.delete().where(
            cls.recipient == recipient,
            cls.actor == actor,
            cls.kind == kind,
            cls.message == message,
        ).execute()

    @staticmethod
    def group(notifications):
        """Group a page of ``notifications`` (newest first) for display: likes and reposts
        of one message become one entry. Returns dicts ``{kind, message, actors, read,
        created_date, id}`` in the order of each group's newest member."""
        groups = []
        by_key = {}
        for item in notifications:
            key = (item.kind, item.message_id) if item.kind in Notification.GROUPED else None
            if key is not None and key in by_key:
                group = by_key[key]
                if item.actor not in group["actors"]:
                    group["actors"].append(item.actor)
                group["read"] = group["read"] and item.read
                continue
            group = {
                "id": item.id,
                "kind": item.kind,
                "message": item.message,
                "actors": [item.actor],
                "read": item.read,
                "created_date": item.created_date,
            }
            groups.append(group)
            if key is not None:
                by_key[key] = group
        return groups


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


class MessageIndex(FTS5Model):
    """SQLite's full-text index of message content (FTS5, table ``message_fts``, made by
    migration 0005): an external-content index over ``message``, kept in step by triggers
    on insert, update and delete, so it stores no second copy of the text. Queried by
    Message.search on SQLite only; PostgreSQL uses the ``message_content_search`` index."""

    rowid = RowIDField()
    content = SearchField()

    class Meta:
        database = db.database
        table_name = "message_fts"
        options = {"content": "message", "content_rowid": "id"}


SEARCH_QUERY_MAX_LENGTH = 200
# At most this many words, phrases, #tags and from: names count in one search: each is
# one more condition for the database.
SEARCH_MAX_TERMS = 10
# People a search shows beside the messages (prefix matches, by username).
SEARCH_PEOPLE_LIMIT = 10
SEARCH_TOKENS = re.compile(r'"([^"]*)"?|(\S+)')
# What FTS5 and to_tsvector('simple') see as one word: letters, digits and underscores.
SEARCH_WORD = re.compile(r"\w+")


class SearchQuery:
    """A parsed search: ``words`` and ``phrases`` to find in the text (each a list of
    words, all of which must appear, a phrase's in order), ``tags`` (lower case, matched
    through MessageTag) and ``authors`` (``from:name``, lower case). Built by parse_search;
    ``people`` is the text to match against usernames and display names."""

    def __init__(self, text):
        self.text = text
        self.phrases = []
        self.tags = []
        self.authors = []
        for match in SEARCH_TOKENS.finditer(text):
            quoted, token = match.groups()
            if token and token.startswith("#") and re.fullmatch(r"#\w+", token):
                self.tags.append(token[1:].lower())
            elif token and token.lower().startswith("from:") and len(token) > 5:
                self.authors.append(token[5:].lstrip("@").lower())
            else:
                words = SEARCH_WORD.findall((quoted if quoted is not None else token) or "")
                if words:
                    self.phrases.append(words)
        terms = len(self.phrases) + len(self.tags) + len(self.authors)
        if terms > SEARCH_MAX_TERMS:
            raise TextRefused(f"A search may hold at most {SEARCH_MAX_TERMS} terms.")
        self.people = text.strip().lstrip("@").lower()

    def __bool__(self):
        return bool(self.phrases or self.tags or self.authors)

    def fts5_expression(self):
        """The phrases as an FTS5 query: each a quoted string (so no word is ever read as
        FTS5 syntax: AND, NEAR, *, column filters), all required."""
        return " ".join('"' + " ".join(words) + '"' for words in self.phrases)


def parse_search(text):
    """Return the SearchQuery for the search box text ``text``. Raises TextRefused when
    it is longer than SEARCH_QUERY_MAX_LENGTH characters or holds too many terms."""
    if len(text) > SEARCH_QUERY_MAX_LENGTH:
        raise TextRefused(f"A search must be at most {SEARCH_QUERY_MAX_LENGTH} characters.")
    return SearchQuery(text)


def search_messages(query, before=None, limit=None):
    """Return the visible messages matching the SearchQuery ``query``, newest (highest id)
    first, ``before`` a message id, at most ``limit`` (keyset paging). An empty query
    matches nothing. Words use the full-text index: FTS5 on SQLite, the GIN index on
    ``to_tsvector('simple', content)`` on PostgreSQL; tags use MessageTag."""
    found = Message.visible()
    if not query:
        return keyset(found.where(SQL("1 = 0")), Message.id, before, limit)
    for tag in query.tags:
        tagged = MessageTag.select(MessageTag.message).join(Tag).where(Tag.name == tag)
        found = found.where(Message.id << tagged)
    if query.authors:
        found = found.where(fn.LOWER(User.username) << query.authors)
    if query.phrases and isinstance(db.database, PostgresqlDatabase):
        vector = fn.to_tsvector(SQL(f"'{SEARCH_CONFIGURATION}'"), Message.content)
        for words in query.phrases:
            wanted = fn.phraseto_tsquery(SQL(f"'{SEARCH_CONFIGURATION}'"), " ".join(words))
            found = found.where(Expression(vector, "@@", wanted))
    elif query.phrases:
        matching = MessageIndex.select(MessageIndex.rowid).where(
            MessageIndex.match(query.fts5_expression())
        )
        found = found.where(Message.id << matching)
    return keyset(found, Message.id, before, limit)


def search_people(query, limit=SEARCH_PEOPLE_LIMIT, columns=None):
    """Return up to ``limit`` active users whose username or display name starts with
    the SearchQuery's ``people`` text (any case), by username, reading only ``columns``
    (default User.LIST_COLUMNS)."""
    prefix = query.people
    if not prefix:
        return User.select().where(SQL("1 = 0"))
    return (
        User.select(*(columns or User.LIST_COLUMNS))
        .where(
            User.active,
            fn.LOWER(User.username).startswith(prefix)
            | fn.LOWER(User.display_name).startswith(prefix),
        )
        .order_by(User.username)
        .limit(limit)
    )


class Tag(BaseModel):
    """A #tag, stored in lower case; created the first time a message uses it."""

    name = CharField(max_length=TAG_MAX_LENGTH, unique=True)

    def __str__(self):
        return self.name

    @staticmethod
    def name_of(text):
        """Return the tag name ``text`` asks for (a tag page's URL), in lower case as tags
        are stored; raise NotFound (a 404 on the web and in the API) when no tag can be
        called so: longer than TAG_MAX_LENGTH."""
        if len(text) > TAG_MAX_LENGTH:
            raise NotFound("No such tag.")
        return text.lower()


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
    FILTERS = {
        "user": Filter("user", "id", "author"),
        "status": Filter("status", "choice", "notes"),
        "created_date": Filter("created_date", "date"),
    }
    ORDERING = ("id", "created_date")

    class Meta:
        constraints = [
            Check(f"length(message) BETWEEN 1 AND {NOTE_MAX_LENGTH}", name="note_message_length")
        ]

    def __str__(self):
        return self.message[:40]

    def state(self):
        """The name of this note's status: "live" or "deleted"."""
        return dict(self.STATUS_CHOICES).get(self.status, self.status)

    def clean_message(self, value):
        """Return ``value`` as clean_note accepts it (TextRefused otherwise)."""
        return clean_note(value)

    @classmethod
    def latest_live(cls, limit):
        """Return the ``limit`` newest live notes, with their authors joined in."""
        live = cls.select(cls, User).join(User).where(cls.status == cls.LIVE)
        return live.order_by(cls.created_date.desc(), cls.id.desc()).limit(limit)

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
        return cls._by_hash(cls.hash_token(token)).peek()

    @classmethod
    @prepared
    def _by_hash(cls, token_hash):
        return cls.select(cls, User).join(User).where(cls.token_hash == token_hash, User.active)


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

    @classmethod
    def record(cls, actor, action, model, object_ids, changes=None):
        """Add an entry: ``actor`` (a User, or None) did ``action`` to rows ``object_ids``
        (an id or a list of ids) of ``model``, changing ``changes`` ({field: [old, new]}).

        Values that JSON cannot hold (dates) are stored as text. Call it inside the
        transaction that makes the change, so the entry and the change commit together;
        the admin and the API both do (docs/security.md, "The admin and the audit trail").
        """
        ids = object_ids if isinstance(object_ids, list | tuple) else [object_ids]
        return cls.create(
            actor=actor,
            actor_name=actor.username if actor is not None else "",
            action=action,
            model_name=model.__name__,
            object_id=",".join(str(pk) for pk in ids),
            changes=json.dumps(changes or {}, default=str, sort_keys=True),
        )

    def who(self):
        """The actor's username as it was when they acted, "(deleted)" after it once the
        account is gone; "" for an entry made by nobody (a script)."""
        if self.actor_name and self.actor_id is None:
            return f"{self.actor_name} (deleted)"
        return self.actor_name or (self.actor.username if self.actor_id else "")

    def changed(self):
        """The names of the fields this entry records, comma-separated."""
        return ", ".join(json.loads(self.changes))

    def change_rows(self):
        """Return ``[(field, text)]``, one per recorded field: ``"old → new"`` for a change,
        the value itself for an export's plain entries (fields, format, filters)."""
        return [
            (name, f"{value[0]} → {value[1]}" if isinstance(value, list) else value)
            for name, value in json.loads(self.changes).items()
        ]


# Columns that no admin page, export, audit entry or API answer may ever show.
SECRET_FIELDS = frozenset({User.password, User.session_token, ApiToken.token_hash})
# Columns the audit trail leaves out: they change only as a consequence of another change
# (a new password or a deactivation ends the user's sessions; a name's skeleton follows it).
UNAUDITED_FIELDS = frozenset({User.session_token, User.username_skeleton})
# What an audit entry records instead of a secret's value.
HIDDEN = "(hidden)"


def snapshot(instance):
    """Return ``{field name: value}`` for every column of ``instance`` (a model row)."""
    return {name: instance.__data__.get(name) for name in instance._meta.sorted_field_names}


def audit_diff(model, before, after):
    """Return ``{field: [old, new]}`` for the fields that differ between two snapshots.

    Secret fields (SECRET_FIELDS) appear as ``[HIDDEN, HIDDEN]`` when they changed, so
    the audit trail says a password was changed without storing either hash.
    """
    changes = {}
    for name in model._meta.sorted_field_names:
        old, new = before.get(name), after.get(name)
        if old != new and model._meta.fields[name] not in UNAUDITED_FIELDS:
            secret = model._meta.fields[name] in SECRET_FIELDS
            changes[name] = [HIDDEN, HIDDEN] if secret else [old, new]
    return changes


@contextlib.contextmanager
def audited(actor, action, instance):
    """Run the block in a transaction and add to the audit trail what it did to
    ``instance`` (a model row), by ``actor`` (a User, or None), in that transaction.

    ``action`` "create" compares with nothing before, "delete" with nothing after, any
    other ("edit") the row before the block with the row after it (audit_diff). Yields
    ``instance``. If the block raises, nothing is saved and nothing is recorded.
    """
    model = type(instance)
    before = {} if action == "create" else snapshot(instance)
    with db.database.atomic():
        yield instance
        after = {} if action == "delete" else snapshot(instance)
        AuditEntry.record(actor, action, model, instance._pk, audit_diff(model, before, after))


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
# Their full-width and small forms (＝＋－＠, ﹦﹢﹣﹫) fold to them under NFKC, and some
# spreadsheets do that fold, and skip leading white space and control characters, first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_STARTS = frozenset("=+-@\u2212")  # U+2212 MINUS SIGN: no NFKC fold, same effect
# What may stand before a formula and still let it run: white space, controls, format
# characters (zero-width, direction controls, BOM).
FORMULA_LEAD = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]*"
)
# Rows of a CSV export gathered before they are handed on, in characters.
CSV_CHUNK = 64 * 1024


def runs_as_formula(text):
    """Return True if a spreadsheet could read ``text`` (a str) as a formula."""
    if text.startswith(FORMULA_PREFIXES):
        return True
    first = text[FORMULA_LEAD.match(text).end() :][:1]
    return bool(first) and unicodedata.normalize("NFKC", first)[:1] in FORMULA_STARTS


def csv_cell(value):
    """Return ``value`` as a CSV cell: None is empty; text a spreadsheet would run as a
    formula gets a leading apostrophe (OWASP's advice against CSV injection), also when
    the formula sign is a full-width or small form, or follows white space, control or
    invisible format characters. Any CSV Chirp writes goes through here."""
    if value is None:
        return ""
    if isinstance(value, str) and runs_as_formula(value):
        return "'" + value
    return value


def export_value(row, lookup):
    """Return the value of ``lookup`` on ``row`` (a model row) as an export holds it.

    ``lookup`` is a field (``content``; a foreign key gives its raw id) or one related
    field (``user__username``, None when the key is null; the caller joined the related
    row in). Dates become ISO text and other values what JSON holds, as flask-peewee's
    Serializer writes them. Secret fields are the caller's to leave out (SECRET_FIELDS).
    """
    if "__" in lookup:
        path, name = lookup.split("__")
        if row.__data__.get(path) is None:
            return None
        value = getattr(getattr(row, path), name)
    else:
        field = row._meta.fields[lookup]
        raw = row.__data__.get(lookup) if isinstance(field, ForeignKeyField) else None
        value = raw if raw is not None else getattr(row, lookup)
    return Serializer().convert_value(value)


def json_export(lookups, rows):
    """Yield ``rows`` (lists of values in ``lookups`` order) as the text of a JSON list of
    ``{lookup: value}`` objects, one row at a time. Each separator comes before a row,
    never after, so the document is valid however many rows arrive."""
    yield "["
    for number, row in enumerate(rows):
        yield ("\n" if number == 0 else ",\n") + json.dumps(dict(zip(lookups, row, strict=True)))
    yield "\n]\n"


def csv_export(lookups, rows):
    """Yield ``rows`` (lists of values in ``lookups`` order) as CSV text with a header row
    of ``lookups``, every cell through csv_cell, in chunks of about CSV_CHUNK characters."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(lookups)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        if buffer.tell() > CSV_CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# The most rows one export holds: more would tie a worker up for minutes. A longer list
# is cut there (export_file says so): filter it into parts.
MAX_EXPORT_ROWS = 100_000
EXPORT_MIMETYPES = {"json": "application/json", "csv": "text/csv"}


def export_file(query, lookups, export_format):
    """Return ``(chunks, mimetype, cut)``: the first MAX_EXPORT_ROWS rows of ``query`` as
    a JSON or CSV file (``export_format``, a key of EXPORT_MIMETYPES) of the values of
    ``lookups`` (export_value; with_related joins in the rows they reach), and ``cut``,
    MAX_EXPORT_ROWS when ``query`` has more rows than that (one probe past it), else None.

    ``chunks`` yields the file's text; the rows are read one at a time while it is
    consumed, in constant memory, so consume it where the database connection stays open
    (app.download)."""
    cut = MAX_EXPORT_ROWS if query.offset(MAX_EXPORT_ROWS).limit(1).exists() else None

    def rows():  # a generator: the query runs when the chunks are consumed, not now
        for row in query.limit(MAX_EXPORT_ROWS).iterator():
            yield [export_value(row, name) for name in lookups]

    write = csv_export if export_format == "csv" else json_export
    return write(lookups, rows()), EXPORT_MIMETYPES[export_format], cut


def daily_counts(date_field, days, today=None):
    """Return ``[(date, count)]`` of rows per day of ``date_field`` (a DateTimeField)
    for the ``days`` days up to ``today`` (default: today), oldest first, with 0 for empty
    days.

    One statement of one ``COUNT`` per day over that day's range of ``date_field``'s
    index: counting index entries is all the database does. Grouping the rows by
    ``date(field)`` instead computed a date for every row of the period (about 80 ms for
    the 80 000 messages of 30 days out of a million); this costs a few milliseconds for
    as many, and still grows with the rows of the period (a per-day counter table, kept
    by triggers as ``messagecount`` is, would not)."""
    today = today or datetime.date.today()
    dates = [today - datetime.timedelta(days=back) for back in range(days - 1, -1, -1)]
    bounds = [datetime.datetime.combine(date, datetime.time.min) for date in dates]
    bounds.append(bounds[-1] + datetime.timedelta(days=1))
    (counts,) = counts_between(date_field, bounds)
    return list(zip(dates, counts, strict=True))


@prepared
def counts_between(field, bounds):
    """One row: how many rows have ``field`` in each range ``[bounds[i], bounds[i+1])``."""
    model = field.model
    per_range = [
        model.select(fn.COUNT(SQL("1"))).where(field >= low, field < high)
        for low, high in itertools.pairwise(bounds)
    ]
    return Select(columns=per_range).bind(model._meta.database).tuples()


def site_totals():
    """Return the site's totals: ``{"users", "active_users", "messages", "follows"}`` to
    counts. Messages add up MessageCount's row per author instead of counting them."""
    return {
        "users": User.select().count(),
        "active_users": User.select().where(User.active).count(),
        "messages": MessageCount.select(fn.SUM(MessageCount.messages)).scalar() or 0,
        "follows": Relationship.select().count(),
    }


# The limits and choices of the rules above, by name, for the documents that state them
# (the API's OpenAPI document renders them into templates/api/openapi.json).
LIMITS = {
    "raw_length_factor": RAW_LENGTH_FACTOR,
    "username_max_length": USERNAME_MAX_LENGTH,
    "email_max_length": EMAIL_MAX_LENGTH,
    "display_name_max_length": DISPLAY_NAME_MAX_LENGTH,
    "bio_max_length": BIO_MAX_LENGTH,
    "message_max_length": MESSAGE_MAX_LENGTH,
    "note_max_length": NOTE_MAX_LENGTH,
    "search_query_max_length": SEARCH_QUERY_MAX_LENGTH,
    "note_live": Note.LIVE,
    "note_deleted": Note.DELETED,
    "notification_kinds": list(Notification.KINDS),
}

MODELS = [
    User,
    Relationship,
    Message,
    Note,
    ApiToken,
    AuditEntry,
    Like,
    Repost,
    Notification,
    Tag,
    MessageTag,
    Mention,
    MessageCount,
]

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
