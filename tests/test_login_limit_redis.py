"""The login rate limit kept in Redis is shared by every host (FLASK_RATELIMIT_STORAGE_URI).

Two separate processes, standing for two hosts behind a load balancer, use one real
redis-server on 127.0.0.1: failures counted by the first throttle the second.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.slow  # new Python processes, one per host

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: logs in N times as alice with PASSWORD through the real
# login form and prints the status codes, space-separated.
LOGIN_ATTEMPTS = """
import re, sys
import main
from models import User, migration_runner
migration_runner().up()
if not User.select().where(User.username == "alice").exists():
    user = User(username="alice", email="alice@example.com")
    user.set_password("the-right-password")
    user.save()
client = main.app.test_client()
html = client.get("/accounts/login/").get_data(as_text=True)
token = re.search(r'name="_csrf_token" value="([^"]+)"', html).group(1)
codes = []
for _ in range(int(sys.argv[1])):
    response = client.post("/accounts/login/", data={
        "username": "alice", "password": sys.argv[2], "_csrf_token": token})
    codes.append(str(response.status_code))
print(" ".join(codes))
"""


def attempts(tmp_path, storage_uri, count, password):
    """Run LOGIN_ATTEMPTS in a new process (a new "host"); return its status codes."""
    env = dict(
        os.environ,
        SECRET_KEY="redis-test",
        FLASK_RATELIMIT_STORAGE_URI=storage_uri,
        DATABASE_URL=f"sqlite:///{tmp_path / 'chirp.db'}",
    )
    result = subprocess.run(
        [sys.executable, "-c", LOGIN_ATTEMPTS, str(count), password],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.redis
def test_failed_logins_on_one_host_throttle_another(tmp_path, redis_url):
    first_host = attempts(tmp_path, redis_url, 11, "wrong-password")
    assert first_host == ["200"] * 10 + ["429"]
    # A second process sharing the Redis storage refuses even the right password.
    assert attempts(tmp_path, redis_url, 1, "the-right-password") == ["429"]
    keys = redis.Redis.from_url(redis_url).keys("*login-username*")
    assert keys, "the counters are not in Redis"


def test_memory_storage_is_per_process(tmp_path):
    """The default memory:// storage is not shared, which is why several hosts need Redis."""
    assert attempts(tmp_path, "memory://", 11, "wrong-password")[-1] == "429"
    assert attempts(tmp_path, "memory://", 1, "the-right-password") == ["302"]
