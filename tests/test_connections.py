"""gunicorn workers on PostgreSQL hold no connection they do not use: after 10 000
requests, pg_stat_activity shows no more connections to Chirp's database than there are
workers (a connection per request, closed at teardown; or, with ``postgresql+pool://``,
one pooled connection per worker), however the requests ended: 200, 404, 400 or 503."""

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from databases import connection_parameters
from databases import database_name
from databases import drop_database
from databases import new_database_url
from live_server import running_gunicorn
from peewee import PostgresqlDatabase

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WORKERS = 2
REQUESTS = 10_000
CLIENTS = 4
# A mix of pages: a timeline, the API, a miss, refused input and the health check.
PATHS = ["/public/", "/api/message/", "/users/nobody/", "/api/message/?user=abc", "/healthz"]


def connections_to(name):
    """Return how many server processes serve the database ``name`` right now."""
    monitor = PostgresqlDatabase("postgres", **connection_parameters())
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        return monitor.execute_sql(query, (name,)).fetchone()[0]
    finally:
        monitor.close()


def hammer(url, count):
    """GET PATHS in turn from ``url`` ``count`` times over one keep-alive connection;
    return the status codes seen."""
    statuses = set()
    with requests.Session() as session:
        for _, path in zip(range(count), itertools.cycle(PATHS), strict=False):
            with session.get(url + path, timeout=30) as response:
                statuses.add(response.status_code)
    return statuses


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+pool"])
def test_ten_thousand_requests_leak_no_connection(tmp_path, scheme):
    url = new_database_url(tmp_path).replace("postgresql://", f"{scheme}://", 1)
    name = database_name(url)
    if scheme.endswith("+pool"):
        url += "?max_connections=4&stale_timeout=300"
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(connections_to(name))
            time.sleep(0.2)

    with running_gunicorn(tmp_path, workers=WORKERS, database_url=url) as server:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                per_client = REQUESTS // CLIENTS
                results = list(pool.map(hammer, [server.url] * CLIENTS, [per_client] * CLIENTS))
        finally:
            done.set()
            watcher.join()
        statuses = set().union(*results)
        assert statuses == {200, 400, 404}, server.read_log()[-5000:]
        assert seen and max(seen) <= WORKERS, seen
        after = connections_to(name)
        # Per request: every connection is closed at teardown. Pooled: at most one kept
        # open per worker, for the next request.
        assert after <= (WORKERS if scheme.endswith("+pool") else 0)
    drop_database(name)
