"""The command line: create-admin, create-token, seed, and `python main.py` itself."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import make_user
from live_server import free_port
from peewee import fn

import main
from app import db
from models import Message
from models import MessageCount
from models import Relationship
from models import User

ROOT = Path(__file__).resolve().parent.parent


def test_create_admin_reads_the_password_from_stdin(runner):
    result = runner.invoke(
        args=["create-admin", "root", "--password-stdin"], input="a-good-password\n"
    )
    assert result.exit_code == 0, result.output
    user = User.get(User.username == "root")
    assert user.admin and user.active and user.email == "root@localhost.localdomain"
    assert user.check_password("a-good-password")


def test_create_admin_prompts_twice_for_the_password(runner):
    result = runner.invoke(
        args=["create-admin", "root", "--email", "Root@Example.com"],
        input="a-good-password\na-good-password\n",
    )
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output
    assert "a-good-password" not in result.output
    assert User.get().email == "root@example.com"


def test_create_admin_promotes_an_existing_user(runner):
    make_user("alice")
    result = runner.invoke(
        args=["create-admin", "ALICE", "--password-stdin"], input="another-password\n"
    )
    assert result.exit_code == 0, result.output
    alice = User.get()
    assert alice.admin and alice.check_password("another-password")
    assert User.select().count() == 1


def test_create_admin_refuses_bad_input(runner):
    bad_name = runner.invoke(
        args=["create-admin", "no spaces", "--password-stdin"], input="a-good-password\n"
    )
    assert bad_name.exit_code == 2 and "letters, digits or underscores" in bad_name.output
    assert User.select().count() == 0


def test_create_token_for_unknown_user_fails(runner):
    result = runner.invoke(args=["create-token", "nobody"])
    assert result.exit_code == 2 and "no user called 'nobody'" in result.output


def test_seed_fills_the_database(runner):
    result = runner.invoke(args=["seed", "--users", "12", "--messages", "50", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "Seeding" in result.output  # the progress bar's label
    assert User.select().count() == 12
    assert Message.select().count() == 50
    assert Relationship.select().where(Relationship.from_user == Relationship.to_user).count() == 0
    assert f"{Relationship.select().count()} follows" in result.output
    assert all(1 <= len(m.content) <= 280 for m in Message.select())
    # seeded users cannot be logged into with a guessable password
    assert not User.get().check_password("password")


def test_seed_leaves_the_message_indexes_as_they_were(runner):
    """On PostgreSQL seed drops the message table's non-unique indexes for the load and
    rebuilds them, and pauses the message-count trigger; the indexes come back exactly,
    the counts cover every message, and the trigger counts new ones again."""
    before = sorted((i.name, i.sql) for i in db.database.get_indexes("message"))
    result = runner.invoke(args=["seed", "--users", "5", "--messages", "40", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert sorted((i.name, i.sql) for i in db.database.get_indexes("message")) == before
    assert sum(MessageCount.of(user) for user in User.select()) == 40
    author = User.get()
    counted = MessageCount.of(author)
    author.post("after the load")
    assert MessageCount.of(author) == counted + 1


def test_seed_draws_prolific_authors_and_popular_people_repeatably(runner):
    args = ["seed", "--users", "40", "--messages", "2000", "--follows", "300", "--seed", "3"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert "Added 40 users, 300 follows and 2000 messages." in result.output
    per_author = sorted(
        (n for (n,) in Message.select(fn.COUNT(Message.id)).group_by(Message.user).tuples()),
        reverse=True,
    )
    assert per_author[0] > 2000 / 6  # Zipf: the first of 40 writes about a quarter
    assert per_author[0] > 5 * per_author[-1]
    followed = Relationship.select(fn.COUNT(Relationship.id)).group_by(Relationship.to_user)
    assert max(n for (n,) in followed.tuples()) > 300 / 40 * 3
    # Dates rise with ids, as on a live site.
    dates = [m.pub_date for m in Message.select(Message.pub_date).order_by(Message.id)]
    assert dates == sorted(dates)
    first = seeded_sample()
    Message.delete().execute()
    Relationship.delete().execute()
    User.delete().execute()
    assert runner.invoke(args=args).exit_code == 0
    assert seeded_sample() == first  # the same data again, ids aside


def seeded_sample():
    """Return the first 50 messages as (author's rank among the users, content)."""
    lowest = User.select(fn.MIN(User.id)).scalar()
    messages = Message.select().order_by(Message.id).limit(50)
    return [(message.user_id - lowest, message.content) for message in messages]


def test_seed_twice_adds_more_users_without_clashes(runner):
    runner.invoke(args=["seed", "--users", "5", "--messages", "0", "--seed", "1"])
    result = runner.invoke(args=["seed", "--users", "5", "--messages", "0", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert User.select().count() == 10


def test_seed_refuses_nonsense_counts(runner):
    result = runner.invoke(args=["seed", "--users", "0"])
    assert result.exit_code == 2
    assert User.select().count() == 0


def test_use_instance_secret_key_makes_and_keeps_one(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "SECRET_KEY", None)
    key_file = tmp_path / "secret_key"
    main.use_instance_secret_key(app, str(key_file))
    first = app.config["SECRET_KEY"]
    assert len(first) == 64 and key_file.read_text() == first
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    app.config["SECRET_KEY"] = None
    main.use_instance_secret_key(app, str(key_file))
    assert app.config["SECRET_KEY"] == first


def clean_env(**extra):
    """The environment without Chirp's settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DATABASE_URL") and not k.startswith("FLASK_")
    }
    env.update(extra)
    return env


def run_python(tmp_path, *args, **env):
    """Run ``python *args`` in the project folder with clean_env(**env) and a throwaway
    database; return the CompletedProcess (text output captured)."""
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", **env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow  # a new Python process
def test_refuses_to_start_without_secret_key_outside_debug(tmp_path):
    result = run_python(tmp_path, "-c", "import main")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


@pytest.mark.slow  # a new Python process
def test_debug_runs_without_secret_key(tmp_path):
    result = run_python(tmp_path, "-c", "import main", FLASK_DEBUG="1")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # a new Python process
def test_python_main_and_flask_cli_list_the_same_commands(tmp_path):
    ours = run_python(tmp_path, "main.py", "--help", SECRET_KEY="x")
    flask = run_python(tmp_path, "-m", "flask", "--app", "main", "--help", SECRET_KEY="x")
    for command in ("create-admin", "create-token", "seed", "run", "db"):
        assert command in ours.stdout and command in flask.stdout


def fresh_checkout(tmp_path):
    """Copy the project into ``tmp_path``/chirp as a new clone has it: no instance folder,
    no database, no secret key."""
    target = tmp_path / "chirp"
    ignore = shutil.ignore_patterns(".git", "instance", "__pycache__", ".*_cache", "*.db*")
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def wait_for(url, process, seconds=30):
    """Return the body of ``url`` once it answers 200; fail if ``process`` dies first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.mark.slow  # starts a server
def test_python_main_serves_a_fresh_checkout(tmp_path):
    checkout = fresh_checkout(tmp_path)
    port = free_port()  # never 5000: a developer's own server may be running there
    process = subprocess.Popen(
        [sys.executable, "main.py", "run", "--port", str(port)],
        cwd=checkout,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert '"status":"ok"' in wait_for(f"{base}/healthz", process)
        assert "Public timeline" in wait_for(f"{base}/", process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert "No admin yet. Create one with: python main.py create-admin NAME" in stderr
    assert (checkout / "instance" / "chirp.db").exists()
    assert len((checkout / "instance" / "secret_key").read_text()) == 64
