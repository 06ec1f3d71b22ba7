"""Identity and discovery: profiles, avatars, linkified messages, tags and mentions."""

import re
import sqlite3

from conftest import login
from conftest import make_message
from conftest import make_user
from conftest import post
from playhouse.test_utils import count_queries
from test_migrations import build_database_before_migrations
from test_migrations import sqlite_file

from models import Mention
from models import Message
from models import MessageTag
from models import Tag
from models import User
from models import extract_urls
from models import identicon_svg
from models import linkify
from models import migration_runner


def text(response):
    return response.get_data(as_text=True)


# Extraction at save ---------------------------------------------------------------------


def tags_of(message):
    query = Tag.select(Tag.name).join(MessageTag).where(MessageTag.message == message.id)
    return sorted(tag.name for tag in query)


def mentions_of(message):
    query = User.select(User.username).join(Mention).where(Mention.message == message.id)
    return sorted(user.username for user in query)


def test_saving_a_message_extracts_its_tags_and_existing_mentions(app):
    alice, bob = make_user("alice"), make_user("Bob")
    message = make_message(alice, "#Chirp and #chirp, @bob @BOB @nobody #1 a#b mail@bob.org #café")
    assert tags_of(message) == ["café", "chirp"]
    assert mentions_of(message) == ["Bob"]
    assert Tag.select().count() == 2

    message.edit("now only #news for @alice")
    assert tags_of(message) == ["news"]
    assert mentions_of(message) == ["alice"]
    assert message.edited_date is not None
    assert Tag.select().count() == 3  # tags outlive their messages; they are tiny

    message.delete_instance()
    assert MessageTag.select().count() == 0 and Mention.select().count() == 0
    assert bob.mentions.count() == 0


def test_extraction_rolls_back_with_the_message(app, monkeypatch):
    alice = make_user("alice")

    def fail():
        raise RuntimeError("disk full")

    message = Message(user=alice, content="#doomed")
    monkeypatch.setattr(message, "extract_links", fail)
    try:
        message.save()
    except RuntimeError:
        pass
    assert Message.select().count() == 0


def test_links_lists_mentions_tags_and_urls_in_text_order(app):
    alice = make_user("alice")
    make_user("Zed")
    message = make_message(alice, "@zed @ghost see https://example.org/a?b=1. and #Two #one")
    assert message.links() == {
        "mentions": ["Zed"],
        "tags": ["two", "one"],
        "urls": ["https://example.org/a?b=1"],
    }


# Linkify -------------------------------------------------------------------------------


def test_linkify_escapes_text_and_links_only_what_it_should():
    html = str(
        linkify(
            "<b>hi</b> @alice @ghost #Tag https://x.org/p?q=1&r=2#frag), javascript:alert(1)",
            {"alice"},
        )
    )
    assert "<b>" not in html and "&lt;b&gt;hi&lt;/b&gt;" in html
    assert '<a class="mention" href="/users/alice/">@alice</a>' in html
    assert "@ghost" in html and "/users/ghost/" not in html
    assert '<a class="tag" href="/tags/tag/">#Tag</a>' in html
    assert (
        '<a href="https://x.org/p?q=1&amp;r=2#frag" rel="nofollow ugc noopener">'
        "https://x.org/p?q=1&amp;r=2#frag</a>)" in html
    )
    assert "javascript" not in re.findall(r'href="([^"]*)"', html)[-1]


def test_linkify_percent_encodes_tags_of_any_script():
    assert 'href="/tags/caf%C3%A9/"' in str(linkify("#Café", set()))


def test_urls_lose_trailing_punctuation_only():
    assert extract_urls("(see https://a.org/x_(y). Or http://b.org!)") == [
        "https://a.org/x_(y",
        "http://b.org",
    ]


# Pages -----------------------------------------------------------------------------------


def test_messages_show_avatar_display_name_username_and_links(client):
    alice = make_user("alice", display_name="Alice Wonder")
    make_user("bob")
    make_message(alice, "hi @bob, read https://example.org #News")
    body = text(client.get("/public/"))
    assert f'src="/avatars/{alice.id}.svg"' in body
    assert "Alice Wonder" in body and "@alice" in body
    assert '<a class="mention" href="/users/bob/">@bob</a>' in body
    assert 'rel="nofollow ugc noopener"' in body
    assert '<a class="tag" href="/tags/news/">#News</a>' in body


def test_mentions_of_inactive_users_are_not_links(client):
    alice, bob = make_user("alice"), make_user("bob")
    make_message(alice, "hi @bob")
    User.set_active([bob.id], False)
    assert "/users/bob/" not in text(client.get("/public/"))


def test_tag_page_lists_tagged_visible_messages_newest_first(client):
    alice, bob = make_user("alice"), make_user("bob")
    make_message(alice, "first #Python")
    make_message(alice, "untagged python")
    make_message(bob, "inactive-author #python")
    make_message(alice, "second #python")
    User.set_active([bob.id], False)
    response = client.get("/tags/PYTHON/")
    assert response.status_code == 200
    body = text(response)
    assert "#python" in body
    assert body.index("second") < body.index("first")
    assert "untagged" not in body and "inactive-author" not in body
    assert "No messages with this tag yet." in text(client.get("/tags/nothing/"))
    assert client.get("/tags/" + "x" * 51 + "/").status_code == 404


def test_avatar_is_a_cached_svg_identicon(client):
    response = client.get("/avatars/7.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert "max-age=31536000" in response.headers["Cache-Control"]
    assert text(response) == identicon_svg(7) != identicon_svg(8)
    assert text(response).startswith("<svg")
    assert client.get("/avatars/x.svg").status_code == 404


def test_profile_is_edited_in_settings_and_shown_on_the_user_page(client):
    alice, bob = make_user("alice"), make_user("bob")
    bob.follow(alice)
    make_message(alice, "one")
    login(client, "alice")
    response = post(
        client,
        "/settings/profile/",
        {"display_name": "  Ålice 🐦 ", "bio": "Curious <about> everything"},
        token_from="/settings/",
    )
    assert response.status_code == 302
    alice = User.get_by_id(alice.id)
    assert (alice.display_name, alice.bio) == ("Ålice 🐦", "Curious <about> everything")
    body = text(client.get("/users/alice/"))
    assert '<h1 class="profile-name">Ålice 🐦</h1>' in body
    assert "Curious &lt;about&gt; everything" in body
    assert re.search(r"<strong>1</strong> messages", body)
    assert re.search(r"<strong>1</strong> followers", body)
    assert re.search(r"<strong>0</strong> following", body)
    assert f'src="/avatars/{alice.id}.svg"' in body


def test_an_edited_message_says_edited(client):
    alice = make_user("alice")
    message = make_message(alice, "before")
    login(client, "alice")
    assert "edited" not in text(client.get("/users/alice/"))
    response = post(client, f"/edit/{message.id}/", {"content": "after"}, token_from="/create/")
    assert response.status_code == 302
    assert 'class="edited"' in text(client.get("/users/alice/"))


def test_time_elements_carry_a_utc_offset(client):
    make_message(make_user("alice"))
    body = text(client.get("/public/"))
    assert re.search(r'<time datetime="[0-9T:-]+[+-][0-9]{2}:[0-9]{2}"', body)


# Migration -------------------------------------------------------------------------------


def test_upgrading_extracts_tags_and_mentions_of_existing_messages(tmp_path):
    path = tmp_path / "old.db"
    build_database_before_migrations(path)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO message VALUES (9, 2, '#Old news for @alice and @nobody', '2026-01-01')"
        )
    connection.close()
    database = sqlite_file(path)
    migration_runner(database).up()
    tags = database.execute_sql(
        "SELECT t.name FROM tag t JOIN messagetag m ON m.tag_id = t.id WHERE m.message_id = 9"
    ).fetchall()
    mentions = database.execute_sql("SELECT user_id FROM mention WHERE message_id = 9").fetchall()
    assert tags == [("old",)] and mentions == [(1,)]


# Composer, confirmation, returning where you were, polish ----------------------------------


def test_every_page_loads_the_composer_script_which_counts_like_the_server(client):
    body = text(client.get("/public/"))
    assert '<script src="/static/composer.js" defer></script>' in body
    with client.get("/static/composer.js") as response:
        script = text(response)
    # The same steps, in the same order, as models.normalize_text and count_characters.
    assert 'value.replace(/\\r\\n?/g, "\\n").normalize("NFC").trim()' in script
    assert "Array.from(text).length" in script
    assert "event.ctrlKey || event.metaKey" in script


def test_a_refused_post_from_home_stays_home_with_the_text(client):
    make_user("alice")
    login(client, "alice")
    response = post(
        client, "/create/", {"content": "x" * 281, "next": "/private/"}, token_from="/private/"
    )
    assert response.status_code == 422
    body = text(response)
    assert "<h1>Home</h1>" in body and "x" * 281 in body and 'class="error"' in body


def test_edit_and_delete_return_where_you_started(client):
    alice = make_user("alice")
    first, second = make_message(alice, "first"), make_message(alice, "second")
    login(client, "alice")
    assert f'href="/edit/{first.id}/?next=/public/"' in text(client.get("/public/"))
    form = text(client.get(f"/edit/{first.id}/?next=/public/"))
    assert '<input type="hidden" name="next" value="/public/">' in form
    response = post(
        client, f"/edit/{first.id}/", {"content": "edited", "next": "/public/"}, "/create/"
    )
    assert response.headers["Location"] == "/public/"
    confirm = text(client.get(f"/delete/{second.id}/?next=/tags/x/"))
    assert '<input type="hidden" name="next" value="/tags/x/">' in confirm
    response = post(client, f"/delete/{second.id}/", {"next": "/tags/x/"}, "/create/")
    assert response.headers["Location"] == "/tags/x/"
    # Never to another site, nor back to the page of the message just deleted.
    response = post(
        client, f"/edit/{first.id}/", {"content": "again", "next": "//evil.example/"}, "/create/"
    )
    assert response.headers["Location"] == "/users/alice/"
    response = post(client, f"/delete/{first.id}/", {"next": f"/messages/{first.id}/"}, "/create/")
    assert response.headers["Location"] == "/users/alice/"


def test_only_the_owner_gets_the_delete_confirmation(client):
    alice = make_user("alice")
    make_user("bob")
    message = make_message(alice)
    login(client, "bob")
    assert client.get(f"/delete/{message.id}/").status_code == 403


def test_joining_greets_once(client):
    response = post(
        client,
        "/join/",
        {
            "username": "zed",
            "email": "z@x.org",
            "password": "correct-horse",
            "confirm": "correct-horse",
        },
        token_from="/join/",
        follow_redirects=True,
    )
    flashes = re.findall(r'<div class="flash[^>]*>([^<]*)', text(response))
    assert flashes == ["Welcome to Chirp, zed!"]


def test_an_empty_public_timeline_invites_people_to_join(client):
    body = text(client.get("/public/"))
    assert 'href="/join/"' in body and "post the first message" in body


def test_dark_mode_follows_the_system_setting(client):
    with client.get("/static/style.css") as response:
        assert "@media (prefers-color-scheme: dark)" in text(response)


# Cost and the admin ----------------------------------------------------------------------


def tag_page_queries(client, messages):
    alice = User.get(User.username == "alice")
    for number in range(messages):
        make_message(alice, f"note {number} #busy @alice https://example.org/{number}")
    with count_queries() as queries:
        assert client.get("/tags/busy/").status_code == 200
    return queries.count


def test_a_tag_page_costs_the_same_number_of_queries_however_full(client):
    make_user("alice")
    few = tag_page_queries(client, 2)
    many = tag_page_queries(client, 30)  # more than a page
    assert few == many


def test_admins_find_people_by_display_name_or_bio_and_browse_tags_and_mentions(client):
    make_user("root", admin=True)
    make_user("alice", display_name="Wonderland", bio="curious hat")
    make_message(User.get(User.username == "alice"), "#tea with @alice")
    login(client, "root")
    for query in ("Wonderland", "hat"):
        body = text(client.get(f"/admin/user/?q={query}"))
        assert ">alice<" in body, query
    assert "tea" in text(client.get("/admin/tag/"))
    assert client.get("/admin/messagetag/").status_code == 200
    assert "alice" in text(client.get("/admin/mention/"))
