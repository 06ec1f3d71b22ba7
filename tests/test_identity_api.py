"""The API side of identity and discovery: profiles, PUT /api/me/, search, tag timelines,
and each message's mentions, tags and links."""

import json

from conftest import bearer
from conftest import make_message
from conftest import make_user

from models import User


def put_json(client, path, body, headers):
    return client.put(path, data=json.dumps(body), content_type="application/json", headers=headers)


def test_profiles_show_display_name_bio_avatar_and_counts(client):
    alice = make_user("alice", display_name="Alice", bio="Down the hole")
    make_user("bob").follow(alice)
    make_message(alice)
    user = client.get(f"/api/user/{alice.id}/").get_json()
    assert (user["display_name"], user["bio"]) == ("Alice", "Down the hole")
    assert user["avatar_url"] == f"/avatars/{alice.id}.svg"
    assert user["counts"] == {"messages": 1, "followers": 1, "following": 0}
    listed = client.get("/api/user/").get_json()["objects"]
    assert listed[0]["display_name"] == "Alice" and "counts" not in listed[0]


def test_put_me_changes_only_the_callers_profile_under_the_text_rule(client):
    alice = make_user("alice")
    headers = bearer(alice)
    response = put_json(client, "/api/me/", {"display_name": " Ålice ", "bio": "hi"}, headers)
    assert response.status_code == 200
    assert (response.get_json()["display_name"], response.get_json()["bio"]) == ("Ålice", "hi")
    response = put_json(client, "/api/me/", {"bio": ""}, headers)
    assert response.get_json()["display_name"] == "Ålice" and response.get_json()["bio"] == ""
    assert put_json(client, "/api/me/", {"email": "a@b.org"}, headers).status_code == 400
    assert put_json(client, "/api/me/", {"bio": "x"}, {}).status_code == 401
    response = client.put("/api/me/", data="bio=x", headers=headers)
    assert response.status_code == 415
    assert User.get_by_id(alice.id).display_name == "Ålice"


def test_messages_carry_their_mentions_tags_and_links(client):
    alice = make_user("alice")
    make_user("Bob")
    message = make_message(alice, "@bob @ghost see https://example.org/x. #News")
    body = client.get(f"/api/message/{message.id}/").get_json()
    assert body["links"] == {
        "mentions": ["Bob"],
        "tags": ["news"],
        "urls": ["https://example.org/x"],
    }
    assert body["user"]["avatar_url"] == f"/avatars/{alice.id}.svg"
    assert body["edited_date"] is None


def test_tag_timeline_is_keyset_paged_newest_first(client):
    alice = make_user("alice")
    first, _, third = (
        make_message(alice, "one #Py"),
        make_message(alice, "two"),
        make_message(alice, "three #py"),
    )
    page = client.get("/api/tags/PY/?limit=1").get_json()
    assert [m["id"] for m in page["objects"]] == [third.id]
    assert page["meta"]["next"] == f"/api/tags/PY/?limit=1&before={third.id}"
    page = client.get(page["meta"]["next"]).get_json()
    assert [m["id"] for m in page["objects"]] == [first.id]
    assert client.get("/api/tags/py/?q=x").status_code == 400
    too_long = client.get("/api/tags/" + "x" * 51 + "/")  # no tag is that long (Tag.name_of)
    assert too_long.status_code == 404 and too_long.get_json() == {"error": "No such tag."}


def test_search_finds_people_and_messages_and_keeps_q_when_paging(client):
    alice = make_user("alice", display_name="Wonder")
    older = make_message(alice, "hello world")
    newer = make_message(alice, "hello there")
    page = client.get("/api/search/?q=hello&limit=1").get_json()
    assert [m["id"] for m in page["objects"]] == [newer.id]
    assert "q=hello" in page["meta"]["next"]
    page = client.get(page["meta"]["next"]).get_json()
    assert [m["id"] for m in page["objects"]] == [older.id] and page["people"] == []
    people = client.get("/api/search/?q=won").get_json()["people"]
    assert [p["username"] for p in people] == ["alice"] and "email" not in people[0]
    assert client.get("/api/search/?q=" + "x" * 201).status_code == 400


def test_the_document_describes_the_new_routes(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert {"/search/", "/tags/{tag}/"} <= set(paths)
    assert "put" in paths["/me/"]
