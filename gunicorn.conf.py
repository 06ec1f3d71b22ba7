"""gunicorn's settings for Chirp in production: ``gunicorn -c gunicorn.conf.py main:app``.

Options given on the command line win over this file (``-w 8``, ``-b 0.0.0.0:8000``), and
so do ``GUNICORN_CMD_ARGS``. Reload after a deploy without dropping a request: run
``python main.py db upgrade``, then ``kill -HUP <master pid>``: the master re-reads this
file and starts new workers with the new code, and the old ones finish the requests they
hold (up to ``graceful_timeout``) before they stop. ``kill -TERM`` stops the same way.
"""

import multiprocessing
import os

# Behind a reverse proxy on the same host; CHIRP_BIND=0.0.0.0:8000 when the proxy is not.
bind = os.environ.get("CHIRP_BIND", "127.0.0.1:8000")
# Sync workers, each serving one request at a time: the usual 2 x cores + 1, since a
# request mostly waits on the database. CHIRP_WORKERS overrides it.
workers = int(os.environ.get("CHIRP_WORKERS", 2 * multiprocessing.cpu_count() + 1))
worker_class = "sync"
# Seconds a worker may spend on one request before the master kills and replaces it.
timeout = 30
# Seconds workers get to finish their requests after HUP (reload) or TERM (stop).
graceful_timeout = 30
# Seconds an idle keep-alive connection from the proxy stays open.
keepalive = 5
# Replace each worker after about this many requests, so slow memory growth never
# accumulates; the jitter keeps workers from restarting all at once.
max_requests = 2000
max_requests_jitter = 200
# gunicorn 27 opens a control socket in ~/.gunicorn by default; Chirp does not use it.
control_socket_disable = True

# Logs to standard output and error, for journald, Docker or any supervisor. The access
# line carries the X-Request-ID that Chirp's own line and any traceback carry too.
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = '%(h)s %({x-request-id}o)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'


def when_ready(server):
    """Warn when several workers keep rate-limit counters in their own memory: each
    worker then counts separately, and a limit lets through up to workers x as much."""
    storage = os.environ.get("FLASK_RATELIMIT_STORAGE_URI", "memory://")
    if server.cfg.workers > 1 and storage.startswith("memory://"):
        server.log.warning(
            "%d workers keep separate rate-limit counters (memory://): each limit is "
            "multiplied by the number of workers. Set FLASK_RATELIMIT_STORAGE_URI=redis://...",
            server.cfg.workers,
        )
