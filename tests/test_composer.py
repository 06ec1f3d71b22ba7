"""The composer counts as the server counts (docs/security.md, "Text that means what it
shows"), in a real Chromium: what it calls "0 characters left" is accepted, one more is
refused, whatever the browser sends (CR LF line breaks, emoji, decomposed accents)."""

import pytest
from conftest import PASSWORD
from conftest import make_user

from models import MESSAGE_MAX_LENGTH
from models import Message

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a server and Chromium

FULL = [
    "\n".join(["y"] * 140),  # 279 characters: the browser sends 419, with CR LF
    "😀" * MESSAGE_MAX_LENGTH,  # 560 UTF-16 units: maxlength would have stopped at 140
    "e\u0301" * MESSAGE_MAX_LENGTH,  # 560 code points typed, 280 once NFC
    "  " + "x" * MESSAGE_MAX_LENGTH + "\n",  # trimmed
]


def test_what_the_composer_allows_the_server_accepts_and_no_more(browser):
    make_user("alice")
    page = browser.page
    browser.visit("/accounts/login/?next=/private/")
    browser.submit("form.card", {"#username": "alice", "#password": PASSWORD})
    for text in [*FULL, "😀" * (MESSAGE_MAX_LENGTH + 1)]:
        browser.visit("/create/")
        area = page.locator("textarea#content")
        area.fill(text)
        left = int(page.locator("#content-counter").get_attribute("data-left"))
        before = Message.select().count()
        with page.expect_navigation(wait_until="load"):
            page.locator("form:has(textarea#content) button[type=submit]").first.click()
        accepted = Message.select().count() == before + 1
        assert accepted == (left >= 0), (text[:20], left)
    stored = [m.content for m in Message.select().order_by(Message.id)]
    assert [len(content) for content in stored] == [279, 280, 280, 280]
