"""Sessions end for real (docs/security.md, "Sessions and credentials").

Each test copies a session cookie, as a thief would, before the event that must end it
(logout, a password change, a deactivation, "log out everywhere") and proves the copy is
logged out afterwards, while the session that acted stays logged in where it should.
"""

import sqlite3

import pytest
from conftest import PASSWORD
from conftest import login
from conftest import make_user
from conftest import post
from peewee import SqliteDatabase

from models import User
from models import migration_runner

NEW_PASSWORD = "a-brand-new-password"
MIGRATION = "0003_session_token"


def device(app, username=None):
    """Return a new test client (another browser), logged in as ``username`` if given."""
    client = app.test_client()
    if username is not None:
        assert login(client, username).status_code == 302
    return client


def stolen_copy(app, client):
    """Return a new client holding a copy of ``client``'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def is_logged_in(client):
    """Return True if ``client``'s session opens /settings/ (else it is sent to log in)."""
    response = client.get("/settings/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def settings_form(**changes):
    """The /settings/ form for alice, with ``changes``."""
    data = {
        "email": "alice@example.com",
        "new_password": "",
        "confirm": "",
        "current_password": PASSWORD,
    }
    data.update(changes)
    return data


def test_logout_ends_this_session_and_every_copy_and_other_device(app, alice):
    laptop, phone = device(app, "alice"), device(app, "alice")
    thief = stolen_copy(app, laptop)
    assert is_logged_in(thief)

    response = post(laptop, "/accounts/logout/", token_from="/settings/")

    assert response.status_code == 302
    assert not is_logged_in(laptop)
    assert not is_logged_in(thief)
    assert not is_logged_in(phone)


def test_a_password_change_in_settings_ends_other_sessions_but_not_this_one(app, alice):
    laptop, phone = device(app, "alice"), device(app, "alice")
    thief = stolen_copy(app, laptop)

    data = settings_form(new_password=NEW_PASSWORD, confirm=NEW_PASSWORD)
    response = post(laptop, "/settings/", data, token_from="/settings/")

    assert response.status_code == 302
    assert is_logged_in(laptop)
    assert not is_logged_in(thief)
    assert not is_logged_in(phone)
    assert User.get_by_id(alice.id).check_password(NEW_PASSWORD)


def test_changing_only_the_email_leaves_sessions_alone(app, alice):
    laptop, phone = device(app, "alice"), device(app, "alice")
    response = post(laptop, "/settings/", settings_form(email="a2@example.com"), "/settings/")
    assert response.status_code == 302
    assert is_logged_in(laptop) and is_logged_in(phone)


def test_log_out_everywhere_ends_every_other_session(app, alice):
    laptop, phone = device(app, "alice"), device(app, "alice")
    thief = stolen_copy(app, laptop)
    bob = make_user("bob")
    bobs_laptop = device(app, "bob")

    response = post(laptop, "/settings/sessions/end/", token_from="/settings/")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/settings/")
    assert "logged out everywhere else" in laptop.get("/settings/").get_data(as_text=True)
    assert is_logged_in(laptop)
    assert not is_logged_in(thief)
    assert not is_logged_in(phone)
    assert is_logged_in(bobs_laptop), "another user's sessions are untouched"
    assert bob.session_token == User.get_by_id(bob.id).session_token


def test_settings_offer_the_log_out_everywhere_button(app, alice):
    html = device(app, "alice").get("/settings/").get_data(as_text=True)
    assert 'action="/settings/sessions/end/"' in html
    assert "Log out everywhere" in html


def test_log_out_everywhere_needs_a_session_a_post_and_the_csrf_token(app, alice):
    anonymous = device(app)
    response = post(anonymous, "/settings/sessions/end/")
    assert response.status_code == 302
    assert "/accounts/login/" in response.headers["Location"]
    laptop = device(app, "alice")
    assert laptop.get("/settings/sessions/end/").status_code == 405
    token_before = User.get_by_id(alice.id).session_token
    assert laptop.post("/settings/sessions/end/").status_code == 403
    assert User.get_by_id(alice.id).session_token == token_before


def test_an_admins_new_password_ends_the_users_sessions(app, alice):
    make_user("root", admin=True)
    admin = device(app, "root")
    alices_laptop = device(app, "alice")
    data = {
        "username": "alice",
        "email": "alice@example.com",
        "join_date": alice.join_date.strftime("%Y-%m-%d %H:%M:%S"),
        "active": "1",
        "admin": "",
        "new_password": NEW_PASSWORD,
        "save": "1",
    }
    response = post(admin, f"/admin/user/{alice.id}/", data, token_from="/admin/")
    assert response.status_code == 302
    assert not is_logged_in(alices_laptop)
    assert is_logged_in(admin)


def test_an_admin_changing_their_own_password_in_the_admin_stays_logged_in(app):
    root = make_user("root", admin=True)
    admin, other = device(app, "root"), device(app, "root")
    data = {
        "username": "root",
        "email": "root@example.com",
        "join_date": root.join_date.strftime("%Y-%m-%d %H:%M:%S"),
        "active": "1",
        "admin": "1",
        "new_password": NEW_PASSWORD,
        "save": "1",
    }
    assert post(admin, f"/admin/user/{root.id}/", data, token_from="/admin/").status_code == 302
    assert is_logged_in(admin)
    assert not is_logged_in(other)


def test_create_admin_on_the_command_line_ends_the_users_sessions(app, alice):
    laptop = device(app, "alice")
    result = app.test_cli_runner().invoke(
        args=["create-admin", "alice", "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert not is_logged_in(laptop)
    assert login(device(app), "alice", NEW_PASSWORD).status_code == 302


def admin_form(user, **changes):
    """The admin's form for ``user``, with ``changes``."""
    data = {
        "username": user.username,
        "email": user.email,
        "join_date": user.join_date.strftime("%Y-%m-%d %H:%M:%S"),
        "active": "1",
        "admin": "",
        "new_password": "",
        "save": "1",
    }
    return {**data, **changes}


def by_bulk_action(admin, alice, active):
    data = {"action": "reactivate" if active else "deactivate", "id": str(alice.id)}
    assert post(admin, "/admin/user/", data, token_from="/admin/").status_code == 302


def in_the_admin_form(admin, alice, active):
    form = admin_form(alice, active="1" if active else "")
    assert post(admin, f"/admin/user/{alice.id}/", form, "/admin/").status_code == 302


def by_saving_the_model(admin, alice, active):
    """The rule lives in the model: any caller that saves the row (the API, a shell)."""
    user = User.get_by_id(alice.id)
    user.active = active
    user.save()


@pytest.mark.parametrize("switch", [by_bulk_action, in_the_admin_form, by_saving_the_model])
def test_deactivation_ends_sessions_for_good(app, alice, switch):
    make_user("root", admin=True)
    admin, laptop = device(app, "root"), device(app, "alice")
    thief = stolen_copy(app, laptop)
    switch(admin, alice, active=False)
    assert not User.get_by_id(alice.id).active
    assert not is_logged_in(laptop)
    switch(admin, alice, active=True)
    assert User.get_by_id(alice.id).active
    assert not is_logged_in(laptop), "reactivation must not revive old sessions"
    assert not is_logged_in(thief)
    assert is_logged_in(device(app, "alice"))


def test_deleting_a_user_through_the_api_ends_their_sessions(app, alice):
    make_user("root", admin=True)
    laptop = device(app, "alice")
    response = device(app).delete(f"/api/user/{alice.id}/", auth=("root", PASSWORD))
    assert response.status_code == 200
    assert not is_logged_in(laptop)


def test_a_session_without_the_token_is_logged_out(app, alice):
    """A session made before sessions carried the token (or hand-made) is not accepted."""
    client = device(app)
    with client.session_transaction() as session:
        session.update(logged_in=True, user_pk=alice.id)
    assert not is_logged_in(client)
    with client.session_transaction() as session:
        session["session_token"] = "0" * 32
    assert not is_logged_in(client)


def test_the_session_token_is_shown_nowhere(app, alice):
    make_user("root", admin=True)
    admin = device(app, "root")
    token = User.get_by_id(alice.id).session_token
    pages = [
        admin.get(f"/admin/user/{alice.id}/"),
        admin.get("/admin/user/"),
        admin.get("/api/user/", auth=("root", PASSWORD)),
        admin.get(f"/api/user/{alice.id}/", auth=("root", PASSWORD)),
    ]
    for response in pages:
        assert response.status_code == 200
        assert token not in response.get_data(as_text=True)
        assert "session_token" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- migration


def old_database(path):
    """A SQLite file migrated up to just before MIGRATION, holding two users and a message."""
    database = SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    runner = migration_runner(database)
    before = [m.name for m in runner.status() if m.name < MIGRATION]
    runner.up(before[-1])
    database.execute_sql(
        'INSERT INTO "user" (id, username, email, password, join_date, active, admin) '
        "VALUES (1, 'Alice', 'alice@example.com', 'x$y$z', '2026-01-01 10:00:00', 1, 1), "
        "(2, 'bob', 'bob@example.com', '!', '2026-01-02 10:00:00', 0, 0)"
    )
    database.execute_sql(
        "INSERT INTO message (id, user_id, content, pub_date) "
        "VALUES (7, 1, 'hello', '2026-01-03 10:00:00')"
    )
    return database


def test_the_migration_keeps_every_row_and_gives_old_users_an_empty_token(tmp_path):
    database = old_database(tmp_path / "old.db")
    runner = migration_runner(database)
    runner.up(MIGRATION)

    rows = database.execute_sql(
        'SELECT id, username, password, active, session_token FROM "user" ORDER BY id'
    ).fetchall()
    assert rows == [(1, "Alice", "x$y$z", 1, ""), (2, "bob", "!", 0, "")]
    assert database.execute_sql("SELECT id, content FROM message").fetchall() == [(7, "hello")]
    # A row inserted afterwards without the column gets the empty token too.
    database.execute_sql(
        'INSERT INTO "user" (username, email, password, join_date, active, admin) '
        "VALUES ('carol', 'carol@example.com', '!', '2026-01-04 10:00:00', 1, 0)"
    )
    assert database.execute_sql(
        "SELECT session_token FROM \"user\" WHERE username = 'carol'"
    ).fetchone() == ("",)

    assert runner.down(MIGRATION) == [MIGRATION]
    columns = [column.name for column in database.get_columns("user")]
    assert "session_token" not in columns
    assert len(database.execute_sql('SELECT id FROM "user"').fetchall()) == 3
    assert database.execute_sql("SELECT id, content FROM message").fetchall() == [(7, "hello")]
    database.close()
    with sqlite3.connect(tmp_path / "old.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
