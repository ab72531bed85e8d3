"""Serving the sandbox: in a background thread for tests, or blocking for the CLI."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.app import create_sandbox_app
from sandbox.apps import Apps
from sandbox.config import SandboxConfig
from sandbox.store import Portal


class QuietHandler(WSGIRequestHandler):
    """No access log lines: tests read the sandbox's own request log instead."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class RunningSandbox:
    """A sandbox serving on a daemon thread."""

    url: str
    config: SandboxConfig
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _portal: Portal = field(repr=False)
    _apps: Apps | None = field(default=None, repr=False)

    @property
    def webhook_url(self) -> str:
        """The inbound-webhook base URL a client is configured with."""
        return f"{self.url}/rest/{self.config.user_id}/{self.config.secret}/"

    @property
    def oauth_url(self) -> str:
        """The OAuth token endpoint of application mode."""
        return f"{self.url}/oauth/token/"

    def client_endpoint(self, name: str) -> str:
        """The REST URL of the application-mode portal `name`."""
        return f"{self.url}/portals/{name}/rest/"

    @property
    def portal(self) -> Portal:
        """The simulated portal's state, for in-process inspection (benchmarks); tests use the control API."""
        return self._portal

    def stop(self) -> None:
        """Stop serving, wait for the thread, stop event delivery."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._portal.outbox.close()
        if self._apps is not None:
            self._apps.close()


def start_in_thread(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
    """Serve `config` on `host:port` (0 = a free port) from a daemon thread."""
    app = create_sandbox_app(config)
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="sandbox-portal", daemon=True)
    thread.start()
    url = f"http://{host}:{server.server_port}"
    apps: Apps = app.extensions["sandbox_apps"]
    apps.server.base_url = url
    return RunningSandbox(url, config, server, thread, app.extensions["sandbox_portal"], apps)


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8700,
          seed: str | int | None = None) -> None:
    """Serve in the foreground until interrupted, optionally seeded ("demo" or N tasks)."""
    app = create_sandbox_app(config, seed)
    apps: Apps = app.extensions["sandbox_apps"]
    apps.server.base_url = f"http://{host}:{port}"
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["sandbox_portal"].outbox.close()
        apps.close()
