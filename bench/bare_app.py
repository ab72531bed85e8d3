"""A bare Flask app answering a constant JSON: the yardstick ``bench/ingest.py`` measures intake against.

It runs under the same gunicorn config as Taskwarden (``gunicorn -c config/gunicorn.py bench.bare_app:app``),
so the difference between the two is what intake itself costs: parsing, verifying, coalescing, logging.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

ANSWER: dict[str, Any] = {"status": "ok"}

app = Flask(__name__)


@app.post("/bitrix24/events")
def receive_event() -> dict[str, Any]:
    """Read nothing, decide nothing: the cheapest JSON answer Flask can give."""
    return ANSWER


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    return ANSWER
