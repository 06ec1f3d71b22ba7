"""The web pages, for an anonymous visitor, a member, a message's owner and an admin."""

import datetime
import re
from pathlib import Path

from conftest import PASSWORD
from conftest import csrf_token
from conftest import login
from conftest import make_message
from conftest import make_user
from conftest import post
from conftest import text

from models import BIO_MAX_LENGTH
from models import DISPLAY_NAME_MAX_LENGTH
from models import EMAIL_MAX_LENGTH
from models import PASSWORD_MAX_LENGTH
from models import SEARCH_QUERY_MAX_LENGTH
from models import TOKEN_NAME_MAX_LENGTH
from models import USERNAME_MAX_LENGTH
from models import ApiToken
from models import Message
from models import Relationship
from models import User

# Timelines -----------------------------------------------------------------------------


def test_anonymous_home_is_the_public_timeline(client):
    alice = make_user("alice")
    make_message(alice, "hello from alice")
    response = client.get("/")
    assert response.status_code == 200
    assert "Public timeline" in text(response)
    assert "hello from alice" in text(response)


def test_public_timeline_is_newest_first(client):
    alice = make_user("alice")
    now = datetime.datetime.now()
    make_message(alice, "older message", pub_date=now - datetime.timedelta(hours=2))
    make_message(alice, "newer message", pub_date=now)
    body = text(client.get("/public/"))
    assert body.index("newer message") < body.index("older message")


def test_home_timeline_shows_followed_users_and_self_only(client):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice.follow(bob)
    make_message(alice, "alice speaks")
    make_message(bob, "bob speaks")
    make_message(carol, "carol speaks")
    login(client, "alice")
    body = text(client.get("/"))
    assert "Home" in body
    assert "alice speaks" in body and "bob speaks" in body
    assert "carol speaks" not in body
    assert text(client.get("/private/")).count("speaks") == 2


def test_timelines_page_by_keyset_newest_id_first(client):
    alice = make_user("alice")
    messages = [make_message(alice, f"message number {number:02d}") for number in range(25)]
    first = text(client.get("/public/"))
    assert "message number 24" in first and "message number 05" in first
    assert "message number 04" not in first
    assert first.index("number 24") < first.index("number 23")
    assert f'href="/public/?before={messages[5].id}"' in first
    assert "Older" in first and "Newest" not in first
    second = text(client.get(f"/public/?before={messages[5].id}"))
    assert "message number 04" in second and "message number 00" in second
    assert "message number 05" not in second
    assert "Newest" in second and "Older" not in second
    # Past the end, and an id that is not a number.
    assert client.get(f"/public/?before={messages[0].id}").status_code == 404
    assert client.get("/public/?before=abc").status_code == 400
    # The same on a user's page.
    page = text(client.get(f"/users/alice/?before={messages[5].id}"))
    assert "message number 04" in page and "message number 05" not in page


def test_old_page_numbers_redirect_to_the_same_messages(client):
    alice = make_user("alice")
    messages = [make_message(alice, f"message number {number:02d}") for number in range(25)]
    response = client.get("/public/?page=2")
    assert response.status_code == 301
    assert response.headers["Location"] == f"/public/?before={messages[5].id}"
    assert "message number 04" in text(client.get(response.headers["Location"]))
    assert client.get("/public/?page=1").headers["Location"] == "/public/"
    assert client.get("/users/alice/?page=2").headers["Location"].startswith("/users/alice/?")
    assert client.get("/public/?page=3").status_code == 404  # past the end
    assert client.get("/public/?page=100000").status_code == 404  # deeper than pages go
    for number in range(25):
        make_user(f"user{number:02d}")
    assert client.get("/users/?page=2").headers["Location"] == "/users/?after=user18"


def test_user_directory_pages_by_username(client):
    names = [f"user{number:02d}" for number in range(25)]
    for name in names:
        make_user(name)
    first = text(client.get("/users/"))
    assert "@user19" in first and "@user20" not in first
    assert 'href="/users/?after=user19"' in first
    second = text(client.get("/users/?after=user19"))
    assert "@user20" in second and "@user24" in second and "@user19" not in second
    assert client.get("/users/?after=user24").status_code == 404
    assert client.get("/users/?after=no%20such").status_code == 400


def test_followers_and_following_page_newest_follow_first(client):
    alice = make_user("alice")
    fans = [make_user(f"fan{number:02d}") for number in range(22)]
    for fan in fans:
        fan.follow(alice)
        alice.follow(fan)
    for path in ("/users/alice/followers/", "/users/alice/following/"):
        first = text(client.get(path))
        assert first.index("@fan21") < first.index("@fan20")
        assert "@fan02" in first and "@fan01" not in first
        older = re.search(r'href="([^"]+before=[0-9]+)"', first)[1]
        second = text(client.get(older))
        assert "@fan01" in second and "@fan00" in second and "@fan02" not in second


# Users ---------------------------------------------------------------------------------


def test_user_page_shows_messages_and_counts(client):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    bob.follow(alice)
    carol.follow(alice)
    alice.follow(bob)
    make_message(alice, "alice's own words")
    make_message(bob, "bob's words")
    body = text(client.get("/users/alice/"))
    assert "alice&#39;s own words" in body and "bob&#39;s words" not in body
    assert "<strong>2</strong> followers" in body
    assert "<strong>1</strong> following" in body


def test_user_page_lookup_ignores_case(client):
    make_user("Alice")
    assert client.get("/users/alice/").status_code == 200
    assert client.get("/users/ALICE/").status_code == 200


def test_follower_and_following_lists(client):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    bob.follow(alice)
    alice.follow(carol)
    followers = text(client.get("/users/alice/followers/"))
    assert "@bob" in followers and "@carol" not in followers
    following = text(client.get("/users/alice/following/"))
    assert "@carol" in following and "@bob" not in following


# Joining, logging in and out -----------------------------------------------------------


def join(
    client, username="newbie", email="newbie@example.com", password="long-enough-1", confirm=None
):
    data = {
        "username": username,
        "email": email,
        "password": password,
        "confirm": password if confirm is None else confirm,
    }
    return post(client, "/join/", data, token_from="/join/")


def test_join_creates_a_user_and_logs_them_in(client):
    response = join(client, email="Newbie@Example.com")
    assert response.status_code == 302
    user = User.get(User.username == "newbie")
    assert user.email == "newbie@example.com"
    assert user.password != "long-enough-1" and user.check_password("long-enough-1")
    assert not user.admin and user.active
    assert "@newbie" in text(client.get("/"))


def test_members_are_not_offered_another_account(client):
    make_user("alice")
    login(client, "alice")
    response = client.get("/join/")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "You are already a member, alice." in text(client.get("/"))


def test_join_validates_every_field(client):
    cases = [
        ({"username": "bad name!"}, "Use 1 to 30 letters, digits or underscores."),
        ({"username": "x" * 31}, "Use 1 to 30 letters, digits or underscores."),
        ({"email": "not-an-email"}, "Enter an e-mail address."),
        ({"password": "short"}, "Field must be between 8 and 256 characters long."),
        ({"confirm": "something-else"}, "The passwords do not match."),
    ]
    for override, message in cases:
        response = join(client, **override)
        assert response.status_code == 422, override
        assert message in text(response), override
    assert User.select().count() == 0


def test_login_and_logout(client):
    make_user("alice")
    response = login(client, "alice")
    assert response.status_code == 302
    assert "Log out" in text(client.get("/"))
    response = post(client, "/accounts/logout/")
    assert response.status_code == 302
    assert "Log in" in text(client.get("/"))


def test_login_accepts_any_case_of_the_username(client):
    make_user("Alice")
    login(client, "aLiCe")
    assert "@Alice" in text(client.get("/"))


def test_login_with_a_wrong_password_fails(client):
    make_user("alice")
    response = login(client, "alice", "wrong-password")
    assert response.status_code == 200
    assert "Incorrect username or password" in text(response)


def test_logout_by_get_is_refused(client):
    make_user("alice")
    login(client, "alice")
    assert client.get("/accounts/logout/").status_code == 405
    assert "Log out" in text(client.get("/"))


def test_login_redirects_to_next(client):
    make_user("alice")
    token = csrf_token(client)
    response = client.post(
        "/accounts/login/",
        data={
            "username": "alice",
            "password": PASSWORD,
            "next": "/private/?page=2",
            "_csrf_token": token,
        },
    )
    assert response.headers["Location"] == "/private/?page=2"


# Posting, editing, deleting ------------------------------------------------------------


def test_member_posts_a_message(client):
    alice = make_user("alice")
    login(client, "alice")
    assert client.get("/create/").status_code == 200
    response = post(client, "/create/", {"content": "  my first chirp  "})
    assert response.status_code == 302
    message = Message.get()
    assert (message.user_id, message.content) == (alice.id, "my first chirp")


def test_owner_edits_their_message(client):
    alice = make_user("alice")
    message = make_message(alice, "typo hre")
    login(client, "alice")
    assert "typo hre" in text(client.get(f"/edit/{message.id}/"))
    response = post(client, f"/edit/{message.id}/", {"content": "typo here"})
    assert response.status_code == 302
    assert Message.get_by_id(message.id).content == "typo here"


def test_others_cannot_edit_or_delete_a_message(client):
    alice = make_user("alice")
    make_user("bob")
    message = make_message(alice, "alice's message")
    login(client, "bob")
    assert client.get(f"/edit/{message.id}/").status_code == 403
    assert post(client, f"/edit/{message.id}/", {"content": "bob was here"}).status_code == 403
    assert post(client, f"/delete/{message.id}/").status_code == 403
    assert Message.get_by_id(message.id).content == "alice's message"


def test_even_an_admin_edits_others_messages_only_in_the_admin(client):
    alice = make_user("alice")
    make_user("root", admin=True)
    message = make_message(alice, "alice's message")
    login(client, "root")
    assert post(client, f"/edit/{message.id}/", {"content": "changed"}).status_code == 403
    assert Message.get_by_id(message.id).content == "alice's message"


def test_owner_deletes_their_message(client):
    alice = make_user("alice")
    message = make_message(alice)
    login(client, "alice")
    confirm = client.get(f"/delete/{message.id}/")  # asks first; deletes nothing
    assert confirm.status_code == 200 and "Delete this message?" in confirm.get_data(as_text=True)
    assert Message.select().count() == 1
    assert post(client, f"/delete/{message.id}/").status_code == 302
    assert Message.select().count() == 0


# Following -----------------------------------------------------------------------------


def test_follow_and_unfollow(client):
    alice, bob = make_user("alice"), make_user("bob")
    login(client, "alice")
    assert ">Follow</button>" in text(client.get("/users/bob/"))
    response = post(client, "/users/bob/follow/")
    assert response.status_code == 302
    assert alice.is_following(bob)
    assert ">Unfollow</button>" in text(client.get("/users/bob/"))
    post(client, "/users/bob/follow/")  # twice is harmless
    assert Relationship.select().count() == 1
    post(client, "/users/bob/unfollow/")
    assert not alice.is_following(bob)


def test_follow_needs_a_post(client):
    make_user("alice")
    make_user("bob")
    login(client, "alice")
    assert client.get("/users/bob/follow/").status_code == 405
    assert Relationship.select().count() == 0


# Settings and tokens -------------------------------------------------------------------


def test_settings_change_email_and_password(client):
    alice = make_user("alice")
    login(client, "alice")
    response = post(
        client,
        "/settings/",
        {
            "email": "new@example.com",
            "new_password": "brand-new-pw",
            "confirm": "brand-new-pw",
            "current_password": PASSWORD,
        },
        token_from="/settings/",
    )
    assert response.status_code == 302
    alice = User.get_by_id(alice.id)
    assert alice.email == "new@example.com" and alice.check_password("brand-new-pw")


def test_settings_need_the_current_password(client):
    make_user("alice")
    login(client, "alice")
    response = post(
        client, "/settings/", {"email": "new@example.com", "current_password": "wrong-one"}
    )
    assert response.status_code == 422
    assert "That is not your current password." in text(response)
    assert User.get().email == "alice@example.com"


def test_token_revoke_only_own(client):
    alice, bob = make_user("alice"), make_user("bob")
    bobs, _ = ApiToken.issue(bob, "bob's")
    mine, _ = ApiToken.issue(alice, "mine")
    login(client, "alice")
    assert post(client, f"/settings/tokens/{bobs.id}/revoke/").status_code == 404
    assert post(client, f"/settings/tokens/{mine.id}/revoke/").status_code == 302
    assert [t.name for t in ApiToken.select()] == ["bob's"]


# Admin access and health ---------------------------------------------------------------


def test_admin_link_and_admin_only_for_admins(client):
    make_user("alice")
    make_user("root", admin=True)
    login(client, "alice")
    assert "/admin/" not in text(client.get("/"))
    assert client.get("/admin/").status_code == 403
    client.post("/accounts/logout/", data={"_csrf_token": csrf_token(client, "/")})
    login(client, "root")
    assert 'href="/admin/"' in text(client.get("/"))
    assert client.get("/admin/").status_code == 200


def test_pages_link_the_stylesheet_and_no_cdn(client):
    body = text(client.get("/"))
    assert "/static/style.css" in body
    assert "https://" not in body and "http://" not in body
    with client.get("/static/style.css") as stylesheet:
        assert stylesheet.status_code == 200


def test_form_inputs_take_their_maxlength_from_the_models_limits(client):
    """The browser's maxlength comes from the forms' validators (and the search box from
    the search limit), never from a number written into a template."""
    make_user("alice")
    limits = {
        "/join/": {"username": USERNAME_MAX_LENGTH, "email": EMAIL_MAX_LENGTH},
        "/accounts/login/": {"username": USERNAME_MAX_LENGTH, "password": PASSWORD_MAX_LENGTH},
        "/search/": {"q": SEARCH_QUERY_MAX_LENGTH},
    }
    for path, fields in limits.items():
        html = client.get(path).get_data(as_text=True)
        for name, limit in fields.items():
            tag = re.search(rf'<input[^>]* name="{name}"[^>]*>', html)[0]
            assert f'maxlength="{limit}"' in tag, (path, tag)
    login(client, "alice")
    html = client.get("/settings/").get_data(as_text=True)
    settings = {
        "display_name": DISPLAY_NAME_MAX_LENGTH,
        "bio": BIO_MAX_LENGTH,
        "email": EMAIL_MAX_LENGTH,
        "name": TOKEN_NAME_MAX_LENGTH,
    }
    for name, limit in settings.items():
        tag = re.search(rf'<input[^>]* name="{name}"[^>]*>', html)[0]
        assert f'maxlength="{limit}"' in tag, tag
    templates = Path(__file__).resolve().parent.parent / "templates"
    literal = re.compile(r"maxlength\s*=\s*\"?\d")
    assert not [p for p in templates.rglob("*.html") if literal.search(p.read_text())]


def test_urls_made_once_per_process_follow_the_mount_point(client):
    """Static URLs and message links are built once per process (views.made_once), per
    script root: Chirp served under /chirp and at / in one process links both right."""
    message = make_message(make_user("alice"), "hello")
    for root in ("", "/chirp", ""):
        page = client.get("/public/", environ_overrides={"SCRIPT_NAME": root})
        html = page.get_data(as_text=True)
        assert f'href="{root}/static/style.css' in html, root
        assert f'href="{root}/messages/{message.id}/"' in html, root
        assert f'href="{root}/users/alice/"' in html, root
        if not root:
            assert "/chirp/" not in html
