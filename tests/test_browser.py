"""Every page works under Chirp's Content-Security-Policy, in a real browser.

A real server (werkzeug, in a thread, on 127.0.0.1 and a free port, on the test's SQLite
file) and a real headless Chromium (Debian's, driven by Playwright). The test walks the
site as a visitor, a member and an admin, submits forms and clicks buttons, and fails on
any CSP violation, console error, uncaught script error, failed request or unstyled page.
"""

import threading

import pytest
from conftest import PASSWORD
from conftest import make_message
from conftest import make_user
from conftest import require_program
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from app import limiter
from models import ApiToken
from models import Message
from models import Note
from models import Relationship

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Milliseconds Playwright waits for a page or an element before failing the test.
TIMEOUT_MS = 10_000
# Records every CSP violation in the page, before any of the page's own code runs.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI} at ${where}`);
});
"""


@pytest.fixture
def live_server(app):
    """Serve the app on 127.0.0.1 at a free port from a thread; yield its base URL."""
    limiter.reset()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()
    limiter.reset()


class Browser:
    """One Chromium page that records everything the CSP and the console complain about."""

    def __init__(self, page, base_url):
        self.page = page
        self.base_url = base_url
        self.problems = []
        page.set_default_timeout(TIMEOUT_MS)
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("requestfailed", self.on_request_failed)
        self.expected_status = 200

    def on_console(self, message):
        if message.type not in ("error", "warning"):
            return
        # The browser reports a page we fetched on purpose with a 4xx as a console error.
        expected = f"status of {self.expected_status}" in message.text
        if not (expected and self.expected_status >= 400):
            self.problems.append(f"console {message.type}: {message.text} ({message.location})")

    def on_request_failed(self, request):
        # ERR_ABORTED: the next navigation cancelled it (say, the favicon of the last page).
        if "ERR_ABORTED" not in (request.failure or ""):
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def visit(self, path, status=200):
        """Load ``path``; check its status, that nothing was blocked and that our
        stylesheet (or the admin's) is applied."""
        self.expected_status = status
        response = self.page.goto(self.base_url + path, wait_until="load")
        assert response.status == status, f"{path}: {response.status}"
        self.check(path)
        self.expected_status = 200

    def check(self, where):
        """Fail if any CSP violation or console problem happened so far; check styles."""
        self.page.wait_for_load_state("load")
        violations = self.page.evaluate("window.__cspViolations || []")
        problems, self.problems = self.problems, []
        assert not violations, f"{where}: CSP violations {violations}"
        assert not problems, f"{where}: {problems}"
        sheets = self.page.evaluate(
            "[...document.styleSheets].map((s) => s.href && s.cssRules.length)"
        )
        assert sheets and all(sheets), f"{where}: stylesheets not applied {sheets}"

    def submit(self, form_selector, fields, button="button[type=submit]"):
        """Fill ``fields`` ({selector: value}) of a form, click its button and wait."""
        form = self.page.locator(form_selector).first
        for selector, value in fields.items():
            form.locator(selector).fill(value)
        with self.page.expect_navigation(wait_until="load"):
            form.locator(button).first.click()
        self.check(f"after submitting {form_selector}")


@pytest.fixture
def browser(live_server):
    executable = require_program(CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = chromium.new_context(java_script_enabled=True)
            yield Browser(context.new_page(), live_server)
            context.close()
        finally:
            chromium.close()


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
