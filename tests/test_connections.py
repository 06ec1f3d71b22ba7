"""gunicorn workers on PostgreSQL hold no connection they do not use: during and after
10 000 requests through the pool (2 000 with a connection per request), pg_stat_activity
shows no more connections to Chirp's database than there are workers (a connection per
request, closed at teardown; or, with ``postgresql+pool://``, one pooled connection per
worker), however the requests ended: 200, 404 or 400.
"""

import http.client
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
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
# The API's per-caller limit would answer most of these 429 (all come from one address).
ENV = {"FLASK_API_RATE_LIMIT": "1000000 per minute"}


def connections_to(name, older_than=0.0):
    """Return how many server processes serve the database ``name`` right now, counting
    only those connected for more than ``older_than`` seconds."""
    monitor = PostgresqlDatabase("postgres", **connection_parameters())
    try:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            " AND backend_start < clock_timestamp() - make_interval(secs => %s)"
        )
        return monitor.execute_sql(query, (name, older_than)).fetchone()[0]
    finally:
        monitor.close()


def hammer(url, count, offset):
    """GET PATHS in turn from ``url``, ``count`` times; return the statuses seen. Plain
    http.client, a connection per request (sync workers close each): the client must
    leave the CPU to the server."""
    address = urlsplit(url)
    statuses = set()
    paths = itertools.islice(itertools.cycle(PATHS), offset, None)
    for path in itertools.islice(paths, count):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            statuses.add(response.status)
        finally:
            connection.close()
    return statuses


# The 10 000 requests go to the pool, the production set-up (docs/deploy.md). A connection
# per request costs a new server process each (~twice the time per request): fewer
# requests show as well that each is closed, and keep CI fast.
@pytest.mark.parametrize("scheme, total", [("postgresql", 2000), ("postgresql+pool", REQUESTS)])
def test_ten_thousand_requests_leak_no_connection(tmp_path, scheme, total):
    url = new_database_url(tmp_path).replace("postgresql://", f"{scheme}://", 1)
    name = database_name(url)
    if scheme.endswith("+pool"):
        url += "?max_connections=4&stale_timeout=300"
    seen = []
    done = threading.Event()

    def watch():
        # Connections made in the last second are left out: with a connection per
        # request, the server process of a request just answered still shows for a
        # moment while it exits, as the next request's connects. A connection that
        # outlives its request (a leak) is counted a second later, and every one at the
        # end.
        while not done.is_set():
            seen.append(connections_to(name, older_than=1.0))
            time.sleep(0.2)

    with running_gunicorn(tmp_path, workers=WORKERS, env=ENV, database_url=url) as server:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                each = total // CLIENTS
                jobs = [pool.submit(hammer, server.url, each, n) for n in range(CLIENTS)]
                statuses = set().union(*(job.result() for job in jobs))
        finally:
            done.set()
            watcher.join()
        assert statuses == {200, 400, 404}, server.read_log()[-5000:]
        assert "Traceback" not in server.read_log()
        assert seen and max(seen) <= WORKERS, seen
        after = connections_to(name)
    # Per request: every connection is closed at teardown. Pooled: at most one kept open
    # per worker, for its next request.
    assert after <= (WORKERS if scheme.endswith("+pool") else 0)
    drop_database(name)
