"""The conversation API: replies, thread context, likes and reposts, notifications."""

from conftest import bearer
from conftest import make_message
from conftest import make_user
from playhouse.test_utils import count_queries

from models import Message


def test_post_a_reply_and_read_its_context(client):
    alice, bob = make_user("alice"), make_user("bob")
    root = make_message(alice, "root")
    response = client.post(
        "/api/message/", json={"content": "@alice hi", "in_reply_to": root.id}, headers=bearer(bob)
    )
    assert response.status_code == 200, response.get_json()
    reply = response.get_json()
    assert reply["in_reply_to"] == root.id and reply["is_reply"] is True
    assert Message.get_by_id(root.id).reply_count == 1
    context = client.get(f"/api/message/{reply['id']}/context/").get_json()
    assert [m["id"] for m in context["ancestors"]] == [root.id]
    assert context["message"]["id"] == reply["id"] and context["replies"] == []
    root_context = client.get(f"/api/message/{root.id}/context/?limit=1").get_json()
    assert [m["id"] for m in root_context["replies"]] == [reply["id"]]
    assert root_context["message"]["reply_count"] == 1
    for bad in (999, "x"):
        body = {"content": "hi", "in_reply_to": bad}
        status = client.post("/api/message/", json=body, headers=bearer(bob)).status_code
        assert status == (422 if bad == 999 else 400)
    assert client.get("/api/message/999/context/").status_code == 404
    edit = client.put(
        f"/api/message/{reply['id']}/", json={"in_reply_to": None}, headers=bearer(bob)
    )
    assert edit.status_code == 422


def test_like_and_repost_are_idempotent_with_201_and_204(client):
    alice, bob = make_user("alice"), make_user("bob")
    message = make_message(alice, "likeable")
    headers = bearer(bob)
    url = f"/api/message/{message.id}"
    first = client.post(f"{url}/like/", headers=headers)
    assert first.status_code == 201
    assert first.get_json()["like_count"] == 1 and first.get_json()["liked"] is True
    assert client.post(f"{url}/like/", headers=headers).status_code == 200
    assert client.post(f"{url}/repost/", headers=headers).status_code == 201
    mine = client.get(f"{url}/", headers=headers).get_json()
    assert (mine["liked"], mine["reposted"], mine["repost_count"]) == (True, True, 1)
    anonymous = client.get(f"{url}/").get_json()
    assert (anonymous["liked"], anonymous["like_count"]) == (False, 1)
    for _ in range(2):
        assert client.delete(f"{url}/like/", headers=headers).status_code == 204
        assert client.delete(f"{url}/repost/", headers=headers).status_code == 204
    assert Message.get_by_id(message.id).like_count == 0
    assert client.post(f"{url}/like/").status_code == 401
    assert client.post("/api/message/999/like/", headers=headers).status_code == 404


def test_notifications_are_the_callers_own_with_keyset_and_since_id(client):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    message = make_message(alice, "popular")
    bob.like(message)
    carol.like(message)
    bob.follow(alice)
    carol.repost(message)
    headers = bearer(alice)
    page = client.get("/api/notifications/?limit=2", headers=headers).get_json()
    assert [n["kind"] for n in page["objects"]] == ["repost", "follow"]
    assert page["objects"][0]["message"]["id"] == message.id
    assert page["objects"][1]["message"] is None and page["meta"]["unread"] == 4
    assert list(page["objects"][1]) == ["id", "kind", "actor", "message", "read", "created_date"]
    assert page["objects"][1]["read"] is False and page["objects"][1]["created_date"][-1] == "Z"
    older = client.get(page["meta"]["next"], headers=headers).get_json()
    assert [n["actor"]["username"] for n in older["objects"]] == ["carol", "bob"]
    newest = page["objects"][0]["id"]
    assert (
        client.get(f"/api/notifications/?since_id={newest}", headers=headers).get_json()["objects"]
        == []
    )
    carol.follow(alice)
    polled = client.get(f"/api/notifications/?since_id={newest}", headers=headers).get_json()
    assert [n["kind"] for n in polled["objects"]] == ["follow"]
    # Nobody else sees them: bob's list is his own (empty), anonymous callers get a 401.
    assert client.get("/api/notifications/", headers=bearer(bob)).get_json()["objects"] == []
    assert client.get("/api/notifications/").status_code == 401
    marked = client.post("/api/notifications/read/", headers=headers).get_json()
    assert marked == {"marked": 5} and alice.unread_notification_count() == 0
    assert client.get("/api/notifications/?since_id=x", headers=headers).status_code == 400


def test_timeline_counts_cost_constant_queries(client):
    alice, bob = make_user("alice"), make_user("bob")
    headers = bearer(bob)
    root = make_message(alice, "root")
    bob.reply(root, "first")
    bob.like(root)

    def queries():
        with count_queries() as counter:
            assert client.get("/api/timeline/public/", headers=headers).status_code == 200
        return len(counter.get_queries())

    queries()  # the token's first use records last_used
    small = queries()
    for number in range(10):
        alice.like(bob.reply(root, f"reply {number}"))
    assert queries() == small


def test_reactions_are_rate_limited_on_the_api(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "REACT_RATE_LIMIT", "3 per minute")
    alice, bob = make_user("alice"), make_user("bob")
    message = make_message(alice, "hot")
    headers = bearer(bob)
    url = f"/api/message/{message.id}"
    statuses = [
        client.post(f"{url}/like/", headers=headers).status_code,
        client.delete(f"{url}/like/", headers=headers).status_code,
        client.post(f"{url}/repost/", headers=headers).status_code,
        client.delete(f"{url}/repost/", headers=headers).status_code,
    ]
    assert statuses == [201, 204, 201, 429]
    assert Message.get_by_id(message.id).repost_count == 1
