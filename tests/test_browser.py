"""Every page works under Chirp's Content-Security-Policy, in a real browser.

A real server (werkzeug, in a thread, on 127.0.0.1 and a free port, on the test's SQLite
file) and a real headless Chromium (Debian's, driven by Playwright). The test walks the
site as a visitor, a member and an admin, submits forms and clicks buttons, and fails on
any CSP violation, console error, uncaught script error, failed request or unstyled page.
"""

import pytest
from conftest import PASSWORD
from conftest import make_message
from conftest import make_user

from models import ApiToken
from models import Message
from models import Note
from models import Relationship

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a server and Chromium


def test_every_page_works_under_the_csp(browser):
    alice = make_user("alice")
    bob = make_user("bob")
    root = make_user("root", admin=True)
    message = make_message(alice, "hello <b>world</b>")
    make_message(bob, "bob's first")
    Relationship.create(from_user=bob, to_user=alice)
    Note.create(user=root, message="welcome, admins")
    ApiToken.issue(root, "root's phone")
    page = browser.page

    # First, the watchers themselves: an injected inline script and inline style must be
    # blocked by the CSP, and reported.
    browser.visit("/")
    page.evaluate(
        """() => {
        const script = document.createElement("script");
        script.textContent = "window.__ran = true";
        document.head.appendChild(script);
        document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>');
    }"""
    )
    assert page.evaluate("window.__ran") is None
    with pytest.raises(AssertionError, match="CSP violations.*script-src.*style-src"):
        browser.check("self-test")
    page.evaluate("window.__cspViolations = []")

    # A visitor.
    for path in ["/", "/public/", "/users/", "/users/alice/", "/users/alice/followers/"]:
        browser.visit(path)
    for path in ["/users/alice/following/", "/join/", "/accounts/login/?next=/private/"]:
        browser.visit(path)
    browser.visit("/api/")
    browser.visit("/users/nobody/", status=404)
    browser.visit("/public/?page=abc", status=400)

    # A member: log in through the form, post, edit, follow, tokens, log out.
    browser.visit("/accounts/login/?next=/private/")
    browser.submit("form.card", {"#username": "alice", "#password": PASSWORD})
    assert page.url.endswith("/private/")
    browser.submit("form.compose", {"textarea": "posted from Chromium"})
    assert Message.select().where(Message.content == "posted from Chromium").exists()
    for path in ["/notifications/", "/users/alice/likes/", f"/messages/{message.id}/"]:
        browser.visit(path)
    for path in ["/create/", f"/edit/{message.id}/", "/settings/", "/users/bob/"]:
        browser.visit(path)
    browser.submit("form[action$='/follow/']", {})
    assert alice.is_following(bob)
    browser.visit("/settings/")
    browser.submit("form[action$='/settings/tokens/']", {"#name": "laptop"})
    assert page.locator("code.token").count() == 1
    browser.submit("form[action$='/logout/']", {})
    assert page.get_by_text("Log in").count() >= 1

    # An admin: every admin page, and a form or two.
    browser.visit("/accounts/login/?next=/admin/")
    browser.submit("form.card", {"#username": "root", "#password": PASSWORD})
    assert page.url.endswith("/admin/")
    browser.check("/admin/")
    browser.submit("form[action$='/notes/create/']", {"[name=message]": "posted in Chromium"})
    assert Note.select().where(Note.message == "posted in Chromium").exists()
    models = ["user", "message", "relationship", "note", "apitoken", "auditentry"]
    models += ["like", "repost", "notification"]
    for name in models:
        browser.visit(f"/admin/{name}/")
        browser.visit(f"/admin/{name}/?ordering=-id")
    for path in [
        f"/admin/user/{alice.id}/",
        "/admin/user/add/",
        f"/admin/message/{message.id}/",
        "/admin/message/add/",
        f"/admin/message/delete/?id={message.id}",
        "/admin/user/export/",
        "/admin/message/?q=hello",
    ]:
        browser.visit(path)
    browser.visit(f"/admin/message/{message.id}/")
    browser.submit("form.edit", {"textarea[name=content]": "edited by an admin"})
    assert Message.get_by_id(message.id).content == "edited by an admin"
    # The admin's own script runs: "select all" ticks every row.
    browser.visit("/admin/user/")
    page.locator("th input[type=checkbox]").first.click()
    rows = page.locator("td input[type=checkbox][name=id]")
    assert rows.count() == 3
    assert all(rows.nth(i).is_checked() for i in range(rows.count()))
    browser.check("select all")
    # Bootstrap's script runs: the "With selected..." dropdown opens.
    page.get_by_text("With selected...").click()
    page.locator(".dropdown-menu.show").wait_for()
    browser.check("dropdown")
