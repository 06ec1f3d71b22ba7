"""Several app hosts behind a load balancer: Chirp keeps no state in a process.

Two gunicorn instances on different 127.0.0.1 ports stand for two hosts. They share one
PostgreSQL database and one Redis (rate-limit counters). A browser logs in on one and
posts and reads on the other (sessions are signed cookies), and failed logins spread
over both hosts trip one login rate limit.
"""

import re

import pytest
import redis
import requests
from databases import new_database_url
from live_server import running_gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "two-hosts-password"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
TIMEOUT = 30


def submit(session, base, path, data):
    """GET ``base + path``, then POST its form with ``data`` and the page's CSRF token;
    return the response to the POST (redirects not followed)."""
    page = session.get(base + path, timeout=TIMEOUT)
    token = CSRF.search(page.text).group(1)
    return session.post(
        base + path, data={**data, "_csrf_token": token}, allow_redirects=False, timeout=TIMEOUT
    )


def test_two_hosts_share_sessions_data_and_the_login_limit(tmp_path, redis_url):
    database_url = new_database_url(tmp_path, "hosts")
    env = {"FLASK_RATELIMIT_STORAGE_URI": redis_url, "FLASK_LOGIN_RATE_LIMIT": "3 per hour"}
    hosts = dict(workers=2, env=env, database_url=database_url)
    with running_gunicorn(tmp_path, **hosts) as one, running_gunicorn(tmp_path, **hosts) as two:
        # Cookies belong to the host name, not the port: one browser, as behind a balancer.
        browser = requests.Session()
        joined = submit(
            browser,
            one.url,
            "/join/",
            {"username": "alice", "email": "alice@example.com"}
            | {"password": PASSWORD, "confirm": PASSWORD},
        )
        assert joined.status_code == 302, joined.text
        browser.cookies.clear()
        assert submit(browser, one.url, "/accounts/login/", login("alice")).status_code == 302

        # Logged in on host one; host two knows the session and stores the message.
        assert browser.get(two.url + "/settings/", allow_redirects=False).status_code == 200
        posted = submit(browser, two.url, "/create/", {"content": "written on host two"})
        assert posted.status_code == 302, posted.text
        assert "written on host two" in browser.get(one.url + "/public/").text

        # Failed logins from a stranger, spread over both hosts, share one counter.
        stranger = requests.Session()
        codes = [
            submit(stranger, host.url, "/accounts/login/", login("alice", "wrong")).status_code
            for host in (one, two, one, two)
        ]
        assert codes == [200, 200, 200, 429]
        right = submit(stranger, one.url, "/accounts/login/", login("alice"))
        assert right.status_code == 429
        assert redis.Redis.from_url(redis_url).keys("*login-username*")
        for host in (one, two):
            assert "Traceback" not in host.read_log()


def login(username, password=PASSWORD):
    """Return the login form's fields."""
    return {"username": username, "password": password}
