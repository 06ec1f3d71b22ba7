"""The admin (/admin/): access, users, messages, relationships, notes, tokens, export,
panels, the audit trail, and a test per flask-peewee 4.0.1 hole admin.py closes."""

import csv
import datetime
import io
import json
import re

import pytest
from conftest import PASSWORD
from conftest import admin_post
from conftest import csrf_token
from conftest import login
from conftest import make_message
from conftest import make_user
from playhouse.test_utils import count_queries

import admin as admin_module
from admin import admin
from app import app as flask_app
from models import MODELS
from models import ApiToken
from models import AuditEntry
from models import Message
from models import Note
from models import Relationship
from models import User
from models import daily_counts

NEW_PASSWORD = "N3w-Secret-pass"
# Every admin URL, with <pk> as 1: the access tests cover routes added later too.
ADMIN_PATHS = sorted(
    rule.rule.replace("<pk>", "1")
    for rule in flask_app.url_map.iter_rules()
    if rule.endpoint.startswith("admin.") and rule.endpoint != "admin.static"
)


def audits(action=None):
    query = AuditEntry.select().order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(query)


@pytest.fixture
def as_user(client, app):
    """A client logged in as ``bob``, who is not an admin."""
    make_user("bob")
    login(client, "bob")
    return client


def page(client, path):
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


# --- Access: anonymous users and non-admins are refused everywhere ------------------


def test_only_admins_reach_any_admin_url(app, client):
    """Every admin URL, by GET and by POST (with a valid CSRF token): anonymous visitors
    are sent to log in, members are refused, and nothing changes. One login for all of
    them; without the token every POST is a 403 anyway (test_rules.py)."""
    make_message(make_user("alice"), "keep me")
    before = {model: list(model.select().tuples()) for model in MODELS}
    token = csrf_token(client, "/accounts/login/")
    for path in ADMIN_PATHS:
        for response in (client.get(path), client.post(path, data={"_csrf_token": token})):
            assert response.status_code == 302, path
            assert "/accounts/login/" in response.headers["Location"], path
    make_user("bob")
    login(client, "bob")
    token = csrf_token(client, "/settings/")
    data = {"action": "delete", "id": "1", "_csrf_token": token}
    for path in ADMIN_PATHS:
        assert client.get(path).status_code == 403, path
        assert client.post(path, data=data).status_code == 403, path
    del before[User]  # bob joined
    assert {model: list(model.select().tuples()) for model in before} == before


def test_login_redirect_keeps_the_query_string(client, app):
    # 4.0.1 formats next= as "b'...'" and loses the query (dc86e7e).
    location = client.get("/admin/message/?page=2").headers["Location"]
    assert "next=/admin/message/?page%3D2" in location


def test_admin_sees_every_list_page(as_admin):
    for admin_name in (
        "user",
        "message",
        "relationship",
        "note",
        "apitoken",
        "auditentry",
        "like",
        "repost",
        "notification",
    ):
        page(as_admin, f"/admin/{admin_name}/")
        page(as_admin, f"/admin/{admin_name}/export/")


# --- Users ----------------------------------------------------------------------------


def test_user_list_shows_columns_and_message_count(as_admin):
    alice = make_user("alice")
    for _ in range(3):
        make_message(alice)
    html = page(as_admin, "/admin/user/")
    for header in ("Username", "Email", "Join Date", "Active", "Admin", "Message Count"):
        assert f">{header}<" in html
    row = re.search(r"alice</a></td>(.*?)</tr>", html, re.S).group(1)
    assert "alice@example.com" in row and "<td>3</td>" in row


def test_user_search_by_username_and_email(as_admin):
    make_user("alice")
    make_user("carol", email="zebra@example.org")
    html = page(as_admin, "/admin/user/?q=ali")
    assert ">alice</a>" in html and ">carol</a>" not in html
    html = page(as_admin, "/admin/user/?q=zebra")
    assert ">carol</a>" in html and ">alice</a>" not in html


def test_user_filters_active_admin_and_join_date(as_admin):
    make_user("alice", active=False)
    make_user("old", join_date=datetime.datetime(2020, 1, 1))
    html = page(as_admin, "/admin/user/?fo_active=eq&fv_active=")
    assert ">alice</a>" in html and ">root</a>" not in html
    html = page(as_admin, "/admin/user/?fo_admin=eq&fv_admin=1")
    assert ">root</a>" in html and ">alice</a>" not in html
    html = page(as_admin, "/admin/user/?fo_join_date=lt&fv_join_date=2021-01-01T00:00")
    assert ">old</a>" in html and ">root</a>" not in html


def api_contents():
    """The contents of the messages an anonymous API client sees at /api/message/."""
    response = flask_app.test_client().get("/api/message/")
    assert response.status_code == 200
    return [message["content"] for message in response.get_json()["objects"]]


def test_bulk_deactivate_hides_messages_and_reactivate_shows_them(as_admin, root):
    alice, carol = make_user("alice"), make_user("carol")
    make_message(alice, "alice speaks")
    make_message(carol, "carol speaks")
    ids = [str(alice.id), str(carol.id)]
    response = admin_post(as_admin, "/admin/user/", {"action": "deactivate", "id": ids})
    assert response.status_code == 302
    assert not User.get_by_id(alice.id).active and not User.get_by_id(carol.id).active
    assert Message.visible().count() == 0
    public = as_admin.get("/public/").get_data(as_text=True)
    assert "alice speaks" not in public and "carol speaks" not in public
    assert api_contents() == []
    entry = audits("deactivate")[0]
    assert entry.actor.id == root.id and entry.model_name == "User"
    assert entry.object_id == f"{alice.id},{carol.id}"
    assert json.loads(entry.changes) == {"active": [True, False]}

    admin_post(as_admin, "/admin/user/", {"action": "reactivate", "id": ids})
    assert Message.visible().count() == 2
    assert "alice speaks" in as_admin.get("/public/").get_data(as_text=True)
    assert sorted(api_contents()) == ["alice speaks", "carol speaks"]
    assert len(audits("reactivate")) == 1


def test_bulk_action_refuses_non_integer_ids(as_admin):
    response = admin_post(
        as_admin, "/admin/user/", {"action": "deactivate", "id": ["1", "x", "9" * 30]}
    )
    assert response.status_code == 302
    assert User.select().where(User.active == False).count() == 0  # noqa: E712


def test_non_admin_cannot_run_bulk_actions(as_user):
    alice = make_user("alice")
    response = admin_post(as_user, "/admin/user/", {"action": "deactivate", "id": str(alice.id)})
    assert response.status_code == 403
    assert User.get_by_id(alice.id).active


def user_form(user, **changes):
    data = {
        "username": user.username,
        "email": user.email,
        "join_date": user.join_date.strftime("%Y-%m-%d %H:%M:%S"),
        "active": "1" if user.active else "",
        "admin": "1" if user.admin else "",
        "new_password": "",
        "save": "1",
    }
    data.update(changes)
    return data


def test_user_edit_page_never_shows_the_password_hash(as_admin):
    # 4.0.1 renders the hash in a type="text" input on the edit page.
    alice = make_user("alice")
    html = page(as_admin, f"/admin/user/{alice.id}/")
    assert alice.password not in html
    assert 'name="password"' not in html
    assert re.search(
        r'<input[^>]*name="new_password"[^>]*type="password"|'
        r'<input[^>]*type="password"[^>]*name="new_password"',
        html,
    )


def test_new_password_is_never_written_in_plaintext(as_admin):
    # 4.0.1 saves the plaintext, then hashes it in a second UPDATE (S3).
    alice = make_user("alice")
    data = user_form(alice, new_password=NEW_PASSWORD, _csrf_token=csrf_token(as_admin, "/admin/"))
    with count_queries() as queries:
        response = as_admin.post(f"/admin/user/{alice.id}/", data=data)
    assert response.status_code == 302
    statements = [repr(record.msg) for record in queries.get_queries()]
    assert any("UPDATE" in sql for sql in statements)
    assert not any(NEW_PASSWORD in sql for sql in statements)
    stored = User.get_by_id(alice.id).password
    assert stored != NEW_PASSWORD and NEW_PASSWORD not in stored
    assert User.get_by_id(alice.id).check_password(NEW_PASSWORD)
    entry = audits("edit")[-1]
    assert json.loads(entry.changes) == {"password": ["(hidden)", "(hidden)"]}
    assert NEW_PASSWORD not in entry.changes


def test_user_admin_is_ours_not_register_admin(app):
    # auth.register_admin() would wrap the class and replace save_model (S3).
    assert type(admin[User]) is admin_module.UserAdmin


def test_edit_without_new_password_keeps_the_password(as_admin):
    alice = make_user("alice")
    response = admin_post(as_admin, f"/admin/user/{alice.id}/", user_form(alice, email="a2@x.org"))
    assert response.status_code == 302
    alice = User.get_by_id(alice.id)
    assert alice.email == "a2@x.org" and alice.check_password(PASSWORD)
    assert json.loads(audits("edit")[-1].changes) == {"email": ["alice@example.com", "a2@x.org"]}


def test_add_user_hashes_password_and_requires_one(as_admin):
    fields = {"username": "dave", "email": "dave@x.org", "join_date": "2026-01-01 10:00:00",
              "active": "1", "admin": "", "save": "1"}  # fmt: skip
    response = admin_post(as_admin, "/admin/user/add/", fields)
    assert response.status_code == 200 and not User.select().where(User.username == "dave")
    with count_queries() as queries:
        admin_post(as_admin, "/admin/user/add/", {**fields, "new_password": NEW_PASSWORD})
    assert not any(NEW_PASSWORD in repr(q.msg) for q in queries.get_queries())
    dave = User.get(User.username == "dave")
    assert dave.check_password(NEW_PASSWORD)
    assert audits("create")[-1].object_id == str(dave.id)


def test_delete_user_with_messages_keeps_the_audit_trail(as_admin):
    alice = make_user("alice")
    make_message(alice)
    alice.follow(make_user("carol"))
    ApiToken.issue(alice, "laptop")
    entry = AuditEntry.create(actor=alice, action="edit", model_name="User")
    assert admin_post(as_admin, "/admin/user/delete/", {"id": str(alice.id)}).status_code == 302
    assert not User.get_or_none(User.id == alice.id) and Message.select().count() == 0
    assert AuditEntry.get_by_id(entry.id).actor is None
    deleted = json.loads(audits("delete")[-1].changes)
    assert deleted["username"] == ["alice", None] and deleted["password"] == ["(hidden)"] * 2


def test_delete_confirmation_lists_the_first_dependents_and_counts_the_rest(as_admin):
    alice = make_user("alice")
    shown = admin_module.DEPENDENTS_SHOWN
    Message.insert_many(
        [{"user": alice.id, "content": f"note {n}"} for n in range(shown + 5)]
    ).execute()
    alice.follow(make_user("carol"))
    html = page(as_admin, f"/admin/user/delete/?id={alice.id}")
    assert len(re.findall(r">note \d+<", html)) == shown
    assert f"… {shown + 5} Message rows in all" in html
    assert "Relationship" in html and "Relationship rows in all" not in html  # all shown


def test_lists_cannot_filter_or_sort_on_password_hashes(as_admin):
    # flask-peewee offers every column of every related model as a filter by default (N1).
    alice, carol = make_user("alice"), make_user("carol")
    make_message(alice, "first")
    make_message(carol, "second")
    prefix = min(alice.password, carol.password)[:30]
    query = f"fr_user-fo_password=startswith&fr_user-fv_password={prefix}"
    html = page(as_admin, f"/admin/message/?{query}")
    assert "first" in html and "second" in html
    html = page(as_admin, f"/admin/user/?fo_password=startswith&fv_password={prefix}")
    assert ">alice</a>" in html and ">carol</a>" in html
    default = page(as_admin, "/admin/user/")
    alice_first = default.index(">alice</a>") < default.index(">carol</a>")
    # Ascending or descending, one of the two would differ from the default if it sorted.
    for ordering in ("password", "-password"):
        by_hash = page(as_admin, f"/admin/user/?ordering={ordering}")
        assert (by_hash.index(">alice</a>") < by_hash.index(">carol</a>")) == alice_first


# --- Messages -------------------------------------------------------------------------


def test_message_list_shows_author_excerpt_date_and_what_a_reply_answers(as_admin):
    alice = make_user("alice")
    first = make_message(alice, "x" * 100)
    alice.reply(first, "an answer")
    alice.reply(make_message(alice, "gone soon"), "an orphan")
    Message.get(Message.content == "gone soon").delete_instance()
    html = page(as_admin, "/admin/message/")
    assert ">Excerpt<" in html and ">User<" in html and ">Pub Date<" in html
    assert "x" * 59 + "…" in html and "x" * 61 not in html
    assert "<td>alice</td>" in html
    row = r"{}</a></td>\s*<td>alice</td>\s*<td>[^<]*</td>\s*<td>{}</td>"
    assert re.search(row.format("an answer", first.id), html)
    assert re.search(row.format("an orphan", "deleted"), html)


def test_message_search_in_content_and_author(as_admin):
    alice, carol = make_user("alice"), make_user("carol")
    make_message(alice, "about tomatoes")
    make_message(carol, "about potatoes")
    html = page(as_admin, "/admin/message/?q=tomat")
    assert "tomatoes" in html and "potatoes" not in html
    html = page(as_admin, "/admin/message/?q=carol")
    assert "potatoes" in html and "tomatoes" not in html


def test_message_filter_by_author_and_date_range(as_admin):
    alice, carol = make_user("alice"), make_user("carol")
    make_message(alice, "early", pub_date=datetime.datetime(2026, 1, 1, 23, 0))
    make_message(alice, "middle", pub_date=datetime.datetime(2026, 1, 2, 12, 0))
    make_message(carol, "carols", pub_date=datetime.datetime(2026, 1, 2, 13, 0))
    html = page(as_admin, f"/admin/message/?fo_user=eq&fv_user={carol.id}")
    assert "carols" in html and "middle" not in html
    html = page(as_admin, "/admin/message/?fr_user-fo_username=eq&fr_user-fv_username=alice")
    assert "middle" in html and "carols" not in html
    # A range whose start is on a day boundary: "2026-01-02T00:00" must exclude 1 Jan 23:00.
    query = (
        "fo_pub_date=gte&fv_pub_date=2026-01-02T00:00&fo_pub_date=lt&fv_pub_date=2026-01-02T12:30"
    )
    html = page(as_admin, f"/admin/message/?{query}")
    assert "middle" in html and "early" not in html and "carols" not in html


def test_bad_filter_value_is_ignored_not_a_500(as_admin):
    make_message(make_user("alice"))
    html = page(as_admin, "/admin/message/?fo_user=eq&fv_user=abc&fo_pub_date=gte&fv_pub_date=nope")
    assert "hello" in html  # the filters were dropped, not applied
    # PostgreSQL refuses a non-number or a number beyond its integer type as an id.
    page(as_admin, f"/admin/message/?fo_user=eq&fv_user={2**64}&fo_id=lt&fv_id=x")


def test_author_that_is_no_id_is_a_form_error_not_a_500(as_admin):
    data = {"user": "abc", "content": "from admin", "pub_date": "2026-01-01 10:00:00"}
    response = admin_post(as_admin, "/admin/message/add/", {**data, "save": "1"})
    assert response.status_code == 200 and not Message.select().exists()


def test_message_form_picks_the_author_by_username(as_admin):
    alice = make_user("alice")
    html = page(as_admin, "/admin/message/add/")
    assert 'type="hidden"' in html and 'data-raw-id-field="user"' in html
    found = as_admin.get("/admin/message/_ajax/?field=user&query=ali").get_json()
    assert found["object_list"] == [{"id": alice.id, "repr": "alice"}]


def test_ajax_lookup_with_unknown_field_is_400(as_admin):
    # 4.0.1 answers these with a 500 (dc86e7e).
    assert as_admin.get("/admin/message/_ajax/").status_code == 400
    assert as_admin.get("/admin/relationship/_ajax/?field=created_date").status_code == 400


def test_add_and_edit_message(as_admin):
    alice = make_user("alice")
    data = {"user": str(alice.id), "content": "from admin", "pub_date": "2026-01-01 10:00:00"}
    assert admin_post(as_admin, "/admin/message/add/", {**data, "save": "1"}).status_code == 302
    message = Message.get(Message.content == "from admin")
    response = admin_post(as_admin, f"/admin/message/{message.id}/", {**data, "content": "edited"})
    assert response.status_code == 302 and Message.get_by_id(message.id).content == "edited"
    assert [e.action for e in audits()] == ["create", "edit"]
    assert json.loads(audits()[-1].changes) == {"content": ["from admin", "edited"]}


def test_bulk_delete_messages_is_audited(as_admin):
    alice = make_user("alice")
    messages = [make_message(alice, f"m{i}") for i in range(3)]
    ids = [str(m.id) for m in messages[:2]]
    confirm = page(as_admin, f"/admin/message/delete/?id={ids[0]}&id={ids[1]}")
    assert "m0" in confirm and "m1" in confirm
    assert admin_post(as_admin, "/admin/message/delete/", {"id": ids}).status_code == 302
    assert [m.content for m in Message.select()] == ["m2"]
    deleted = audits("delete")
    assert sorted(e.object_id for e in deleted) == sorted(ids)
    assert sorted(json.loads(e.changes)["content"] for e in deleted) == [["m0", None], ["m1", None]]


def test_delete_refuses_non_integer_ids(as_admin):
    response = admin_post(as_admin, "/admin/message/delete/", {"id": ["1 OR 1=1"]})
    assert response.status_code == 302
    assert as_admin.get("/admin/message/delete/?id=x").status_code == 302


def test_non_admin_cannot_delete_messages(as_user):
    message = make_message(make_user("alice"))
    assert admin_post(as_user, "/admin/message/delete/", {"id": str(message.id)}).status_code == 403
    assert Message.get_or_none(Message.id == message.id)


# --- Relationships, notes, tokens ---------------------------------------------------


def test_relationships_list_filter_and_edit(as_admin):
    alice, carol, dave = make_user("alice"), make_user("carol"), make_user("dave")
    alice.follow(carol)
    dave.follow(carol)
    html = page(as_admin, "/admin/relationship/")
    assert "<td>carol</td>" in html and ">alice</a>" in html
    html = page(as_admin, f"/admin/relationship/?fo_from_user=eq&fv_from_user={dave.id}")
    assert ">dave</a>" in html and ">alice</a>" not in html
    rel = Relationship.get(Relationship.from_user == alice)
    data = {"from_user": str(alice.id), "to_user": str(dave.id), "created_date": "2026-01-01"}
    assert admin_post(as_admin, f"/admin/relationship/{rel.id}/", data).status_code == 302
    assert Relationship.get_by_id(rel.id).to_user.id == dave.id


def test_notes_list_filter_and_edit(as_admin, root):
    alice = make_user("alice", admin=True)
    note = Note.create(user=root, message="root note")
    Note.create(user=alice, message="alice note")
    html = page(as_admin, f"/admin/note/?fo_user=eq&fv_user={alice.id}")
    assert "alice note" in html and "root note" not in html and "<td>live</td>" in html
    data = {"user": str(root.id), "message": "edited", "status": "2", "created_date": "2026-01-01"}
    assert admin_post(as_admin, f"/admin/note/{note.id}/", data).status_code == 302
    assert Note.get_by_id(note.id).status == Note.DELETED


def test_api_tokens_never_show_the_hash_and_cannot_be_added(as_admin):
    token, _ = ApiToken.issue(make_user("alice"), "laptop")
    for path in ("/admin/apitoken/", f"/admin/apitoken/{token.id}/", "/admin/apitoken/export/"):
        html = page(as_admin, path)
        assert token.token_hash not in html and "token_hash" not in html
    assert as_admin.get("/admin/apitoken/add/").status_code == 403
    assert admin_post(as_admin, f"/admin/apitoken/{token.id}/", {"name": "x"}).status_code == 403
    assert admin_post(as_admin, "/admin/apitoken/delete/", {"id": str(token.id)}).status_code == 302
    assert ApiToken.select().count() == 0
    assert token.token_hash not in audits("delete")[0].changes


# --- One query per page, not per row (N6) ---------------------------------------------


def list_queries(client, path):
    with count_queries() as queries:
        page(client, path)
    return queries.count


@pytest.mark.parametrize(
    "path", ["/admin/user/", "/admin/message/", "/admin/relationship/", "/admin/note/",
             "/admin/apitoken/", "/admin/auditentry/"]
)  # fmt: skip
def test_list_pages_do_not_query_per_row(as_admin, root, path):
    def add_rows(start, count):
        for i in range(start, start + count):
            person = make_user(f"u{i}")
            make_message(person)
            person.follow(root)
            Note.create(user=person, message="n")
            ApiToken.issue(person, "t")
            AuditEntry.create(actor=person, action="edit", model_name="User")

    add_rows(0, 2)
    few = list_queries(as_admin, path)
    add_rows(2, 10)
    assert list_queries(as_admin, path) == few


def counts_in(queries):
    """The SQL of the COUNT queries among ``queries`` (a count_queries context)."""
    return [record.msg[0] for record in queries.get_queries() if "COUNT" in record.msg[0]]


@pytest.mark.parametrize("path", ["/admin/message/", "/admin/message/export/"])
def test_list_totals_stop_counting_at_the_cap(as_admin, root, monkeypatch, path):
    # At a million messages a COUNT(*) of the list cost more than the page: the
    # list's and the export's totals count at most one row past their cap ("2+").
    monkeypatch.setattr("admin.COUNT_CAP", 2)
    monkeypatch.setattr("admin.MAX_EXPORT_ROWS", 2)
    for number in range(4):
        make_message(root, f"m{number}")
    with count_queries() as queries:
        html = page(as_admin, path)
    assert "(2+)" in html or "Currently 2+ records" in html
    bounded = re.compile(r'SELECT COUNT\(1\) FROM \(SELECT .* LIMIT (\?|%s)\) AS "_wrapped".*')
    assert queries.count <= 6
    assert all(bounded.fullmatch(sql) for sql in counts_in(queries)), counts_in(queries)


def test_dashboard_totals_per_model_stop_at_the_cap(as_admin, root, monkeypatch):
    monkeypatch.setattr("admin.COUNT_CAP", 2)
    for number in range(4):
        make_message(root, f"m{number}")
    html = page(as_admin, "/admin/")
    cell = re.search(r"/admin/message/\">Message</a></td>\s*<td[^>]*>([^<]*)</td>", html)
    assert cell.group(1) == "2+"


def test_user_pickers_do_not_render_every_user(as_admin, root):
    # Filters offer the first few users and look others up by name (ajax); add forms pick
    # by username: a <select> of all 10 000 users would grow each page with the table.
    for number in range(25):
        User.create(username=f"person{number:02}", email=f"p{number}@example.com", password="!")
    html = page(as_admin, "/admin/message/")
    assert "person00" in html and "person24" not in html
    assert html.count(">person") <= 20
    for path in ("/admin/message/add/", "/admin/relationship/add/", "/admin/note/add/"):
        assert "person" not in page(as_admin, path)


# --- Export -------------------------------------------------------------------------


def export(client, path, fields, export_format="json"):
    return admin_post(client, path, {"fields": fields, "format": export_format})


def test_json_export_honours_filters_and_search(as_admin):
    alice, carol = make_user("alice"), make_user("carol")
    make_message(alice, "tomato soup")
    make_message(alice, "potato soup")
    make_message(carol, "tomato salad")
    path = "/admin/message/export/?fr_user-fo_username=eq&fr_user-fv_username=alice&q=tomato"
    response = export(as_admin, path, ["content", "user", "user__username"])
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.get_json() == [
        {"content": "tomato soup", "user": alice.id, "user__username": "alice"}
    ]


def test_exports_stream_and_stop_at_the_cap(as_admin, monkeypatch):
    alice = make_user("alice")
    for number in range(5):
        make_message(alice, f"message {number}")
    monkeypatch.setattr("models.MAX_EXPORT_ROWS", 3)
    response = export(as_admin, "/admin/message/export/", ["content"])
    assert response.is_streamed
    assert len(response.get_json()) == 3
    assert response.headers["X-Chirp-Export-Truncated"] == "3"
    response = export(as_admin, "/admin/message/export/", ["content"], "csv")
    assert len(list(csv.reader(io.StringIO(response.get_data(as_text=True))))) == 1 + 3
    monkeypatch.setattr("models.MAX_EXPORT_ROWS", 5)
    response = export(as_admin, "/admin/message/export/", ["content"])
    assert len(response.get_json()) == 5 and "X-Chirp-Export-Truncated" not in response.headers


def test_csv_export_honours_filters_and_selection(as_admin):
    alice, carol = make_user("alice"), make_user("carol", active=False)
    response = export(as_admin, "/admin/user/export/?fo_active=eq&fv_active=1", ["username"], "csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["username"] and sorted(rows[1:]) == [["alice"], ["root"]]
    response = export(as_admin, f"/admin/user/export/?id={carol.id}", ["username", "email"], "csv")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows == [["username", "email"], ["carol", "carol@example.com"]]
    assert alice.username not in response.get_data(as_text=True)


def test_csv_export_defuses_spreadsheet_formulas(as_admin):
    make_message(make_user("alice"), '=HYPERLINK("http://evil")')
    response = export(as_admin, "/admin/message/export/", ["content"], "csv")
    assert "'=HYPERLINK" in response.get_data(as_text=True)


def test_export_with_relationship_follower_and_followed(as_admin):
    # 4.0.1 joins two foreign keys to one model only once (cd32a7f).
    alice, carol = make_user("alice"), make_user("carol")
    alice.follow(carol)
    fields = ["from_user__username", "to_user__username"]
    response = export(as_admin, "/admin/relationship/export/", fields)
    assert response.get_json() == [{"from_user__username": "alice", "to_user__username": "carol"}]


def test_export_with_no_fields_dumps_nothing(as_admin):
    # 4.0.1 exports every column, password hashes included, when no field is chosen (S4).
    alice = make_user("alice")
    for fields in ([], ["password"], ["nonsense"]):
        response = export(as_admin, "/admin/user/export/", fields)
        assert response.status_code == 302
        assert alice.password not in response.get_data(as_text=True)
    assert "Choose at least one field" in page(as_admin, "/admin/user/export/")


@pytest.mark.parametrize("export_format", ["json", "csv"])
def test_export_never_includes_password_or_token_hashes(as_admin, export_format):
    alice = make_user("alice")
    token, _ = ApiToken.issue(alice, "laptop")
    make_message(alice)
    everything = ["id", "username", "email", "password", "join_date", "active", "admin"]
    body = export(as_admin, "/admin/user/export/", everything, export_format).get_data(True)
    assert "alice" in body and alice.password not in body and "password" not in body
    fields = ["content", "user__password", "user__username", "user__email"]
    body = export(as_admin, "/admin/message/export/", fields, export_format).get_data(True)
    assert "alice" in body and alice.password not in body and "password" not in body
    fields = ["name", "token_hash", "user__username", "user__password"]
    body = export(as_admin, "/admin/apitoken/export/", fields, export_format).get_data(True)
    assert "laptop" in body and token.token_hash not in body and alice.password not in body
    assert "password" not in page(as_admin, "/admin/message/export/")


def test_export_with_bad_id_is_refused_not_a_500(as_admin):
    response = export(as_admin, "/admin/user/export/?id=x", ["username"])
    assert response.status_code == 302 and "/export/" not in response.headers["Location"]
    assert as_admin.get("/admin/user/export/?id=1&id=-1").status_code == 302


def test_non_admin_cannot_export(as_user):
    assert export(as_user, "/admin/user/export/", ["username"]).status_code == 403


# --- Dashboard panels ------------------------------------------------------------------


def test_notes_panel_posts_and_lists_notes(as_admin, root):
    assert (
        admin_post(as_admin, "/admin/notes/create/", {"message": "  check spam  "}).status_code
        == 302
    )
    note = Note.get()
    assert note.message == "check spam" and note.user.id == root.id
    assert "check spam" in page(as_admin, "/admin/")
    assert audits("create")[-1].model_name == "Note"


def test_notes_panel_refuses_empty_or_long_notes(as_admin):
    admin_post(as_admin, "/admin/notes/create/", {"message": "   "})
    admin_post(as_admin, "/admin/notes/create/", {"message": "x" * 1001})
    assert Note.select().count() == 0
    assert "A note must be at most 1000 characters long (it has 1001)." in page(as_admin, "/admin/")


def test_notes_panel_needs_an_admin(as_user):
    assert admin_post(as_user, "/admin/notes/create/", {"message": "hi"}).status_code == 403
    assert Note.select().count() == 0


def test_stats_panel_draws_an_svg_chart_and_totals(as_admin):
    alice = make_user("alice")
    make_message(alice)
    make_message(alice)
    make_message(alice, pub_date=datetime.datetime.now() - datetime.timedelta(days=40))
    html = page(as_admin, "/admin/")
    assert "Site stats" in html and "<svg" in html and "<rect" in html
    assert "Messages per day, last 30 days (2)" in html
    assert "Sign-ups per day, last 30 days (2)" in html
    assert re.search(r"<dt>Messages</dt><dd[^>]*>3</dd>", html)
    today = datetime.date.today().isoformat()
    assert f"<title>{today}: 2</title>" in html


def test_daily_counts_fills_empty_days(app):
    make_user("alice", join_date=datetime.datetime(2026, 3, 10, 23, 59))
    make_user("carol", join_date=datetime.datetime(2026, 3, 10, 0, 0))
    make_user("dave", join_date=datetime.datetime(2026, 3, 1))
    series = daily_counts(User.join_date, days=3, today=datetime.date(2026, 3, 11))
    assert series == [
        (datetime.date(2026, 3, 9), 0),
        (datetime.date(2026, 3, 10), 2),
        (datetime.date(2026, 3, 11), 0),
    ]


def test_bar_chart_scales_the_tallest_bar_to_full_height():
    template = flask_app.jinja_env.get_template("admin/panels/bar_chart.html")
    series = [(datetime.date(2026, 1, 1), 0), (datetime.date(2026, 1, 2), 4)]
    svg = str(template.module.bar_chart("Messages", "messages", series, 2, width=100, height=50))
    bar = r'<rect class="admin-chart-bar" x="(.*?)" y="(.*?)" width="(.*?)" height="(.*?)"'
    bars = re.findall(bar + r".*?<title>(.*?)<", svg)
    assert bars == [("5.0", "50.0", "40.0", "0.0", "2026-01-01: 0"),
                    ("55.0", "0.0", "40.0", "50.0", "2026-01-02: 4")]  # fmt: skip
    assert "<rect" not in str(template.module.bar_chart("Messages", "messages", [], 30))


# --- Audit trail ---------------------------------------------------------------------


def test_audit_trail_is_listed_and_read_only(as_admin, root):
    alice = make_user("alice")
    admin_post(as_admin, "/admin/user/", {"action": "deactivate", "id": str(alice.id)})
    entry = audits()[0]
    html = page(as_admin, "/admin/auditentry/")
    assert "<td>deactivate</td>" in html and "<td>root</td>" in html
    detail = page(as_admin, f"/admin/auditentry/{entry.id}/")
    assert "True → False" in detail and "deactivate" in detail
    assert as_admin.get("/admin/auditentry/add/").status_code == 403
    assert (
        admin_post(as_admin, f"/admin/auditentry/{entry.id}/", {"action": "forged"}).status_code
        == 403
    )
    assert (
        admin_post(as_admin, "/admin/auditentry/delete/", {"id": str(entry.id)}).status_code == 403
    )
    assert AuditEntry.get_by_id(entry.id).action == "deactivate"
    assert "Add new" not in html and 'value="delete"' not in html


def test_audit_trail_is_not_for_non_admins(as_user):
    assert as_user.get("/admin/auditentry/").status_code == 403


# --- Strict Content-Security-Policy: no inline script, style or handlers ------------


def test_admin_pages_need_no_inline_script_or_style(as_admin, root):
    alice = make_user("alice")
    message = make_message(alice)
    Note.create(user=root, message="n")
    paths = ["/admin/", f"/admin/user/{alice.id}/", "/admin/user/add/", "/admin/message/add/",
             f"/admin/message/{message.id}/", f"/admin/message/delete/?id={message.id}",
             "/admin/auditentry/1/"]  # fmt: skip
    admin_post(as_admin, f"/admin/note/{Note.get().id}/", {"message": "x", "user": str(root.id)})
    for name in ("user", "message", "relationship", "note", "apitoken", "auditentry"):
        paths += [f"/admin/{name}/?fo_id=eq&fv_id=1", f"/admin/{name}/export/"]
    for path in paths:
        html = page(as_admin, path)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_lists_show_the_newest_rows_first(client):
    admin_user = make_user("root", admin=True)
    now = datetime.datetime.now()
    for age, content in ((3, "oldest words"), (1, "newest words"), (2, "middle words")):
        make_message(admin_user, content, pub_date=now - datetime.timedelta(hours=age))
    login(client, "root")
    body = client.get("/admin/message/").get_data(as_text=True)
    assert body.index("newest words") < body.index("middle words") < body.index("oldest words")
    newest = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert f"<td>{newest}</td>" in body
