"""The Flask app, its configuration and its peewee database. Imports nothing from this project.

Configuration comes from defaults overridden by the environment: ``SECRET_KEY``,
``DATABASE_URL`` and any ``FLASK_<NAME>`` variable (see DESIGN.md and README.md).
"""

import datetime
import os

from flask import Flask
from flask import jsonify
from flask import render_template
from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_peewee.db import Database
from flask_seasurf import SeaSurf
from markupsafe import Markup
from playhouse.db_url import connect
from werkzeug.exceptions import HTTPException

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
)
app.config.from_prefixed_env()


def database_from_url(url, busy_timeout):
    """Return an unconnected peewee database for ``url`` (any ``playhouse.db_url`` URL).

    SQLite gets WAL mode, a busy timeout of ``busy_timeout`` seconds and enforced foreign
    keys, so several gunicorn workers can write to one file without "database is locked".
    """
    if url.startswith("sqlite"):
        pragmas = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal"}
        return connect(url, pragmas=pragmas, timeout=busy_timeout)
    return connect(url)


# flask-peewee 4.0.1 reads only a {name, engine} dict from DATABASE, so the peewee
# database is built from the URL here; connect() does no I/O.
db = Database(app, database_from_url(app.config["DATABASE_URL"], app.config["SQLITE_BUSY_TIMEOUT"]))
# The bare peewee database, for `pwmigrate` (.pwmigrate: database = app.database).
database = db.database

csrf = SeaSurf(app)
# Limits are declared where they apply (login, API); none by default.
limiter = Limiter(get_remote_address, app=app)


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


@app.errorhandler(HTTPException)
def http_error(error):
    """Render an HTTP error as JSON ``{"error": ...}`` under /api/, else as a page.

    Headers the error carries (``Allow`` on a 405, ``Retry-After`` on a 429) are kept.
    """
    if request.path.startswith("/api/"):
        response = jsonify(error=error.description)
    else:
        context = {"code": error.code, "name": error.name, "description": error.description}
        response = app.make_response(render_template("error.html", **context))
    response.status_code = error.code
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
