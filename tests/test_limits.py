"""Limits that hold attackers back without locking members out (docs/security.md, "Limits").

- Logins: a browser that logged in before (device cookie) keeps its own allowance, so a
  stranger burning a username's or an address's allowance cannot lock the owner out; basic
  credentials on the API have counters of their own.
- The current-password check on /settings/ is throttled like the login.
- Throttled callers cost no password hash (counted by spying on werkzeug's hashing).
- Sign-ups, posting, following and token creation have per-user and per-address limits,
  a 429 page on the web and JSON under /api/, with counters shared by web and API.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import werkzeug.security
from conftest import PASSWORD
from conftest import basic
from conftest import bearer
from conftest import csrf_token
from conftest import login
from conftest import make_user
from conftest import post
from conftest import text
from playhouse.test_utils import count_queries

from auth import DEVICE_COOKIE
from auth import auth
from models import ApiToken
from models import Message
from models import Relationship
from models import User

ROOT = Path(__file__).resolve().parent.parent
STRANGER = "203.0.113.66"  # the attacker's address
HOME = "198.51.100.7"  # the owner's address, maybe a NAT shared with others


@pytest.fixture
def hashes(monkeypatch):
    """A list that grows by one each time werkzeug computes a password hash."""
    auth.check(None, "warm-up")  # the dummy hash is made once per process, not per test
    calls = []
    real = werkzeug.security._hash_internal

    def counting(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(werkzeug.security, "_hash_internal", counting)
    return calls


@pytest.fixture
def limits(app, monkeypatch):
    """Set rate limits for one test: ``limits(POST_RATE_LIMIT="2 per minute", ...)``."""

    def set_limits(**settings):
        for name, value in settings.items():
            monkeypatch.setitem(app.config, name, value)

    return set_limits


def browser(app):
    return app.test_client()


def login_from(client, username, password, address=HOME):
    """Log in as ``username`` from ``address``: by default the owner's (a NAT, maybe)."""
    return login(client, username, password, address)


def fail(client, count, username="alice", address=STRANGER):
    """Send ``count`` wrong passwords for ``username``; each must be an ordinary failure."""
    for _ in range(count):
        response = login_from(client, username, "wrong-password", address)
        assert response.status_code == 200
        assert "Incorrect username or password" in text(response)


def api_get(client, headers, address=HOME, path="/api/me/"):
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": address})


def known_device(app, username="alice"):
    """A browser that has logged in as ``username`` (and logged out again)."""
    client = browser(app)
    assert login_from(client, username, PASSWORD).status_code == 302
    assert post(client, "/accounts/logout/", token_from="/settings/").status_code == 302
    return client


# ---------------------------------------------------------------- logins and devices


def test_a_stranger_burning_the_username_cannot_lock_out_the_owners_device(app, alice):
    laptop = known_device(app)
    fail(browser(app), 10)
    # The username's allowance is gone for unknown browsers, right password or not...
    assert login_from(browser(app), "alice", PASSWORD, STRANGER).status_code == 429
    assert login_from(browser(app), "alice", PASSWORD, HOME).status_code == 429
    # ...but the owner's own browser logs in.
    assert login_from(laptop, "alice", PASSWORD).status_code == 302


def test_a_known_device_that_fails_too_often_is_limited_itself(app, alice):
    laptop, phone = known_device(app), known_device(app)
    fail(laptop, 10, address=HOME)
    response = login_from(laptop, "alice", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed login attempts" in text(response)
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    # Its failures neither lock the owner's other device nor count against the username.
    assert login_from(phone, "alice", PASSWORD).status_code == 302
    assert login_from(browser(app), "alice", PASSWORD).status_code == 302


def test_a_known_device_costs_no_hash_once_limited(app, alice, hashes):
    laptop = known_device(app)
    fail(laptop, 10, address=HOME)
    hashes.clear()
    assert login_from(laptop, "alice", PASSWORD).status_code == 429
    assert hashes == []


def test_the_address_limit_holds_back_strangers_not_known_devices_behind_it(app, alice, limits):
    """One address spraying guesses over many names is stopped, but members whose
    browsers are known keep logging in from that address (a shared NAT)."""
    limits(LOGIN_ADDRESS_RATE_LIMIT="3 per 15 minutes")
    laptop = known_device(app)
    for number in range(3):
        response = login_from(browser(app), f"guess{number}", "wrong-password", HOME)
        assert response.status_code == 200
    assert login_from(browser(app), "alice", PASSWORD, HOME).status_code == 429
    assert login_from(browser(app), "alice", PASSWORD, "198.51.100.8").status_code == 302
    assert login_from(laptop, "alice", PASSWORD, HOME).status_code == 302


def test_a_device_cookie_of_another_account_does_not_help(app, alice):
    make_user("mallory")
    attacker = known_device(app, "mallory")
    fail(attacker, 10)
    assert login_from(attacker, "alice", PASSWORD).status_code == 429
    assert login_from(attacker, "mallory", PASSWORD).status_code == 302


def test_a_forged_device_cookie_counts_as_an_unknown_device(app, alice):
    laptop = known_device(app)
    fail(browser(app), 10)
    genuine = laptop.get_cookie(DEVICE_COOKIE, path="/accounts/login/").value
    forger = browser(app)
    forger.set_cookie(DEVICE_COOKIE, genuine[:-2] + "xx", path="/accounts/login/")
    assert login_from(forger, "alice", PASSWORD).status_code == 429
    copied = browser(app)  # a copy of the genuine cookie does work: it is the device
    copied.set_cookie(DEVICE_COOKIE, genuine, path="/accounts/login/")
    assert login_from(copied, "alice", PASSWORD).status_code == 302


def test_the_device_cookie_is_signed_httponly_long_lived_and_sent_to_the_login_only(app, alice):
    response = login_from(browser(app), "alice", PASSWORD)
    header = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith(DEVICE_COOKIE + "=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "max-age", "path", "samesite"} <= attributes
    assert "Path=/accounts/login/" in header
    assert "SameSite=Strict" in header
    assert "Max-Age=31536000" in header
    assert "alice" not in header


def test_one_browser_is_a_known_device_for_each_account_that_logged_in(app, alice):
    make_user("bob")
    shared = browser(app)
    for name in ("alice", "bob"):
        assert login_from(shared, name, PASSWORD).status_code == 302
        post(shared, "/accounts/logout/", token_from="/settings/")
    fail(browser(app), 10, "alice")
    fail(browser(app), 10, "bob")
    assert login_from(shared, "alice", PASSWORD).status_code == 302
    post(shared, "/accounts/logout/", token_from="/settings/")
    assert login_from(shared, "bob", PASSWORD).status_code == 302


def test_basic_auth_failures_do_not_lock_the_web_login(app, alice):
    client = browser(app)
    for _ in range(10):
        assert api_get(client, basic("alice", "wrong-password"), HOME).status_code == 401
    response = api_get(client, basic("alice"), HOME)
    assert response.status_code == 429
    assert response.mimetype == "application/json"
    assert "Too many failed login attempts" in response.get_json()["error"]
    # Same address, unknown browser: the web login has counters of its own.
    assert login_from(browser(app), "alice", PASSWORD, HOME).status_code == 302


def test_web_login_failures_do_not_lock_basic_auth(app, alice):
    fail(browser(app), 10, address=HOME)
    assert api_get(browser(app), basic("alice"), HOME).status_code == 200


# ---------------------------------------------------------------- no hash when throttled


def test_basic_auth_over_the_api_limit_is_refused_before_any_hash(app, alice, hashes, limits):
    limits(API_RATE_LIMIT="2 per minute")
    client = browser(app)
    for _ in range(2):
        assert api_get(client, basic("alice")).status_code == 200
    assert len(hashes) == 2
    hashes.clear()
    response = api_get(client, basic("alice"))
    assert response.status_code == 429
    assert hashes == []
    assert response.get_json()["error"].startswith("Too many requests.")
    assert int(response.headers["Retry-After"]) >= 1


def test_wrong_basic_credentials_do_not_use_up_the_users_api_allowance(app, alice, limits):
    """Only proven credentials count against a user's API allowance, so nobody can use up
    someone else's."""
    limits(API_RATE_LIMIT="2 per minute")
    client = browser(app)
    for _ in range(5):
        assert api_get(client, basic("alice", "wrong-password"), STRANGER).status_code == 401
    assert api_get(client, basic("alice")).status_code == 200


def test_basic_auth_over_the_login_limit_is_refused_before_any_hash(app, alice, hashes):
    client = browser(app)
    for _ in range(10):
        assert api_get(client, basic("alice", "wrong-password")).status_code == 401
    hashes.clear()
    assert api_get(client, basic("alice")).status_code == 429
    assert hashes == []


# ---------------------------------------------------------------- odd credentials


def test_a_nul_byte_in_the_basic_auth_username_is_a_401_without_a_lookup(app, alice):
    with count_queries() as queries:
        response = api_get(browser(app), basic("ali\x00ce"))
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert not any("ali\x00ce" in repr(query.msg) for query in queries.get_queries())


@pytest.mark.parametrize("name", ["al ice", "alice\x00", "ålice", "a" * 31])
def test_impossible_basic_usernames_are_plain_401s(app, alice, name):
    assert api_get(browser(app), basic(name)).status_code == 401


def test_a_login_for_an_account_without_a_password_costs_one_hash(app, alice, hashes):
    """Accounts created through the API hold no usable password ("!"): a login for them
    must cost a hash like any other failure, or timing reveals which accounts they are."""
    make_user("root", admin=True)
    created = browser(app).post(
        "/api/user/",
        json={"username": "nopass", "email": "nopass@example.com"},
        headers=basic("root"),
    )
    assert created.status_code == 200, text(created)
    costs = {}
    for name in ("nopass", "alice", "nobody"):
        hashes.clear()
        assert login_from(browser(app), name, "wrong-password").status_code == 200
        costs[name] = len(hashes)
    assert costs == {"nopass": 1, "alice": 1, "nobody": 1}
    hashes.clear()
    assert api_get(browser(app), basic("nopass", "!")).status_code == 401
    assert len(hashes) == 1
    assert not User.get(User.username == "nopass").has_usable_password()


# ---------------------------------------------------------------- the settings password check


def settings_post(client, current_password, address=HOME):
    data = {
        "email": "alice@example.com",
        "new_password": "",
        "confirm": "",
        "current_password": current_password,
        "_csrf_token": csrf_token(client, "/settings/"),
    }
    return client.post("/settings/", data=data, environ_base={"REMOTE_ADDR": address})


def test_the_current_password_check_in_settings_is_throttled_per_user(app, alice, hashes):
    client = browser(app)
    login(client, "alice")
    for _ in range(10):
        response = settings_post(client, "wrong-password")
        assert response.status_code == 422
        assert "That is not your current password." in text(response)
    hashes.clear()
    response = settings_post(client, PASSWORD)
    assert response.status_code == 429
    assert "Too many wrong passwords" in text(response)
    assert int(response.headers["Retry-After"]) >= 1
    assert hashes == []
    # Another address does not help: the counter is the user's.
    assert settings_post(client, PASSWORD, address=STRANGER).status_code == 429
    # The owner can still log in elsewhere: the settings check has counters of its own.
    assert login_from(browser(app), "alice", PASSWORD).status_code == 302


def test_the_current_password_check_in_settings_is_throttled_per_address(app, alice, limits):
    limits(LOGIN_ADDRESS_RATE_LIMIT="3 per 15 minutes")
    make_user("bob")
    alices, bobs = browser(app), browser(app)
    login(alices, "alice")
    login(bobs, "bob")
    for _ in range(3):
        assert settings_post(alices, "wrong-password").status_code == 422
    data = {"email": "bob@example.com", "current_password": PASSWORD}
    data["_csrf_token"] = csrf_token(bobs, "/settings/")
    response = bobs.post("/settings/", data=data, environ_base={"REMOTE_ADDR": HOME})
    assert response.status_code == 429
    data["_csrf_token"] = csrf_token(bobs, "/settings/")
    response = bobs.post("/settings/", data=data, environ_base={"REMOTE_ADDR": STRANGER})
    assert response.status_code == 302


# ---------------------------------------------------------------- actions


def write(client, path, data=None, address=HOME):
    """POST a form to ``path`` from ``address`` with a valid CSRF token."""
    data = dict(data or {}, _csrf_token=csrf_token(client))
    return client.post(path, data=data, environ_base={"REMOTE_ADDR": address})


def assert_html_429(response):
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert "Too many requests of this kind" in text(response)
    assert int(response.headers["Retry-After"]) >= 1


def assert_json_429(response):
    assert response.status_code == 429
    assert response.mimetype == "application/json"
    assert "Too many requests of this kind" in response.get_json()["error"]
    assert int(response.headers["Retry-After"]) >= 1


def join(client, name, address=HOME):
    data = {
        "username": name,
        "email": f"{name}@example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "_csrf_token": csrf_token(client, "/join/"),
    }
    return client.post("/join/", data=data, environ_base={"REMOTE_ADDR": address})


def test_sign_ups_are_limited_per_address(app, limits):
    limits(SIGNUP_RATE_LIMIT="2 per hour")
    assert join(browser(app), "one").status_code == 302
    assert join(browser(app), "two").status_code == 302
    assert_html_429(join(browser(app), "three"))
    assert not User.select().where(User.username == "three").exists()
    assert join(browser(app), "four", address=STRANGER).status_code == 302
    for _ in range(5):  # looking at the form costs nothing
        assert browser(app).get("/join/").status_code == 200


def test_posting_is_limited_per_user_on_the_web_and_the_api_together(app, alice, limits):
    limits(POST_RATE_LIMIT="3 per minute")
    client = browser(app)
    login(client, "alice")
    for number in range(2):
        assert write(client, "/create/", {"content": f"web {number}"}).status_code == 302
    api = browser(app)
    headers = bearer(alice)
    assert api.post("/api/message/", json={"content": "api"}, headers=headers).status_code == 200
    assert_html_429(write(client, "/create/", {"content": "one too many"}))
    assert_json_429(api.post("/api/message/", json={"content": "again"}, headers=headers))
    assert Message.select().count() == 3
    assert client.get("/create/").status_code == 200  # the form still shows
    response = api.post("/api/message/", json={"content": "b"}, headers=bearer(make_user("bob")))
    assert response.status_code == 200


def test_posting_is_limited_per_address(app, alice, limits):
    limits(POST_ADDRESS_RATE_LIMIT="2 per minute")
    make_user("bob")
    alices, bobs = browser(app), browser(app)
    login(alices, "alice")
    login(bobs, "bob")
    assert write(alices, "/create/", {"content": "a"}).status_code == 302
    assert write(bobs, "/create/", {"content": "b"}).status_code == 302
    assert_html_429(write(bobs, "/create/", {"content": "c"}))
    assert write(bobs, "/create/", {"content": "d"}, address=STRANGER).status_code == 302


def test_editing_a_message_is_not_posting(app, alice, limits):
    limits(POST_RATE_LIMIT="1 per minute")
    client = browser(app)
    login(client, "alice")
    assert write(client, "/create/", {"content": "first"}).status_code == 302
    message = Message.get()
    for number in range(3):
        response = write(client, f"/edit/{message.id}/", {"content": f"edit {number}"})
        assert response.status_code == 302


def test_anonymous_posts_are_sent_to_log_in_without_counting(app, alice, limits):
    limits(POST_ADDRESS_RATE_LIMIT="1 per minute")
    anonymous = browser(app)
    for _ in range(3):
        response = write(anonymous, "/create/", {"content": "x"})
        assert response.status_code == 302
        assert "/accounts/login/" in response.headers["Location"]
    client = browser(app)
    login(client, "alice")
    assert write(client, "/create/", {"content": "mine"}).status_code == 302


def test_following_is_limited_per_user_on_the_web_and_the_api_together(app, alice, limits):
    limits(FOLLOW_RATE_LIMIT="2 per hour")
    people = [make_user(f"person{number}") for number in range(4)]
    client = browser(app)
    login(client, "alice")
    assert write(client, "/users/person0/follow/").status_code == 302
    headers = bearer(alice)
    api = browser(app)
    body = {"to_user": people[1].id}
    assert api.post("/api/relationship/", json=body, headers=headers).status_code == 200
    assert_html_429(write(client, "/users/person2/follow/"))
    body = {"to_user": people[3].id}
    assert_json_429(api.post("/api/relationship/", json=body, headers=headers))
    assert Relationship.select().count() == 2
    assert write(client, "/users/person0/unfollow/").status_code == 302  # unfollowing is free


def test_following_is_limited_per_address(app, alice, limits):
    limits(FOLLOW_ADDRESS_RATE_LIMIT="1 per hour")
    make_user("bob")
    make_user("carol")
    alices, bobs = browser(app), browser(app)
    login(alices, "alice")
    login(bobs, "bob")
    assert write(alices, "/users/carol/follow/").status_code == 302
    assert_html_429(write(bobs, "/users/carol/follow/"))
    assert write(bobs, "/users/carol/follow/", address=STRANGER).status_code == 302


def test_token_creation_is_limited_per_user_and_per_address(app, alice, limits):
    limits(TOKEN_RATE_LIMIT="2 per hour", TOKEN_ADDRESS_RATE_LIMIT="3 per hour")
    client = browser(app)
    login(client, "alice")
    for number in range(2):
        assert write(client, "/settings/tokens/", {"name": f"t{number}"}).status_code == 200
    assert_html_429(write(client, "/settings/tokens/", {"name": "t2"}))
    assert ApiToken.select().count() == 2
    make_user("bob")
    bobs = browser(app)
    login(bobs, "bob")
    assert write(bobs, "/settings/tokens/", {"name": "b0"}).status_code == 200
    assert_html_429(write(bobs, "/settings/tokens/", {"name": "b1"}))
    assert write(bobs, "/settings/tokens/", {"name": "b2"}, address=STRANGER).status_code == 200


@pytest.mark.slow  # a new Python process
def test_limits_come_from_the_environment(tmp_path):
    """Every limit is configurable like any Flask setting (``FLASK_<NAME>``)."""
    names = [
        "LOGIN_RATE_LIMIT",
        "LOGIN_ADDRESS_RATE_LIMIT",
        "LOGIN_DEVICE_RATE_LIMIT",
        "SIGNUP_RATE_LIMIT",
        "POST_RATE_LIMIT",
        "POST_ADDRESS_RATE_LIMIT",
        "FOLLOW_RATE_LIMIT",
        "FOLLOW_ADDRESS_RATE_LIMIT",
        "TOKEN_RATE_LIMIT",
        "TOKEN_ADDRESS_RATE_LIMIT",
    ]
    env = dict(os.environ, SECRET_KEY="x", DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}")
    env.update({f"FLASK_{name}": f"{number + 1} per day" for number, name in enumerate(names)})
    script = f"import json, app; print(json.dumps({{k: app.app.config[k] for k in {names!r}}}))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        name: f"{number + 1} per day" for number, name in enumerate(names)
    }
