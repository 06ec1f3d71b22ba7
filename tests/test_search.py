"""Search: people by name prefix, messages by words, phrases, #tags and from:name, through
the full-text index (FTS5 on SQLite) kept in step with edits and deletes."""

import re

import pytest
from conftest import make_message
from conftest import make_user

from app import db
from models import TextRefused
from models import User
from models import parse_search
from models import search_messages


def found(text):
    return [message.content for message in search_messages(parse_search(text))]


@pytest.fixture
def corpus(app):
    alice = make_user("alice", display_name="Alice Liddell")
    bob = make_user("bob", display_name="Robert")
    make_message(alice, "The quick brown fox")
    make_message(bob, "a quick lunch #Food")
    make_message(alice, "brown bread and butter #food")
    make_message(bob, "Café au lait, brown sugar")
    return alice, bob


def test_words_phrases_tags_and_authors_narrow_the_results_newest_first(corpus):
    assert found("quick") == ["a quick lunch #Food", "The quick brown fox"]
    assert found("BROWN quick") == ["The quick brown fox"]
    assert found('"brown bread"') == ["brown bread and butter #food"]
    assert found('"bread brown"') == []
    assert found("#FOOD") == ["brown bread and butter #food", "a quick lunch #Food"]
    assert found("#food from:bob") == ["a quick lunch #Food"]
    assert found("brown from:@Alice") == ["brown bread and butter #food", "The quick brown fox"]
    assert found("") == [] and found("   ") == []


def test_fts_syntax_in_the_query_is_only_text(corpus):
    for text in ("quick AND", "NEAR(quick brown)", "content:quick", "qu*", '"', "-quick", "^"):
        found(text)  # never an FTS5 syntax error
    assert found("quick OR nothing") == []  # OR is a word here, not an operator


def test_the_index_follows_edits_deletes_and_deactivation(corpus):
    alice, bob = corpus
    message = make_message(alice, "ephemeral words")
    assert found("ephemeral") == ["ephemeral words"]
    message.edit("lasting words")
    assert found("ephemeral") == [] and found("lasting") == ["lasting words"]
    message.delete_instance()
    assert found("lasting") == []
    User.set_active([bob.id], False)
    assert found("quick") == ["The quick brown fox"]


def test_too_long_or_too_many_terms_are_refused(app):
    with pytest.raises(TextRefused):
        parse_search("x" * 201)
    with pytest.raises(TextRefused):
        parse_search(" ".join(f"w{n}" for n in range(11)))


def test_search_page_shows_people_and_messages_and_pages_by_keyset(client, corpus, app):
    app.config["PAGE_SIZE"] = 1
    try:
        response = client.get("/search/?q=ali")
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        people = body.split("<h2>Messages</h2>")[0]
        assert "@alice" in people and "Alice Liddell" in people and "@bob" not in people
        body = client.get("/search/?q=brown").get_data(as_text=True)
        assert "Café au lait" in body
        older = re.search(r'rel="next" href="([^"]+)"', body).group(1).replace("&amp;", "&")
        assert "q=brown" in older and "before=" in older
        body = client.get(older).get_data(as_text=True)
        assert "brown bread and butter" in body and "Café" not in body
    finally:
        app.config["PAGE_SIZE"] = 20


def test_people_match_username_or_display_name_prefix(client, corpus):
    body = client.get("/search/?q=lid").get_data(as_text=True)
    assert "@alice" not in body
    body = client.get("/search/?q=Rob").get_data(as_text=True)
    assert "@bob" in body
    body = client.get("/search/?q=%25").get_data(as_text=True)  # LIKE wildcards are text
    assert "@alice" not in body and "@bob" not in body


def test_bad_searches_are_a_400(client):
    assert client.get("/search/?q=" + "x" * 201).status_code == 400
    assert client.get("/search/?q=x&before=abc").status_code == 400


def test_the_directory_has_a_search_box(client):
    body = client.get("/users/").get_data(as_text=True)
    assert 'action="/search/"' in body and 'name="q"' in body


@pytest.mark.sqlite  # FTS5 is SQLite's full-text index
def test_sqlite_search_ignores_diacritics_through_fts5(corpus):
    assert "message_fts" in db.database.get_tables()
    assert found("cafe") == ["Café au lait, brown sugar"]
