"""Chirp under concurrent load on a real server: ``gunicorn -w 4`` on 127.0.0.1, one SQLite
file (WAL mode, busy timeout), eight clients writing through the web forms and the API.

Every client keeps a ledger of what the server acknowledged: messages it created, edited
and deleted, and whom it follows. Clients only change their own rows, so each ledger is
exact however the requests interleave. Afterwards the database is read directly and
must hold exactly the ledgers' rows, nothing half-written, and pass SQLite's own checks.
On PostgreSQL (tests/databases.py) the same load runs against a PostgreSQL database.

The second test SIGKILLs workers in the middle of the load: gunicorn must replace them,
the clients may see a dropped connection (and nothing worse), and every acknowledged row
must be there. After a dropped connection the client reads the row back to learn whether
the write committed; it must find either the old or the new state, never anything else.
"""

import html
import itertools
import os
import random
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest
import requests
from live_server import running_gunicorn
from live_server import wait_for
from live_server import worker_pids
from peewee import SqliteDatabase
from playhouse.db_url import connect

pytestmark = pytest.mark.slow

WORKERS = 4
CLIENTS = 8
WRITES_PER_CLIENT = 50
PASSWORD = "load-test-password"
# A request that takes longer than this is a failure, not a dropped connection: SQLite's
# busy timeout (10 s) plus a slow CI box.
REQUEST_TIMEOUT = 30
# How often and how long a read after a dropped connection is retried while gunicorn
# replaces the killed worker (it is a read: retrying it cannot change anything).
READ_ATTEMPTS = 100
# Fractions of all writes after which a worker is killed, in the SIGKILL test.
KILL_POINTS = (0.3, 0.6)
# Words for message content: ASCII, HTML specials and non-ASCII, so the round trip through
# forms, JSON, templates and SQLite is checked character for character.
WORDS = ["chirp", "tweet", "<b>bold</b>", "&amp;", "'quoted'", '"double"', "é", "日本", "🐦", "x"]
ARTICLE = re.compile(r'<article class="message"[^>]*>(.*?)</article>', re.DOTALL)
CONTENT = re.compile(r'<p class="content">(.*?)</p>', re.DOTALL)
EDIT_LINK = re.compile(r'href="/edit/(\d+)/[?"]')
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
TOKEN = re.compile(r'<code class="token">([^<]+)</code>')

# Kinds of write and their weights: web and API, creates outnumbering the rest so that
# there is always something to edit and delete.
OPERATIONS = {
    "web_create": 4,
    "api_create": 3,
    "web_edit": 2,
    "api_edit": 2,
    "web_delete": 1,
    "api_delete": 1,
    "web_follow": 2,
    "web_unfollow": 1,
    "api_follow": 2,
    "api_unfollow": 1,
}


class Dropped(Exception):
    """The connection broke before a response arrived: the write may or may not have
    committed."""


@dataclass
class Ledger:
    """What the server acknowledged to one client, kept exact through dropped connections.

    ``messages`` maps message id to its content; ``follows`` is the set of usernames the
    client follows. ``acked`` counts acknowledged writes, ``dropped`` dropped ones.
    """

    username: str
    messages: dict = field(default_factory=dict)
    follows: set = field(default_factory=set)
    acked: int = 0
    dropped: int = 0


class Progress:
    """Counts acknowledged writes across clients and sets an event at each kill point."""

    def __init__(self, total, fractions):
        self.lock = threading.Lock()
        self.count = 0
        self.marks = [(int(total * f), threading.Event()) for f in fractions]

    def tick(self):
        """Count one acknowledged write."""
        with self.lock:
            self.count += 1
            for mark, event in self.marks:
                if self.count >= mark:
                    event.set()


class LoadClient:
    """One person using Chirp through a browser-like session and an API token.

    ``run()`` joins, makes an API token, waits for the others at ``barrier``, then makes
    WRITES_PER_CLIENT writes chosen by ``seed``, recording acknowledged ones in ``ledger``.
    """

    def __init__(self, base_url, username, directory, barrier, progress, seed):
        self.url = base_url
        self.ledger = Ledger(username)
        self.directory = directory  # username -> user id, filled in by every client
        self.barrier = barrier
        self.progress = progress
        self.random = random.Random(seed)
        self.counter = itertools.count()
        self.session = requests.Session()
        self.csrf = None
        self.token = None

    @property
    def username(self):
        return self.ledger.username

    @property
    def my_page(self):
        return f"/users/{self.username}/"

    def run(self):
        with self.session:
            try:
                self.join()
            except BaseException:
                self.barrier.abort()  # release the others at once, rather than at a timeout
                raise
            self.barrier.wait()
            operations, weights = zip(*OPERATIONS.items(), strict=True)
            for _ in range(WRITES_PER_CLIENT):
                (operation,) = self.random.choices(operations, weights)
                getattr(self, operation)()
        return self.ledger

    # Setting up ------------------------------------------------------------------------

    def join(self):
        """Join through the form (which logs in), make an API token, publish our id."""
        data = {"username": self.username, "email": f"{self.username}@example.com"}
        data.update(password=PASSWORD, confirm=PASSWORD, _csrf_token=self.page_token("/join/"))
        self.expect(self.session.post(self.url + "/join/", data=data, **self.options()), 302)
        # Joining clears the session, so take a new CSRF token for everything after.
        self.csrf = self.page_token("/settings/")
        data = {"name": "load test", "_csrf_token": self.csrf}
        response = self.session.post(self.url + "/settings/tokens/", data=data, **self.options())
        self.token = TOKEN.search(self.expect(response, 200).text).group(1)
        self.directory[self.username] = self.api_read("/api/me/")["id"]

    def page_token(self, path):
        """GET ``path`` and return its CSRF token."""
        response = self.read(lambda: self.session.get(self.url + path, **self.options()))
        return CSRF.search(self.expect(response, 200).text).group(1)

    # Writes through the web ------------------------------------------------------------

    def web_create(self):
        """Post a message with the form, then find its id on our page, as a person would."""
        content = self.new_content()
        if self.form("/create/", {"content": content}, "/private/") is not None:
            self.record_created(self.find_on_my_page(content), content)
        else:
            self.resolve_create(content)

    def web_edit(self):
        """Edit one of our messages with the form (post one if we have none)."""
        message_id = self.pick_message()
        if message_id is None:
            return self.web_create()
        content = self.new_content()
        if self.form(f"/edit/{message_id}/", {"content": content}, self.my_page) is not None:
            self.ledger.messages[message_id] = content
        else:
            self.resolve_message(message_id, {self.ledger.messages[message_id], content})

    def web_delete(self):
        """Delete one of our messages with the form's button (post one if we have none)."""
        message_id = self.pick_message()
        if message_id is None:
            return self.web_create()
        if self.form(f"/delete/{message_id}/", {}, self.my_page) is not None:
            del self.ledger.messages[message_id]
        else:
            self.resolve_message(message_id, {self.ledger.messages[message_id], None})

    def web_follow(self):
        """Press Follow on another client's page (even if we follow them already)."""
        other = self.pick_other()
        if self.form(f"/users/{other}/follow/", {}, f"/users/{other}/") is not None:
            self.ledger.follows.add(other)
        else:
            self.resolve_follow(other)

    def web_unfollow(self):
        """Press Unfollow on another client's page (even if we do not follow them)."""
        other = self.pick_other()
        if self.form(f"/users/{other}/unfollow/", {}, f"/users/{other}/") is not None:
            self.ledger.follows.discard(other)
        else:
            self.resolve_follow(other)

    # Writes through the API ------------------------------------------------------------

    def api_create(self):
        """POST a message to the API; its answer carries the new id."""
        content = self.new_content()
        response = self.api("POST", "/api/message/", {"content": content})
        if response is not None:
            self.record_created(response["id"], content)
            assert response["content"] == content
        else:
            self.resolve_create(content)

    def api_edit(self):
        """PUT new content on one of our messages (post one if we have none)."""
        message_id = self.pick_message()
        if message_id is None:
            return self.api_create()
        content = self.new_content()
        response = self.api("PUT", f"/api/message/{message_id}/", {"content": content})
        if response is not None:
            assert response["content"] == content
            self.ledger.messages[message_id] = content
        else:
            self.resolve_message(message_id, {self.ledger.messages[message_id], content})

    def api_delete(self):
        """DELETE one of our messages through the API (post one if we have none)."""
        message_id = self.pick_message()
        if message_id is None:
            return self.api_create()
        if self.api("DELETE", f"/api/message/{message_id}/") is not None:
            del self.ledger.messages[message_id]
        else:
            self.resolve_message(message_id, {self.ledger.messages[message_id], None})

    def api_follow(self):
        """Follow, through the API, someone we do not follow yet (twice would be a 409)."""
        strangers = sorted(set(self.directory) - self.ledger.follows - {self.username})
        if not strangers:
            return self.api_unfollow()
        other = self.random.choice(strangers)
        body = {"to_user": self.directory[other]}
        if self.api("POST", "/api/relationship/", body) is not None:
            self.ledger.follows.add(other)
        else:
            self.resolve_follow(other)

    def api_unfollow(self):
        """DELETE one of our follows through the API (follow someone if we follow none)."""
        if not self.ledger.follows:
            return self.api_follow()
        other = self.random.choice(sorted(self.ledger.follows))
        relationship_id = self.relationship_id(other)
        assert relationship_id is not None, f"{self.username}'s follow of {other} is gone"
        if self.api("DELETE", f"/api/relationship/{relationship_id}/") is not None:
            self.ledger.follows.discard(other)
        else:
            self.resolve_follow(other)

    # Requests --------------------------------------------------------------------------

    def options(self):
        """Keyword arguments for every request: no redirects (the 302 is the answer we
        check), and a timeout, so that a hung server fails the test instead of hanging it."""
        return {"allow_redirects": False, "timeout": REQUEST_TIMEOUT}

    def form(self, path, data, location):
        """POST a web form; return the response, a redirect to ``location`` (a redirect
        elsewhere, say to the login page, fails the test), or None if the connection
        dropped."""
        data = {**data, "_csrf_token": self.csrf}
        response = self.write(
            lambda: self.session.post(self.url + path, data=data, **self.options())
        )
        if response is not None:
            assert response.headers["Location"] == location, f"POST {path} redirected"
        return response

    def api(self, method, path, body=None):
        """Send an API write; return its JSON, or None if the connection dropped."""
        response = self.write(
            lambda: requests.request(
                method, self.url + path, json=body, headers=self.bearer(), **self.options()
            ),
            expected=200,
        )
        return None if response is None else response.json()

    def write(self, send, expected=302):
        """Send one write. Return the response if it has the ``expected`` status (anything
        else fails the test); return None, and count it, if the connection dropped."""
        try:
            response = send()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            self.ledger.dropped += 1
            return None
        self.expect(response, expected)
        self.ledger.acked += 1
        self.progress.tick()
        return response

    def bearer(self):
        return {"Authorization": f"Bearer {self.token}"}

    def api_read(self, path):
        """GET ``path`` from the API and return its JSON, or None for a 404."""
        response = self.read(
            lambda: requests.get(self.url + path, headers=self.bearer(), **self.options())
        )
        if response.status_code == 404:
            return None
        return self.expect(response, 200).json()

    def read(self, send):
        """Send a GET, again if the connection drops (a read changes nothing, so
        retrying it is safe, and a killed worker is replaced within moments)."""
        for _ in range(READ_ATTEMPTS):
            try:
                return send()
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                continue
        raise AssertionError(f"a read failed {READ_ATTEMPTS} times in a row")

    @staticmethod
    def expect(response, status):
        """Fail unless ``response`` has ``status``; return it."""
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}, not {status}: {response.text[:500]}"
        )
        return response

    # The ledger ------------------------------------------------------------------------

    def new_content(self):
        """Return content no other write of any client uses: it names its author."""
        words = " ".join(self.random.choices(WORDS, k=self.random.randint(1, 12)))
        return f"{self.username} #{next(self.counter)} {words}"

    def pick_message(self):
        """Return the id of one of our messages, or None if we have none."""
        return self.random.choice(sorted(self.ledger.messages)) if self.ledger.messages else None

    def pick_other(self):
        return self.random.choice(sorted(set(self.directory) - {self.username}))

    def record_created(self, message_id, content):
        assert message_id not in self.ledger.messages
        self.ledger.messages[message_id] = content

    def find_on_my_page(self, content):
        """Return the id of our message ``content`` from our page, as a browser shows it."""
        path = self.url + self.my_page
        response = self.read(lambda: self.session.get(path, **self.options()))
        for article in ARTICLE.findall(self.expect(response, 200).text):
            shown = re.sub(r"<[^>]*>", "", CONTENT.search(article).group(1))
            if html.unescape(shown) == content:
                return int(EDIT_LINK.search(article).group(1))
        raise AssertionError(f"acknowledged message {content!r} is not on its author's page")

    def my_messages(self):
        """Return ``{id: content}`` of our messages, read through the API."""
        user_id = self.directory[self.username]
        page = self.api_read(f"/api/message/?user={user_id}&limit=100&ordering=-id")
        assert len(page["objects"]) < 100, "more messages than one page holds"
        return {m["id"]: m["content"] for m in page["objects"]}

    def resolve_create(self, content):
        """After a dropped create: record the message if it committed, exactly as sent."""
        found = [i for i, text in self.my_messages().items() if text == content]
        assert len(found) <= 1, f"{content!r} was stored {len(found)} times"
        if found:
            self.record_created(found[0], content)

    def resolve_message(self, message_id, possible):
        """After a dropped edit or delete: read the message back; it must be in one of the
        ``possible`` states (a content, or None for deleted). Record what we find."""
        message = self.api_read(f"/api/message/{message_id}/")
        state = None if message is None else message["content"]
        assert state in possible, f"message {message_id} is {state!r}, not one of {possible}"
        if state is None:
            self.ledger.messages.pop(message_id)
        else:
            self.ledger.messages[message_id] = state

    def relationship_id(self, other):
        """Return the id of our follow of ``other``, read through the API, or None."""
        query = f"from_user={self.directory[self.username]}&to_user={self.directory[other]}"
        objects = self.api_read(f"/api/relationship/?{query}")["objects"]
        return objects[0]["id"] if objects else None

    def resolve_follow(self, other):
        """After a dropped follow or unfollow: record whether we now follow ``other``."""
        if self.relationship_id(other) is None:
            self.ledger.follows.discard(other)
        else:
            self.ledger.follows.add(other)


def run_load(server, kill_points=()):
    """Run CLIENTS LoadClients against ``server`` at once; at each fraction in
    ``kill_points`` of all writes, SIGKILL one busy worker. Return the ledgers and the
    killed pids."""
    names = [f"load{i}" for i in range(CLIENTS)]
    directory = {}
    barrier = threading.Barrier(CLIENTS, timeout=60)
    progress = Progress(CLIENTS * WRITES_PER_CLIENT, kill_points)
    clients = [
        LoadClient(server.url, name, directory, barrier, progress, seed=i)
        for i, name in enumerate(names)
    ]
    killed = []
    with ThreadPoolExecutor(max_workers=CLIENTS + 1) as pool:
        futures = [pool.submit(client.run) for client in clients]
        if kill_points:
            # The killer has its own thread, so it can wait for the marks.
            killer = pool.submit(kill_at_marks, server.pid, progress, futures, killed)
        ledgers = [future.result() for future in futures]
        if kill_points:
            killer.result()
    return ledgers, killed


def kill_at_marks(master_pid, progress, futures, killed):
    """At each of ``progress``'s marks, SIGKILL a worker of ``master_pid``, preferably one
    that is running (mid-request) rather than waiting for a connection."""
    for _, event in progress.marks:
        while not event.wait(0.05):
            if all(future.done() for future in futures):  # a client failed: stop waiting
                return
        workers = worker_pids(master_pid) - set(killed)
        running = [pid for pid in workers if process_state(pid) == "R"]
        victim = random.choice(running or sorted(workers))
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)


def process_state(pid):
    """Return the one-letter state of process ``pid`` (R running, S sleeping...), or ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2]


def read_database(url):
    """Return the users, messages and follows in the database at ``url`` as plain data,
    after SQLite's own integrity and foreign key checks pass (PostgreSQL enforces foreign
    keys as it writes)."""
    database = connect(url)
    try:
        if isinstance(database, SqliteDatabase):
            assert database.execute_sql("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert database.execute_sql("PRAGMA foreign_key_check").fetchall() == []
        users = dict(database.execute_sql('SELECT id, username FROM "user"').fetchall())
        messages = database.execute_sql("SELECT id, user_id, content FROM message").fetchall()
        follows = database.execute_sql("SELECT from_user_id, to_user_id FROM relationship")
        follows = [tuple(row) for row in follows.fetchall()]
    finally:
        database.close()
    return users, messages, follows


def assert_database_matches(url, ledgers):
    """The database holds exactly the ledgers' users, messages and follows: no message
    lost, none extra, none empty or orphaned or with other content than acknowledged, and
    no self-follow."""
    users, messages, follows = read_database(url)
    assert sorted(users.values()) == sorted(ledger.username for ledger in ledgers)
    assert all(user_id in users for _, user_id, _ in messages), "a message has no author"
    assert all(content.strip() for _, _, content in messages), "a message is empty"
    assert all(a != b for a, b in follows), "somebody follows themself"
    for ledger in ledgers:
        stored = {
            i: content for i, user_id, content in messages if users[user_id] == ledger.username
        }
        assert stored == ledger.messages, f"{ledger.username}'s messages differ"
    assert len(messages) == sum(len(ledger.messages) for ledger in ledgers)
    stored_follows = sorted((users[a], users[b]) for a, b in follows)
    expected = sorted((ledger.username, other) for ledger in ledgers for other in ledger.follows)
    assert stored_follows == expected
    assert len(follows) == len(set(follows)), "a follow is stored twice"


def server_errors(log, ignore_pids=()):
    """Return the lines of gunicorn's log that report a problem: tracebacks, errors,
    "database is locked". Lines about workers in ``ignore_pids`` (killed on purpose) and
    their replacement are left out."""
    problems = []
    for line in log.splitlines():
        if any(f"pid:{pid})" in line or f"pid {pid}" in line for pid in ignore_pids):
            continue
        if re.search(r"Traceback|\[ERROR\]|\[CRITICAL\]|database is locked|Exception", line):
            problems.append(line)
    return problems


@pytest.fixture
def server(tmp_path):
    """A fresh gunicorn with WORKERS workers and its own database, stopped afterwards."""
    with running_gunicorn(tmp_path, workers=WORKERS) as live:
        yield live
        # Shown by pytest only when the test fails: the server's side of the story.
        print(live.read_log()[-20_000:])


def test_concurrent_web_and_api_writes_all_succeed_and_persist(server):
    """8 clients x 50 writes through forms and the API: every one is acknowledged (no 500,
    no "database is locked") and the database holds exactly the acknowledged rows."""
    workers_before = worker_pids(server.pid)
    ledgers, _ = run_load(server)
    assert [ledger.dropped for ledger in ledgers] == [0] * CLIENTS
    assert sum(ledger.acked for ledger in ledgers) == CLIENTS * WRITES_PER_CLIENT
    assert_database_matches(server.database_url, ledgers)
    assert server_errors(server.read_log()) == []
    # No worker died and was replaced along the way (a crash would not show as a 500).
    assert worker_pids(server.pid) == workers_before


def test_killing_workers_mid_load_loses_no_acknowledged_write(server):
    """SIGKILL a busy worker twice during the load: gunicorn replaces each, clients see at
    most a dropped connection per kill, every acknowledged write is in the database, and
    every dropped one either fully committed or left no trace."""
    workers_before = worker_pids(server.pid)
    ledgers, killed = run_load(server, KILL_POINTS)
    assert len(killed) == len(KILL_POINTS)
    # A sync worker serves one request at a time: a kill drops at most that one.
    assert sum(ledger.dropped for ledger in ledgers) <= len(killed)
    acked = sum(ledger.acked for ledger in ledgers)
    assert acked + sum(ledger.dropped for ledger in ledgers) == CLIENTS * WRITES_PER_CLIENT
    assert_database_matches(server.database_url, ledgers)

    # gunicorn has replaced the killed workers and keeps WORKERS of them.
    def replaced():
        workers = worker_pids(server.pid)
        return len(workers) == WORKERS and not workers & set(killed) and workers

    workers_after = wait_for(replaced, timeout=30)
    assert workers_after, f"workers are {worker_pids(server.pid)}, killed {killed}"
    assert workers_after & workers_before == workers_before - set(killed)
    assert server_errors(server.read_log(), ignore_pids=killed) == []
    with requests.get(server.url + "/healthz", timeout=REQUEST_TIMEOUT) as response:
        assert response.status_code == 200


def test_running_gunicorn_stops_master_and_workers_even_when_the_test_fails(tmp_path):
    """The helper every live-server test relies on leaves no process and no listener."""
    with pytest.raises(ZeroDivisionError), running_gunicorn(tmp_path, workers=2) as live:
        workers = wait_for(lambda: len(worker_pids(live.pid)) == 2 and worker_pids(live.pid), 10)
        assert workers, "gunicorn did not start 2 workers"
        pids = {live.pid} | workers
        1 / 0  # noqa: B018  the test body failing
    assert [pid for pid in pids if process_state(pid) not in ("", "Z")] == []
    with pytest.raises(requests.ConnectionError):
        requests.get(live.url + "/healthz", timeout=REQUEST_TIMEOUT)
