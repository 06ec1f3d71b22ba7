"""A headless Chromium page that records what the Content-Security-Policy and the console
complain about, for the ``browser`` tests (the fixtures are in conftest.py)."""

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
