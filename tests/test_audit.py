"""The admin and the audit trail (docs/security.md): admin writes through the API are
audited like the admin's, nobody locks themself out, the trail outlives its actors, and
saving a row changes only what the admin changed."""

import datetime
import json

import pytest
from conftest import admin_post
from conftest import login
from conftest import make_message
from conftest import make_user
from conftest import post

from models import ApiToken
from models import AuditEntry
from models import Message
from models import Note
from models import User


@pytest.fixture
def token(root):
    return {"Authorization": f"Bearer {ApiToken.issue(root, 'admin')[1]}"}


def entries():
    return [
        (e.actor_name, e.action, e.model_name, e.object_id, json.loads(e.changes))
        for e in AuditEntry.select().order_by(AuditEntry.id)
    ]


def test_admin_writes_through_the_api_are_audited_like_the_admins(client, root, token):
    created = client.post("/api/user/", json={"username": "dan", "email": "d@x.org"}, headers=token)
    dan = created.get_json()["id"]
    client.put(f"/api/user/{dan}/", json={"email": "dan@x.org"}, headers=token)
    note = client.post("/api/note/", json={"message": "watch dan"}, headers=token).get_json()
    client.put(f"/api/note/{note['id']}/", json={"status": Note.DELETED}, headers=token)
    client.delete(f"/api/note/{note['id']}/", headers=token)
    client.delete(f"/api/user/{dan}/", headers=token)
    log = entries()
    assert [(a, b, c, d) for a, b, c, d, _ in log] == [
        ("root", "create", "User", str(dan)),
        ("root", "edit", "User", str(dan)),
        ("root", "create", "Note", str(note["id"])),
        ("root", "edit", "Note", str(note["id"])),
        ("root", "delete", "Note", str(note["id"])),
        ("root", "delete", "User", str(dan)),
    ]
    assert log[1][4] == {"email": ["d@x.org", "dan@x.org"]}
    assert log[0][4]["password"] == ["(hidden)", "(hidden)"]
    assert log[3][4] == {"status": [Note.LIVE, Note.DELETED]}


def test_an_api_write_and_its_audit_entry_commit_together(client, root, token, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the audit trail is down")

    monkeypatch.setattr(AuditEntry, "record", fail)
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = client.post("/api/note/", json={"message": "unaudited"}, headers=token)
    finally:
        client.application.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500 and Note.select().count() == 0


def test_the_trail_keeps_who_acted_after_the_account_is_deleted(client, as_admin, root, token):
    other = make_user("other_admin", admin=True)
    alice = make_user("alice")
    admin_post(as_admin, "/admin/user/", {"action": "deactivate", "id": [alice.id]})
    root_token = token
    client.delete(f"/api/user/{other.id}/", headers=root_token)
    login(client, "other_admin")  # gone: cannot log in; the trail still names root
    root_id = root.id
    AuditEntry.update(actor=None).where(AuditEntry.actor == root_id).execute()
    User.delete().where(User.id == root_id).execute()
    names = {e.actor_name for e in AuditEntry.select()}
    assert names == {"root"} and all(e.actor_id is None for e in AuditEntry.select())
    page = client.application.test_client()
    make_user("boss", admin=True)
    login(page, "boss")
    html = page.get("/admin/auditentry/").get_data(as_text=True)
    assert "root (deleted)" in html


def test_saving_a_row_unchanged_changes_nothing_and_audits_no_change(as_admin, root):
    alice = make_user("alice")
    message = make_message(alice, "to the microsecond")
    stamp = datetime.datetime(2026, 11, 20, 12, 30, 15, 123456)
    Message.update(pub_date=stamp).where(Message.id == message.id).execute()
    User.update(join_date=stamp).where(User.id == alice.id).execute()
    form = {
        "user": alice.id,
        "content": "to the microsecond",
        "pub_date-date": "2026-11-20",
        "pub_date-time": "12:30:15",
        "in_reply_to": "__None",
        "is_reply": "",
        "reply_count": "0",
        "like_count": "0",
        "repost_count": "0",
    }
    assert admin_post(as_admin, f"/admin/message/{message.id}/", form).status_code == 302
    user_form = {
        "username": "alice",
        "email": alice.email,
        "join_date-date": "2026-11-20",
        "join_date-time": "12:30:15",
        "active": "1",
        "new_password": "",
    }
    assert admin_post(as_admin, f"/admin/user/{alice.id}/", user_form).status_code == 302
    assert Message.get_by_id(message.id).pub_date == stamp
    assert User.get_by_id(alice.id).join_date == stamp
    assert [changes for *_, changes in entries()] == [{}, {}]
    form["pub_date-date"] = "2026-11-21"  # a real change is saved and audited
    admin_post(as_admin, f"/admin/message/{message.id}/", form)
    assert entries()[-1][4] == {"pub_date": [str(stamp), "2026-11-21 12:30:15"]}


# ---------------------------------------------------------------- exports


def export(client, path, fields, export_format="csv"):
    data = {"fields": fields, "format": export_format}
    return post(client, path, data, token_from="/admin/")


@pytest.mark.parametrize(
    "content",
    [
        '＝HYPERLINK("http://evil")',  # full-width equals sign
        "＋1+cmd|' /C calc'!A0",
        "－2+3",
        "＠SUM(A1)",
        "﹦1+1",  # small equals sign
        " =1+1",  # after white space
        "\u200b=1+1",  # after a zero-width space (kept by a CSV, dropped by a spreadsheet)
        "\u2212 1+1",  # minus sign
    ],
)
def test_csv_export_defuses_formulas_in_every_disguise(as_admin, content):
    alice = make_user("alice")
    Message.insert(user=alice, content=content).execute()  # rows from before the text rule
    response = export(as_admin, "/admin/message/export/", ["content"])
    cell = response.get_data(as_text=True).splitlines()[1]
    assert cell.lstrip('"').startswith("'"), cell


def test_csv_export_leaves_ordinary_text_alone(as_admin):
    make_message(make_user("alice"), "a-b = c")
    response = export(as_admin, "/admin/message/export/", ["content"])
    assert response.get_data(as_text=True).splitlines()[1] == "a-b = c"


def test_the_export_page_counts_the_rows_the_export_will_hold(as_admin):
    alice = make_user("alice")
    for content in ("tomato soup", "potato soup", "tomato salad"):
        make_message(alice, content)
    html = as_admin.get("/admin/message/export/?q=tomato").get_data(as_text=True)
    assert "Currently 2 records" in html
    html = as_admin.get("/admin/message/export/?q=tomato&id=1").get_data(as_text=True)
    assert "Currently 1 records" in html


def test_exports_are_audited_with_who_what_and_which_filters(as_admin, root):
    make_message(make_user("alice"), "tomato")
    export(as_admin, "/admin/message/export/?q=tomato", ["content", "user__username"], "json")
    (entry,) = [e for e in entries() if e[1] == "export"]
    assert entry == (
        "root",
        "export",
        "Message",
        "",
        {"fields": "content, user__username", "format": "json", "filters": "q=tomato"},
    )
    detail = as_admin.get(f"/admin/auditentry/{AuditEntry.get().id}/").get_data(as_text=True)
    assert "q=tomato" in detail
