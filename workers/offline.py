"""Offline delivery (SPEC section 10): drain an installed portal's offline event queue into evaluations.

Bitrix24 keeps one row per changed task until the application confirms it. A drain reserves a batch
(``event.offline.get`` with ``clear=0``), queues its tasks through the same coalescing as pushed events, marks
rows it cannot read (``event.offline.error``) and only then confirms the batch (``event.offline.clear`` by
``process_id``). The batch's ``process_id`` is noted in Redis first: a worker killed between the read and the
clear leaves the note, and the next drain reads that same batch again, so nothing is lost (an evaluation
queued twice is coalesced). Where the portal lacks reserve-and-confirm (``feature.get`` says no
``rest_offline_extended``), rows are read with ``clear=1``: deleted as they are handed out, so a crash between
the read and the queueing loses those rows; the ``tasks`` sweep finds the changes later.
"""

from __future__ import annotations

from typing import Any

import structlog

import keys
import metrics
import runtime
from bitrix.normalize import as_int
from portals.tokens import PortalInactive
from queueing import coalesce_evaluation
from runtime import Runtime

log = structlog.get_logger(__name__)

BATCH = 50
MAX_BATCHES = 20
"""Batches one drain takes at most (1,000 rows): the next slot goes on, and other portals get their turn."""
FEATURE_MEMORY_SECONDS = 86400
TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE")


def drain_offline_events(portal_id: str) -> dict[str, Any]:
    """The RQ job: drain the portal's offline queue (``queueing.enqueue_offline_drain``)."""
    try:
        rt = runtime.current().for_portal(portal_id)
    except PortalInactive:
        return {"status": "portal_inactive"}
    return drain(rt)


def drain(rt: Runtime) -> dict[str, Any]:
    """Read, queue and confirm batches until the queue is empty (or ``MAX_BATCHES``); returns what was done."""
    reserve = offline_extended(rt)
    queued = duplicate = errors = 0
    for _ in range(MAX_BATCHES):
        process_id = _noted_batch(rt) if reserve else None
        params: dict[str, Any] = {"limit": BATCH, "clear": 0 if reserve else 1}
        if process_id:
            params["process_id"] = process_id  # a batch a killed drain reserved and never confirmed
        answer = rt.client.call("event.offline.get", params).result or {}
        rows = [row for row in answer.get("events") or [] if isinstance(row, dict)]
        process_id = str(answer.get("process_id") or process_id or "")
        if reserve and process_id:
            rt.redis.sadd(keys.offline_batches(rt.portal.id), process_id)
        bad = []
        for row in rows:
            outcome = _queue_row(rt, row)
            if outcome is None:
                bad.append(row.get("MESSAGE_ID"))
            elif outcome == "queued":
                queued += 1
            else:
                duplicate += 1
        if reserve and process_id:
            if bad:
                rt.client.call("event.offline.error", {"process_id": process_id, "message_id": bad})
            rt.client.call("event.offline.clear", {"process_id": process_id})
            rt.redis.srem(keys.offline_batches(rt.portal.id), process_id)
        errors += len(bad)
        if len(rows) < BATCH:
            break
    metrics.count(rt.portal.id, "offline_events", queued, outcome="queued")
    log.info("offline.drained", queued=queued, duplicate=duplicate, errors=errors, reserve=reserve)
    return {"status": "done", "queued": queued, "duplicate": duplicate, "errors": errors}


def offline_extended(rt: Runtime) -> bool:
    """Whether the portal has reserve-and-confirm (``rest_offline_extended``), asked once a day."""
    key = keys.offline_extended(rt.portal.id)
    known = rt.redis.get(key)
    if known is not None:
        return known == b"1"
    result = rt.client.call("feature.get", {"CODE": "rest_offline_extended"}).result
    value = result.get("value") if isinstance(result, dict) else result
    extended = str(value).upper() in ("Y", "1", "TRUE")
    rt.redis.set(key, b"1" if extended else b"0", ex=FEATURE_MEMORY_SECONDS)
    return extended


def _noted_batch(rt: Runtime) -> str | None:
    noted = rt.redis.srandmember(keys.offline_batches(rt.portal.id))
    return noted.decode() if isinstance(noted, bytes) else None


def _queue_row(rt: Runtime, row: dict[str, Any]) -> str | None:
    """``queued``/``duplicate`` for a task event row; None for a row that names no task (marked an error)."""
    name = str(row.get("EVENT_NAME") or "").upper()
    data = row.get("EVENT_DATA")
    fields = data.get("FIELDS_AFTER") if isinstance(data, dict) else None
    try:
        task_id = as_int(fields.get("ID")) if isinstance(fields, dict) else 0
    except (TypeError, ValueError):
        task_id = 0
    if name not in TASK_EVENTS or task_id <= 0:
        log.warning("offline.unreadable_row", event_name=name, message_id=row.get("MESSAGE_ID"))
        return None
    event_id = f"{name}:{task_id}:offline:{row.get('ID', '-')}"
    return coalesce_evaluation(rt.queue(), rt.portal.id, task_id, event_name=name, event_id=event_id,
                               rules_digest=rt.rules.digest)
