"""Is this event from our portal? Constant-time token compare, optional member_id check."""

from __future__ import annotations

import hashlib
import hmac

from handlers.refusals import Unauthorized


def verify_token(received: str | None, expected: str) -> None:
    """Raise :class:`Unauthorized` unless ``received`` equals ``expected`` (compared in constant time)."""
    if not received:
        raise Unauthorized("no auth[application_token]")
    if not hmac.compare_digest(received.encode(), expected.encode()):
        raise Unauthorized("wrong application token")


def token_digest(token: str | None) -> str:
    """A token kept where it must not sit in clear (an event spooled before its portal could be looked up): its
    SHA-256, which ``token_matches`` compares later."""
    return hashlib.sha256((token or "").encode()).hexdigest()


def token_matches(digest: str, expected: str) -> bool:
    """Whether ``digest`` (``token_digest`` of a received token) is that of ``expected``, in constant time."""
    return hmac.compare_digest(digest.encode(), token_digest(expected).encode())


def verify_member(received: str | None, expected: str | None) -> None:
    """When a member_id is configured, refuse events from any other portal."""
    if expected and not hmac.compare_digest((received or "").encode(), expected.encode()):
        raise Unauthorized("event from another portal (member_id)")
