"""Authentication: browser login/logout on flask-peewee's Auth, and API credentials.

Browsers log in at /accounts/login/ and get a session cookie. API clients send either a
personal token (``Authorization: Bearer <token>``, one SHA-256 lookup) or HTTP basic
credentials (a deliberately slow scrypt check on every request).
"""

import datetime
import functools
import math
import time
from urllib.parse import urlsplit

from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_limiter.util import get_remote_address
from flask_peewee.auth import Auth
from flask_peewee.auth import LoginForm
from flask_peewee.rest import Authentication
from flask_peewee.utils import make_password
from limits import parse
from werkzeug.exceptions import TooManyRequests
from wtforms.validators import Length

from app import app
from app import csrf
from app import db
from app import limiter
from models import PASSWORD_MAX_LENGTH
from models import USERNAME_MAX_LENGTH
from models import ApiToken
from models import User


class ChirpLoginForm(LoginForm):
    """flask-peewee's login form with length limits on both fields."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.username.validators = [*self.username.validators, Length(max=USERNAME_MAX_LENGTH)]
        self.password.validators = [*self.password.validators, Length(max=PASSWORD_MAX_LENGTH)]


class ChirpAuth(Auth):
    """flask-peewee's Auth with the 4.0.1 holes closed (docs/flask-peewee.md defines the codes):

    - the session is cleared at login and logout (S6: session fixation), and the CSRF
      token is replaced at login;
    - ``next`` keeps its query string (4.0.1 formats it as ``b'...'``), and is
      followed only to a path on this site (4.0.1's is_safe_url lets ``/\\evil.example``
      through);
    - logout is POST only, so a cross-site ``<img>`` cannot log anyone out (N5);
    - usernames match case-insensitively, and an unknown username costs the same hash as a
      wrong password, so response times do not reveal which usernames exist;
    - failed logins are rate limited per username and per client address
      (``LOGIN_RATE_LIMIT``, 10 per 15 minutes): then every attempt, right or wrong, is a
      429 until the window passes. This covers the login form and HTTP basic credentials
      on the API alike, since both go through ``authenticate``.
    """

    # Hashed once, lazily: checked against when the username does not exist.
    _dummy_hash = None

    def get_login_form(self):
        return ChirpLoginForm

    def configure_routes(self):
        self.blueprint.route("/login/", methods=["GET", "POST"])(self.login)
        self.blueprint.route("/logout/", methods=["POST"])(self.logout)

    def test_user(self, test_fn):
        """Like Auth.test_user, but the login redirect keeps the full path and query."""

        def decorator(fn):
            @functools.wraps(fn)
            def inner(*args, **kwargs):
                user = self.get_logged_in_user()
                if not user or not test_fn(user):
                    return redirect(url_for(f"{self.blueprint.name}.login", next=current_path()))
                return fn(*args, **kwargs)

            return inner

        return decorator

    def login(self):
        """Show the login form; on valid credentials log in and go to ``next`` if it is a
        path on this site, else home. Raises a 429 while failed logins are throttled."""
        form = self.get_login_form()(request.form)
        values = request.form if request.method == "POST" else request.args
        next_url = safe_next_url(values.get("next"))
        if request.method == "POST" and form.validate():
            user = self.authenticate(form.username.data, form.password.data)
            if user:
                self.login_user(user)
                return redirect(next_url or self.default_next_url)
            flash("Incorrect username or password", "danger")
        login_url = url_for(f"{self.blueprint.name}.login")
        return render_template("auth/login.html", form=form, login_url=login_url, next=next_url)

    def logout(self):
        """Log out (POST only, so CSRF-checked) and go to ``next`` if it is a path on this
        site, else home."""
        self.logout_user()
        return redirect(safe_next_url(request.args.get("next")) or self.default_next_url)

    def authenticate(self, username, password):
        """Return the active user with this username (any case) and password, else False.

        Raises TooManyRequests (429) while the username or the client address has used up
        its failed logins; every failure counts against both.
        """
        counters = login_counters(username)
        refuse_if_throttled(counters)
        user = User.by_username(username).where(User.active).first()
        if user is None:
            if ChirpAuth._dummy_hash is None:
                ChirpAuth._dummy_hash = make_password("not-a-real-password")
            User(password=ChirpAuth._dummy_hash).check_password(password)
        elif user.check_password(password):
            return user
        record_failed_login(counters)
        return False

    def login_user(self, user):
        session.clear()
        super().login_user(user)
        # A token an attacker saw before login must not work after it.
        csrf.generate_new_token()


def current_path():
    """Return the request's path with its query string, for a ``next=`` parameter."""
    return request.full_path.rstrip("?")


def safe_next_url(url):
    """Return ``url`` if it is a path on this site (``/private/?page=2``), else None.

    Refused: absolute and scheme-relative URLs (``https://evil.example``,
    ``//evil.example``), and anything with a backslash or a control character, because
    browsers read ``/\\evil.example`` and ``/<TAB>/evil.example`` as ``//evil.example``.
    """
    if not url or len(url) > 2048 or not url.startswith("/") or url.startswith("//"):
        return None
    if "\\" in url or any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None
    return url


def login_counters(username):
    """Return the rate-limit counters a failed login as ``username`` counts against: one
    for the username (any case) and one for the client address."""
    # Longer names cannot exist (USERNAME_MAX_LENGTH), so the prefix is a fine key.
    return [
        ("login-username", username.lower()[:64]),
        ("login-address", get_remote_address() or "unknown"),
    ]


def refuse_if_throttled(counters):
    """Raise TooManyRequests (429, with Retry-After) if any of ``counters`` has used up
    ``LOGIN_RATE_LIMIT``. Does nothing while rate limiting is disabled."""
    if not limiter.enabled:
        return
    limit = parse(app.config["LOGIN_RATE_LIMIT"])
    for counter in counters:
        if not limiter.limiter.test(limit, *counter):
            reset_time = limiter.limiter.get_window_stats(limit, *counter).reset_time
            seconds = max(1, math.ceil(reset_time - time.time()))
            minutes = math.ceil(seconds / 60)
            raise TooManyRequests(
                "Too many failed login attempts for this account or from your address. "
                f"Please wait {minutes} minute{'s' if minutes != 1 else ''} and try again.",
                retry_after=seconds,
            )


def record_failed_login(counters):
    """Count one failed login against each of ``counters``."""
    if limiter.enabled:
        limit = parse(app.config["LOGIN_RATE_LIMIT"])
        for counter in counters:
            limiter.limiter.hit(limit, *counter)


auth = ChirpAuth(app, db, user_model=User, clear_session=True)


class ApiCredentials(Authentication):
    """flask-peewee API authentication by personal token or HTTP basic credentials.

    Reads ``Authorization: Bearer <token>`` (checked against ApiToken's SHA-256, so it is
    cheap) or ``Authorization: Basic`` (a full scrypt check, about 140 ms). On success
    ``g.user`` is the caller. ``protected_methods`` need valid credentials; other methods
    are open, but credentials sent with them must still be valid. Inactive users fail.
    """

    def authorize(self):
        g.user = None
        if not request.authorization and not request.headers.get("Authorization"):
            return request.method not in self.protected_methods
        g.user = self.user_from_request()
        return g.user is not None

    # ``last_used`` is written at most this often per token, so a busy client does not turn
    # every read into a database write (seconds).
    LAST_USED_PRECISION = 60

    def user_from_request(self):
        """Return the active user named by the request's credentials, or None.

        Over-long basic credentials fail without being hashed: they cannot be valid, and
        hashing them would only cost time.
        """
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            api_token = ApiToken.lookup(token.strip())
            if api_token is None:
                return None
            self.touch(api_token)
            return api_token.user
        basic = request.authorization
        if basic is None or basic.type != "basic" or not basic.username:
            return None
        password = basic.password or ""
        if len(basic.username) > USERNAME_MAX_LENGTH or len(password) > PASSWORD_MAX_LENGTH:
            return None
        return auth.authenticate(basic.username, password) or None

    def touch(self, api_token):
        """Record that ``api_token`` was used now, unless that was recorded recently."""
        now = datetime.datetime.now()
        recent = now - datetime.timedelta(seconds=self.LAST_USED_PRECISION)
        if api_token.last_used is None or api_token.last_used < recent:
            ApiToken.update(last_used=now).where(ApiToken.id == api_token.id).execute()


class AdminApiCredentials(ApiCredentials):
    """ApiCredentials that accept only admins for the protected methods."""

    def authorize(self):
        if not super().authorize():
            return False
        return request.method not in self.protected_methods or bool(g.user and g.user.admin)
