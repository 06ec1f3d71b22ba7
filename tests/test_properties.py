"""Random sequences of join / post / edit / delete / follow / unfollow through the web pages
and the API.

A hypothesis state machine drives the real forms (with CSRF tokens) and the REST API (with
personal tokens) through Flask's test client and keeps a plain-Python model of what should
exist. After every step it checks the database and the timelines against the model: the
same users, messages and follows, nobody following themself, and every timeline showing
exactly the messages it should, newest first.
"""

import html
import itertools
import re

import pytest
from conftest import PASSWORD
from conftest import examples
from conftest import post
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import initialize
from hypothesis.stateful import invariant
from hypothesis.stateful import precondition
from hypothesis.stateful import rule
from hypothesis.stateful import run_state_machine_as_test

from app import limiter
from models import MESSAGE_MAX_LENGTH
from models import MODELS
from models import ApiToken
from models import Message
from models import Relationship
from models import TextRefused
from models import User
from models import clean_message

# "Ann" and "ANN" are the same user as "ann", so joining as them is refused.
NAMES = ["ann", "Ann", "ANN", "bob", "cy"]
# Never joins: following, unfollowing and visiting them are 404s.
STRANGER = "zed"
# Drawn often on purpose: the edges of the 1..280 rule, after white space is trimmed.
EDGE_CONTENTS = [
    "",
    " \t\r\n ",
    "x" * MESSAGE_MAX_LENGTH,
    "x" * (MESSAGE_MAX_LENGTH + 1),
    " " + "y" * MESSAGE_MAX_LENGTH + "\n",
    "  padded on both sides \n",
    "<b>&amp; 'quoted' \"html\"</b>",
    "\x00",
    "\x00 leading NUL",
    "\x01\x02",
    "\u200b\u200c\u200d\u2060\ufeff",
    "\u202eevil\u202c",
    "line one\r\nline two",
    "\r\n".join(["y"] * 141),  # 281 characters as sent, 281 once CR LF is one
    "\r\n".join(["y"] * 140),  # 279 once CR LF is one, 419 as sent
    "😀" * MESSAGE_MAX_LENGTH,
    "e\u0301" * MESSAGE_MAX_LENGTH,  # 560 code points sent, 280 once NFC
]
# Pieces that text rules trip over: line breaks, format and bidi controls, combining marks,
# emoji sequences, tag characters, characters that grow when lower-cased, other planes.
PIECES = [
    "\r\n", "\r", "\n", "\u200b", "\u200d", "\u202e", "\u2066", "\u200f", "e\u0301",
    "👨\u200d👩\u200d👧", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "\U000e0041", "İ", "\ufeff", "\u00a0", "\u3164", "x", " ",
]  # fmt: skip
UNICODE_TEXT = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=MESSAGE_MAX_LENGTH // 2
).map("".join)
CONTENTS = st.one_of(
    st.sampled_from(EDGE_CONTENTS), st.text(max_size=MESSAGE_MAX_LENGTH + 5), UNICODE_TEXT
)
MESSAGE_PATTERN = re.compile(
    r'<article class="message"[^>]*>.*?<span class="username">@([^<]*)</span>'
    r'.*?<p class="content">(.*?)</p>',
    re.DOTALL,
)
PAGE_SIZE = 20
SETTINGS = settings(
    max_examples=examples(40),
    stateful_step_count=25,
    # Each step makes several real requests; a whole example takes tens of milliseconds.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def stored(content):
    """The content the one text rule (models.clean_message) stores for ``content``, or None
    when it refuses it."""
    try:
        return clean_message(content)
    except TextRefused:
        return None


def expected_status(content, success=302):
    """The status a message form answers for ``content``: 400 if it holds a NUL byte (refused
    before any view runs: SQLite's length() stops at NUL), 422 when the text rule refuses
    it, else ``success``."""
    if "\x00" in content:
        return 400
    return success if stored(content) is not None else 422


def shown_messages(page):
    """Return the ``(author, content)`` pairs of the messages on an HTML page, in order
    (the text as shown: without the links that tags, mentions and addresses become)."""
    return [
        (html.unescape(a), html.unescape(re.sub(r"<[^>]*>", "", c)))
        for a, c in MESSAGE_PATTERN.findall(page)
    ]


class ChirpWebMachine(RuleBasedStateMachine):
    """Users join, post, edit, delete, follow and unfollow through the web; the model is:

    - ``users``: lower-case username -> the username as joined;
    - ``clients``: lower-case username -> a test client logged in as that user;
    - ``messages``: id -> (lower-case author, content as stored);
    - ``follows``: set of (lower-case follower, lower-case followed).

    ``flask_app`` is set by the test (the conftest ``app`` fixture).
    """

    flask_app = None

    def __init__(self):
        super().__init__()
        # A fresh database for every example: the fixture's file is reused, so empty it,
        # children first.
        for model in reversed(MODELS):
            model.delete().execute()
        # API rate-limit counters live in memory for the whole run: start at zero.
        limiter.reset()
        self.users = {}
        self.clients = {}
        self.tokens = {}
        self.messages = {}
        self.follows = set()
        self.emails = itertools.count()
        self.anonymous = self.flask_app.test_client()

    def refusal(self, user, message_id, content=""):
        """The status refusing ``user``'s change to message ``message_id`` before its new
        ``content`` is judged: 400 for a NUL byte, 404 if there is no such message, 403 if
        it is someone else's; None when the change may go ahead."""
        if "\x00" in content:
            return 400
        if message_id not in self.messages:
            return 404
        if self.messages[message_id][0] != user:
            return 403
        return None

    # Steps ----------------------------------------------------------------------------

    @initialize()
    def first_users(self):
        """Every run starts with two members, so there is someone to act as and to follow."""
        self.join("ann")
        self.join("bob")

    @rule(name=st.sampled_from(NAMES))
    def join(self, name):
        client = self.flask_app.test_client()
        data = {
            "username": name,
            "email": f"person{next(self.emails)}@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
        }
        response = post(client, "/join/", data)
        if name.lower() in self.users:
            assert response.status_code == 422, "a username differing only in case was taken"
            return
        assert response.status_code == 302, response.get_data(as_text=True)
        self.users[name.lower()] = name
        self.clients[name.lower()] = client
        user = User.get(User.username == name)
        self.tokens[name.lower()] = {"Authorization": f"Bearer {ApiToken.issue(user, 'p')[1]}"}

    @precondition(lambda self: self.users)
    @rule(data=st.data(), content=CONTENTS)
    def create(self, data, content):
        author = data.draw(st.sampled_from(sorted(self.users)), label="author")
        response = post(self.clients[author], "/create/", {"content": content})
        assert response.status_code == expected_status(content)
        if response.status_code != 302:
            return
        # The one new row (the invariants then check its author and content).
        (new_id,) = {message.id for message in Message.select()} - set(self.messages)
        self.messages[new_id] = (author, stored(content))

    @precondition(lambda self: self.users)
    @rule(data=st.data(), content=CONTENTS)
    def edit(self, data, content):
        editor = data.draw(st.sampled_from(sorted(self.users)), label="editor")
        message_id = data.draw(self.message_ids(), label="message_id")
        response = post(self.clients[editor], f"/edit/{message_id}/", {"content": content})
        refused = self.refusal(editor, message_id, content)
        if refused:
            assert response.status_code == refused
        else:
            assert response.status_code == expected_status(content)
            if response.status_code == 302:
                self.messages[message_id] = (editor, stored(content))

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def delete(self, data):
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        message_id = data.draw(self.message_ids(), label="message_id")
        response = post(self.clients[user], f"/delete/{message_id}/")
        refused = self.refusal(user, message_id)
        assert response.status_code == (refused or 302)
        if not refused:
            del self.messages[message_id]

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def follow(self, data):
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        other = data.draw(self.someone(), label="other")
        response = post(self.clients[user], f"/users/{other}/follow/")
        if other.lower() not in self.users:
            assert response.status_code == 404
            return
        assert response.status_code == 302
        if other.lower() != user:  # following yourself is refused with a message
            self.follows.add((user, other.lower()))

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def unfollow(self, data):
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        other = data.draw(self.someone(), label="other")
        response = post(self.clients[user], f"/users/{other}/unfollow/")
        if other.lower() not in self.users:
            assert response.status_code == 404
            return
        assert response.status_code == 302
        self.follows.discard((user, other.lower()))

    # The API: the same actions as JSON, with a token --------------------------------------

    @precondition(lambda self: self.users)
    @rule(data=st.data(), content=CONTENTS)
    def api_create(self, data, content):
        author = data.draw(st.sampled_from(sorted(self.users)), label="author")
        response = self.api(author, "post", "/api/message/", {"content": content})
        if self.api_refused(response, content):
            return
        message = response.get_json()
        assert message["content"] == stored(content)
        assert message["user"]["username"] == self.users[author]
        self.messages[message["id"]] = (author, stored(content))

    @precondition(lambda self: self.users)
    @rule(data=st.data(), content=CONTENTS)
    def api_edit(self, data, content):
        editor = data.draw(st.sampled_from(sorted(self.users)), label="editor")
        message_id = data.draw(self.message_ids(), label="message_id")
        response = self.api(editor, "put", f"/api/message/{message_id}/", {"content": content})
        refused = self.refusal(editor, message_id, content)
        if refused:
            assert response.status_code == refused
        elif not self.api_refused(response, content):
            assert response.get_json()["content"] == stored(content)
            self.messages[message_id] = (editor, stored(content))

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def api_delete(self, data):
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        message_id = data.draw(self.message_ids(), label="message_id")
        response = self.api(user, "delete", f"/api/message/{message_id}/")
        refused = self.refusal(user, message_id)
        assert response.status_code == (refused or 200)
        if not refused:
            del self.messages[message_id]

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def api_follow(self, data):
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        other = data.draw(self.someone(), label="other").lower()
        target = User.get_or_none(User.username == self.users.get(other))
        body = {"to_user": target.id if target else 999_999}
        response = self.api(user, "post", "/api/relationship/", body)
        if other == user or other not in self.users:
            assert response.status_code == 422  # yourself, or nobody
        elif (user, other) in self.follows:
            assert response.status_code == 409
        else:
            assert response.status_code == 200
            assert response.get_json()["to_user"] == target.id
            self.follows.add((user, other))

    @precondition(lambda self: self.follows)
    @rule(data=st.data())
    def api_unfollow(self, data):
        """DELETE a follow: the caller's own is removed, anyone else's is a 403."""
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        follower, followed = data.draw(st.sampled_from(sorted(self.follows)), label="follow")
        relationship = Relationship.get(
            Relationship.from_user == User.get(User.username == self.users[follower]),
            Relationship.to_user == User.get(User.username == self.users[followed]),
        )
        response = self.api(user, "delete", f"/api/relationship/{relationship.id}/")
        if follower != user:
            assert response.status_code == 403
        else:
            assert response.status_code == 200
            self.follows.discard((follower, followed))

    @precondition(lambda self: self.users)
    @rule(data=st.data())
    def view_home_timeline(self, data):
        """The home page shows the first page of the user's and their followees' messages."""
        user = data.draw(st.sampled_from(sorted(self.users)), label="user")
        response = self.clients[user].get("/")
        assert response.status_code == 200
        expected = self.shown(self.home_timeline(user)[:PAGE_SIZE])
        assert shown_messages(response.get_data(as_text=True)) == expected

    @rule()
    def view_public_timeline(self):
        response = self.anonymous.get("/public/")
        assert response.status_code == 200
        expected = self.shown(sorted(self.messages, reverse=True)[:PAGE_SIZE])
        assert shown_messages(response.get_data(as_text=True)) == expected

    @rule(data=st.data())
    def view_user(self, data):
        """A user's page shows their messages and their follower and following counts."""
        name = data.draw(self.someone(), label="name")
        response = self.anonymous.get(f"/users/{name}/")
        if name.lower() not in self.users:
            assert response.status_code == 404
            return
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        expected = self.shown(self.user_timeline(name.lower())[:PAGE_SIZE])
        assert shown_messages(page) == expected
        followers = sum(1 for _, to in self.follows if to == name.lower())
        following = sum(1 for frm, _ in self.follows if frm == name.lower())
        assert f"<strong>{followers}</strong> followers" in page
        assert f"<strong>{following}</strong> following" in page

    # Invariants, checked after every step ---------------------------------------------

    @invariant()
    def database_matches_model(self):
        users = {user.username.lower(): user.username for user in User.select()}
        assert users == self.users
        assert User.select().count() == len(self.users)
        messages = {m.id: (m.user.username.lower(), m.content) for m in Message.select()}
        assert messages == self.messages
        assert Message.select().count() == len(self.messages)
        # Stored content is what the text rule makes of it, whichever way it came in:
        # normalised (cleaning it again changes nothing), 1 to 280 characters.
        assert all(
            clean_message(content) == content and 1 <= len(content) <= MESSAGE_MAX_LENGTH
            for _, content in messages.values()
        )
        assert self.relationships() == self.follows
        assert Relationship.select().count() == len(self.follows)

    @invariant()
    def nobody_follows_themself(self):
        assert not Relationship.select().where(Relationship.from_user == Relationship.to_user)
        assert all(a != b for a, b in self.follows)

    @invariant()
    def timelines_are_exact(self):
        assert [m.id for m in Message.public_timeline()] == sorted(self.messages, reverse=True)
        for user in User.select():
            name = user.username.lower()
            assert [m.id for m in user.timeline()] == self.user_timeline(name)
            assert [m.id for m in user.home_timeline()] == self.home_timeline(name)
            following = {u.username.lower() for u in user.following()}
            followers = {u.username.lower() for u in user.followers()}
            assert following == {b for a, b in self.follows if a == name}
            assert followers == {a for a, b in self.follows if b == name}

    # Model helpers --------------------------------------------------------------------

    def api(self, user, method, path, body=None):
        """Call the API as ``user`` with their token; a JSON ``body`` if given."""
        client = self.flask_app.test_client()
        return getattr(client, method)(path, json=body, headers=self.tokens[user])

    @staticmethod
    def api_refused(response, content):
        """Return False if the API accepted ``content`` (200), True if it refused it. It
        accepts exactly what the web form accepts (the one text rule): 400 for a NUL byte
        or an empty or far too long body (the document's schema), else 422 when refused."""
        if stored(content) is None:
            schema_invalid = "\x00" in content or not 1 <= len(content) <= 4 * MESSAGE_MAX_LENGTH
            status = 400 if schema_invalid else 422
            assert response.status_code == status, response.get_data(as_text=True)
        else:
            assert response.status_code == 200, response.get_data(as_text=True)
        return response.status_code != 200

    def someone(self):
        """Names to follow or visit: members as joined or upper-cased, or a stranger."""
        members = [name for lower in sorted(self.users) for name in (lower, lower.upper())]
        return st.sampled_from([*members, STRANGER])

    def message_ids(self):
        """Ids to act on: live messages, and one that does not exist (for the 404s)."""
        return st.sampled_from([*sorted(self.messages), max(self.messages, default=0) + 1])

    def user_timeline(self, name):
        """Ids of ``name``'s messages, newest first (ids grow with pub_date here)."""
        return sorted((i for i, (a, _) in self.messages.items() if a == name), reverse=True)

    def home_timeline(self, name):
        """Ids of the messages of ``name`` and everyone ``name`` follows, newest first."""
        authors = {name} | {b for a, b in self.follows if a == name}
        return sorted((i for i, (a, _) in self.messages.items() if a in authors), reverse=True)

    def shown(self, ids):
        """The ``(username, content)`` pairs a page shows for messages ``ids``."""
        return [(self.users[self.messages[i][0]], self.messages[i][1]) for i in ids]

    @staticmethod
    def relationships():
        """The follows in the database as (lower-case follower, lower-case followed)."""
        query = Relationship.select(Relationship.from_user, Relationship.to_user)
        names = {user.id: user.username.lower() for user in User.select()}
        return {(names[a], names[b]) for a, b in query.tuples()}


@pytest.mark.slow  # explores many examples, several requests each
def test_random_web_sessions_keep_the_invariants(app, monkeypatch):
    """Any sequence of web actions keeps database, model and timelines in agreement."""
    # An example may sign up more people than SIGNUP_RATE_LIMIT allows from one address;
    # the limits have tests of their own (test_limits.py).
    monkeypatch.setitem(app.config, "SIGNUP_RATE_LIMIT", "1000000 per hour")
    machine = type("ChirpWebMachine", (ChirpWebMachine,), {"flask_app": app})
    run_state_machine_as_test(machine, settings=SETTINGS)
