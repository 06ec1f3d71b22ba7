"""Conversation: replies and threads, likes, reposts and notifications, in the models and
on the web pages."""

import re
import threading

from conftest import login
from conftest import make_message
from conftest import make_user
from conftest import post
from playhouse.test_utils import count_queries

from app import db
from models import Like
from models import Message
from models import Notification
from models import User


def text(response):
    return response.get_data(as_text=True)


def fresh(message):
    return Message.get_by_id(message.id)


def kinds(user):
    return [(n.kind, n.actor.username) for n in user.notifications()]


# Models --------------------------------------------------------------------------------


def test_a_reply_counts_notifies_and_survives_its_parent(app):
    alice, bob = make_user("alice"), make_user("bob")
    root = alice.post("root")
    reply = bob.reply(root, "@alice hi")
    own = alice.reply(reply, "@bob hello")
    assert fresh(root).reply_count == 1 and reply.is_reply
    assert kinds(alice) == [("reply", "bob")]
    assert kinds(bob) == [("reply", "alice")]
    assert [m.id for m in own.ancestors()] == [root.id, reply.id]
    assert [m.id for m in root.thread_replies()] == [reply.id]

    fresh(reply).delete_instance(recursive=True)
    orphan = fresh(own)
    assert orphan.in_reply_to_id is None and orphan.is_reply
    assert fresh(root).reply_count == 0
    assert kinds(alice) == []  # the deleted reply's notification went with it
    alice.reply(root, "talking to myself")
    assert kinds(alice) == []  # nobody hears of their own actions
    assert kinds(bob) == [("reply", "alice")]


def test_likes_and_reposts_are_idempotent_and_counted(app):
    alice, bob = make_user("alice"), make_user("bob")
    message = alice.post("likeable")
    assert bob.like(message) is True
    assert bob.like(message) is False
    assert alice.like(message) is True
    assert bob.repost(message) and not bob.repost(message)
    assert (fresh(message).like_count, fresh(message).repost_count) == (2, 1)
    assert kinds(alice) == [("repost", "bob"), ("like", "bob")]
    assert bob.unlike(message) is True and bob.unlike(message) is False
    assert bob.unrepost(message) is True
    assert (fresh(message).like_count, fresh(message).repost_count) == (1, 0)
    assert kinds(alice) == []  # undone reactions withdraw their notifications
    assert Like.select().count() == 1


def test_deactivated_users_leave_counts_timelines_and_notifications(app):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    carol.follow(bob)
    message = alice.post("popular")
    bob.like(message)
    bob.repost(message)
    bob.reply(message, "@alice yes")
    assert [m.id for m in carol.home_timeline() if m.id == message.id] == [message.id]

    User.set_active([bob.id], False)
    assert (fresh(message).like_count, fresh(message).repost_count) == (0, 0)
    assert fresh(message).reply_count == 0
    assert message.id not in [m.id for m in carol.home_timeline()]
    assert alice.unread_notification_count() == 0 and kinds(alice) == []

    bob = User.get_by_id(bob.id)
    bob.active = True
    bob.save()
    assert (fresh(message).like_count, fresh(message).reply_count) == (1, 1)
    assert alice.unread_notification_count() == 3

    bob.delete_instance(recursive=True)
    assert (fresh(message).like_count, fresh(message).repost_count) == (0, 0)


def test_mentions_notify_everyone_mentioned_once(app):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    root = alice.post("root")
    bob.reply(root, "@alice @carol @bob @nobody look")
    assert kinds(alice) == [("reply", "bob")]
    assert kinds(carol) == [("mention", "bob")]
    assert kinds(bob) == []


def test_the_unread_count_can_stop_counting(app):
    alice = make_user("alice")
    for number in range(3):
        make_user(f"fan{number}").follow(alice)
    assert alice.unread_notification_count() == 3
    assert alice.unread_notification_count(2) == 2


def test_follows_notify_once(app):
    alice, bob = make_user("alice"), make_user("bob")
    bob.follow(alice)
    bob.follow(alice)
    assert kinds(alice) == [("follow", "bob")]


def test_notifications_group_likes_of_one_message(app):
    alice = make_user("alice")
    message = alice.post("famous")
    fans = [make_user(f"fan{number}") for number in range(4)]
    for fan in fans:
        fan.like(message)
    fans[0].follow(alice)
    groups = Notification.group(list(alice.notifications()))
    assert [(g["kind"], len(g["actors"])) for g in groups] == [("follow", 1), ("like", 4)]


# Web -----------------------------------------------------------------------------------


def test_reply_button_prefills_the_composer_and_the_reply_links_back(client):
    alice, bob = make_user("alice"), make_user("bob")
    root = make_message(alice, "what do you think?")
    login(client, "bob")
    page = text(client.get("/public/"))
    assert f'href="/create/?in_reply_to={root.id}"' in page
    composer = text(client.get(f"/create/?in_reply_to={root.id}"))
    assert "\n@alice </textarea>" in composer and "replying to" in composer
    response = post(
        client,
        f"/create/?in_reply_to={root.id}",
        {"content": "@alice fine"},
        token_from=f"/create/?in_reply_to={root.id}",
    )
    reply = Message.get(Message.user == bob)
    assert response.headers["Location"] == f"/messages/{reply.id}/"
    assert reply.in_reply_to_id == root.id
    thread = text(client.get(f"/messages/{reply.id}/"))
    assert "replying to <a" in thread and "@alice" in thread
    assert thread.index("what do you think?") < thread.index("</a> fine</p>")
    assert client.get("/create/?in_reply_to=abc").status_code == 400
    assert client.get("/create/?in_reply_to=999").status_code == 404


def test_a_reply_to_a_deleted_message_says_so(client):
    alice, bob = make_user("alice"), make_user("bob")
    root = make_message(alice, "soon gone")
    bob.reply(root, "@alice answer")
    root.delete_instance()
    assert "replying to a deleted message" in text(client.get("/public/"))


def test_thread_pages_replies_newest_last_by_keyset(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "PAGE_SIZE", 3)
    alice, bob = make_user("alice"), make_user("bob")
    root = make_message(alice, "root")
    replies = [bob.reply(root, f"reply number {n}") for n in range(5)]
    first = text(client.get(f"/messages/{root.id}/"))
    assert first.index("reply number 0") < first.index("reply number 2")
    assert "reply number 3" not in first
    assert f"after={replies[2].id}" in first
    second = text(client.get(f"/messages/{root.id}/?after={replies[2].id}"))
    assert "reply number 3" in second and "reply number 4" in second
    assert "reply number 2" not in second and "after=" not in second
    assert client.get(f"/messages/{root.id}/?after=x").status_code == 400
    assert client.get("/messages/999/").status_code == 404


def test_like_and_repost_toggle_by_post(client):
    alice = make_user("alice")
    make_user("bob")
    message = make_message(alice, "nice")
    login(client, "bob")
    response = post(client, f"/messages/{message.id}/like/", {"next": "/public/"})
    assert response.status_code == 302 and response.headers["Location"] == "/public/"
    page = text(client.get("/public/"))
    assert f'action="/messages/{message.id}/unlike/"' in page and "Liked" in page
    post(client, f"/messages/{message.id}/repost/", {"next": "//evil.example/"})
    assert (fresh(message).like_count, fresh(message).repost_count) == (1, 1)
    post(client, f"/messages/{message.id}/unlike/")
    post(client, f"/messages/{message.id}/unrepost/")
    assert (fresh(message).like_count, fresh(message).repost_count) == (0, 0)
    response = post(client, f"/messages/{message.id}/like/", {"next": "//evil.example/"})
    assert response.headers["Location"] == f"/messages/{message.id}/"


def test_reposts_reach_followers_home_timelines(client):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    carol.follow(bob)
    message = make_message(alice, "worth passing on")
    bob.repost(message)
    login(client, "carol")
    home = text(client.get("/"))
    assert "worth passing on" in home and "reposted by" in home and "@bob" in home
    bob.unrepost(message)
    assert "worth passing on" not in text(client.get("/"))


def test_likes_page_is_private_to_its_owner(client):
    alice, bob = make_user("alice"), make_user("bob")
    bob.like(make_message(alice, "liked one"))
    make_message(alice, "not liked")
    login(client, "bob")
    page = text(client.get("/users/bob/likes/"))
    assert "liked one" in page and "not liked" not in page
    assert client.get("/users/alice/likes/").status_code == 404


def test_notifications_page_groups_counts_and_marks_read(client):
    alice = make_user("alice")
    message = make_message(alice, "famous")
    for number in range(4):
        make_user(f"fan{number}").like(message)
    login(client, "alice")
    page = text(client.get("/notifications/"))
    assert re.search(r"@fan3</a>\s*and 3 others\s*liked your message", page)
    assert 'aria-label="4 unread"' in page
    response = post(client, "/notifications/read/", token_from="/notifications/")
    assert response.status_code == 302
    assert "unread" not in text(client.get("/notifications/"))
    assert alice.unread_notification_count() == 0


def test_reactions_are_rate_limited(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "REACT_RATE_LIMIT", "2 per minute")
    message = make_message(make_user("alice"))
    make_user("bob")
    login(client, "bob")
    statuses = [post(client, f"/messages/{message.id}/like/").status_code for _ in range(3)]
    assert statuses == [302, 302, 429]


def test_counts_cost_constant_queries_per_page(client):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    carol.follow(bob)
    carol.follow(alice)

    def queries_for_home():
        login(client, "carol")
        with count_queries() as counter:
            assert client.get("/").status_code == 200
        return len(counter.get_queries())

    root = make_message(alice, "root")
    bob.reply(root, "first reply")
    bob.repost(root)
    small = queries_for_home()
    for number in range(15):
        reply = bob.reply(root, f"reply {number}")
        alice.like(reply)
        bob.repost(reply)
        carol.like(reply)
    assert queries_for_home() == small


# Admin ---------------------------------------------------------------------------------


def test_admin_browses_replies_likes_reposts_and_notifications(client):
    make_user("root", admin=True)
    alice, bob = make_user("alice"), make_user("bob")
    root = alice.post("root message")
    bob.reply(root, "bob's reply")
    bob.like(root)
    bob.repost(root)
    login(client, "root")
    messages = text(client.get("/admin/message/?fo_is_reply=eq&fv_is_reply=1"))
    assert "bob&#39;s reply" in messages and "root message" not in messages
    for name in ("like", "repost", "notification"):
        page = text(client.get(f"/admin/{name}/"))
        assert "bob" in page, name
    like = Like.get()
    response = post(client, "/admin/like/delete/", {"id": str(like.id)}, token_from="/admin/")
    assert response.status_code == 302
    assert fresh(root).like_count == 0


# Concurrency ---------------------------------------------------------------------------


def at_once(*calls):
    """Run each call in its own thread (its own database connection), released together
    by a barrier; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)
    errors = []

    def run(index, call):
        try:
            with db.database.connection_context():
                barrier.wait()
                results[index] = call()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_two_clients_liking_at_once_count_once(app):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    db.database.close()  # the threads open their own connections
    for round_number in range(5):
        message = alice.post(f"race {round_number}")
        # The same person clicking twice at once: one like, counted once.
        assert sorted(at_once(lambda m=message: bob.like(m), lambda m=message: bob.like(m))) == [
            False,
            True,
        ]
        # Two people at once: both counted, none lost.
        at_once(lambda m=message: carol.like(m), lambda m=message: carol.repost(m))
        at_once(lambda m=message: bob.repost(m), lambda m=message: bob.unlike(m))
        row = fresh(message)
        assert (row.like_count, row.repost_count) == (1, 2)
        assert Like.select().where(Like.message == message).count() == 1
