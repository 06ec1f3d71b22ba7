"""Security: each defence of app.py and auth.ChirpAuth, proved by attacking it.

Accounts (hashing, rate limit, session, ``next``), cookies, response headers, output
escaping, input limits, error pages and logging. The browser-level proof that every page
works under the Content-Security-Policy is in test_browser.py; the rules every entry point
shares (CSRF, deactivated accounts, bad numbers, unknown ids...) are in test_rules.py.
"""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSWORD
from conftest import csrf_token
from conftest import login
from conftest import make_message
from conftest import make_user
from conftest import post
from conftest import text

from app import CONTENT_SECURITY_POLICY
from auth import auth
from auth import safe_next_url
from models import ApiToken
from models import Message
from models import Note
from models import User

ROOT = Path(__file__).resolve().parent.parent
ONE_MB = 1024 * 1024
XSS_SCRIPT = "<script>alert('xss')</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
XSS_LINK = "javascript:alert(document.cookie)"


def fail_logins(client, count, username="alice", address="127.0.0.1"):
    """POST ``count`` wrong passwords for ``username`` from ``address``; return the last
    response."""
    response = None
    for _ in range(count):
        response = login(client, username, "wrong-password", address)
    return response


def admin_client(client):
    """Log ``client`` in as a new admin, ``root``; return the user."""
    root = make_user("root", admin=True)
    assert login(client, "root").status_code == 302
    return root


# Accounts: hashing ---------------------------------------------------------------------


@pytest.mark.slow  # a new Python process
def test_production_settings_from_the_environment(tmp_path):
    """A fresh process configured only by the environment, as in production: passwords
    get werkzeug's default hash (scrypt), FLASK_SESSION_COOKIE_SECURE=true makes both
    cookies Secure, and FLASK_TRUSTED_PROXIES=1 takes the client address from the proxy."""
    script = """
import json
import main
from flask import request
from models import User
from werkzeug.security import generate_password_hash

user = User(username="alice")
user.set_password("correct-horse")
client = main.app.test_client()
with client:
    response = client.get(
        "/accounts/login/", base_url="https://localhost", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    address = request.remote_addr
print(json.dumps({
    "hash": user.password,
    "werkzeug_default": generate_password_hash("x"),
    "checks": user.check_password("correct-horse") and not user.check_password("wrong"),
    "cookies": response.headers.getlist("Set-Cookie"),
    "address": address,
    "debug": main.app.debug,
}))
"""
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path / 'chirp.db'}",
        SECRET_KEY="production-like",
        FLASK_SESSION_COOKIE_SECURE="true",
        FLASK_TRUSTED_PROXIES="1",
    )
    env.pop("FLASK_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["hash"].startswith("scrypt:32768:8:1$")
    assert seen["hash"].split("$")[0] == seen["werkzeug_default"].split("$")[0]
    assert seen["checks"]
    cookies = {cookie.split("=")[0]: cookie for cookie in seen["cookies"]}
    assert set(cookies) == {"session", "_csrf_token"}
    for cookie in cookies.values():
        assert "; Secure" in cookie and "; HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert seen["address"] == "203.0.113.9"
    assert seen["debug"] is False


def test_passwords_are_compared_in_constant_time(client, monkeypatch):
    """Known and unknown usernames alike end in hmac.compare_digest on a real hash."""
    compared = []
    real = __import__("hmac").compare_digest

    def spy(a, b):
        # Only the password checks; sessions and CSRF tokens use compare_digest too.
        if sys._getframe(1).f_globals["__name__"] == "werkzeug.security":
            compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("werkzeug.security.hmac.compare_digest", spy)
    make_user("alice")
    login(client, "alice", "wrong-password")
    login(client, "nobody", "wrong-password")
    assert len(compared) == 2


# Accounts: login rate limit ------------------------------------------------------------


def test_ten_failed_logins_then_429_even_with_the_right_password(client):
    make_user("alice")
    response = fail_logins(client, 10)
    assert response.status_code == 200
    assert "Incorrect username or password" in text(response)
    response = login(client, "alice")
    assert response.status_code == 429
    assert "Too many failed login attempts" in text(response)
    assert "Please wait 15 minutes" in text(response)
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert "Log out" not in text(client.get("/"))


def test_login_limit_is_per_username_from_any_address(client):
    make_user("alice")
    for number in range(10):
        login(client, "alice", "wrong-password", f"198.51.100.{number}")
    assert login(client, "ALICE", PASSWORD, "203.0.113.1").status_code == 429
    make_user("bob")
    assert login(client, "bob", PASSWORD, "203.0.113.1").status_code == 302


def test_successful_logins_do_not_count(client):
    make_user("alice")
    for _ in range(15):
        assert login(client, "alice").status_code == 302
    fail_logins(client, 9)
    assert login(client, "alice").status_code == 302


def test_login_limit_passes_with_its_window(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "2 per 1 second")
    make_user("alice")
    fail_logins(client, 2)
    assert login(client, "alice").status_code == 429
    time.sleep(1.1)
    assert login(client, "alice").status_code == 302


# Accounts: session and next ----------------------------------------------------------


def test_login_clears_the_session_and_rotates_the_csrf_token(client):
    make_user("alice")
    with client.session_transaction() as session:
        session["planted"] = "by-attacker"
    old_token = csrf_token(client)
    client.post(
        "/accounts/login/",
        data={"username": "alice", "password": PASSWORD, "_csrf_token": old_token},
    )
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_csrf_token") not in (None, old_token)
    # A token known before login (say, planted by an attacker) no longer works...
    response = client.post("/create/", data={"content": "forged", "_csrf_token": old_token})
    assert response.status_code == 403
    # ...and the pages carry the new one, which does.
    assert post(client, "/create/", {"content": "mine"}).status_code == 302
    assert [m.content for m in Message.select()] == ["mine"]


def test_logout_clears_the_session(client):
    make_user("alice")
    login(client, "alice")
    with client.session_transaction() as session:
        session["planted"] = "leftover"
    assert post(client, "/accounts/logout/").status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session and "user_pk" not in session


EVIL_NEXT = [
    "//evil.example",
    "https://evil.example",
    "http:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "//evil.example/%2F..",
]


@pytest.mark.parametrize("next_url", EVIL_NEXT)
def test_login_never_redirects_off_site(client, next_url):
    make_user("alice")
    token = csrf_token(client)
    response = client.post(
        "/accounts/login/",
        data={"username": "alice", "password": PASSWORD, "next": next_url, "_csrf_token": token},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("next_url", EVIL_NEXT)
def test_logout_never_redirects_off_site(client, next_url):
    make_user("alice")
    login(client, "alice")
    response = post(client, "/accounts/logout/", query_string={"next": next_url})
    assert response.headers["Location"] == "/"


def test_login_form_does_not_carry_an_off_site_next(client):
    body = text(client.get("/accounts/login/", query_string={"next": "//evil.example"}))
    assert "evil.example" not in body
    body = text(client.get("/accounts/login/", query_string={"next": "/private/?page=2"}))
    assert 'name="next" value="/private/?page=2"' in body


def test_safe_next_url_accepts_paths_on_this_site():
    assert safe_next_url("/users/alice/?page=2") == "/users/alice/?page=2"
    assert safe_next_url("/") == "/"
    assert safe_next_url("") is None and safe_next_url(None) is None
    assert safe_next_url("/" + "a" * 3000) is None


# Cookies -------------------------------------------------------------------------------


def session_cookie(response):
    return next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))


def test_session_cookie_is_httponly_and_samesite_lax(client):
    make_user("alice")
    cookie = session_cookie(login(client, "alice"))
    assert "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
    assert "; Secure" not in cookie  # plain HTTP in development


def test_session_cookie_is_secure_when_configured(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "SESSION_COOKIE_SECURE", True)
    make_user("alice")
    cookie = session_cookie(client.get("/accounts/login/", base_url="https://localhost"))
    assert "; Secure" in cookie and "; HttpOnly" in cookie


# Headers -------------------------------------------------------------------------------


def assert_security_headers(response):
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])


def test_security_headers_on_every_kind_of_response(client):
    make_user("alice")
    responses = [
        client.get("/"),
        client.get("/static/style.css"),
        client.get("/healthz"),
        client.get("/users/nobody/"),
        client.get("/accounts/logout/"),
        client.post("/create/"),
        client.get("/public/?page=abc"),
        client.get("/public/?q=%00"),
        client.post("/join/", data="x" * (ONE_MB + 1)),
        client.get("/api/message/"),
        client.get("/api/no-such-thing/"),
    ]
    login(client, "alice")
    responses.append(client.get("/private/"))
    for response in responses:
        assert_security_headers(response)
        response.close()


def test_csp_allows_only_own_scripts_and_styles_and_no_framing():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "*" not in CONTENT_SECURITY_POLICY


INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|\sstyle\s*=|\son[a-z]+\s*=|href=\"javascript:", re.I
)


def test_no_page_has_inline_script_style_or_handlers(client, app):
    """What the CSP would block, found in the HTML itself (the browser test then proves
    every page works under the CSP)."""
    alice = make_user("alice")
    message = make_message(alice, "hello")
    make_user("bob")
    Note.create(user=alice, message="a note")
    anonymous = ["/", "/public/", "/users/", "/users/alice/", "/join/", "/accounts/login/"]
    anonymous += ["/users/alice/followers/", "/users/nobody/"]
    assert_no_inline_code(client, anonymous)
    root = admin_client(client)
    _, _ = ApiToken.issue(root, "root's token")
    pages = ["/", "/private/", "/create/", "/settings/", "/users/bob/"]
    pages += ["/api/", "/admin/"] + [
        f"/admin/{name}/"
        for name in ("user", "message", "relationship", "note", "apitoken", "auditentry")
    ]
    pages += [
        f"/admin/user/{alice.id}/",
        "/admin/user/add/",
        f"/admin/message/{message.id}/",
        "/admin/message/add/",
        f"/admin/message/delete/?id={message.id}",
        "/admin/user/export/",
    ]
    assert_no_inline_code(client, pages)


def assert_no_inline_code(client, pages):
    """GET each of ``pages`` (200 or 404) and fail on inline script, style or handlers."""
    for page in pages:
        response = client.get(page)
        assert response.status_code in (200, 404), page
        found = INLINE_CODE.findall(text(response))
        assert not found, f"{page}: {found}"


# Output escaping -----------------------------------------------------------------------


def assert_escaped(body, where):
    assert "<script>alert" not in body, where
    assert "<img src=x" not in body, where
    assert 'href="javascript:' not in body and "href='javascript:" not in body, where


def test_user_content_is_escaped_everywhere(client):
    root = admin_client(client)
    make_user("alice")
    for content in (XSS_SCRIPT, XSS_IMG, XSS_LINK):
        assert post(client, "/create/", {"content": content}).status_code == 302
    message = Message.get(Message.content == XSS_SCRIPT)
    Note.create(user=root, message=XSS_IMG)
    pages = [
        "/",
        "/public/",
        "/private/",
        "/users/root/",
        f"/edit/{message.id}/",
        "/admin/",
        "/admin/message/",
        f"/admin/message/{message.id}/",
        "/admin/note/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_escaped(text(response), page)
    public = text(client.get("/public/"))
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in public
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in public
    assert "javascript:alert(document.cookie)" in public  # as text, not as a link


def test_flash_messages_and_form_values_are_escaped(client):
    make_user("alice")
    login(client, "alice")
    post(client, "/settings/tokens/", {"name": XSS_IMG})
    token = ApiToken.get()
    response = post(
        client,
        f"/settings/tokens/{token.id}/revoke/",
        token_from="/settings/",
        follow_redirects=True,
    )
    body = text(response)
    assert "has been revoked" in body
    assert_escaped(body, "flash")
    response = post(client, "/create/", {"content": XSS_SCRIPT + "x" * 300}, token_from="/create/")
    assert response.status_code == 422
    assert_escaped(text(response), "re-rendered form")
    response = post(
        client,
        "/join/",
        {"username": XSS_IMG, "email": XSS_SCRIPT, "password": "x", "confirm": "y"},
    )
    assert_escaped(text(response), "join form")


def test_json_is_json(client):
    alice = make_user("alice")
    make_message(alice, XSS_SCRIPT)
    for path in ("/api/message/", "/api/no-such-thing/", "/healthz"):
        response = client.get(path)
        assert response.mimetype == "application/json", path
        json.loads(text(response))
    contents = [m["content"] for m in client.get("/api/message/").get_json()["objects"]]
    assert contents == [XSS_SCRIPT]


# Input limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, data",
    [
        ("/join/", {"username": "alice", "email": "a" * 250 + "@example.com"}),
        ("/settings/", {"email": "e" * 250 + "@example.com", "current_password": PASSWORD}),
    ],
)
def test_over_long_email_addresses_are_refused_by_the_forms(client, path, data):
    """The other fields' limits: usernames in test_views.py, passwords and messages in
    test_rules.py, token names in test_text_rules.py, profiles in test_identity.py."""
    make_user("bob")
    login(client, "bob")
    if path == "/join/":
        post(client, "/accounts/logout/")
        data = {"password": "long-enough", "confirm": data.get("password", "long-enough"), **data}
    response = post(client, path, data)
    assert response.status_code == 422, text(response)
    assert User.select().count() == 1 and Message.select().count() == 0
    assert ApiToken.select().count() == 0
    assert User.get().email == "bob@example.com"


def test_an_over_long_login_is_refused_without_a_lookup(client):
    token = csrf_token(client)
    response = client.post(
        "/accounts/login/",
        data={"username": "a" * 31, "password": "p" * 257, "_csrf_token": token},
    )
    assert response.status_code == 200
    assert "Log out" not in text(client.get("/"))


@pytest.mark.parametrize("path", ["/create/", "/join/", "/accounts/login/", "/api/message/"])
def test_bodies_over_1_mb_are_413(client, path):
    make_user("alice")
    login(client, "alice")
    token = csrf_token(client, "/create/")
    content = "x" * ONE_MB
    response = client.post(path, data={"content": content, "_csrf_token": token})
    assert response.status_code == 413
    if path.startswith("/api/"):
        assert "error" in response.get_json()
    else:
        assert "Request Entity Too Large" in text(response)
    assert Message.select().count() == 0


def test_a_body_just_under_1_mb_is_read(client):
    make_user("alice")
    login(client, "alice")
    token = csrf_token(client, "/create/")
    response = client.post("/create/", data={"content": "x" * 900_000, "_csrf_token": token})
    assert response.status_code == 422  # read, parsed and refused as too long a message


def test_a_number_too_large_for_the_database_is_400(client, monkeypatch):
    def overflow(*args, **kwargs):
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    monkeypatch.setattr(Message, "public_timeline", classmethod(overflow))
    response = client.get("/public/")
    assert response.status_code == 400
    assert "out of range" in text(response)
    assert "SQLite" not in text(response)


@pytest.mark.parametrize(
    "query",
    ["page=%00", "page=1%00", "x=%FF", "x=%C3%28", "%00=1", "x=%ED%A0%80"],
)
def test_nul_and_invalid_utf8_in_query_strings_are_400(client, query):
    response = client.get(f"/public/?{query}")
    assert response.status_code == 400


def test_raw_invalid_utf8_in_the_path_and_query_is_400(client):
    assert client.get("/public/", environ_overrides={"QUERY_STRING": "q=\xff"}).status_code == 400
    assert client.get("/", environ_overrides={"PATH_INFO": "/users/\xff/"}).status_code == 400
    assert client.get("/users/%00/").status_code == 400


@pytest.mark.parametrize(
    "body",
    [b"content=a%00b", b"content=%FF", b"content=\xff\xfe", b"content=ok&x%00=1"],
)
def test_nul_and_invalid_utf8_in_forms_are_400(client, body):
    make_user("alice")
    login(client, "alice")
    token = csrf_token(client, "/create/")
    response = client.post(
        "/create/",
        data=body + b"&_csrf_token=" + token.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert Message.select().count() == 0


def test_nul_and_invalid_utf8_in_multipart_forms_are_400(client):
    make_user("alice")
    login(client, "alice")
    token = csrf_token(client, "/create/")
    for value in ("a\x00b", "\ufffd"):
        response = client.post(
            "/create/",
            data={"content": value, "_csrf_token": token},
            content_type="multipart/form-data",
        )
        assert response.status_code == 400
    response = client.post(
        "/create/",
        data={"content": "fine", "_csrf_token": token},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    "body",
    [
        b'{"content": "a\\u0000b"}',
        b'{"con\\u0000tent": "x"}',
        b'{"content": ["\\u0000"]}',
        b'{"content": "\xff"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_nul_invalid_utf8_and_bombs_in_json_are_400(client, body):
    alice = make_user("alice")
    _, token = ApiToken.issue(alice, "test")
    response = client.post(
        "/api/message/",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert "error" in response.get_json()
    assert Message.select().count() == 0


def test_clean_non_ascii_input_is_accepted(client):
    make_user("alice")
    login(client, "alice")
    assert post(client, "/create/", {"content": "Grüße, 你好 🐦"}).status_code == 302
    assert Message.get().content == "Grüße, 你好 🐦"
    assert client.get("/public/?q=%C3%A9").status_code == 200


# Errors --------------------------------------------------------------------------------


def test_web_errors_are_chirp_pages(client):
    make_user("alice")
    fail_logins(client, 10)
    responses = {
        400: client.get("/public/?page=abc"),
        403: client.post("/join/", data={}),
        404: client.get("/users/nobody/"),
        405: client.get("/accounts/logout/"),
        413: client.post("/join/", data="x" * (ONE_MB + 1)),
        429: login(client, "alice"),
    }
    for code, response in responses.items():
        body = text(response)
        assert response.status_code == code
        assert response.mimetype == "text/html"
        assert f"<title>{code} " in body and "/static/style.css" in body, code
        assert "Back to Chirp" in body
        assert "Traceback" not in body


def test_api_errors_are_json(client):
    responses = {
        400: client.get("/api/message/?x=%00"),
        404: client.get("/api/no-such-thing/"),
        413: client.post("/api/message/", data="x" * (ONE_MB + 1)),
    }
    for code, response in responses.items():
        assert response.status_code == code
        assert response.mimetype == "application/json"
        assert isinstance(response.get_json()["error"], str)


@pytest.fixture
def crashing_public_timeline(app, monkeypatch):
    """Make /public/ raise as a bug would, with an SQL-ish message that must not leak,
    and let Flask handle it as in production (no exception propagation)."""
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)

    def crash(cls, *args, **kwargs):
        raise RuntimeError('no such column: "password" in SELECT * FROM user')

    monkeypatch.setattr(Message, "public_timeline", classmethod(crash))


def test_500_is_a_page_without_trace_and_is_logged_with_its_request_id(
    client, crashing_public_timeline, caplog
):
    with caplog.at_level(logging.ERROR):
        response = client.get("/public/")
    body = text(response)
    assert response.status_code == 500
    assert "Internal Server Error" in body and "/static/style.css" in body
    for leak in ("Traceback", "RuntimeError", "SELECT", "password", "views.py"):
        assert leak not in body, leak
    request_id = response.headers["X-Request-ID"]
    assert request_id in body
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is RuntimeError
    assert "/public/" in logged[0].getMessage()


def test_500_under_the_api_is_json(app, monkeypatch):
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    with app.test_request_context("/api/message/"):
        response = app.handle_exception(RuntimeError("SELECT secret"))
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert "SELECT" not in response.get_data(as_text=True)


def test_an_error_page_that_cannot_render_is_still_a_bare_error(
    client, crashing_public_timeline, monkeypatch
):
    """If the error page itself fails (the database is down, say), the answer is still
    a short 500, not a second traceback."""

    def broken(*args, **kwargs):
        raise RuntimeError("database is locked: SELECT ...")

    monkeypatch.setattr(auth, "get_logged_in_user", broken)
    response = client.get("/public/")
    assert response.status_code == 500
    assert "500 Internal Server Error" in text(response)
    assert "SELECT" not in text(response)


# Dependencies --------------------------------------------------------------------------


def test_requirements_are_pinned_so_pip_audit_checks_exact_versions():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [line.split("#")[0].strip() for line in lines]
    requirements = [line for line in requirements if line]
    assert requirements
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.\-+]*", requirement), (
            requirement
        )
