"""Authentication: browser login/logout on flask-peewee's Auth, and API credentials.

Browsers log in at /accounts/login/ and get a session cookie. API clients send either a
personal token (``Authorization: Bearer <token>``, one SHA-256 lookup) or HTTP basic
credentials (a deliberately slow scrypt check on every request).
"""

import datetime
import functools

from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask_peewee.auth import Auth
from flask_peewee.auth import LoginForm
from flask_peewee.rest import Authentication
from flask_peewee.utils import make_password
from wtforms.validators import Length

from app import app
from app import db
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
    """flask-peewee's Auth with the 4.0.1 holes closed (../shared/FLASK-PEEWEE-4.0.1.md):

    - the session is cleared at login and logout (S6: session fixation, stale CSRF token);
    - ``next`` keeps its query string (dc86e7e: 4.0.1 formats it as ``b'...'``);
    - logout is POST only, so a cross-site ``<img>`` cannot log anyone out (N5);
    - usernames match case-insensitively, and an unknown username costs the same hash as a
      wrong password, so response times do not reveal which usernames exist.
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

    def authenticate(self, username, password):
        """Return the active user with this username (any case) and password, else False."""
        user = User.by_username(username).where(User.active == True).first()  # noqa: E712
        if user is None:
            if ChirpAuth._dummy_hash is None:
                ChirpAuth._dummy_hash = make_password("not-a-real-password")
            User(password=ChirpAuth._dummy_hash).check_password(password)
            return False
        return user if user.check_password(password) else False

    def login_user(self, user):
        session.clear()
        super().login_user(user)


def current_path():
    """Return the request's path with its query string, for a ``next=`` parameter."""
    return request.full_path.rstrip("?")


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

    def user_from_request(self):
        """Return the active user named by the request's credentials, or None."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            api_token = ApiToken.lookup(token.strip())
            if api_token is None:
                return None
            ApiToken.update(last_used=datetime.datetime.now()).where(
                ApiToken.id == api_token.id
            ).execute()
            return api_token.user
        basic = request.authorization
        if basic is not None and basic.type == "basic" and basic.username:
            return auth.authenticate(basic.username, basic.password or "") or None
        return None


class AdminApiCredentials(ApiCredentials):
    """ApiCredentials that accept only admins for the protected methods."""

    def authorize(self):
        if not super().authorize():
            return False
        return request.method not in self.protected_methods or bool(g.user and g.user.admin)
