"""REST 3.0 `Idempotency-Key` on writes (reference §2.5): a successful answer is replayed for 24 h.

Scope is webhook user + method + key. The same key with a different body is a conflict (422).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sandbox.errors import V3Error
from sandbox.store import IDEMPOTENCY_TTL_SECONDS, Portal, Replay


def check_key(key: str) -> None:
    """1-255 printable ASCII characters, else INVALIDIDEMPOTENCYKEYEXCEPTION (400)."""
    if not 1 <= len(key) <= 255 or any(not 32 <= ord(char) < 127 for char in key):
        raise V3Error(400, "INVALIDIDEMPOTENCYKEYEXCEPTION", "Invalid idempotency key")


def _fingerprint(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def replay(portal: Portal, method: str, key: str, params: dict[str, Any]) -> Replay | None:
    """The stored answer for this key, if still kept; a reuse with another body raises 422."""
    slot = (portal.config.user_id, method, key)
    stored = portal.replays.get(slot)
    if stored is None or stored.expires <= time.time():
        portal.replays.pop(slot, None)
        return None
    if stored.fingerprint != _fingerprint(params):
        raise V3Error(422, "IDEMPOTENCYKEYREUSEDEXCEPTION", "Idempotency key was already used with another request")
    return stored


def remember(portal: Portal, method: str, key: str, params: dict[str, Any], status: int,
             body: dict[str, Any]) -> None:
    """Keep a successful answer for replay."""
    slot = (portal.config.user_id, method, key)
    portal.replays[slot] = Replay(_fingerprint(params), time.time() + IDEMPOTENCY_TTL_SECONDS, status, body)
