"""The shape of an inbound-webhook URL, checked by the settings and split by the portal."""

from __future__ import annotations

import re

_WEBHOOK_RE = re.compile(r"^(?P<base>https?://[^/\s]+/rest/)(?P<user>\d+)/(?P<secret>[^/\s]+)/?$")


def split_webhook_url(url: str) -> tuple[str, int, str]:
    """Split ``https://{portal}/rest/{user_id}/{secret}/`` into (rest base, user id, secret).

    Raises:
        ValueError: the URL has another shape; the message never repeats the URL (it holds a secret).
    """
    match = _WEBHOOK_RE.match(url.strip())
    if match is None:
        raise ValueError("must look like https://{portal}/rest/{user_id}/{secret}/")
    return match["base"], int(match["user"]), match["secret"]
