"""Seed data: `demo` (small and readable) or N generated tasks (deterministic, for load tests).

Generated tasks can be laid out as real portals number them (``LAYOUTS``): a portal years old counts its
IDs in the millions, deleted tasks leave holes, an imported project sits in a block of its own far from the
rest, and the webhook's user may see one task in a thousand. The content is the same in every layout
(same tasks, entries and seconds), only the IDs differ, so that what a layout costs can be compared.

Seeds write straight into the store: no events, no request log, no budget.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sandbox import dates, records, ufdefs
from sandbox.store import Portal

CAP_SECONDS = 28_800
"""The default rules cap time entries at 8 h; the seeds put some entries above it."""


LAYOUTS = ("dense", "offset", "sparse", "clustered", "gap")
"""How generated IDs are spread: from 1 with no gap (``dense``); from a million, with the small holes of
tasks deleted over the years (``offset``); one ID in 1,000 from 100,000 (``sparse``); two blocks 5,000,000
apart, the second an imported project (``clustered``); from 1 with a hole of 2,000,000 IDs in the middle,
a mass deletion (``gap``). Time entries are numbered the same way, from their own bases."""
FAR = 5_000_000
"""How far apart the two blocks of the ``clustered`` layout start."""
HOLE = 2_000_000
"""The IDs missing in the middle of the ``gap`` layout."""


def apply(portal: Portal, seed: Any) -> None:
    """Load `seed`: "demo", N (N generated tasks), "N:M" (N tasks, M entries), "enforce:N" (the enforcement
    benchmark's set), the last three optionally prefixed with a layout ("sparse:N:M", "offset:enforce:N"), or
    None/"" for an empty portal."""
    if seed in (None, ""):
        return
    if seed == "demo":
        demo(portal)
        return
    layout, _, rest = str(seed).partition(":") if str(seed).split(":")[0] in LAYOUTS else ("dense", "", str(seed))
    if rest.startswith("enforce:"):
        enforcement(portal, int(rest.split(":", 1)[1]))
        lay_out(portal, layout, seed=str(seed))
        return
    counts_text = rest
    try:
        count, _, entries = str(counts_text).partition(":")
        counts = (int(count), int(entries) if entries else None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"seed must be 'demo', N, N:M (optionally LAYOUT:N:M) or empty, not {seed!r}") from exc
    generated(portal, *counts)
    lay_out(portal, layout, seed=str(seed))


def with_layout(seed: str, layout: str) -> str:
    """The seed text for generated data in ``layout`` (what ``apply`` reads), e.g. "sparse:10000:50000".

    Raises:
        ValueError: the layout is unknown, or the seed is not generated data (demo, enforce:N, empty).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout == "dense":
        return seed
    if not (seed.split(":")[0].isdigit() or seed.startswith("enforce:")):
        raise ValueError(f"a layout applies to generated data (N or N:M), not to seed {seed!r}")
    return f"{layout}:{seed}"


def enforcement(portal: Portal, count: int) -> None:
    """``count`` tasks with one time entry each, half of them needing exactly one change (bench/enforce.py).

    Mixed policies, one sixth each: an entry over 8 h, no deadline, an empty UF_PROJECT_CODE; the other
    half comply with the bench's rules (deadline 2 working days after creation, project code set).
    """
    ufdefs.add_definition(portal, {"FIELD_NAME": "PROJECT_CODE", "USER_TYPE_ID": "string", "LABEL": "Project code"})
    created = _midnight() - timedelta(days=14)
    for task_id in range(1, count + 1):
        kind = task_id % 6
        portal.tasks[task_id] = {
            "ID": task_id, "TITLE": f"Bench task {task_id}", "STATUS": 2, "GROUP_ID": 0, "RESPONSIBLE_ID": 1,
            "CREATED_BY": 1, "CREATED_DATE": created, "CHANGED_DATE": created,
            "DEADLINE": None if kind == 2 else created + timedelta(days=1), "CLOSED_DATE": None,
            "UF_PROJECT_CODE": "" if kind == 4 else "P-1",
        }
        _fast_entry(portal, task_id, CAP_SECONDS + 3600 if kind == 0 else 3600, created + timedelta(hours=2))
    portal.next_ids["task"] = count + 1


def demo(portal: Portal) -> None:
    """Five tasks that show each default rule at work; ids are stable (tasks 1-5, entries 1-6)."""
    ufdefs.add_definition(portal, {"FIELD_NAME": "PROJECT_CODE", "USER_TYPE_ID": "string",
                                   "LABEL": "Project code", "SORT": 100})
    day = _midnight() - timedelta(days=3)
    soon = day + timedelta(days=10, hours=18)
    tasks: list[dict[str, Any]] = [
        {"TITLE": "Prepare quarterly report", "DEADLINE": soon, "UF_PROJECT_CODE": "FIN-2026"},
        {"TITLE": "Update onboarding checklist", "UF_PROJECT_CODE": "HR-7"},
        {"TITLE": "Migrate mail server", "STATUS": 5, "DEADLINE": day + timedelta(days=1),
         "UF_PROJECT_CODE": "IT-3"},
        {"TITLE": "Plan team offsite", "DEADLINE": soon + timedelta(days=7), "UF_PROJECT_CODE": ""},
        {"TITLE": "Fix login page", "STATUS": 3, "GROUP_ID": 7, "DEADLINE": soon, "UF_PROJECT_CODE": "WEB-1"},
    ]
    for offset, fields in enumerate(tasks):
        created = day + timedelta(hours=9 + offset)
        records.add_task(portal, {**fields, "CREATED_DATE": created}, emit=False)
    for task_id, seconds, comment in ((1, 36_000, "client call"), (1, 3_600, "standup"), (2, 1_800, "draft"),
                                      (3, 7_200, "migration"), (5, 28_800, "full day on the fix"),
                                      (5, 900, "review")):
        created = day + timedelta(days=1, hours=task_id)
        records.add_entry(portal, task_id, {"SECONDS": seconds, "COMMENT_TEXT": comment, "CREATED_DATE": created})


def generated(portal: Portal, count: int, entries: int | None = None) -> None:
    """`count` tasks with about 3 entries each (or `entries` spread over them), ~10% of entries over the cap.

    About 30% of tasks have no deadline, so deadline rules find work too.
    """
    rng = random.Random(count)
    base = _midnight() - timedelta(days=60)
    for task_id in range(1, count + 1):
        created = base + timedelta(minutes=rng.randrange(60 * 24 * 59))
        status = rng.choice((2, 2, 2, 3, 3, 4, 5, 6))
        deadline = None if rng.random() < 0.3 else created + timedelta(days=rng.randrange(1, 30), hours=9)
        portal.tasks[task_id] = {
            "ID": task_id, "TITLE": f"Generated task {task_id}", "STATUS": status,
            "GROUP_ID": rng.choice((0, 0, 3, 7, 12)), "RESPONSIBLE_ID": rng.choice((1, 1, 5, 7, 9)),
            "CREATED_BY": 1, "CREATED_DATE": created, "CHANGED_DATE": created + timedelta(hours=1),
            "DEADLINE": deadline, "CLOSED_DATE": created + timedelta(days=1) if status == 5 else None,
        }
        for _ in range(rng.randrange(7) if entries is None else 0):
            _random_entry(portal, rng, task_id, created)
    for _ in range(entries or 0):
        task_id = rng.randrange(1, count + 1)
        _random_entry(portal, rng, task_id, portal.tasks[task_id]["CREATED_DATE"])
    portal.next_ids["task"] = count + 1


def lay_out(portal: Portal, layout: str, seed: str) -> None:
    """Renumber the generated tasks and entries as ``layout`` spreads them, keeping their order (a later
    task or entry still has the higher ID) and each entry with its task. Random gaps come from ``seed``."""
    if layout == "dense":
        return
    rng = random.Random(f"layout {seed}")
    task_ids = dict(zip(sorted(portal.tasks), _spread(layout, len(portal.tasks), 1_000_000, rng), strict=True))
    entry_ids = dict(zip(sorted(portal.entries), _spread(layout, len(portal.entries), 3_000_000, rng), strict=True))
    tasks = {task_ids[old]: {**task, "ID": task_ids[old]} for old, task in portal.tasks.items()}
    entries = {entry_ids[old]: {**entry, "ID": entry_ids[old], "TASK_ID": task_ids[entry["TASK_ID"]]}
               for old, entry in portal.entries.items()}
    portal.tasks.clear()
    portal.tasks.update(sorted(tasks.items()))
    portal.entries.clear()
    portal.entries.update(sorted(entries.items()))
    portal.next_ids["task"] = max(tasks, default=0) + 1
    portal.next_ids["entry"] = max(entries, default=0) + 1


def _spread(layout: str, count: int, offset: int, rng: random.Random) -> list[int]:
    """``count`` ascending IDs as ``layout`` spreads them; ``offset`` is where the ``offset`` layout starts."""
    half = count // 2
    if layout == "offset":
        return _numbered(offset, count, rng)
    if layout == "sparse":
        return [100_000 + index * 1000 + rng.randrange(1000) for index in range(count)]
    if layout == "clustered":
        return _numbered(200_000, half, rng) + _numbered(200_000 + FAR, count - half, rng)
    if layout == "gap":
        return [*range(1, half + 1), *range(half + 1 + HOLE, count + 1 + HOLE)]
    return list(range(1, count + 1))


def _numbered(start: int, count: int, rng: random.Random) -> list[int]:
    """IDs from ``start`` with about one in six missing, as deleted tasks and entries leave them."""
    ids, current = [], start
    for _ in range(count):
        current += 1 + (rng.random() < 0.1) * rng.randrange(1, 4)
        ids.append(current)
    return ids


def _random_entry(portal: Portal, rng: random.Random, task_id: int, created: datetime) -> None:
    over = rng.random() < 0.1
    seconds = rng.randrange(CAP_SECONDS + 60, 3 * CAP_SECONDS) if over else rng.randrange(300, CAP_SECONDS)
    _fast_entry(portal, task_id, seconds, created + timedelta(hours=rng.randrange(1, 200)))


def _fast_entry(portal: Portal, task_id: int, seconds: int, created: datetime) -> None:
    entry_id = portal.new_id("entry")
    portal.entries[entry_id] = {
        "ID": entry_id, "TASK_ID": task_id, "USER_ID": 1, "COMMENT_TEXT": f"work on {task_id}",
        "SECONDS": seconds, "SOURCE": 2, "CREATED_DATE": created, "DATE_START": created,
        "DATE_STOP": created + timedelta(seconds=seconds),
    }


def _midnight() -> datetime:
    return dates.now().replace(hour=0, minute=0, second=0)
