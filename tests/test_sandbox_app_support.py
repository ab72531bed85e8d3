"""What the application-mode sandbox tests share (no tests here): a listener that plays the application's
handler URLs, and REST and OAuth calls the way an application makes them."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.phpform import parse_str

TIMEOUT = 5


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Listener:
    """A small HTTP server standing in for the application: records every POST, answers `status`/`reply`."""

    def __init__(self, status: int = 200, reply: str = "ok") -> None:
        self.status = status
        self.reply = reply
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def url(self, path: str = "/handler") -> str:
        """A handler URL on this listener."""
        return self.base + path

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode()
        with self._lock:
            self.received.append({"path": environ.get("PATH_INFO", ""), "content_type": environ.get("CONTENT_TYPE", ""),
                                  "body": body, "form": parse_str(body)})
        start_response(f"{self.status} X", [("Content-Type", "text/plain")])
        return [self.reply.encode()]

    def wait(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The first `n` requests, once they have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.02)
        raise TimeoutError(f"expected {n} requests, have {self.received}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def call(endpoint: str, method: str, token: str | None, **params: Any) -> requests.Response:
    """A classic REST call with the token in the JSON body, as the docs' OAuth examples send it."""
    body = dict(params) if token is None else {**params, "auth": token}
    return requests.post(endpoint + method, json=body, timeout=TIMEOUT)


def result(endpoint: str, method: str, token: str, **params: Any) -> Any:
    """The `result` of a call that must succeed."""
    response = call(endpoint, method, token, **params)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def refresh(oauth_url: str, refresh_token: str, client_id: str, client_secret: str) -> requests.Response:
    """A refresh-token grant, as the docs write it: a GET with the parameters in the query string."""
    return requests.get(oauth_url, params={"grant_type": "refresh_token", "client_id": client_id,
                                           "client_secret": client_secret, "refresh_token": refresh_token},
                        timeout=TIMEOUT)
