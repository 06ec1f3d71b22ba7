"""The Flask app, its configuration and its peewee database. Imports nothing from this project.

Configuration comes from defaults overridden by the environment: ``SECRET_KEY``,
``DATABASE_URL`` and any ``FLASK_<NAME>`` variable (see README.md, "Configuration").

Chirp faces the open internet, so this module also holds the app-wide defences: security
headers on every response, refusal of malformed input (oversized bodies, NUL bytes,
invalid UTF-8) before any view or extension reads it, and error pages that never show a
stack trace. In production, behind HTTPS, set ``FLASK_SESSION_COOKIE_SECURE=true`` so the
session and CSRF cookies are only ever sent over HTTPS.
"""

import datetime
import functools
import json
import logging
import math
import os
import re
import time
import uuid
from urllib.parse import unquote_to_bytes

from flask import Flask
from flask import Response
from flask import abort
from flask import g
from flask import has_request_context
from flask import jsonify
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_peewee.db import Database
from flask_peewee.serializer import Serializer
from flask_peewee.utils import PaginatedQuery
from flask_seasurf import SeaSurf
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from limits import parse_many
from markupsafe import Markup
from markupsafe import escape
from peewee import AutoField
from peewee import BooleanField
from peewee import DataError
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import SqliteDatabase
from playhouse.db_url import connect
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter
from wtforms import ValidationError

app = Flask(__name__, instance_relative_config=True)
os.makedirs(app.instance_path, exist_ok=True)

app.config.from_mapping(
    SECRET_KEY=os.environ.get("SECRET_KEY"),
    DATABASE_URL=os.environ.get(
        "DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "chirp.db")
    ),
    # Seconds SQLite waits for a competing writer before raising "database is locked".
    SQLITE_BUSY_TIMEOUT=10,
    MAX_CONTENT_LENGTH=1024 * 1024,
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    CSRF_COOKIE_SAMESITE="Lax",
    CSRF_COOKIE_HTTPONLY=True,
    # SeaSurf switches itself off under TESTING unless told otherwise; tests must see CSRF.
    CSRF_DISABLE=False,
    PAGE_SIZE=20,
    # flask-limiter storage: memory:// serves one host; use redis://HOST:6379 for several.
    RATELIMIT_STORAGE_URI="memory://",
    # Rate limits, in flask-limiter's notation ("10 per 15 minutes"; several may be joined
    # with ";"). docs/security.md, "Limits", explains who each one holds back.
    # API requests per caller (the authenticated user, else the client address; api.py).
    API_RATE_LIMIT="300 per minute",
    # Failed logins per username from browsers that never logged in as that user, and
    # per client address from such browsers; basic credentials on the API have their own
    # counters with the same limits (auth.ChirpAuth).
    LOGIN_RATE_LIMIT="10 per 15 minutes",
    LOGIN_ADDRESS_RATE_LIMIT="30 per 15 minutes",
    # Failed logins per known device: a browser holding the device cookie it got when it
    # last logged in as that user.
    LOGIN_DEVICE_RATE_LIMIT="10 per 15 minutes",
    # Sign-ups per client address; messages posted, follows and API tokens created per
    # user and per client address (web and API share the counters; limit_action).
    SIGNUP_RATE_LIMIT="20 per hour",
    POST_RATE_LIMIT="30 per minute",
    POST_ADDRESS_RATE_LIMIT="120 per minute",
    FOLLOW_RATE_LIMIT="100 per hour",
    FOLLOW_ADDRESS_RATE_LIMIT="300 per hour",
    TOKEN_RATE_LIMIT="10 per hour",
    TOKEN_ADDRESS_RATE_LIMIT="30 per hour",
    # Likes, reposts and their undoing, per user and per client address (web and API).
    REACT_RATE_LIMIT="300 per hour",
    REACT_ADDRESS_RATE_LIMIT="900 per hour",
    # How many reverse proxies (nginx, a load balancer) sit in front of Chirp and set
    # X-Forwarded-For and X-Forwarded-Proto. 0: clients connect directly.
    TRUSTED_PROXIES=0,
    # Level of Chirp's log: INFO writes one line per request; WARNING only problems.
    LOG_LEVEL="INFO",
    # The host names Chirp answers to, e.g. FLASK_TRUSTED_HOSTS='["chirp.example"]' (a
    # leading dot allows subdomains). Another Host header is a 400, so absolute URLs Chirp
    # builds (the trailing-slash redirect) never point elsewhere. None: any host (dev).
    TRUSTED_HOSTS=None,
)
app.config.from_prefixed_env()
if app.config["TRUSTED_PROXIES"]:
    # The client's address (login rate limit) and https (Secure cookies, SeaSurf's Referer
    # check) then come from the proxies' headers. Never set it without a proxy in front:
    # clients could claim any address and dodge the rate limit.
    hops = int(app.config["TRUSTED_PROXIES"])
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
# The CSRF cookie follows the session cookie: Secure behind HTTPS (SeaSurf reads it once).
app.config.setdefault("CSRF_COOKIE_SECURE", app.config.get("SESSION_COOKIE_SECURE", False))

# Only Chirp's own scripts, styles, fonts and images: no inline script or style, no
# plugins, no <base> tricks, forms post only to Chirp, and no page may be framed
# (clickjacking). data: images are the icons Bootstrap's CSS draws in the admin (select
# arrows, check marks, close buttons); an image cannot run script.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
    # SeaSurf checks that HTTPS form posts carry a same-origin Referer, so it must not be
    # "no-referrer"; other sites learn nothing.
    "Referrer-Policy": "same-origin",
}
# The largest row id (or other whole number) the database can compare with its integer
# columns: SQLite's are signed 64-bit (a larger number raises OverflowError, a 500),
# PostgreSQL's serial and integer columns (peewee's AutoField, IntegerField) signed 32-bit
# (a larger number is an error there too). A larger id in a URL is a 404, in a query a 400.
ON_POSTGRES = app.config["DATABASE_URL"].startswith("postgres")
MAX_ID = 2**31 - 1 if ON_POSTGRES else 2**63 - 1
# The largest page number a list accepts (web and API): beyond it an OFFSET only makes the
# database skip rows for nothing.
MAX_PAGE = 100_000


# The deepest row a numbered page may start at (web, admin and API). OFFSET makes the
# database read and drop every earlier row, so deeper pages are not served (404): filter the
# list, or page by keyset (``?before=``) where the list offers it.
MAX_PAGE_OFFSET = 10_000


def is_whole_number(value, low=1, high=MAX_ID):
    """Return True if ``value`` (a str) is ASCII decimal digits, at most 19 of them, of an
    integer from ``low`` to ``high`` (default: a row id the database can hold). Neither
    "²" nor a 5 000-digit number reaches int(). Where a 400 does not fit (a form's or a
    path's id), callers test with this; anything else must never reach a query
    (PostgreSQL refuses ``WHERE id = 'abc'`` with an error where SQLite finds nothing)."""
    return value.isascii() and value.isdigit() and len(value) <= 19 and low <= int(value) <= high


def parse_whole_number(name, raw, low=1, high=MAX_ID):
    """Return the query-string text ``raw`` of the argument ``name`` as an int from ``low``
    to ``high`` (default: a row id, 1 to MAX_ID), or abort with 400 naming the range.

    The one parser of numbers in query strings (pages, cursors, limits, API filters).
    """
    if not is_whole_number(raw, low, high):
        abort(400, f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


# ---------------------------------------------------------------- JSON requests and answers
# Request-level helpers of the API, for any JSON view.

# The largest page a client may ask for (``limit``); larger values are lowered to it.
MAX_PAGE_SIZE = 100
# Longest string a query-string filter accepts (characters).
MAX_FILTER_LENGTH = 254
# Patterns exclude NUL, which app.reject_malformed_input refuses anywhere in a request.
NO_NUL_PATTERN = r"^[^\u0000]*$"
# OpenAPI 3.1 schemas are JSON Schema 2020-12.
BODY_VALIDATOR = Draft202012Validator


# Values flask-peewee's serializer passes through unchanged (exact types: a subclass takes
# the general path).
PLAIN_TYPES = frozenset((str, int, bool, float, type(None)))


class ChirpSerializer(Serializer):
    """flask-peewee's serializer, writing dates as RFC 3339 UTC (``2026-01-31T12:00:00Z``).

    ``serialize_object`` gives exactly what flask-peewee's gives (the same keys in the same
    order, the same values; a test compares them) in one pass over each row's loaded values:
    4.0.1 builds a dictionary (``get_dictionary_from_model``) and then walks it again with
    a chain of ``isinstance`` checks per value (``clean_data``), which was most of an API
    list's serialising time. Strings, numbers, booleans and None need no conversion.
    """

    def serialize_object(self, obj, fields=None, exclude=None):
        """Return ``obj``'s ``fields`` (``{model: names}``; default: all, in peewee's
        order) less ``exclude`` as JSON-ready values; a foreign key whose model is in
        ``fields`` becomes the related row's dictionary, any other its id."""
        return self.row_dictionary(obj, fields or {}, exclude or {})

    def row_dictionary(self, obj, fields, exclude):
        """serialize_object for one row (recursively for related rows)."""
        model = type(obj)
        skip = exclude.get(model, ())
        declared = model._meta.fields
        values = obj.__data__
        data = {}
        for name in fields.get(model, model._meta.sorted_field_names):
            if name in skip:
                continue
            value = values.get(name)
            field = declared[name]
            if value and isinstance(field, ForeignKeyField) and field.rel_model in fields:
                data[name] = self.row_dictionary(getattr(obj, name), fields, exclude)
            elif type(value) in PLAIN_TYPES:
                data[name] = value
            else:  # dates, containers, anything else: flask-peewee's own walk
                data[name] = self.clean_data({name: value})[name]
        return data

    def convert_value(self, value):
        if type(value) in PLAIN_TYPES:
            return value
        if isinstance(value, datetime.datetime):
            # Naive local time, as the models store it, to UTC.
            return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
        return super().convert_value(value)

    @staticmethod
    def field_schema(field):
        """Return the JSON Schema of what ``serialize_object`` writes for the peewee
        ``field`` (a foreign key: the related row's id)."""
        if isinstance(field, (AutoField, IntegerField, ForeignKeyField)):
            return {"type": "integer"}
        if isinstance(field, BooleanField):
            return {"type": "boolean"}
        if isinstance(field, DateTimeField):
            return {"type": "string", "format": "date-time"}
        if getattr(field, "max_length", None):
            return {"type": "string", "maxLength": field.max_length}
        return {"type": "string"}


def json_response(data, status=200, headers=None):
    """Return ``data`` as an ``application/json`` Response."""
    return Response(json.dumps(data), status, headers, mimetype="application/json")


def short_list(names, limit=5):
    """Return ``names`` as a short, readable text for an error message (never huge)."""
    shown = [repr(str(name)[:40]) for name in sorted(names, key=str)[:limit]]
    return ", ".join(shown) + (", ..." if len(names) > limit else "")


def parse_datetime(name, raw):
    """Parse ISO 8601 text ``raw`` into the naive local time the database stores.

    Text without an offset is UTC, like every date the API sends. Aborts with 400.
    """
    try:
        value = datetime.datetime.fromisoformat(raw)
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.astimezone().replace(tzinfo=None)
    except (ValueError, OverflowError):
        abort(400, f"{name} must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z.")


def check_query(allowed):
    """Refuse (400) query parameters outside ``allowed`` (a list of names), and any given
    more than once (which one would count is anybody's guess)."""
    unknown = set(request.args) - set(allowed)
    if unknown:
        supported = ", ".join(sorted(allowed))
        abort(
            400, f"Unsupported query parameter(s): {short_list(unknown)}. Supported: {supported}."
        )
    repeated = [key for key in request.args if len(request.args.getlist(key)) > 1]
    if repeated:
        abort(400, f"Give each query parameter once: {short_list(repeated)}.")


def page_limit():
    """Return ``?limit``: rows per page, 1 or more, lowered to MAX_PAGE_SIZE; without it
    the app's PAGE_SIZE (FLASK_PAGE_SIZE), as on the web. 400 if it is no whole number."""
    if "limit" not in request.args:
        return app.config["PAGE_SIZE"]
    return min(parse_whole_number("limit", request.args["limit"]), MAX_PAGE_SIZE)


def parse_string(name, raw):
    """Return ``raw`` if it is at most MAX_FILTER_LENGTH characters, else 400 (a NUL never
    gets this far: app.reject_malformed_input refuses it)."""
    if len(raw) > MAX_FILTER_LENGTH:
        abort(400, f"{name} must be at most {MAX_FILTER_LENGTH} characters.")
    return raw


def parse_argument(name, raw, schema):
    """Return the query-string text ``raw`` of ``name`` parsed by its OpenAPI ``schema``:
    an integer within its bounds, a date-time, or a string (400 if it is none)."""
    if schema["type"] == "integer":
        return parse_whole_number(name, raw, schema["minimum"], schema["maximum"])
    if schema.get("format") == "date-time":
        return parse_datetime(name, raw)
    return parse_string(name, raw)


def read_json_body():
    """Return the request's body, a JSON object, as a dict. Only ``application/json`` is
    read (415 otherwise): form bodies are what a cross-site page can send without a CORS
    preflight (CSRF). 400 if it is not JSON, or not an object."""
    if request.mimetype != "application/json":
        abort(415, "Send the body as JSON, with Content-Type: application/json.")
    try:
        data = json.loads(request.get_data())
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeply
        abort(400, "The body is not valid JSON.")
    if not isinstance(data, dict):
        abort(400, "The body must be a JSON object.")
    return data


def check_body(data, schema):
    """Check the JSON object ``data`` against ``schema``, the very body schema that
    /api/openapi.json publishes, so that the document and the server cannot disagree.

    Returns ``data`` with whole-number floats as ints (JSON Schema counts 2.0 as an
    integer, so we do too). Aborts with 400 naming the first problem found.
    """
    error = best_match(BODY_VALIDATOR(schema).iter_errors(data))
    if error is not None:
        abort(400, describe_schema_error(error))
    properties = schema["properties"]
    for name, value in data.items():
        if properties[name].get("type") == "integer" and isinstance(value, float):
            data[name] = int(value)
    return data


def describe_schema_error(error):
    """Return a short, readable message for a jsonschema ``error``; it never quotes the
    offending value, which may be megabytes long."""
    schema, keyword = error.schema, error.validator
    name = error.path[0] if error.path else "The body"
    if keyword == "additionalProperties":
        unknown = set(error.instance) - set(schema["properties"])
        return (
            f"Not writable: {short_list(unknown)}. Writable fields: "
            f"{', '.join(schema['properties']) or 'none'}."
        )
    if keyword == "required":
        return f"Required: {', '.join(n for n in schema['required'] if n not in error.instance)}."
    if keyword in ("minLength", "maxLength"):
        low, high = schema.get("minLength", 0), schema["maxLength"]
        return f"{name} must be {low} to {high} characters long."
    if keyword in ("minimum", "maximum"):
        return f"{name} is out of range ({schema['minimum']} to {schema['maximum']})."
    if keyword == "enum":
        return f"{name} must be one of {', '.join(map(str, schema['enum']))}."
    if keyword == "type":
        return f"{name} must be of type {schema['type']}."
    return f"{name} is not in the expected format."


def no_store(response):
    """Return ``response`` marked never to be cached (it is the caller's own)."""
    response.headers["Cache-Control"] = "no-store"
    return response


class PageProbe(PaginatedQuery):
    """Chirp's numbered pagination (``?page=N``): flask-peewee's PaginatedQuery without
    the ``COUNT(*)``. Use it for every list paged by number (admin lists, API resources).

    Counting a million-row list costs more than showing a page of it, so instead of a
    total this fetches one row more than a page (the "has more" probe): ``has_next()``
    says whether a next page exists, and ``get_pages()`` is the last page known so far.
    ``get_count()`` raises NotImplementedError so no template or caller counts by accident.

    ``query_or_model``: a peewee SELECT (ordered: give it a unique final sort key) or a
    model; ``paginate_by``: rows per page. ``get_page()`` aborts with 400 unless ``?page``
    is a whole number from 1 to MAX_PAGE, and with 404 if the page would start more than
    MAX_PAGE_OFFSET rows deep (such pages are not served, as if past the end).
    Query count: one, however large the list.
    """

    def __init__(self, query_or_model, paginate_by):
        super().__init__(query_or_model, paginate_by)
        self._rows = None

    def get_page(self):
        page = parse_whole_number(
            "The page number", request.args.get(self.page_var, "1"), 1, MAX_PAGE
        )
        if (page - 1) * self.paginate_by > MAX_PAGE_OFFSET:
            abort(
                404,
                f"Pages start at most {MAX_PAGE_OFFSET} rows deep: narrow the list with a "
                "filter or search instead.",
            )
        return page

    def _fetch(self):
        if self._rows is None:
            offset = (self.get_page() - 1) * self.paginate_by
            self._rows = list(self.query.limit(self.paginate_by + 1).offset(offset))
        return self._rows

    def get_list(self):
        """Return this page's rows (a list of at most ``paginate_by``), from one query."""
        return self._fetch()[: self.paginate_by]

    def has_next(self):
        """Return True if at least one row follows this page."""
        return len(self._fetch()) > self.paginate_by

    def has_previous(self):
        """Return True unless this is page 1."""
        return self.get_page() > 1

    def get_pages(self):
        """Return the number of the last page known to exist: this one, or the next."""
        return self.get_page() + (1 if self.has_next() else 0)

    def get_count(self):
        raise NotImplementedError("PageProbe never counts: use has_next() instead.")

    def page_url(self, page, endpoint=None):
        """Return the URL of page ``page`` of this list: the current URL (``endpoint``,
        default the request's), its other query arguments kept."""
        args = {**request.view_args, **request.args.to_dict(flat=False), self.page_var: page}
        return url_for(endpoint or request.endpoint, **args)

    def previous_url(self, endpoint=None):
        """Return the URL of the previous page, or None on page 1."""
        return self.page_url(self.get_page() - 1, endpoint) if self.has_previous() else None

    def next_url(self, endpoint=None):
        """Return the URL of the next page, or None on the last."""
        return self.page_url(self.get_page() + 1, endpoint) if self.has_next() else None


def count_up_to(query, cap):
    """Return how many rows ``query`` (a peewee SELECT) has, counting no further than
    ``cap + 1``: the database stops there, so a count on a list of a million rows costs
    what one on ``cap`` rows costs. A result above ``cap`` means "more than ``cap``"."""
    return query.limit(cap + 1).count()


class KeysetPage:
    """Chirp's keyset pagination, for timelines and other lists with a unique sort key:
    ``?before=<id>`` (or another ``cursor_arg``) continues after the last row shown, so
    page 1000 costs what page 1 costs. Use it wherever a list can be paged this way.

    ``fetch(cursor, limit)`` returns the rows past ``cursor`` (None for the first page),
    at most ``limit`` of them, in display order: e.g. ``Message.public_timeline`` or
    ``user.timeline`` (see ``models.keyset``). One page costs one ``fetch`` of
    ``paginate_by + 1`` rows: the extra row only tells whether there is a next page.
    ``parse_cursor(name, raw)`` turns the query-string text into a cursor or aborts with
    400 (default: a row id). ``cursor_of(row)`` is the cursor continuing after ``row``
    (default ``row.id``). With ``not_found_when_empty`` a cursor past the end is a 404,
    as a web page that does not exist; the API answers an empty list instead.
    ``keep_args`` names query arguments the page links keep (e.g. ``("q",)``).

    Attributes: ``items`` (the rows to show), ``cursor`` (the one requested, or None),
    ``has_next``; ``next_url()``/``previous_url()`` for "Older" and "Newest" links.
    """

    previous_label = "Newest"
    next_label = "Older"

    def __init__(
        self,
        fetch,
        paginate_by,
        cursor_arg="before",
        parse_cursor=parse_whole_number,
        cursor_of=lambda row: row.id,
        not_found_when_empty=True,
        keep_args=(),
    ):
        self.paginate_by = paginate_by
        # Query arguments every page link carries on (a search's ``q``).
        self.kept = {name: request.args[name] for name in keep_args if name in request.args}
        self.cursor_arg = cursor_arg
        raw = request.args.get(cursor_arg)
        self.cursor = None if raw is None else parse_cursor(cursor_arg, raw)
        rows = list(fetch(self.cursor, paginate_by + 1))
        self.items = rows[:paginate_by]
        self.has_next = len(rows) > paginate_by
        self.next_cursor = cursor_of(self.items[-1]) if self.has_next else None
        if not_found_when_empty and self.cursor is not None and not self.items:
            abort(404, "There is nothing further back in this list.")

    def url(self, cursor, endpoint=None, **values):
        """Return the URL of the page after ``cursor`` (None: the first page) of the
        current view (or ``endpoint``), with ``values`` as extra query arguments."""
        args = dict(request.view_args)
        args.update(self.kept)
        args.update(values)
        if cursor is not None:
            args[self.cursor_arg] = cursor
        return url_for(endpoint or request.endpoint, **args)

    def next_url(self, endpoint=None, **values):
        """Return the URL of the next (older) page, or None when this is the last."""
        return self.url(self.next_cursor, endpoint, **values) if self.has_next else None

    def previous_url(self, endpoint=None, **values):
        """Return the URL of the first (newest) page, or None when this is it."""
        return self.url(None, endpoint, **values) if self.cursor is not None else None


class IdConverter(IntegerConverter):
    """The ``int`` URL converter, bounded to 1..MAX_ID so a huge id is a 404, not a 500."""

    def __init__(self, map, fixed_digits=0, min=1, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


# Before any route is declared: every <int:...> in Chirp (and its extensions) is bounded.
app.url_map.converters["int"] = IdConverter


# SQLite's page cache per connection, in KiB (its default is 2 000). The redirect of an
# old numbered page walks up to 10 000 messages and their authors: at a million messages
# their pages did not fit in 2 MB, so every such request read them again from the OS and
# cost about twice what it did at 10 000 messages. Memory is taken only as pages are read.
SQLITE_CACHE_KIB = 16_384


def database_from_url(url, busy_timeout):
    """Return an unconnected peewee database for ``url`` (any ``playhouse.db_url`` URL).

    SQLite gets WAL mode, a busy timeout of ``busy_timeout`` seconds, a page cache of
    SQLITE_CACHE_KIB per connection and enforced foreign keys, so several gunicorn
    workers can write to one file without "database is locked". Transactions begin
    IMMEDIATE (taking the write lock at BEGIN): a deferred transaction that reads and then
    writes fails at once with "database is locked", busy timeout or not, when another
    worker committed in between (tests/test_reliability.py).
    """
    if url.startswith("sqlite"):
        pragmas = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal"}
        pragmas["cache_size"] = -SQLITE_CACHE_KIB
        return connect(url, pragmas=pragmas, timeout=busy_timeout, lock_type="IMMEDIATE")
    return connect(url)


class ChirpDatabase(Database):
    """flask-peewee's Database, except that on SQLite a request's connection stays open
    for the same thread's next request instead of being closed at teardown.

    Opening a SQLite connection and setting its three PRAGMAs cost about a millisecond
    on every request (often more than the page's queries), and each new connection
    starts with empty caches of prepared statements and of the file's pages. A gunicorn
    worker serves one request at a time on one thread, so it keeps one connection. A
    connection left inside a transaction (a request that failed half-way) is closed, as
    before, and so is every connection on PostgreSQL (``postgresql+pool://`` pools
    them). ``db.database.close()`` still closes for real: commands and tests rely on it.
    """

    def connect_db(self):
        self.database.connect(reuse_if_open=True)

    def close_db(self, exc):
        database = self.database
        if database.is_closed():
            return
        if isinstance(database, SqliteDatabase):
            if not database.in_transaction() and not database.connection().in_transaction:
                return
        database.close()


# flask-peewee 4.0.1 reads only a {name, engine} dict from DATABASE, so the peewee
# database is built from the URL here; connect() does no I/O.
db = ChirpDatabase(
    app, database_from_url(app.config["DATABASE_URL"], app.config["SQLITE_BUSY_TIMEOUT"])
)
# The bare peewee database, for `pwmigrate` (.pwmigrate: database = app.database).
database = db.database


# Characters that would let a logged value start a new log line or rewrite the terminal
# (a path with %0A, %0D or an escape sequence): logged as \xNN / \uNNNN instead.
LOG_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_log_text(text):
    """Return ``text`` with control characters and line separators written as escapes
    (``\\x0a``), so a value from a request can never forge a line of the log."""
    return LOG_CONTROL_CHARACTERS.sub(
        lambda match: (
            f"\\x{ord(match.group()):02x}"
            if ord(match.group()) < 0x100
            else f"\\u{ord(match.group()):04x}"
        ),
        text,
    )


class RequestIdFilter(logging.Filter):
    """Tags every log line written while handling a request with that request's id, the
    one sent back in the ``X-Request-ID`` header and shown on the 500 page, and escapes
    the message (escape_log_text): Flask logs the decoded path of a failed request, and
    ``/%0A...`` would otherwise write a line of the attacker's choosing. A traceback is
    added by the formatter after this, with its own line breaks."""

    def filter(self, record):
        message = escape_log_text(record.getMessage())
        if has_request_context() and "request_id" in g:
            message = f"{message} [request {g.request_id}]"
        record.msg, record.args = message, None
        return True


app.logger.addFilter(RequestIdFilter())
# Chirp's own lines (one per request, errors) at INFO and above, on standard error, where
# gunicorn's workers write theirs. FLASK_LOG_LEVEL=WARNING keeps only the problems.
app.logger.setLevel(app.config["LOG_LEVEL"])

# An X-Request-ID a proxy or client sent is kept (so one id follows a request through
# nginx, Chirp and the client's own logs) when it looks like an id; anything else is
# replaced, so a log line can never be forged or broken through this header.
INCOMING_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class RequestLog:
    """WSGI middleware: give every request an id and log one line when it is done.

    ``request <id> <METHOD> <path> <status> <duration> ms``, the path with every space,
    control character and non-ASCII byte escaped (``\\xNN``) so that a line cannot be
    split or faked by a crafted URL. The id is the client's or proxy's ``X-Request-ID``
    if it matches INCOMING_REQUEST_ID, else a new random one; Flask reads it from
    ``environ["chirp.request_id"]`` (assign_request_id) for the response header, the 500
    page and the error traceback. It wraps everything, so the line is written even when
    the database is down or a hook fails, and the duration counts the whole response.
    """

    def __init__(self, wsgi_app, logger):
        self.wsgi_app = wsgi_app
        self.logger = logger

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        if INCOMING_REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = uuid.uuid4().hex
        environ["chirp.request_id"] = request_id
        status = []

        def record_status(code, headers, exc_info=None):
            status[:] = [code.split(" ", 1)[0]]
            return start_response(code, headers, exc_info)

        body = self.wsgi_app(environ, record_status)
        try:
            yield from body
        finally:
            if hasattr(body, "close"):  # PEP 3333: the server must close the body
                body.close()
            milliseconds = (time.perf_counter() - started) * 1000
            self.logger.info(
                "request %s %s %s %s %.1f ms",
                request_id,
                escape_for_log(environ.get("REQUEST_METHOD", "")),
                escape_for_log(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")),
                status[0] if status else "-",
                milliseconds,
            )


def escape_for_log(text):
    """Return ``text`` (a WSGI string: one character per byte) with backslashes, spaces,
    control characters and non-ASCII bytes written as ``\\xNN``: one log field, on one
    line, that says exactly which bytes arrived."""
    return "".join(c if "!" <= c <= "~" and c != "\\" else f"\\x{ord(c) & 0xFF:02x}" for c in text)


app.wsgi_app = RequestLog(app.wsgi_app, app.logger)


# The request hooks below are registered before SeaSurf's and the limiter's, so they run
# first: a malformed request is refused before anything parses it.
@app.before_request
def assign_request_id():
    """Give the request its id (RequestLog's) for the logs, the ``X-Request-ID`` header and
    the 500 page."""
    g.request_id = request.environ.get("chirp.request_id") or uuid.uuid4().hex


@app.before_request
def reject_malformed_input():
    """Refuse a request whose body is over MAX_CONTENT_LENGTH (413), or whose path, query
    string, form or JSON body holds a NUL byte or invalid UTF-8 (400).

    Checked on the raw bytes: werkzeug would otherwise replace bad UTF-8 with U+FFFD,
    leave it percent-encoded, drop the field, or raise a 500 while reading the query.
    """
    limit = app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and (request.content_length or 0) > limit:
        abort(413)
    # WSGI passes the percent-decoded path as latin-1 code points, one per byte.
    require_clean_text(request.environ.get("PATH_INFO", "").encode("latin-1", "replace"))
    require_clean_text(unquote_to_bytes(request.query_string))
    if request.mimetype == "application/x-www-form-urlencoded":
        require_clean_text(unquote_to_bytes(request.get_data(cache=True)))
    elif request.mimetype == "multipart/form-data":
        # werkzeug has already replaced invalid UTF-8 in these fields with U+FFFD.
        for key, value in request.form.items(multi=True):
            if "\x00" in key + value or "\ufffd" in key + value:
                abort(400, "The form holds a NUL byte or invalid UTF-8.")
    elif request.is_json:
        body = request.get_data(cache=True)
        require_clean_text(body)
        if body:
            require_clean_json(body)


def require_clean_text(raw):
    """Abort with 400 unless ``raw`` (bytes) is valid UTF-8 without NUL bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        abort(400, "The request is not valid UTF-8.")
    if "\x00" in text:
        abort(400, "The request holds a NUL byte.")


def require_clean_json(raw):
    """Abort with 400 if the JSON document ``raw`` nests too deeply to parse or holds a
    NUL character (``\\u0000``) or a lone surrogate (``\\ud800``, which no database
    stores) in any key or string. Invalid JSON is left to the view."""
    try:
        document = json.loads(raw)
    except ValueError:
        return
    except RecursionError:
        abort(400, "The JSON document nests too deeply.")
    pending = [document]
    while pending:  # iterative: a deep document must not exhaust the stack here either
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                abort(400, "The JSON document holds a NUL character.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\ud800"): valid JSON, yet no text
                abort(400, "The JSON document holds a lone surrogate, which is not text.")


csrf = SeaSurf(app)


@csrf.disable_cookie
def csrf_cookie_unneeded(response):
    """Tell SeaSurf to skip its cookie (and the session write behind it) unless the page
    put a CSRF token in a form: an anonymous visitor reading timelines then gets no
    cookie and costs no session signing. The token lives in the session; a page with a
    form stores it there when it renders the form."""
    return not g.get("seasurf_csrf_token_requested", False)


# Limits are checked where they apply (check_limit); none by default.
limiter = Limiter(get_remote_address, app=app)

# Actions limited per user and per client address: action -> (per-user setting, per-address
# setting). A sign-up has no user yet.
ACTION_LIMITS = {
    "signup": (None, "SIGNUP_RATE_LIMIT"),
    "post": ("POST_RATE_LIMIT", "POST_ADDRESS_RATE_LIMIT"),
    "follow": ("FOLLOW_RATE_LIMIT", "FOLLOW_ADDRESS_RATE_LIMIT"),
    "token": ("TOKEN_RATE_LIMIT", "TOKEN_ADDRESS_RATE_LIMIT"),
    "react": ("REACT_RATE_LIMIT", "REACT_ADDRESS_RATE_LIMIT"),
}


def check_limit(config_key, scope, key, hit=True, reason="Too many requests."):
    """Enforce the rate limit in ``app.config[config_key]`` on the counter ``scope``/``key``
    (e.g. ``"login-username"``/``"alice"``), kept in flask-limiter's storage
    (RATELIMIT_STORAGE_URI), so every worker sharing that storage shares the counter.

    ``hit=True`` counts this request and refuses it once it goes over the limit;
    ``hit=False`` only refuses when the limit is already used up, counting nothing (checked
    before costly work whose failure alone should count, like a password hash). Raises
    TooManyRequests (429, ``Retry-After`` in seconds) whose message is ``reason`` plus how
    long to wait. Does nothing while the limiter is disabled (RATELIMIT_ENABLED=False).
    """
    if not limiter.enabled:
        return
    items = parse_many(app.config[config_key])
    if hit:
        refused = [item for item in items if not limiter.limiter.hit(item, scope, key)]
    else:
        refused = [item for item in items if not limiter.limiter.test(item, scope, key)]
    if refused:
        reset_at = max(limiter.limiter.get_window_stats(i, scope, key).reset_time for i in refused)
        seconds = max(1, math.ceil(reset_at - time.time()))
        minutes = math.ceil(seconds / 60)
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        raise TooManyRequests(f"{reason} Please wait {wait} and try again.", retry_after=seconds)


def limit_action(action, user_id):
    """Count one ``action`` (a key of ACTION_LIMITS: ``"post"``, ``"follow"``...) by user
    ``user_id`` (None when nobody is logged in) from the client's address against its
    per-user and per-address limits. Raises TooManyRequests (429) once either is used up."""
    user_setting, address_setting = ACTION_LIMITS[action]
    counters = [(address_setting, f"{action}-address", client_address())]
    if user_setting and user_id is not None:
        counters.append((user_setting, f"{action}-user", str(user_id)))
    reason = f"Too many requests of this kind ({action})."
    # Look at every counter before counting, so a request one limit refuses does not use
    # up the allowance of the other.
    for counter in counters:
        check_limit(*counter, hit=False, reason=reason)
    for counter in counters:
        check_limit(*counter, reason=reason)


def client_address():
    """Return the client's address as the rate limits see it (behind TRUSTED_PROXIES
    proxies, the address they report)."""
    return get_remote_address() or "unknown"


def rate_limited(action):
    """View decorator: count each POST to the view as one ``action`` of the logged-in user
    (``g.user``, if any) with limit_action; other methods pass freely. Put it below
    ``login_required``, so an anonymous request is sent to log in without counting."""

    def decorator(view):
        @functools.wraps(view)
        def limited(*args, **kwargs):
            if request.method == "POST":
                user = g.get("user")
                limit_action(action, user.id if user is not None else None)
            return view(*args, **kwargs)

        return limited

    return decorator


def require_secret_key(flask_app):
    """Refuse to run without a ``SECRET_KEY`` unless ``flask_app`` is in debug mode.

    Raises RuntimeError with instructions; in debug a throwaway key is used instead.
    """
    if flask_app.config.get("SECRET_KEY"):
        return
    if flask_app.debug:
        flask_app.config["SECRET_KEY"] = os.urandom(32).hex()
        return
    raise RuntimeError(
        "SECRET_KEY is not set. Set it in the environment, e.g. "
        "SECRET_KEY=\"$(python -c 'import secrets; print(secrets.token_hex(32))')\", "
        "or start Chirp with `python main.py`, which keeps one in the instance folder."
    )


@app.template_filter("timesince")
def timesince(value, now=None):
    """Render a past ``datetime`` as a short relative date: "just now", "5m", "3h", "2d",
    or the date itself ("21 Nov 2026") once it is a week old."""
    seconds = int(((now or datetime.datetime.now()) - value).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    if seconds < 7 * 86400:
        return f"{seconds // 86400}d"
    return value.strftime("%d %b %Y")


@app.template_global()
def csrf_field():
    """Return the hidden ``_csrf_token`` input that every POST form must carry (SeaSurf)."""
    token = app.jinja_env.globals["csrf_token"]()
    return Markup('<input type="hidden" name="_csrf_token" value="%s">') % token


@app.after_request
def add_security_headers(response):
    """Add SECURITY_HEADERS and ``X-Request-ID`` to every response, errors included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "request_id" in g:
        response.headers["X-Request-ID"] = g.request_id
    return response


@app.after_request
def make_conditional(response):
    """Give every successful GET a weak ``ETag`` (a hash of its body) and answer a
    request whose ``If-None-Match`` already names it with ``304 Not Modified``, no body.

    Timelines, lists and the API are read again and again by clients that already hold
    the page; a 304 spares the transfer and the client's work. Responses that must not be
    stored (``no-store``) or that stream (exports) are left alone. ``Cache-Control:
    no-cache`` (unless the view set one) makes every cache ask again each time, so a page
    is never shown stale; pages that depend on the session vary on ``Cookie``."""
    if (
        request.method not in ("GET", "HEAD")
        or response.status_code != 200
        or response.is_streamed
        or "no-store" in response.headers.get("Cache-Control", "")
    ):
        return response
    response.add_etag(weak=True)
    response.headers.setdefault("Cache-Control", "no-cache")
    return response.make_conditional(request)


@app.errorhandler(HTTPException)
def http_error(error):
    """Render an HTTP error as JSON ``{"error": ...}`` under /api/, else as a page.

    Headers the error carries (``Allow`` on a 405, ``Retry-After`` on a 429) are kept.
    An unhandled exception arrives here as a 500 (outside debug) after Flask has logged
    its traceback; the response names only the request id, never the exception.
    """
    if request.path.startswith("/api/"):
        response = jsonify(error=error.description)
    else:
        response = app.make_response(render_error_page(error))
    response.status_code = error.code
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@app.errorhandler(OverflowError)
def number_out_of_range(error):
    """A number too large for the database (e.g. ``?user=99999999999999999999``) is the
    client's mistake: answer 400, not 500."""
    return http_error(BadRequest("A number in the request is out of range."))


@app.errorhandler(DataError)
def value_does_not_fit(error):
    """A value the database refuses for its column's type (PostgreSQL: ``abc`` compared
    with an integer column in an admin filter, a date that is no date, text longer than a
    varchar) came from the request: answer 400, not 500. SQLite stores such values as
    they are, so only PostgreSQL raises this; the failed statement changed nothing."""
    app.logger.info("Refused a value the database cannot store: %s", error, exc_info=True)
    return http_error(BadRequest("A value in the request does not fit its field."))


def render_error_page(error):
    """Return the HTML error page for ``error``. If the page itself cannot be rendered
    (say the database is down, and the page's navigation asks who is logged in), return
    a bare page instead, so an error never turns into a second, unstyled traceback."""
    context = {
        "code": error.code,
        "name": error.name,
        "description": error.description,
        "request_id": g.get("request_id"),
    }
    try:
        return render_template("error.html", **context)
    except Exception:  # any failure here must still produce an error page
        app.logger.exception("Could not render the error page for a %s", error.code)
        return escape(f"{error.code} {error.name}: {error.description}")


class Rule:
    """wtforms validator applying one of models' rules: ``clean(value)`` returns the value
    to keep (it replaces the field's data) or raises a ValueError (models' TextRefused,
    Taken), whose message becomes the field's error. The web forms and the admin validate
    with it; the API and save() call the same functions.

    Use it in a field's ``validators`` list, or as a form's ``validate_<field>`` attribute.
    """

    def __init__(self, clean):
        self.clean = clean

    def __call__(self, form, field):
        try:
            field.data = self.clean(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class MaxLength:
    """wtforms validator that only tells the browser a field's limit: the input gets
    ``maxlength="<characters>"`` (wtforms renders validators' ``field_flags``) and checks
    nothing itself. The field's Rule checks the length after normalising (trimmed, NFC),
    as the API and the admin do, so a pasted value with spaces around it is judged as it
    will be stored. Give it the limit constant from models.py: one source for both."""

    def __init__(self, characters):
        self.field_flags = {"maxlength": characters}

    def __call__(self, form, field):
        pass


def download(chunks, mimetype, filename):
    """Return the text ``chunks`` (an iterable of str, consumed while the body is sent) as
    an uncached attachment called ``filename``, read on a database connection of its own:
    flask-peewee closes the request's connection at teardown, before a streamed body is
    sent. Memory stays constant however long the file is."""

    def streamed():
        with db.database.connection_context():
            yield from chunks

    response = Response(stream_with_context(streamed()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    response.headers["Cache-Control"] = "no-store"
    return response
