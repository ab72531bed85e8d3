"""The sweep scheduler: enqueue each sweep on its cron schedule, in the rules file's time zone.

Safe with several scheduler processes: each slot is claimed with one ``SET NX``, and the job id is the
slot's, so a slot is enqueued once. After downtime only the latest missed slot is enqueued (once, not
once per missed slot). On the very first start nothing is caught up: the schedule starts from now.
Each tick also queues a follow-up that a portal's evaluation pass owes but will never queue
(``workers.passes.follow_up_if_orphaned``), and in application mode polls the offline queues.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import structlog
from croniter import croniter
from rq.exceptions import DuplicateJobError

import keys
from queueing import SWEEP_QUEUE, enqueue_offline_drain, enqueue_sweep
from runtime import Runtime
from workers.liveness import scheduler_beat
from workers.passes import follow_up_if_orphaned

log = structlog.get_logger(__name__)

TICK_SECONDS = 1.0
OFFLINE_POLL_SECONDS = 60
"""Application mode with offline delivery: each portal's offline queue is drained this often (and at once on
``ONOFFLINEEVENT``)."""
SLOT_CLAIM_SECONDS = 86400


def latest_slot(expression: str, now: dt.datetime) -> dt.datetime:
    """The most recent time at or before ``now`` that the cron expression names (``now`` aware)."""
    # get_prev is strictly before its start, so start one second after ``now`` (whole seconds).
    return croniter(expression, now.replace(microsecond=0) + dt.timedelta(seconds=1)).get_prev(dt.datetime)


def tick(rt: Runtime, now: dt.datetime | None = None) -> list[str]:
    """Enqueue every sweep whose latest slot is newer than the last one enqueued; returns the job ids."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(rt.rules.tz)
    enqueued = []
    for kind, expression in rt.rules.sweeps.items():
        slot = int(latest_slot(expression, now).timestamp())
        last_key = keys.schedule_last(rt.portal.id, kind)
        last = rt.redis.get(last_key)
        if last is None:  # first start: begin from now rather than replaying the past
            rt.redis.set(last_key, slot, nx=True)
            continue
        if slot <= int(last):
            continue
        rt.redis.set(last_key, slot)
        if not rt.redis.set(keys.schedule_slot(rt.portal.id, kind, slot), 1, nx=True, ex=SLOT_CLAIM_SECONDS):
            continue  # another scheduler process took this slot
        job_id = f"sweep-{kind}-{slot}"
        try:
            enqueue_sweep(rt.queue(SWEEP_QUEUE), rt.portal.id, kind, job_id=job_id)
        except DuplicateJobError:
            continue
        log.info("scheduler.enqueued", sweep=kind, slot=slot, job_id=job_id)
        enqueued.append(job_id)
    return enqueued


def poll_offline(rt: Runtime, now: float | None = None) -> bool:
    """Queue a drain of the portal's offline queue once per ``OFFLINE_POLL_SECONDS`` slot (application mode with
    offline delivery); one scheduler process takes each slot, as for sweeps."""
    if not rt.settings.app_mode or rt.settings.taskwarden_event_delivery == "push":
        return False
    slot = int((now or time.time()) // OFFLINE_POLL_SECONDS * OFFLINE_POLL_SECONDS)
    if not rt.redis.set(keys.schedule_slot(rt.portal.id, "offline", slot), 1, nx=True, ex=SLOT_CLAIM_SECONDS):
        return False
    return enqueue_offline_drain(rt.queue(), rt.portal.id, job_id=f"offline-{rt.portal.id}-{slot}") is not None


def run_scheduler(rt: Runtime, stop: threading.Event | None = None, tick_seconds: float = TICK_SECONDS) -> None:
    """Tick until ``stop`` is set (or forever)."""
    stop = stop or threading.Event()
    log.info("scheduler.started", sweeps=dict(rt.rules.sweeps), timezone=rt.rules.timezone)
    while not stop.is_set():
        try:
            for view in rt.active_portals():  # application mode: each installed portal's own schedule
                tick(view)
                poll_offline(view)
                if follow_up_if_orphaned(view, view.portal.id):
                    log.info("scheduler.follow_up_queued", portal=view.portal.id)
            scheduler_beat(rt)
        except Exception:  # a Redis hiccup must not end the scheduler; the next tick retries
            log.exception("scheduler.tick_failed")
        stop.wait(tick_seconds - time.time() % tick_seconds)
