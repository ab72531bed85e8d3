"""gunicorn settings for the web process: ``gunicorn -c config/gunicorn.py 'app:create_app()'``.

gevent workers: intake waits on one Redis round trip per event, and a greenlet waiting costs a switch
where a thread waiting costs GIL hand-overs (docs/performance.md). Greenlets also absorb slow clients and
Redis hiccups, up to ``worker_connections`` clients per worker. ``WEB_WORKER_CLASS=gthread`` (with
``WEB_THREADS``) is the fallback. The control socket is off because containers often have no writable HOME.
"""

import os

bind = os.environ.get("TASKWARDEN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "1000"))  # gevent: clients at once per worker
threads = int(os.environ.get("WEB_THREADS", "4"))  # gthread only
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app logs one line per event itself, redacted
control_socket_disable = True


def on_starting(server: object) -> None:
    """In the master, before any worker forks: check the configuration (one line and exit 3 when it is
    unusable, rather than workers that fail and are restarted forever), and route gunicorn's own lines
    through the app's JSON renderer (and its redaction)."""
    from logging_setup import configure_logging
    from startup import configuration_or_exit

    settings, _rules = configuration_or_exit()
    configure_logging(settings.log_format, settings.log_level)


def post_fork(server: object, worker: object) -> None:
    from logging_setup import configure_logging

    configure_logging(os.environ.get("LOG_FORMAT", "json"), os.environ.get("LOG_LEVEL", "INFO").upper())
