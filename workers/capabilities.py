"""What a portal's REST API can do where portals differ, asked once and remembered for a day per portal.

``task.elapseditem.getlist`` filtered by ``TASK_ID``: the server's manifest lists TASK_ID among the
filterable fields, while the documentation's filter table names only ID, USER_ID and CREATED_DATE. The
portal's own manifest decides; where it does not allow the filter, entries are read task by task.
"""

from __future__ import annotations

import keys
from bitrix import elapsed
from runtime import Runtime

MEMORY_SECONDS = 86400
"""A day: a portal upgraded to allow the filter is noticed the next day; the manifest costs one request."""


def entries_filterable_by_task(rt: Runtime) -> bool:
    """Whether this portal's ``task.elapseditem.getlist`` takes a TASK_ID filter (its manifest, cached)."""
    key = keys.elapsed_task_filter(rt.portal.id)
    known = rt.redis.get(key)
    if known is not None:
        return known == b"1"
    allowed = elapsed.task_filter_allowed(rt.client.run(elapsed.manifest()))
    rt.redis.set(key, b"1" if allowed else b"0", ex=MEMORY_SECONDS)
    return allowed
