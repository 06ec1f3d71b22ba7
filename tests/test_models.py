"""Models, their constraints and queries, and the app-level pieces they rely on."""

import datetime
import json

import pytest
from conftest import make_message
from conftest import make_user
from peewee import IntegrityError
from playhouse.test_utils import count_queries
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import UnprocessableEntity

from app import database_from_url
from app import db
from app import timesince
from models import Message
from models import Note
from models import Relationship
from models import Taken
from models import TextRefused
from models import User
from models import export_file
from models import site_totals
from models import with_related


def test_usernames_are_unique_ignoring_case(app):
    make_user("Alice")
    with pytest.raises(IntegrityError), db.database.atomic():
        User.create(username="alice", email="other@example.com", password="x")
    assert User.by_username("ALICE").get().username == "Alice"


def test_emails_are_unique(app):
    make_user("alice", email="same@example.com")
    with pytest.raises(IntegrityError), db.database.atomic():
        make_user("bob", email="same@example.com")


def test_the_database_refuses_duplicate_follows(app):
    alice, bob = make_user("alice"), make_user("bob")
    Relationship.create(from_user=alice, to_user=bob)
    with pytest.raises(IntegrityError), db.database.atomic():
        Relationship.create(from_user=alice, to_user=bob)


def test_the_database_refuses_empty_and_overlong_messages(app):
    """Message.save applies the text rule; under it, the database's CHECK refuses what a
    writer that skips save() (an INSERT) would store."""
    alice = make_user("alice")
    for content in ("", "x" * 281):
        with pytest.raises(TextRefused):
            Message.create(user=alice, content=content)
        with pytest.raises(IntegrityError), db.database.atomic():
            Message.insert(user=alice, content=content).execute()
    assert Message.create(user=alice, content="é" * 280).id


def test_follow_rules(app):
    alice, bob = make_user("alice"), make_user("bob")
    alice.follow(bob)
    alice.follow(bob)
    assert list(alice.following()) == [bob] and list(bob.followers()) == [alice]
    assert alice.is_following(bob) and not bob.is_following(alice)
    assert alice.unfollow(bob) == 1 and alice.unfollow(bob) == 0


def test_home_timeline_is_self_plus_followed_newest_first(app):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice.follow(bob)
    now = datetime.datetime.now()
    old = make_message(alice, "old", pub_date=now - datetime.timedelta(days=1))
    new = make_message(bob, "new", pub_date=now)
    make_message(carol, "not followed")
    assert list(alice.home_timeline()) == [new, old]
    assert list(bob.home_timeline()) == [new]


def test_deleting_a_user_removes_their_messages_and_follows(app):
    alice, bob = make_user("alice"), make_user("bob")
    alice.follow(bob)
    make_message(bob)
    bob.delete_instance()
    assert Message.select().count() == 0 and Relationship.select().count() == 0


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    database = database_from_url(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout=7)
    with database.connection_context():
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 7000
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (datetime.timedelta(seconds=5), "just now"),
        (datetime.timedelta(minutes=5), "5m"),
        (datetime.timedelta(hours=3), "3h"),
        (datetime.timedelta(days=2), "2d"),
        (datetime.timedelta(days=30), "22 Oct 2026"),
    ],
)
def test_timesince(age, expected):
    now = datetime.datetime(2026, 11, 21, 12, 0)
    assert timesince(now - age, now=now) == expected


def test_ids_are_never_reused(app):
    alice = make_user("alice")
    newest = make_message(alice, "newest")
    newest.delete_instance()
    assert make_message(alice, "next").id > newest.id


def test_lists_filter_and_sort_only_as_their_model_allows(app):
    """FILTERS and ORDERING are the only ways to narrow and sort a list (filter_keys,
    ordered, narrowed); a list narrowed by a date is sorted by it, newest first."""
    alice, bob = make_user("alice"), make_user("bob")
    old, new = make_message(alice, "old"), make_message(bob, "new")
    Message.update(pub_date=datetime.datetime(2020, 1, 1)).where(Message.id == old.id).execute()
    assert set(Message.filter_keys()) == {
        "user",
        "user__username",
        "pub_date__gt",
        "pub_date__gte",
        "pub_date__lt",
        "pub_date__lte",
    }
    assert Message.ordering_options() == ["id", "-id", "pub_date", "-pub_date"]

    def ids(ordering, values):
        query = Message.ordered(Message.select(), ordering, list(values))
        return [row.id for row in Message.narrowed(query, values)]

    assert ids("-id", {}) == [new.id, old.id]
    assert ids("pub_date", {"user__username": "ALICE"}) == [old.id]
    assert ids(None, {"pub_date__gte": datetime.datetime(2019, 1, 1)}) == [new.id, old.id]
    with pytest.raises(BadRequest):
        Message.ordered(Message.select(), "content")
    with pytest.raises(UnprocessableEntity):
        Message.ordered(Message.select(), "id", ["pub_date__lt"])


def test_assign_sets_fields_through_the_models_rules(app):
    alice, bob = make_user("alice"), make_user("bob")
    message = Message(user=alice)
    message.assign({"content": "  hi  "})
    assert message.content == "hi"
    with pytest.raises(TextRefused, match="^content: "):
        message.assign({"content": " "})
    with pytest.raises(TextRefused, match="^to_user: You cannot follow yourself"):
        Relationship(from_user=alice).assign({"to_user": alice.id})
    alice.follow(bob)
    with pytest.raises(Taken):
        Relationship(from_user=alice).assign({"to_user": bob.id})


def test_with_related_joins_each_key_once_in_the_same_query(app):
    alice, carol = make_user("alice"), make_user("carol")
    alice.follow(carol)
    query = with_related(Relationship.select(), ["from_user", "to_user", "from_user", "id"])
    with count_queries() as queries:
        (follow,) = query
        assert (follow.from_user.username, follow.to_user.username) == ("alice", "carol")
    assert queries.count == 1 and follow.from_user.password is None  # secrets stay out
    reply = alice.reply(make_message(carol), "hi")  # a nullable key is a LEFT JOIN
    messages = with_related(Message.select().order_by(Message.id), ["in_reply_to"])
    assert [message.in_reply_to_id for message in messages] == [None, reply.in_reply_to_id]


def test_export_file_stops_at_the_cap_and_says_so(app, monkeypatch):
    alice = make_user("alice")
    for number in range(3):
        make_message(alice, f"=m{number}")
    query = with_related(Message.select().order_by(Message.id), ["user"])
    monkeypatch.setattr("models.MAX_EXPORT_ROWS", 2)
    chunks, mimetype, cut = export_file(query, ["content", "user__username"], "csv")
    assert "".join(chunks) == "content,user__username\r\n'=m0,alice\r\n'=m1,alice\r\n"
    assert (mimetype, cut) == ("text/csv", 2)
    monkeypatch.setattr("models.MAX_EXPORT_ROWS", 3)
    chunks, mimetype, cut = export_file(query, ["content"], "json")
    assert json.loads("".join(chunks))[2] == {"content": "=m2"}
    assert (mimetype, cut) == ("application/json", None)


def test_dependents_lists_the_first_rows_of_each_kind_and_counts_the_rest(app):
    alice, carol = make_user("alice"), make_user("carol")
    for number in range(4):
        make_message(alice, f"m{number}")
    carol.reply(Message.get(), "a reply stays: its key to alice's message may be null")
    alice.follow(carol)
    dependents = alice.dependents(2, 3)
    kinds = {model: (rows, total) for model, rows, total in dependents}
    assert len(kinds[Message][0]) == 2 and kinds[Message][1] == 4  # 4: more than 3
    assert kinds[Relationship] == ([Relationship.get()], None)
    names = [model.__name__ for model, _, _ in dependents]
    assert names == sorted(names)


def test_site_totals_count_users_active_users_messages_and_follows(app):
    alice, bob = make_user("alice"), make_user("bob", active=False)
    make_message(alice)
    make_message(bob)
    alice.follow(bob)
    assert site_totals() == {"users": 2, "active_users": 1, "messages": 2, "follows": 1}


def test_latest_live_notes_are_the_newest_live_ones(app):
    alice = make_user("alice")
    old, new, gone = (Note.create(user=alice, message=text) for text in ("old", "new", "gone"))
    Note.update(status=Note.DELETED).where(Note.id == gone.id).execute()
    assert list(Note.latest_live(5)) == [new, old] and list(Note.latest_live(1)) == [new]
    assert Note.latest_live(1)[0].user.username == "alice"  # joined in
