"""Replying, reading a thread, liking, reposting and notifications in a real Chromium,
against a real gunicorn, with no console error or CSP violation anywhere."""

import pytest
from chromium import CHROMIUM
from chromium import CHROMIUM_ARGS
from chromium import Browser
from conftest import PASSWORD
from conftest import make_message
from conftest import make_user
from conftest import require_program
from live_server import running_gunicorn
from playhouse.db_url import connect
from playwright.sync_api import sync_playwright

from models import MODELS
from models import Message

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def log_in(browser, username):
    browser.visit("/accounts/login/")
    browser.submit("form.card", {"#username": username, "#password": PASSWORD})


def click(browser, locator, where):
    """Click ``locator`` (a button that submits or a link) and wait for the next page."""
    with browser.page.expect_navigation(wait_until="load"):
        locator.click()
    browser.check(where)


def test_reply_thread_like_repost_and_notifications_in_chromium(tmp_path):
    with running_gunicorn(tmp_path, workers=2) as server:
        served = connect(server.database_url)
        with served.bind_ctx(MODELS), served.connection_context():
            alice = make_user("alice")
            make_user("bob")
            original = make_message(alice, "what do you think?")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=require_program(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                run_scenario(Browser(chromium.new_page(), server.url), original.id)
            finally:
                chromium.close()
        with served.bind_ctx(MODELS), served.connection_context():
            row = Message.get_by_id(original.id)
            assert (row.reply_count, row.like_count, row.repost_count) == (1, 0, 1)
            assert alice.unread_notification_count() == 0


def run_scenario(browser, message_id):
    page = browser.page
    log_in(browser, "bob")
    browser.visit("/public/")
    article = page.locator("article.message").filter(has_text="what do you think?")

    # Reply: the composer starts with "@alice ", the thread shows both, root first.
    click(browser, article.locator("a.reply"), "reply link")
    assert page.locator("textarea").input_value() == "@alice "
    assert page.get_by_text("replying to").count() >= 1
    page.locator("textarea").fill("@alice I think it is fine")
    click(browser, page.locator("form.card button[type=submit]"), "posting the reply")
    assert "/messages/" in page.url
    body = page.locator("main").inner_text()
    assert body.index("what do you think?") < body.index("I think it is fine")
    assert page.locator(".replying-to").first.inner_text().strip() == "replying to @alice"

    # Like, then unlike; repost.
    browser.visit("/public/")
    like = article.locator("button.like")
    click(browser, like, "like")
    assert like.inner_text().split() == ["Liked", "1"]
    click(browser, like, "unlike")
    assert like.inner_text().split() == ["Like", "0"]
    click(browser, article.locator("button.repost"), "repost")
    assert article.locator("button.repost").inner_text().split() == ["Reposted", "1"]
    browser.visit(f"/messages/{message_id}/")
    browser.submit("form[action$='/logout/']", {})

    # Alice hears of the reply and the repost (the withdrawn like is gone), then reads them.
    log_in(browser, "alice")
    assert page.locator(".notifications-link .badge").inner_text() == "2"
    click(browser, page.locator("a.notifications-link"), "notifications")
    entries = page.locator("li.notification")
    assert entries.count() == 2
    assert "reposted your message" in entries.nth(0).inner_text()
    assert "replied to your message" in entries.nth(1).inner_text()
    click(browser, page.get_by_role("button", name="Mark all read"), "mark all read")
    assert page.locator(".notifications-link .badge").count() == 0
