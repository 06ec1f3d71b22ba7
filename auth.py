"""Authentication: browser login/logout on flask-peewee's Auth, and API credentials.

Browsers log in at /accounts/login/ and get a session cookie, valid until the user's
session token changes (logout, a new password, deactivation, "log out everywhere"), and a
device cookie that gives that browser its own allowance of failed logins. API clients send
either a personal token (``Authorization: Bearer <token>``, one SHA-256 lookup) or HTTP
basic credentials (a deliberately slow scrypt check on every request).
"""

import datetime
import functools
import secrets
from urllib.parse import urlsplit

from flask import abort
from flask import after_this_request
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_peewee.auth import Auth
from flask_peewee.auth import LoginForm
from flask_peewee.rest import Authentication
from flask_peewee.utils import make_password
from itsdangerous import BadData
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length

from app import app
from app import check_limit
from app import client_address
from app import csrf
from app import db
from models import PASSWORD_MAX_LENGTH
from models import USERNAME_MAX_LENGTH
from models import USERNAME_PATTERN
from models import ApiToken
from models import User


class ChirpLoginForm(LoginForm):
    """flask-peewee's login form with length limits on both fields (rendered as the
    inputs' ``maxlength`` too)."""

    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX_LENGTH)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=PASSWORD_MAX_LENGTH)]
    )


class ChirpAuth(Auth):
    """flask-peewee's Auth with the 4.0.1 holes closed (docs/flask-peewee.md defines the
    codes), and sessions and login limits of Chirp's own (docs/security.md, "Sessions and
    credentials" and "Limits"):

    - the session is cleared at login and logout (S6: session fixation), and the CSRF
      token is replaced at login;
    - a session ends for real: it carries the user's ``session_token``, which logout, a
      password change, deactivation and "log out everywhere" replace, so every copy of an
      older session cookie is logged out;
    - ``next`` keeps its query string (4.0.1 formats it as ``b'...'``), and is followed
      only to a path on this site (4.0.1's is_safe_url lets ``/\\evil.example`` through);
    - logout is POST only, so a cross-site ``<img>`` cannot log anyone out (N5);
    - usernames match case-insensitively, and an unknown username or an account without a
      usable password costs the same hash as a wrong password, so response times do not
      reveal which accounts exist;
    - failed logins are rate limited (login_counters): a browser that has logged in as the
      user before (it holds a device cookie) has an allowance of its own, so strangers
      cannot lock the owner out; other browsers share one per username and one per client
      address; HTTP basic credentials on the API have separate counters. Once a counter is
      used up, every attempt it covers, right or wrong, is a 429 and costs no hash.
    """

    # Hashed once, lazily: checked against when the user does not exist or has no password.
    _dummy_hash = None

    def get_login_form(self):
        return ChirpLoginForm

    def configure_routes(self):
        self.blueprint.route("/login/", methods=["GET", "POST"])(self.login)
        self.blueprint.route("/logout/", methods=["POST"])(self.logout)

    def login_redirect(self):
        """Return a redirect to the login page whose ``next`` keeps the full path and query
        of this request (4.0.1 formats it as ``b'...'``), to come back after logging in."""
        return redirect(url_for(f"{self.blueprint.name}.login", next=current_path()))

    def test_user(self, test_fn):
        """Like Auth.test_user, but the login redirect keeps the full path and query."""

        def decorator(fn):
            @functools.wraps(fn)
            def inner(*args, **kwargs):
                user = self.get_logged_in_user()
                if not user or not test_fn(user):
                    return self.login_redirect()
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

    def authenticate(self, username, password, api=False):
        """Return the active user with this username (any case) and password, else False.

        ``api``: the credentials came as HTTP basic credentials on the API, whose failures
        have counters of their own. Raises TooManyRequests (429), before any hash, while a
        counter of login_counters has used up its failed logins; every failure counts
        against each of them.
        """
        user = find_active_user(username)
        counters = login_counters(username, user, api)
        return throttled(counters, LOGIN_THROTTLED, lambda: self.check(user, password))

    def check(self, user, password):
        """Return ``user`` if ``password`` is theirs, else False. Always costs one hash: a
        missing user or an unusable password is checked against a dummy hash."""
        if user is not None and user.has_usable_password():
            return user if user.check_password(password) else False
        if ChirpAuth._dummy_hash is None:
            ChirpAuth._dummy_hash = make_password("not-a-real-password")
        User(password=ChirpAuth._dummy_hash).check_password(password)
        return False

    def check_current_password(self, user, password):
        """Return True if ``password`` is the logged-in ``user``'s (a re-check, e.g. before
        changing settings). Throttled like the login, per user and per client address, on
        counters of its own; raises TooManyRequests (429) once they are used up."""
        counters = [
            ("LOGIN_RATE_LIMIT", "password-check-user", str(user.id)),
            ("LOGIN_ADDRESS_RATE_LIMIT", "password-check-address", client_address()),
        ]
        reason = "Too many wrong passwords for this account or from your address."
        return bool(throttled(counters, reason, lambda: self.check(user, password)))

    def get_logged_in_user(self):
        """Return the active user this request's session belongs to, or None. A session
        carrying an older ``session_token`` than the user's is logged out."""
        if not session.get("logged_in"):
            return None
        if g.get("user") is not None:
            return g.user
        user = User.active_by_id(session.get("user_pk"))
        if user is None or session.get("session_token") != user.session_token:
            return None
        return user

    def login_user(self, user, greeting=None):
        """Start a fresh session for ``user`` and make this browser a known device.

        ``greeting``, if given, is flashed instead of flask-peewee's "You are logged in as
        ..." (a new member gets one welcome, not two messages)."""
        session.clear()
        super().login_user(user)
        if greeting is not None:
            # The session was just cleared, so its only flash is flask-peewee's.
            session["_flashes"] = [("success", greeting)]
        self.renew_session(user)
        # A token an attacker saw before login must not work after it.
        csrf.generate_new_token()
        remember_device(user)

    def renew_session(self, user):
        """Keep this session valid after ``user``'s session token changed (when this very
        session changed the password or ended the others)."""
        session["session_token"] = user.session_token

    def logout_user(self):
        """End this session and every other session of the logged-in user."""
        user = self.get_logged_in_user()
        if user is not None:
            user.end_sessions()
        super().logout_user()

    def end_other_sessions(self, user):
        """End every session of ``user`` except this request's ("log out everywhere")."""
        user.end_sessions()
        self.renew_session(user)


LOGIN_THROTTLED = "Too many failed login attempts for this account or from your address."
# A browser that logged in stays a known device for this long after its last login.
DEVICE_COOKIE = "chirp_device"
DEVICE_COOKIE_MAX_AGE = 365 * 24 * 60 * 60  # seconds
# Accounts one device cookie remembers, most recent first (people sharing a computer).
DEVICE_COOKIE_ACCOUNTS = 5


def throttled(counters, reason, check):
    """Return ``check()`` (a password check: truthy on success), counting a failure
    against each of ``counters`` (``(setting, scope, key)`` triples, see app.check_limit).
    While any of them is used up, raise TooManyRequests (429) with ``reason`` before
    calling ``check``, so a throttled caller costs no hash."""
    for counter in counters:
        check_limit(*counter, hit=False, reason=reason)
    result = check()
    if not result:
        for counter in counters:
            check_limit(*counter, reason=reason)
    return result


def find_active_user(username):
    """Return the active user called ``username`` (any case), or None. A name that cannot
    exist (not 1-30 of ``[A-Za-z0-9_]``) is never looked up: PostgreSQL refuses NUL bytes
    in a query, and a basic-auth header can carry anything."""
    if not USERNAME_PATTERN.fullmatch(username):
        return None
    return User.active_named(username)


def login_counters(username, user, api=False):
    """Return the rate-limit counters, as ``(setting, scope, key)``, that a failed login
    as ``username`` counts against and that must have room before the password is
    checked. ``user`` is the active user of that name, or None.

    - A browser holding a device cookie for ``user`` (a known device): that device's own
      counter, LOGIN_DEVICE_RATE_LIMIT. Strangers using up the username's allowance do
      not lock the owner out, and a stolen laptop's cookie guesses no faster.
    - Any other browser: LOGIN_RATE_LIMIT for the username, LOGIN_ADDRESS_RATE_LIMIT for
      the client address (so one address cannot spray passwords over many names).
    - HTTP basic credentials on the API (``api``): the same two limits on counters of
      their own, so API failures never lock the web login, nor the reverse.
    """
    name = username.lower()[:64]  # longer names cannot exist (USERNAME_MAX_LENGTH)
    prefix = "api-" if api else ""
    if not api:
        device = known_device(user)
        if device is not None:
            return [("LOGIN_DEVICE_RATE_LIMIT", "login-device", device)]
    return [
        ("LOGIN_RATE_LIMIT", prefix + "login-username", name),
        ("LOGIN_ADDRESS_RATE_LIMIT", prefix + "login-address", client_address()),
    ]


def device_serializer():
    """Return the signer of device cookies (the app's SECRET_KEY, a salt of their own)."""
    return URLSafeTimedSerializer(app.secret_key, salt="chirp-device-cookie")


def device_entries():
    """Return the request's device cookie as ``[user id, nonce]`` pairs, most recent
    first; [] when it is missing, forged or older than DEVICE_COOKIE_MAX_AGE."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return []
    try:
        return device_serializer().loads(raw, max_age=DEVICE_COOKIE_MAX_AGE)
    except BadData:
        return []


def known_device(user):
    """Return this browser's device nonce for ``user`` (the key of its own failed-login
    counter) if it has logged in as ``user`` before, else None."""
    if user is None:
        return None
    return next((nonce for user_id, nonce in device_entries() if user_id == user.id), None)


def remember_device(user):
    """Make this browser a known device for ``user``: the response sets a signed,
    HttpOnly device cookie holding a new nonce (so the device's failures start from
    zero), plus the entries of up to DEVICE_COOKIE_ACCOUNTS - 1 other accounts."""
    others = [entry for entry in device_entries() if entry[0] != user.id]
    entries = [[user.id, secrets.token_hex(16)], *others[: DEVICE_COOKIE_ACCOUNTS - 1]]
    value = device_serializer().dumps(entries)

    @after_this_request
    def set_device_cookie(response):
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_COOKIE_MAX_AGE,
            path=url_for("auth.login"),  # sent with login attempts only
            secure=app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Strict",
        )
        return response


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


auth = ChirpAuth(app, db, user_model=User, clear_session=True)


# Every method the API serves, for credentials that guard them all (``protected_methods``):
# flask-peewee's ALL_METHODS lacks HEAD, which would let a HEAD through unauthenticated.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]
# What API clients are told about credentials (the API sends it as X-Chirp-Auth-Hint).
AUTH_HINT = (
    "Send Authorization: Bearer <token> (create one at /settings/). A token costs one "
    "SHA-256 lookup; HTTP basic credentials cost a deliberately slow password hash per request."
)


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
        basic = basic_credentials()
        if basic is None:
            return None
        password = basic.password or ""
        if len(basic.username) > USERNAME_MAX_LENGTH or len(password) > PASSWORD_MAX_LENGTH:
            return None
        return auth.authenticate(basic.username, password, api=True) or None

    def admit(self):
        """Let this request through, with ``g.user`` its caller (or None), or raise: 401
        when credentials are missing or wrong, 403 when right but not enough, 429 when
        the caller (the user, else the client address) is over API_RATE_LIMIT. Guessing
        basic credentials is throttled by ChirpAuth.authenticate (a 429 too).

        Basic credentials cost a slow hash, so a user already over the limit is refused
        before their password is checked; the request counts only once the credentials
        are proven, so nobody can use up someone else's allowance."""
        basic = basic_credentials()
        claimed = find_active_user(basic.username) if basic is not None else None
        if claimed is not None:
            check_limit("API_RATE_LIMIT", "chirp-api", f"user:{claimed.id}", hit=False)
        if not self.authorize():
            if g.user is not None:
                abort(403, "Your account may not do this (admins only).")
            refuse_credentials()
        caller = f"user:{g.user.id}" if g.user else "address:" + client_address()
        check_limit("API_RATE_LIMIT", "chirp-api", caller)

    def touch(self, api_token):
        """Record that ``api_token`` was used now, unless that was recorded recently."""
        now = datetime.datetime.now()
        recent = now - datetime.timedelta(seconds=self.LAST_USED_PRECISION)
        if api_token.last_used is None or api_token.last_used < recent:
            ApiToken.update(last_used=now).where(ApiToken.id == api_token.id).execute()


def basic_credentials():
    """Return the request's HTTP basic credentials (with a username), or None."""
    basic = request.authorization
    if basic is None or basic.type != "basic" or not basic.username:
        return None
    return basic


def refuse_credentials():
    """Raise a 401 (JSON, as every /api/ error) challenging for a ``Bearer`` token, never
    ``Basic``: browsers prompt for, cache and replay Basic credentials (a CSRF risk, S9)."""
    wrong = bool(request.headers.get("Authorization"))
    challenge = 'realm="chirp"' + (', error="invalid_token"' if wrong else "")
    message = "Invalid credentials." if wrong else "Authentication required."
    raise Unauthorized(
        message + " Send Authorization: Bearer <token> (make one at /settings/),"
        " or HTTP basic credentials.",
        www_authenticate=WWWAuthenticate("bearer", token=challenge),
    )


def caller_is_admin():
    """Return True if the request's API credentials (``g.user``) belong to an admin."""
    return bool(g.get("user") and g.user.admin)


class AdminApiCredentials(ApiCredentials):
    """ApiCredentials that accept only admins for the protected methods."""

    def authorize(self):
        if not super().authorize():
            return False
        return request.method not in self.protected_methods or caller_is_admin()
