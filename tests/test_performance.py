"""Pages whose cost does not grow with the data: every hot query reads an index range (its
EXPLAIN QUERY PLAN shows no table scan and no sort), and every page runs the same number
of queries whether the database holds a little or a lot."""

import datetime
import json
import re
from pathlib import Path

import jinja2
import pytest
from conftest import login
from conftest import make_user
from databases import ON_POSTGRES
from flask_peewee.serializer import Serializer
from jsonschema import Draft202012Validator
from playhouse.test_utils import count_queries

import api
import models
from app import SQLITE_CACHE_KIB
from app import db
from models import ApiToken
from models import Message
from models import MessageCount
from models import Note
from models import Relationship
from models import User
from models import keyset


def query_plan(query):
    """Return the detail lines of SQLite's EXPLAIN QUERY PLAN for a peewee ``query``."""
    sql, params = query.sql()
    return [row[3] for row in db.database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]


def assert_reads_only_index_ranges(query, ordered_scan=None):
    """Fail if ``query`` sorts in a temporary B-tree or scans a table, except the one plan
    line ``ordered_scan``: a walk along the sort order's own index (or the primary key),
    which the query's LIMIT stops after a page. (``SCAN r0``... are the merged index
    ranges of the home timeline.)"""
    plan = query_plan(query)
    assert not [line for line in plan if "TEMP B-TREE" in line], plan
    scans = [line for line in plan if line.startswith("SCAN") and not re.match(r"SCAN r\d", line)]
    assert scans == ([] if ordered_scan is None else [ordered_scan]), plan
    if ordered_scan:
        assert re.search(r" ORDER BY [^()]+ LIMIT \?$", query.sql()[0]), query.sql()[0]


@pytest.fixture
def people(app):
    """alice follows bob and carol; everyone has a message."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice.follow(bob)
    alice.follow(carol)
    bob.follow(alice)
    for person in (alice, bob, carol):
        Message.create(user=person, content=f"{person.username} says hi")
    return alice, bob, carol


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_hot_queries_read_index_ranges_without_sorting(people):
    alice, bob, _ = people
    limit = 21  # a page and the "has more" probe
    ranges = [
        alice.timeline(None, limit),
        alice.timeline(100, limit),
        alice.home_timeline(None, limit),
        alice.home_timeline(100, limit),
        Message.public_timeline(100, limit),
        User.directory("m", limit),
        alice.followers(None, limit),
        alice.followers(100, limit),
        alice.following(100, limit),
        Relationship.select()
        .join(User, on=Relationship.from_user)
        .where(Relationship.to_user == alice, User.active),
        # API lists: filtered by author, or by follower / followed user.
        Message.visible(User.SUMMARY_COLUMNS).where(Message.user == bob).limit(limit),
        Relationship.between_active_users().where(Relationship.to_user == bob).limit(limit),
        Relationship.between_active_users().where(Relationship.from_user == bob).limit(limit),
    ]
    for query in ranges:
        assert_reads_only_index_ranges(query)
    # Unfiltered lists walk the primary key newest first and stop after a page.
    assert_reads_only_index_ranges(Message.public_timeline(None, limit), "SCAN t1")
    assert_reads_only_index_ranges(Message.visible(User.SUMMARY_COLUMNS).limit(limit), "SCAN t1")
    assert_reads_only_index_ranges(User.directory(None, limit), "SCAN t1 USING INDEX user_username")


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_the_home_timeline_reads_a_bounded_index_range_per_followed_user(people):
    alice, bob, carol = people
    for before in (None, 100):
        plan = query_plan(alice.home_timeline(before, 21))
        # Each author's messages and reposts: a range bounded below by the page's floor.
        assert [line for line in plan if "message_user_id_id (user_id=? AND id>?" in line]
        assert [line for line in plan if "repost_user_id_message_id (user_id=? AND" in line]
    # One statement whose text does not grow with the number of followees.
    before = alice.home_timeline(None, 21).sql()
    alice.follow(make_user("dave"))
    assert alice.home_timeline(None, 21).sql()[0] == before[0]


def test_the_home_timeline_pages_through_busy_and_quiet_people_and_reposts(people):
    alice, bob, carol = people
    dave = make_user("dave")  # alice does not follow dave
    rows = [{"user": bob.id, "content": f"bob {number}"} for number in range(60)]
    Message.insert_many(rows).execute()
    Message.create(user=carol, content="carol, once")
    Message.insert_many([{"user": dave.id, "content": f"d{n}"} for n in range(40)]).execute()
    dave_messages = list(Message.select().where(Message.user == dave).order_by(Message.id))
    carol.repost(dave_messages[3])  # an old message, reposted by someone alice follows
    dave.repost(dave_messages[5])  # reposted by someone she does not follow: not shown
    followed = [alice.id, bob.id, carol.id]
    expected = [
        m.id
        for m in Message.select()
        .where((Message.user << followed) | (Message.id == dave_messages[3].id))
        .order_by(Message.id.desc())
    ]
    shown, cursor = [], None
    while True:
        page = [m.id for m in alice.home_timeline(cursor, 7)]
        shown += page
        if len(page) < 7:
            break
        cursor = page[-1]
    assert shown == expected


def test_the_home_timeline_is_newest_first_and_pages(people):
    alice, bob, carol = people
    dave = make_user("dave")  # alice does not follow dave
    for number in range(30):
        Message.create(user=(alice, bob, carol, dave)[number % 4], content=f"m{number}")
    expected = [
        m.id
        for m in Message.select()
        .where(Message.user << [alice, bob, carol])
        .order_by(Message.id.desc())
    ]
    first = [m.id for m in alice.home_timeline(None, 10)]
    second = [m.id for m in alice.home_timeline(first[-1], 10)]
    everything = [m.id for m in alice.home_timeline()]
    assert first + second == expected[:20]
    assert everything == expected


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_the_home_timeline_falls_back_for_very_many_followees(people, monkeypatch):
    alice, bob, carol = people
    monkeypatch.setattr("models.HOME_MERGE_MAX_FOLLOWEES", 1)
    assert [m.user.username for m in alice.home_timeline(None, 10)] == ["carol", "bob", "alice"]
    plan = query_plan(alice.home_timeline(None, 10))
    assert not [line for line in plan if "COVERING INDEX message_user_id_id" in line]


def test_authors_come_without_their_password_hash(people):
    alice = people[0]
    for message in (*Message.public_timeline(None, 5), *alice.home_timeline(None, 5)):
        assert message.user.username
        assert message.user.password is None and message.user.email is None
    for person in (*User.directory(None, 5), *alice.followers(None, 5)):
        assert person.password is None and person.email is None


def test_the_api_user_list_reads_only_the_columns_it_shows(client, people):
    """The list's own query (not the caller's login) names its columns: never the password
    hash or session token; the e-mail address only for an admin, who is shown it."""
    bob = people[1]
    User.update(admin=True).where(User.id == bob.id).execute()
    admin = {"Authorization": f"Bearer {ApiToken.issue(bob, 'columns')[1]}"}
    for headers, email in (({}, False), (admin, True)):
        with count_queries() as counter:
            response = client.get("/api/user/", headers=headers)
        assert response.status_code == 200
        assert ("email" in response.get_json()["objects"][0]) is email
        lists = [
            query.msg[0]
            for query in counter.get_queries()
            if query.msg[0].startswith('SELECT "t1"."id", "t1"."username", "t1"."display_name"')
        ]
        assert len(lists) == 1, [query.msg[0] for query in counter.get_queries()]
        assert '"password"' not in lists[0] and '"session_token"' not in lists[0]
        assert ('"email"' in lists[0]) is email


def grow(times):
    """Add ``times`` users who each post 3 messages (one mentions @alice with a #tag, one
    answers alice's first message), like and repost alice's first message, follow and are
    followed by alice, who likes and reposts their first message: everything a page might
    look up per row, so that an N+1 query shows as a count that grows."""
    alice = User.get(User.username == "alice")
    first = Message.select().where(Message.user == alice).order_by(Message.id).first()
    start = User.select().count()
    for number in range(start, start + times):
        other = make_user(f"user{number}", password="x" * 8)
        other.follow(alice)
        alice.follow(other)
        theirs = other.post(f"hello @alice #topic{number % 3} https://example.com/{number}")
        other.reply(first, "@alice a reply")
        Message.insert_many([{"user": other.id, "content": "m"}]).execute()
        other.like(first)
        other.repost(first)
        alice.like(theirs)
        alice.repost(theirs)


def queries_per_page(client, paths, headers=None):
    """Return ``{path: number of SQL queries}`` for GETs of ``paths`` (each must be 200)."""
    counts = {}
    for path in paths:
        with count_queries() as counter:
            response = client.get(path, headers=headers or {})
        assert response.status_code == 200, (path, response.status_code)
        counts[path] = counter.count
    return counts


def test_pages_run_the_same_number_of_queries_however_much_data(client, people):
    alice, bob, _ = people
    first = Message.select().where(Message.user == alice).order_by(Message.id).first()
    bob.reply(first, "an early reply")
    oldest = Message.select(Message.id).order_by(Message.id).limit(3)[2].id + 1
    anonymous = [
        "/public/",
        f"/public/?before={oldest}",
        "/users/",
        "/users/alice/",
        f"/users/alice/?before={oldest}",
        "/users/alice/followers/",
        "/users/alice/following/",
        f"/messages/{first.id}/",
        "/tags/topic1/",
        "/search/?q=hello",
        "/api/message/",
        "/api/relationship/",
        "/api/timeline/public/",
        "/api/user/",
        f"/api/message/{first.id}/context/",
    ]
    member = [
        "/",
        "/private/",
        f"/private/?before={oldest + 100}",
        "/public/",
        "/users/alice/",
        "/users/alice/likes/",
        "/notifications/",
        f"/messages/{first.id}/",
    ]
    token = {"Authorization": f"Bearer {ApiToken.issue(alice, 'pages')[1]}"}
    api = ["/api/timeline/home/", "/api/message/", "/api/notifications/"]
    admin = ["/admin/message/", "/admin/user/"]
    member_client = client.application.test_client()
    admin_client = client.application.test_client()
    User.update(admin=True).where(User.id == bob.id).execute()
    login(member_client, "alice")
    login(admin_client, "bob")

    def measure():
        return (
            queries_per_page(client, anonymous),
            queries_per_page(member_client, member),
            queries_per_page(client, api, token),
            queries_per_page(admin_client, admin),
        )

    client.get("/public/")  # the one-off schema check of a new process
    grow(2)  # every kind of row exists: from here on, only their number changes
    measure()  # one-off writes: the token's first use is recorded
    small = measure()
    grow(25)
    large = measure()
    assert small == large, (small, large)
    assert small[0]["/public/"] <= 3 and small[0]["/api/message/"] <= 2


# Plan lines that cost at most a page whatever the data: scans of a page-sized subquery
# (the home timeline's authors, a wrapped LIMIT), the full-text index's own search, the
# one row of a SELECT without FROM (the profile's counts, each a subquery).
BOUNDED_SCAN = re.compile(
    r"SCAN (_wrapped|floor_authors|home_authors\d|t\d+ VIRTUAL TABLE|CONSTANT ROW$)"
)
PAGE_OF_IDS = re.compile(r'IN \(\?(, \?)*\)|\."id" = \?\)')


def unbounded_steps(sql, plan):
    """Return the lines of ``plan`` (EXPLAIN QUERY PLAN of ``sql``) whose work may grow
    with the data: a table scan that is not a walk along the sort order stopped by a
    LIMIT, or a sort of rows not limited to a page of ids."""
    walk = re.search(r" ORDER BY [^()]+ LIMIT \?( OFFSET \?)?$", sql)
    bad = []
    for line in plan:
        if line.startswith("SCAN") and not BOUNDED_SCAN.match(line) and not walk:
            bad.append(line)
        if "TEMP B-TREE" in line and not PAGE_OF_IDS.search(sql):
            bad.append(line)
    return bad


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_every_query_of_the_hot_pages_reads_a_bounded_range(client, people):
    alice = people[0]
    grow(3)
    first = Message.select().where(Message.user == alice).order_by(Message.id).first()
    member = client.application.test_client()
    login(member, "alice")
    token = {"Authorization": f"Bearer {ApiToken.issue(alice, 'plans')[1]}"}
    pages = [
        (client, path, {})
        for path in (
            "/public/",
            "/public/?before=20",
            "/users/",
            "/users/alice/",
            "/users/alice/?before=20",
            "/users/alice/followers/",
            "/users/alice/following/",
            f"/messages/{first.id}/",
            "/tags/topic1/",
            "/api/message/",
            "/api/relationship/",
            "/api/timeline/public/",
            f"/api/message/{first.id}/context/",
        )
    ]
    pages += [
        (member, path, {})
        for path in ("/private/", "/private/?before=30", "/notifications/", "/users/alice/likes/")
    ]
    pages += [(client, path, token) for path in ("/api/timeline/home/", "/api/notifications/")]
    checked = 0
    for browser, path, headers in pages:
        with count_queries() as counter:
            assert browser.get(path, headers=headers).status_code == 200, path
        for query in counter.get_queries():
            sql, params = query.msg
            if sql.startswith("SELECT"):
                plan = [
                    row[3] for row in db.database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)
                ]
                assert not unbounded_steps(sql, plan), (path, sql, plan)
                checked += 1
    assert checked > 40


def test_anonymous_pages_without_a_form_set_no_cookie(client, people):
    for path in ("/", "/public/", "/users/", "/users/bob/", "/api/message/"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers.getlist("Set-Cookie") == [], path
    cookies = client.get("/accounts/login/").headers.getlist("Set-Cookie")
    assert any(cookie.startswith("session=") for cookie in cookies)  # the form's token


@pytest.mark.parametrize(
    "path", ["/public/", "/users/bob/", "/api/message/", "/api/timeline/public/"]
)
def test_lists_answer_304_while_unchanged(client, people, path):
    bob = people[1]
    first = client.get(path)
    etag = first.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    Message.create(user=bob, content="something new")
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_api_date_filters_read_the_date_index(client, people):
    """A list narrowed by a date is ordered by it (Model.ordered), so the date index serves
    both; the API lists messages so."""
    bob = people[1]
    late, early = datetime.datetime(2030, 1, 1), datetime.datetime(2020, 1, 1)
    query = Message.ordered(Message.visible(), None, ["pub_date__lt"])
    query = Message.narrowed(query, {"pub_date__lt": late})
    assert_reads_only_index_ranges(query.limit(21))
    assert "SEARCH t1 USING INDEX message_pub_date (pub_date<?)" in query_plan(query)
    query = Message.ordered(Message.visible(), None, ["user", "pub_date__gt"])
    query = Message.narrowed(query, {"user": bob.id, "pub_date__gt": early})
    assert_reads_only_index_ranges(query.limit(21))
    page = client.get("/api/message/?pub_date__lt=2030-01-01T00:00:00Z").get_json()
    dates = [message["pub_date"] for message in page["objects"]]
    assert len(dates) == 3 and dates == sorted(dates, reverse=True)
    refused = client.get("/api/message/?pub_date__lt=2030-01-01T00:00:00Z&ordering=id")
    assert refused.status_code == 422


def test_follow_counts_leave_out_deactivated_users(people):
    alice, bob, carol = people
    carol.follow(bob)
    assert (bob.profile_counts()["followers"], alice.profile_counts()["following"]) == (2, 2)
    User.set_active([alice.id], False)
    assert bob.profile_counts()["followers"] == 1  # carol
    User.set_active([carol.id], False)
    counts = bob.profile_counts()
    assert (counts["followers"], counts["following"]) == (0, 0)


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_follow_counts_read_only_index_ranges(people):
    bob = people[1]
    followers = bob._follow_counts(Relationship.to_user, Relationship.from_user)
    followees = bob._follow_counts(Relationship.from_user, Relationship.to_user)
    for query in (*followers, *followees):
        assert_reads_only_index_ranges(query)


def test_message_counts_follow_every_way_messages_come_and_go(people):
    alice, bob, carol = people  # one message each
    assert [MessageCount.of(person) for person in people] == [1, 1, 1]
    Message.insert_many([{"user": bob.id, "content": f"bulk {n}"} for n in range(5)]).execute()
    alice.post("posted")
    assert (MessageCount.of(alice), MessageCount.of(bob)) == (2, 6)
    Message.get(Message.content == "posted").delete_instance()
    bulk = [m.id for m in Message.select().where(Message.content.startswith("bulk "))]
    Message.delete().where(Message.id << bulk[:2]).execute()
    remaining = Message.select().where(Message.user == bob).count()
    assert (MessageCount.of(alice), MessageCount.of(bob)) == (1, remaining)
    Message.update(user=carol).where(Message.user == bob).execute()  # an author changes
    assert (MessageCount.of(bob), MessageCount.of(carol)) == (0, remaining + 1)
    carol.delete_instance(recursive=True)
    assert MessageCount.of(carol) == 0 and MessageCount.of(alice) == 1
    assert User.get(User.id == bob.id).profile_counts()["messages"] == 0


@pytest.mark.sqlite  # reads SQLite's EXPLAIN QUERY PLAN
def test_a_profiles_message_count_reads_one_row(people):
    bob = people[1]
    query = MessageCount.select(MessageCount.messages).where(MessageCount.user == bob)
    assert query_plan(query) == ["SEARCH t1 USING INTEGER PRIMARY KEY (rowid=?)"]


def test_a_sqlite_connection_serves_one_thread_request_after_request(client, people):
    client.get("/public/")
    if not ON_POSTGRES:  # kept open: no new connection and PRAGMAs per request
        kept = db.database.connection()
        client.get("/users/alice/")
        assert db.database.connection() is kept
    else:  # closed at teardown, as ever (postgresql+pool:// pools them)
        assert db.database.is_closed()


@pytest.mark.sqlite  # a PRAGMA
def test_sqlite_connections_get_a_page_cache_for_old_pages_of_large_timelines(client):
    client.get("/public/")
    (cache,) = db.database.execute_sql("PRAGMA cache_size").fetchone()
    assert cache == -SQLITE_CACHE_KIB and SQLITE_CACHE_KIB > 2000  # above the default


@pytest.mark.sqlite
def test_a_connection_left_in_a_transaction_is_closed_at_teardown(app):
    with app.test_request_context("/"):
        app.preprocess_request()
        db.database.execute_sql("BEGIN")
        app.do_teardown_request()
    assert db.database.is_closed()


def test_a_recount_restores_every_authors_message_count(people):
    alice, bob, carol = people
    Message.insert_many([{"user": bob.id, "content": f"b{n}"} for n in range(3)]).execute()
    carol.messages.get().delete_instance()
    MessageCount.update(messages=99).execute()  # as if a bulk load had paused the trigger
    MessageCount.recount()
    assert [MessageCount.of(person) for person in people] == [1, 4, 0]


def test_the_api_serializer_gives_exactly_what_flask_peewees_gives(people):
    """ChirpSerializer's one-pass serialize_object against flask-peewee's own (the same
    date conversion): byte-identical JSON for every resource's rows, with nested authors,
    empty and set dates, ids, with and without the resource's field lists; and each value
    (but null) is what ChirpSerializer.field_schema says of its field."""
    alice, bob, _ = people
    first = Message.select().order_by(Message.id).first()
    bob.reply(first, "a reply")
    Message.update(edited_date=first.pub_date).where(Message.id == first.id).execute()
    Note.create(user=alice, message="a note")
    serializer = api.ChirpSerializer()
    compared = 0
    for model, resource in api.api._registry.items():
        rows = list(resource.get_query()) if model is Message else list(model.select())
        assert rows, model
        for row in rows:
            for fields, exclude in ((resource._fields, resource._exclude), (None, None)):
                ours = serializer.serialize_object(row, fields, exclude)
                theirs = Serializer.serialize_object(serializer, row, fields, exclude)
                assert json.dumps(ours) == json.dumps(theirs), (model, ours, theirs)
                compared += 1
                for name, value in ours.items():  # field_schema says what each one is
                    if value is not None and not isinstance(value, dict):
                        schema = serializer.field_schema(model._meta.fields[name])
                        Draft202012Validator(schema).validate(value)
    assert compared >= 20


def test_a_prepared_query_is_the_query_its_function_builds(people):
    """models.prepared renders a query's SQL once per shape, then only binds values: the
    rows, the SQL and whatever is chained on it equal those of the ordinary query."""
    alice, bob, carol = people
    for number in range(5):
        Message.create(user=bob, content=f"more {number}")
    builds = []

    @models.prepared
    def page(person, ids, before, limit):
        builds.append(before)
        query = Message.select().where(Message.user == person, Message.id.not_in(ids))
        return keyset(query, Message.id, before, limit)

    newest = [m.id for m in Message.select().where(Message.user == bob).order_by(-Message.id)]
    calls = [(bob, [newest[0]], None, 3), (bob, [newest[1]], newest[1], 2), (carol, [], None, 9)]
    calls += [(bob, [newest[2]], newest[0], 3), (alice, [0], None, 9)]
    prepared = [page(*args) for args in calls]
    # Each shape (before given or None; one list length or another) was built twice, with
    # two sets of stand-ins; every further call only bound its values.
    assert len(builds) == 2 * len({(len(ids), before is None) for _, ids, before, _ in calls})
    for query, args in zip(prepared, calls, strict=True):
        ordinary = page.build(*args)
        assert isinstance(query, models.PreparedQuery)
        assert query.sql() == ordinary.sql()
        assert [m.id for m in query] == [m.id for m in ordinary], args
        # Chained, counted, first(), or as a subquery: the real values, never stand-ins.
        assert [m.id for m in query.limit(1)] == [m.id for m in ordinary.limit(1)]
        assert query.count() == ordinary.count()
        assert getattr(query.first(), "id", None) == getattr(ordinary.first(), "id", None)
        inside = Message.select().where(Message.id << query.select(Message.id))
        assert inside.count() == len(list(page.build(*args)))  # first() limited ordinary
        # Extra columns (as the API adds its author columns) keep it prepared.
        extended = query.select_extend(Message.content.alias("text"))
        assert isinstance(extended, models.PreparedQuery)
        assert [m.text for m in extended] == [m.content for m in page.build(*args)]
    # Lists of names are bound too, one value each.
    names = models.prepared(lambda lowered: User.select().where(User.username << lowered))
    assert [u.username for u in names(["bob", "carol"])] == ["bob", "carol"]
    assert [u.username for u in names(["alice", "nobody"])] == ["alice"]
    # Columns are part of the text; dates are bound (the admin's messages per day).
    now = datetime.datetime.now()
    bounds = [now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)]
    for field in (Message.pub_date, User.join_date, Message.pub_date):
        counted = models.counts_between(field, bounds)
        assert isinstance(counted, models.PreparedQuery)
        assert list(counted) == list(models.counts_between.build(field, bounds))
        assert list(counted) == [(field.model.select().count(),)]


def test_a_query_function_that_changes_its_arguments_cannot_be_prepared(people):
    @models.prepared
    def deeper(before):
        return Message.select().where(Message.id < before - 1)

    @models.prepared
    def named(name):
        return User.select().where(User.username == name.lower())

    for function, value in ((deeper, 5), (named, "Alice")):
        with pytest.raises(ValueError, match="cannot be prepared"):
            function(value)
    # Values a prepared query cannot bind get the ordinary query.
    assert not isinstance(deeper(5.0), models.PreparedQuery)


# includes/message.html as it was before views.MessageDisplay, every string made by Jinja
# per message: pages must not change by a byte now that Python makes them.
MESSAGE_TEMPLATE_BEFORE_DISPLAY = Path(__file__).parent / "data" / "message_before_display.html"


def test_messages_render_the_same_html_with_their_strings_made_in_python(app, people):
    """Every case of includes/message.html (replies to visible, hidden and deleted
    messages; reposts; likes; edits; links, mentions, tags and markup in the text; own
    messages; old and recent dates) on every page that shows messages, anonymous and
    logged in: byte-identical to the template that made each string in Jinja."""
    alice, bob, carol = people
    alice.update_profile('Alice <"A">', "")
    dave = make_user("dave")
    old = datetime.datetime(2026, 1, 2, 3, 4, 5)
    recent = datetime.datetime.now() - datetime.timedelta(hours=3, minutes=30)
    first = Message.select().where(Message.user == alice).get()
    Message.update(pub_date=old).where(Message.id == first.id).execute()
    rich = bob.post('see https://example.com/a?b=1&c=<2>. @alice @nobody #Topic <b>"&"</b>')
    reply = carol.reply(rich, "@bob agreed")
    hidden = dave.post("soon hidden")
    to_hidden = bob.reply(hidden, "answering dave")
    gone = carol.post("soon deleted")
    to_gone = alice.reply(gone, "answering a deleted message")
    gone.delete_instance()
    User.set_active([dave.id], False)
    rich.edit(rich.content + " (edited)")
    Message.update(pub_date=recent).where(Message.id == reply.id).execute()
    carol.repost(rich)
    alice.repost(reply)
    alice.like(rich)
    bob.like(to_gone)
    member = app.test_client()
    login(member, "alice")
    member.get("/private/")  # shows the login's flash message, once
    pages = [
        (app.test_client(), "/public/"),
        (app.test_client(), f"/messages/{rich.id}/"),
        (app.test_client(), "/tags/topic/"),
        (member, "/public/"),
        (member, "/private/"),
        (member, "/users/bob/"),
        (member, f"/messages/{reply.id}/"),
        (member, f"/messages/{to_hidden.id}/"),
        (member, "/users/alice/likes/"),
        (member, "/search/?q=answering"),
        (member, f"/delete/{to_gone.id}/"),
    ]

    def render_all():
        bodies = []
        for browser, path in pages:
            response = browser.get(path)
            assert response.status_code == 200, path
            bodies.append(response.get_data(as_text=True))
        return bodies

    now = render_all()
    loader = app.jinja_env.loader
    template = MESSAGE_TEMPLATE_BEFORE_DISPLAY.read_text()
    before = jinja2.DictLoader({"includes/message.html": template})
    app.jinja_env.loader = jinja2.ChoiceLoader([before, loader])
    try:
        then = render_all()
    finally:
        app.jinja_env.loader = loader
    for (_, path), ours, theirs in zip(pages, now, then, strict=True):
        assert ours == theirs, path
    shown = "".join(now)
    for case in ("replying to a deleted message", "not available", "reposted by", "Edited"):
        assert case in shown, case
    assert "&lt;b&gt;" in shown and 'class="mention"' in shown and "Alice &lt;" in shown
