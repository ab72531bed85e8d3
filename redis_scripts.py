"""Lua scripts, the one way Taskwarden runs them: redis-py's ``register_script``, once per client and script.

A registered script is sent by its SHA (``EVALSHA``) and loaded again only if Redis lost it, so the source
crosses the wire once rather than on every call. Scripts are module constants; a client is known only at
run time, hence this small cache.
"""

from __future__ import annotations

import weakref

from redis import Redis
from redis.commands.core import Script

_registered: weakref.WeakKeyDictionary[Redis, dict[str, Script]] = weakref.WeakKeyDictionary()


def script(redis: Redis, source: str) -> Script:
    """``source`` registered with ``redis``; call it as ``script(redis, SOURCE)(keys=[...], args=[...])``."""
    scripts = _registered.get(redis)
    if scripts is None:
        scripts = _registered[redis] = {}
    found = scripts.get(source)
    if found is None:
        found = scripts[source] = redis.register_script(source)
    return found
