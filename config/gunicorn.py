"""gunicorn settings for the web process: ``gunicorn -c config/gunicorn.py app:app``.

gevent workers: intake waits on one Redis round trip per event, and a greenlet waiting costs a switch
where a gthread thread waiting costs GIL hand-overs between threads. ``bench/ingest.py`` measured
about a third more events per second this way, on the same CPUs (README, "Performance"). Greenlets
also absorb slow clients and Redis hiccups, as threads did, up to ``worker_connections`` clients per
worker. ``WEB_WORKER_CLASS=gthread`` (with ``WEB_THREADS``) is the fallback. The control socket (new
in gunicorn 27) is off because containers often have no writable HOME.
"""

import os

bind = os.environ.get("TASKWARDEN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = 1000  # gevent: clients served at once per worker
threads = int(os.environ.get("WEB_THREADS", "4"))  # gthread only
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app logs one line per event itself, redacted
control_socket_disable = True


def on_starting(server: object) -> None:
    """Route gunicorn's own lines through the same JSON renderer as the app's (and redact them)."""
    from logging_setup import configure_logging

    configure_logging(os.environ.get("LOG_FORMAT", "json"), os.environ.get("LOG_LEVEL", "INFO").upper())


post_fork = lambda server, worker: on_starting(server)  # noqa: E731 - gunicorn wants a plain callable
