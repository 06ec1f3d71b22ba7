"""Odds and ends of the second security round (docs/security.md, "Odds and ends"): log
lines that cannot be forged, and trusted hosts."""

import logging

import pytest


def test_a_newline_in_the_path_cannot_forge_a_log_line(app, client, caplog, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(app.view_functions, "user_detail", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    with caplog.at_level(logging.ERROR, logger=app.logger.name):
        response = client.get("/users/x%0A2026-12-01 INFO admin root logged in%0D/")
    assert response.status_code == 500
    (record,) = [r for r in caplog.records if "Exception on" in r.getMessage()]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line
    assert "/users/x\\x0a2026-12-01 INFO admin root logged in\\x0d/" in line


@pytest.mark.parametrize("path", ["/users", "/public"])
def test_trusted_hosts_refuse_a_forged_host_before_any_redirect(app, client, monkeypatch, path):
    monkeypatch.setitem(app.config, "TRUSTED_HOSTS", ["chirp.example"])
    forged = client.get(path, base_url="http://evil.example")
    assert forged.status_code == 400 and "evil.example" not in forged.headers.get("Location", "")
    honest = client.get(path, base_url="http://chirp.example")
    assert honest.status_code == 308
    assert honest.headers["Location"] in (f"{path}/", f"http://chirp.example{path}/")
