"""Identity and discovery in a real Chromium under the CSP: a profile, a composer that
counts like the server, links, tags, mentions, search, edit and confirmed delete, at
1280 and 390 pixels wide, with no console error, CSP violation or sideways scrolling."""

import pytest
from conftest import PASSWORD
from conftest import make_message
from conftest import make_user

from models import MESSAGE_MAX_LENGTH
from models import Message
from models import count_characters
from models import normalize_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a server and Chromium

TEXT = "Tea time 🐦🇫🇷\r\nwith @bob about #Tea: https://example.org/tea."
WIDTHS = (1280, 390)


def no_sideways_scrolling(page, where):
    width = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"{where}: scrolls sideways by {width}px"


def screenshots(browser, tmp_path, name, paths):
    for width in WIDTHS:
        browser.page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            browser.visit(path)
            no_sideways_scrolling(browser.page, f"{path} at {width}px")
            slug = path.strip("/").replace("/", "-").replace("?", "-") or "home"
            browser.page.screenshot(path=str(tmp_path / f"{name}-{slug}-{width}.png"))
    browser.page.set_viewport_size({"width": 1280, "height": 900})


def test_profile_composer_links_search_edit_and_delete(browser, tmp_path):
    make_user("alice")
    make_user("bob", display_name="Bob B.")
    page = browser.page

    browser.visit("/accounts/login/?next=/settings/")
    browser.submit("form.card", {"#username": "alice", "#password": PASSWORD})
    browser.submit(
        "form[action$='/settings/profile/']", {"#display_name": "Alice 🐦", "#bio": "Tea!"}
    )
    browser.visit("/users/alice/")
    assert page.locator("h1.profile-name").inner_text() == "Alice 🐦"
    assert page.locator("p.bio").inner_text() == "Tea!"

    # The counter counts as the server does: line breaks, emoji and flags included.
    browser.visit("/private/")
    area = page.locator("form.compose textarea")
    area.fill(TEXT)
    left = MESSAGE_MAX_LENGTH - count_characters(normalize_text(TEXT))
    assert page.locator(".counter").get_attribute("data-left") == str(left)
    area.fill("x" * (MESSAGE_MAX_LENGTH + 1))
    assert page.locator(".counter.over").count() == 1
    area.fill(TEXT)
    with page.expect_navigation(wait_until="load"):
        area.press("Control+Enter")
    browser.check("after Ctrl+Enter")
    message = Message.get(Message.content == normalize_text(TEXT))

    # Links, a mention and a tag.
    article = page.locator(f"#message-{message.id}")
    assert article.locator("a[rel='nofollow ugc noopener']").get_attribute("href") == (
        "https://example.org/tea"
    )
    assert "Alice 🐦" in article.locator(".author").inner_text()
    with page.expect_navigation(wait_until="load"):
        article.locator("a.tag").click()
    browser.check("tag page")
    assert page.url.endswith("/tags/tea/") and page.locator(f"#message-{message.id}").count()
    with page.expect_navigation(wait_until="load"):
        page.locator(f"#message-{message.id} a.mention").click()
    assert page.url.endswith("/users/bob/")
    assert page.locator("h1.profile-name").inner_text() == "Bob B."

    # Search from the directory's box.
    browser.visit("/users/")
    browser.submit("form.search-form", {"input[name=q]": "#tea from:alice"})
    assert page.locator(f"#message-{message.id}").count() == 1

    # Edit, back to the search results, marked "edited".
    with page.expect_navigation(wait_until="load"):
        page.locator(f"#message-{message.id} a[href*='/edit/']").click()
    browser.submit("form.card", {"textarea": "Edited #tea"})
    assert "/search/" in page.url
    assert page.locator(f"#message-{message.id} .edited").count() == 1

    screenshots(
        browser,
        tmp_path,
        "identity",
        ["/users/alice/", "/tags/tea/", "/search/?q=tea", "/users/", "/settings/", "/private/"],
    )

    # Delete asks first (a page: no script needed), then returns to where it started.
    browser.visit("/tags/tea/")
    with page.expect_navigation(wait_until="load"):
        page.locator(f"#message-{message.id} a[href*='/delete/']").click()
    browser.check("confirm page")
    assert "Delete this message?" in page.content()
    browser.submit("form.confirm", {})
    assert page.url.endswith("/tags/tea/")
    assert not Message.select().where(Message.id == message.id).exists()


def test_admin_pages_fit_a_phone_and_browse_tags_and_mentions(browser):
    make_user("root", admin=True)
    make_message(make_user("alice", display_name="Alice"), "hi #tea @root")
    browser.visit("/accounts/login/?next=/admin/")
    browser.submit("form.card", {"#username": "root", "#password": PASSWORD})
    browser.page.set_viewport_size({"width": 390, "height": 900})
    for path in ["/admin/", "/admin/user/", "/admin/message/", "/admin/user/1/"]:
        browser.visit(path)
        no_sideways_scrolling(browser.page, path)
    for path in ["/admin/tag/", "/admin/messagetag/", "/admin/mention/"]:
        browser.visit(path)
        no_sideways_scrolling(browser.page, path)
        assert browser.page.locator("table tbody tr").count() == 1, path
