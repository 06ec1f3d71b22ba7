"""The REST API: authentication, reads, writes, errors, limits, and the holes of
flask-peewee 4.0.1 it closes. Every write test checks the database afterwards."""

import datetime
import json
import re

import pytest
from conftest import basic
from conftest import bearer
from conftest import make_message
from conftest import make_user
from playhouse.test_utils import count_queries

from models import ApiToken
from models import Message
from models import Note
from models import Relationship
from models import User


def assert_json_error(response, status):
    """Assert ``response`` is ``{"error": "..."}`` JSON with ``status`` and the auth hint."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert isinstance(response.get_json()["error"], str)
    assert "Bearer" in response.headers["X-Chirp-Auth-Hint"]


# ---------------------------------------------------------------- authentication


def test_bearer_token_authenticates_and_records_last_used(client, alice):
    response = client.get("/api/me/", headers=bearer(alice))
    assert response.status_code == 200
    assert response.get_json()["username"] == "alice"
    assert ApiToken.get(ApiToken.user == alice).last_used is not None


def test_basic_credentials_still_work(client, alice):
    response = client.get("/api/me/", headers=basic("alice"))
    assert response.status_code == 200
    assert response.get_json()["id"] == alice.id


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token"},
        basic("alice", "wrong-password"),
        basic("nobody"),
        {"Authorization": "Digest abc"},
        {"Authorization": "Basic !!!not-base64"},
    ],
)
def test_wrong_credentials_are_a_401_even_on_public_reads(client, alice, headers):
    response = client.get("/api/message/", headers=headers)
    assert_json_error(response, 401)
    assert "invalid_token" in response.headers["WWW-Authenticate"]
    assert "Basic" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/message/"),
        ("GET", "/api/me/"),
        ("GET", "/api/message/999/"),
        ("GET", "/api/no-such-thing/"),
        ("PATCH", "/api/message/"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/"),
    ],
)
def test_every_api_response_says_tokens_are_the_fast_path(client, method, path):
    response = client.open(path, method=method)
    assert "Bearer" in response.headers["X-Chirp-Auth-Hint"]
    assert "slow" in response.headers["X-Chirp-Auth-Hint"]


# ---------------------------------------------------------------- CSRF and the session


def test_form_encoded_bodies_are_refused(client, alice):
    headers = bearer(alice)
    response = client.post("/api/message/", data={"content": "form"}, headers=headers)
    assert_json_error(response, 415)
    response = client.post("/api/message/", data={"data": '{"content": "x"}'}, headers=headers)
    assert_json_error(response, 415)
    response = client.post(
        "/api/message/", data='{"content": "x"}', content_type="text/plain", headers=headers
    )
    assert_json_error(response, 415)
    assert Message.select().count() == 0


# ---------------------------------------------------------------- reads


def test_messages_nest_their_author_without_private_fields(client, alice):
    make_message(alice, "hello")
    message = client.get("/api/message/").get_json()["objects"][0]
    assert message["content"] == "hello"
    assert set(message["user"]) == {
        "id",
        "username",
        "display_name",
        "bio",
        "join_date",
        "avatar_url",
    }
    assert message["user"]["username"] == "alice"
    assert message["pub_date"].endswith("Z")


def test_message_filters(client, alice, bob):
    old = make_message(alice, "old", pub_date=datetime.datetime(2020, 1, 1))
    make_message(alice, "new")
    make_message(bob, "bob's")

    def contents(query):
        response = client.get("/api/message/?" + query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return sorted(m["content"] for m in response.get_json()["objects"])

    assert contents(f"user={bob.id}") == ["bob's"]
    assert contents("user__username=ALICE") == ["new", "old"]
    assert contents("pub_date__gt=2021-01-01T00:00:00Z") == ["bob's", "new"]
    assert contents("pub_date__lte=2020-06-01") == ["old"]
    assert contents(f"user={alice.id}&pub_date__lt=2021-01-01T00:00:00") == [old.content]


@pytest.mark.parametrize(
    "path",
    [
        # 4.0.1 answers these, leaking hashes and addresses one request at a time (N1).
        "/api/message/?user__password__gte=a",
        "/api/message/?user__password__startswith=pbkdf2",
        "/api/message/?user__email=alice@example.com",
        "/api/user/?password__gte=a",
        "/api/user/?email=alice@example.com",
        "/api/user/?admin=true",
        "/api/relationship/?from_user__email=alice@example.com",
        "/api/message/?-user=1",
        "/api/message/?id__in=1,2",
        "/api/message/?content__contains=x",
        "/api/user/?ordering=password",
        "/api/user/?ordering=-email",
        "/api/message/?ordering=user__password",
    ],
)
def test_filters_and_ordering_outside_the_allow_list_are_400(client, alice, path):
    make_message(alice)
    assert_json_error(client.get(path), 400)


@pytest.mark.parametrize(
    "query",
    [
        "pub_date__gt=not-a-date",
        "pub_date__gt=2020-13-45",
        "user=abc",
        "user=99999999999999999999999",
        "user=1&user=2",
        f"user__username={'x' * 300}",
        "ordering=nonsense",
    ],
)
def test_bad_query_values_are_400(client, alice, query):
    assert_json_error(client.get("/api/message/?" + query), 400)


def test_ordering(client, alice):
    first = make_message(alice, "first", pub_date=datetime.datetime(2020, 1, 1))
    second = make_message(alice, "second", pub_date=datetime.datetime(2021, 1, 1))
    ids = [m["id"] for m in client.get("/api/message/?ordering=pub_date").get_json()["objects"]]
    assert ids == [first.id, second.id]
    ids = [m["id"] for m in client.get("/api/message/?ordering=-id").get_json()["objects"]]
    assert ids == [second.id, first.id]


def test_limit_is_capped_and_pages_work(client, alice):
    Message.insert_many([{"user": alice.id, "content": f"m{i}"} for i in range(130)]).execute()
    page = client.get("/api/message/?limit=100000").get_json()
    assert len(page["objects"]) == 100
    assert page["meta"]["next"] == "/api/message/?limit=100000&page=2"
    assert "object_count" not in page["meta"]  # lists never count their rows
    page = client.get("/api/message/?limit=50&page=3").get_json()
    assert len(page["objects"]) == 30 and page["meta"]["next"] == ""
    assert page["meta"]["previous"] == "/api/message/?limit=50&page=2"
    assert page["meta"] == {**page["meta"], "model": "message", "page": 3, "limit": 50}
    assert len(client.get("/api/message/").get_json()["objects"]) == 20


def test_without_limit_a_page_holds_the_apps_page_size(client, app, alice, monkeypatch):
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)  # FLASK_PAGE_SIZE
    for i in range(3):
        make_message(alice, f"m{i}")
    for path in ("/api/message/", "/api/timeline/public/"):
        page = client.get(path).get_json()
        assert (len(page["objects"]), page["meta"]["limit"]) == (2, 2), path


def test_a_list_of_messages_costs_a_constant_number_of_queries(client):
    def queries_for(count):
        Message.delete().execute()
        for i in range(count):
            make_message(make_user(f"author{count}_{i}"), f"message {i}")
        with count_queries() as counter:
            response = client.get("/api/message/?limit=20")
        assert len(response.get_json()["objects"]) == min(count, 20)
        return counter.count

    assert queries_for(2) == queries_for(20) == queries_for(40) == 1  # one SELECT, no COUNT


def test_timeline_costs_a_constant_number_of_queries(client, alice):
    headers = bearer(alice)
    for i in range(30):
        other = make_user(f"friend{i}")
        alice.follow(other)
        make_message(other, f"message {i}")
    with count_queries() as counter:
        response = client.get("/api/timeline/home/", headers=headers)
    assert len(response.get_json()["objects"]) == 20
    # token lookup, last_used, the followees, the page, the caller's likes and reposts
    assert counter.count <= 5


def test_users_list_hides_emails_and_inactive_users_from_non_admins(client, alice, bob, root):
    User.update(active=False).where(User.id == bob.id).execute()
    users = client.get("/api/user/").get_json()["objects"]
    assert [u["username"] for u in users] == ["alice", "root"]
    public = {"id", "username", "display_name", "bio", "join_date", "avatar_url"}
    assert all(set(u) == public for u in users)
    assert_json_error(client.get(f"/api/user/{bob.id}/"), 404)
    users = client.get("/api/user/", headers=bearer(root)).get_json()["objects"]
    assert [u["username"] for u in users] == ["alice", "bob", "root"]
    assert users[0]["email"] == "alice@example.com"
    assert all("password" not in u for u in users)


def test_user_filters(client, alice, bob):
    assert [u["id"] for u in client.get("/api/user/?username=BOB").get_json()["objects"]] == [
        bob.id
    ]


def test_relationships_are_public_and_hide_inactive_users(client, alice, bob, root):
    alice.follow(bob)
    root.follow(alice)
    User.update(active=False).where(User.id == root.id).execute()
    rows = client.get("/api/relationship/").get_json()["objects"]
    assert [(r["from_user"], r["to_user"]) for r in rows] == [(alice.id, bob.id)]
    rows = client.get("/api/relationship/?to_user__username=bob").get_json()["objects"]
    assert len(rows) == 1


def test_notes_are_for_admins_only(client, alice, root):
    note = Note.create(user=root, message="live")
    Note.create(user=root, message="gone", status=Note.DELETED)
    for path in ("/api/note/", f"/api/note/{note.id}/"):
        assert_json_error(client.get(path), 401)
        assert_json_error(client.get(path, headers=bearer(alice)), 403)
    notes = client.get("/api/note/?status=2", headers=bearer(root)).get_json()["objects"]
    assert [n["message"] for n in notes] == ["gone"]


def test_me_shows_the_callers_own_email_only(client, alice, bob):
    response = client.get("/api/me/", headers=bearer(alice))
    assert response.get_json() == {
        "id": alice.id,
        "username": "alice",
        "display_name": "",
        "bio": "",
        "avatar_url": f"/avatars/{alice.id}.svg",
        "counts": {"messages": 0, "followers": 0, "following": 0},
        "email": "alice@example.com",
        "join_date": response.get_json()["join_date"],
        "admin": False,
    }
    assert response.headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------- timelines


def test_public_timeline_pages_by_keyset_newest_first(client, alice):
    Message.insert_many([{"user": alice.id, "content": f"m{i}"} for i in range(45)]).execute()
    seen, url = [], "/api/timeline/public/?limit=20"
    while url:
        page = client.get(url).get_json()
        seen.extend(m["id"] for m in page["objects"])
        url = page["meta"]["next"]
    assert seen == sorted(range(1, 46), reverse=True)
    page = client.get("/api/timeline/public/?before=6").get_json()
    assert [m["id"] for m in page["objects"]] == [5, 4, 3, 2, 1]
    assert page["meta"]["next"] is None


def test_home_timeline_holds_own_and_followed_messages(client, alice, bob, root):
    make_message(alice, "mine")
    make_message(bob, "followed")
    make_message(root, "not followed")
    alice.follow(bob)
    objects = client.get("/api/timeline/home/", headers=bearer(alice)).get_json()["objects"]
    assert [m["content"] for m in objects] == ["followed", "mine"]


@pytest.mark.parametrize("query", ["page=2", "user=1"])
def test_timeline_bad_queries_are_400(client, query):
    assert_json_error(client.get("/api/timeline/public/?" + query), 400)


# ---------------------------------------------------------------- writes: messages


def test_a_member_posts_as_themself(client, alice):
    response = client.post("/api/message/", json={"content": "  hi  "}, headers=bearer(alice))
    assert response.status_code == 200
    message = Message.get()
    assert (message.user_id, message.content) == (alice.id, "hi")
    assert response.get_json()["user"]["id"] == alice.id


@pytest.mark.parametrize(
    "body",
    [
        {"content": "x", "user": 2},  # someone else as owner
        {"content": "x", "user": {"username": "sock", "email": "s@x.org", "password": "p"}},
        {"content": "x", "_pk": 1},  # 4.0.1 turns the INSERT into an UPDATE of row 1 (S2)
        {"content": "x", "id": 1},
        {"content": "x", "pub_date": "not-a-date"},  # 4.0.1 stores it as text (S7)
        {"content": "x", "pub_date": "2020-01-01T00:00:00"},
        {"content": 5},
        {"content": None},
        {"content": "\ud800"},
        {},
    ],
)
def test_bad_message_bodies_are_400_and_change_nothing(client, alice, bob, body):
    original = make_message(bob, "bob's")
    response = client.post("/api/message/", json=body, headers=bearer(alice))
    assert_json_error(response, 400)
    assert [(m.id, m.user_id, m.content) for m in Message.select()] == [
        (original.id, bob.id, "bob's")
    ]
    assert User.select().count() == 2


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'"text"', b"[" * 100_000, b"\xff\xfe", b""]
)
def test_malformed_json_is_400(client, alice, raw):
    response = client.post(
        "/api/message/", data=raw, content_type="application/json", headers=bearer(alice)
    )
    assert_json_error(response, 400)
    assert Message.select().count() == 0


def test_an_oversized_body_is_413(client, alice):
    body = json.dumps({"content": "x" * (1024 * 1024)})
    response = client.post(
        "/api/message/", data=body, content_type="application/json", headers=bearer(alice)
    )
    assert_json_error(response, 413)
    assert Message.select().count() == 0


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_the_owner_edits_by_put_and_by_post(client, alice, method):
    message = make_message(alice, "before")
    response = client.open(
        f"/api/message/{message.id}/", method=method, json={"content": "after"},
        headers=bearer(alice),
    )  # fmt: skip
    assert response.status_code == 200
    assert Message.get_by_id(message.id).content == "after"
    assert Message.get_by_id(message.id).user_id == alice.id


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_nobody_edits_someone_elses_message(client, alice, bob, root, method):
    """POST to a detail URL edited anyone's row in 4.0.1 (S1); admins get no pass either."""
    message = make_message(alice, "alice's")
    for caller in (bob, root):
        response = client.open(
            f"/api/message/{message.id}/", method=method, json={"content": "pwned"},
            headers=bearer(caller),
        )  # fmt: skip
        assert_json_error(response, 403)
    assert_json_error(
        client.open(f"/api/message/{message.id}/", method=method, json={"content": "x"}), 401
    )
    row = Message.get_by_id(message.id)
    assert (row.content, row.user_id) == ("alice's", alice.id)


def test_pk_in_an_edit_body_cannot_retarget_it(client, alice, bob):
    victim = make_message(alice, "alice's")
    own = make_message(bob, "bob's")
    response = client.put(
        f"/api/message/{own.id}/", json={"content": "x", "_pk": victim.id}, headers=bearer(bob)
    )
    assert_json_error(response, 400)
    assert Message.get_by_id(victim.id).content == "alice's"
    assert Message.get_by_id(own.id).content == "bob's"


def test_the_owner_deletes_by_delete_and_by_post(client, alice):
    first, second = make_message(alice, "1"), make_message(alice, "2")
    headers = bearer(alice)
    assert client.delete(f"/api/message/{first.id}/", headers=headers).get_json() == {"deleted": 1}
    assert client.post(f"/api/message/{second.id}/delete/", headers=headers).status_code == 200
    assert Message.select().count() == 0


def test_nobody_deletes_someone_elses_message(client, alice, bob):
    message = make_message(alice)
    headers = bearer(bob)
    assert_json_error(client.delete(f"/api/message/{message.id}/", headers=headers), 403)
    assert_json_error(client.post(f"/api/message/{message.id}/delete/", headers=headers), 403)
    assert_json_error(client.delete(f"/api/message/{message.id}/"), 401)
    assert Message.select().count() == 1


def test_missing_methods_are_405(client, alice):
    headers = bearer(alice)
    response = client.patch("/api/message/", json={"content": "x"}, headers=headers)
    assert_json_error(response, 405)
    assert "POST" in response.headers["Allow"]
    assert_json_error(client.put("/api/message/", json={"content": "x"}, headers=headers), 405)


# ---------------------------------------------------------------- writes: follows


def test_follow_and_unfollow(client, alice, bob):
    headers = bearer(alice)
    response = client.post("/api/relationship/", json={"to_user": bob.id}, headers=headers)
    assert response.status_code == 200
    follow = Relationship.get()
    assert (follow.from_user_id, follow.to_user_id) == (alice.id, bob.id)
    assert response.get_json()["id"] == follow.id
    # Through User.follow, as on the web: bob hears of it.
    assert [(n.kind, n.actor.id) for n in bob.notifications()] == [("follow", alice.id)]
    response = client.delete(f"/api/relationship/{follow.id}/", headers=headers)
    assert response.status_code == 200
    assert not Relationship.select().exists()


@pytest.mark.parametrize(
    "body, status",
    [
        ({"to_user": "bob"}, 400),
        ({"to_user": True}, 400),
        ({"from_user": 2, "to_user": 2}, 400),  # following on someone else's behalf
        ({"to_user": 999}, 422),  # nobody
    ],
)
def test_bad_follows_are_refused(client, alice, bob, body, status):
    response = client.post("/api/relationship/", json=body, headers=bearer(alice))
    assert_json_error(response, status)
    assert not Relationship.select().exists()


def test_following_twice_is_409_and_following_an_inactive_user_422(client, alice, bob, root):
    alice.follow(bob)
    User.update(active=False).where(User.id == root.id).execute()
    headers = bearer(alice)
    response = client.post("/api/relationship/", json={"to_user": bob.id}, headers=headers)
    assert_json_error(response, 409)
    response = client.post("/api/relationship/", json={"to_user": root.id}, headers=headers)
    assert_json_error(response, 422)
    assert Relationship.select().count() == 1


def test_nobody_changes_someone_elses_follow(client, alice, bob, root):
    bob.follow(root)
    follow = Relationship.get()
    headers = bearer(alice)
    assert_json_error(client.delete(f"/api/relationship/{follow.id}/", headers=headers), 403)
    response = client.post(
        f"/api/relationship/{follow.id}/", json={"to_user": alice.id}, headers=headers
    )
    assert_json_error(response, 403)
    follow = Relationship.get()
    assert (follow.from_user_id, follow.to_user_id) == (bob.id, root.id)


# ---------------------------------------------------------------- writes: users and notes


def test_only_admins_write_users(client, alice, root):
    body = {"username": "carol", "email": "Carol@Example.com"}
    assert_json_error(client.post("/api/user/", json=body), 401)
    assert_json_error(client.post("/api/user/", json=body, headers=bearer(alice)), 403)
    response = client.put(f"/api/user/{alice.id}/", json={"username": "x"}, headers=bearer(alice))
    assert_json_error(response, 403)
    assert_json_error(client.delete(f"/api/user/{root.id}/", headers=bearer(alice)), 403)
    assert sorted(u.username for u in User.select()) == ["alice", "root"]

    response = client.post("/api/user/", json=body, headers=bearer(root))
    assert response.status_code == 200
    carol = User.get(User.username == "carol")
    assert carol.email == "carol@example.com" and not carol.admin and carol.active
    assert not carol.check_password("")  # no usable password until one is set
    assert carol.password == User.NO_PASSWORD
    # The admin's rule (User.except_self): nobody deletes themself, here a 403.
    response = client.delete(f"/api/user/{root.id}/", headers=bearer(root))
    assert_json_error(response, 403)
    assert response.get_json()["error"] == "You cannot delete yourself."
    assert User.select().where(User.id == root.id).exists()


@pytest.mark.parametrize(
    "body, status",
    [
        ({"admin": True}, 400),
        ({"active": False}, 400),
        ({"password": "new-password"}, 400),
        ({"join_date": "2020-01-01T00:00:00Z"}, 400),
        ({"username": "bad name"}, 422),  # well-formed JSON, refused by clean_username
        ({"email": "not-an-address"}, 422),
    ],
)
def test_read_only_invalid_or_taken_user_fields_are_refused_even_for_admins(
    client, alice, root, body, status
):
    before = User.select().where(User.id == root.id).dicts().get()
    response = client.put(f"/api/user/{root.id}/", json=body, headers=bearer(root))
    assert_json_error(response, status)
    assert User.select().where(User.id == root.id).dicts().get() == before


def test_admins_write_notes_as_themselves(client, alice, root):
    assert_json_error(client.post("/api/note/", json={"message": "hi"}, headers=bearer(alice)), 403)
    assert not Note.select().exists()
    response = client.post("/api/note/", json={"message": "hi", "status": 2}, headers=bearer(root))
    assert response.status_code == 200
    note = Note.get()
    assert (note.user_id, note.message, note.status) == (root.id, "hi", 2)
    assert_json_error(
        client.put(f"/api/note/{note.id}/", json={"user": alice.id}, headers=bearer(root)), 400
    )
    assert Note.get().user_id == root.id


# ---------------------------------------------------------------- rate limits


def test_rate_limit_per_caller_is_a_json_429(client, app, alice, bob, monkeypatch):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    alice_headers, bob_headers = bearer(alice), bearer(bob)
    for _ in range(3):
        assert client.get("/api/message/", headers=alice_headers).status_code == 200
    response = client.get("/api/message/", headers=alice_headers)
    assert_json_error(response, 429)
    assert int(response.headers["Retry-After"]) >= 1
    response = client.post("/api/message/", json={"content": "x"}, headers=alice_headers)
    assert_json_error(response, 429)
    assert Message.select().count() == 0
    assert client.get("/api/message/", headers=bob_headers).status_code == 200  # per caller


# ---------------------------------------------------------------- discovery


def test_index_page_lists_every_route_without_inline_script_or_style(client):
    response = client.get("/api/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    for path in ("/api/message/", "/api/timeline/home/", "/api/me/", "/api/note/{pk}/"):
        assert path in html
    assert "Authorization: Bearer" in html
    # Scripts only from files of ours (the CSP allows nothing else): no inline code.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "style=" not in html and "<style" not in html


def test_head_is_a_read_and_needs_the_same_credentials(client, alice):
    assert client.head("/api/message/").status_code == 200
    assert client.head("/api/me/").status_code == 401
    assert client.head("/api/me/", headers=bearer(alice)).status_code == 200
