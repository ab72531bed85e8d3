"""What a sweep costs on portals numbered as real ones are: counted by the sandbox, per ID layout.

SPEC section 6: a ``full`` sweep takes at most 1.2 x ceil((tasks + entries) / 2500) + 3 requests, a ``tasks``
sweep finding k changed tasks at most 1.2 x ceil(k / 2500) + 3, and one or two when nothing changed, on
every layout. Counts are deterministic: the seeds are, and so is what a sweep asks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from sandbox.seed import LAYOUTS
from workers.sweeps import run_sweep

CAP_ONLY = """
rules:
  - name: cap
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""
TASKS, ENTRIES = 300, 600


def bound(rows: int) -> float:
    return 1.2 * math.ceil(rows / 2500) + 3


def commands_in(log: list[dict[str, Any]]) -> int:
    return sum(len(request["commands"]) or 1 for request in log)


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest, sandbox: Any) -> str:
    """The sandbox seeded with 300 tasks and 600 entries numbered as ``layout`` numbers them."""
    sandbox.reset(seed=f"{request.param}:{TASKS}:{ENTRIES}")
    return str(request.param)


class TestSeeds:
    def test_layouts_number_the_same_data_differently(self, sandbox: Any) -> None:
        """Each layout spreads the IDs its way (millions, one in 1,000, two blocks, a hole) over the same data."""
        seconds, spans = {}, {}
        for name in LAYOUTS:
            sandbox.reset(seed=f"{name}:{TASKS}:{ENTRIES}")
            entries = sandbox.entries()  # by ID, the same order in every layout
            task_ids, entry_ids = [e["TASK_ID"] for e in entries], [e["ID"] for e in entries]
            seconds[name] = [e["SECONDS"] for e in entries]
            spans[name] = (min(task_ids), max(task_ids), min(entry_ids), max(entry_ids))
        assert all(values == seconds["dense"] for values in seconds.values())
        assert spans["dense"][1] <= TASKS and spans["dense"][2:] == (1, ENTRIES)
        assert spans["offset"][0] > 1_000_000 and spans["offset"][2] > 3_000_000
        assert spans["sparse"][1] - spans["sparse"][0] > 250_000
        assert spans["clustered"][1] - spans["clustered"][0] > 5_000_000
        assert spans["gap"][0] <= TASKS < 2_000_000 < spans["gap"][1]

    def test_same_seed_same_data(self, sandbox: Any) -> None:
        """A seed is deterministic: the same layout and counts give the same IDs, tasks and seconds."""
        def snapshot() -> list[tuple[Any, ...]]:
            sandbox.reset(seed=f"sparse:{TASKS}:{ENTRIES}")
            entries = sandbox.entries()
            first = sandbox.task(entries[0]["TASK_ID"])
            return [(e["ID"], e["TASK_ID"], e["SECONDS"], e["CREATED_DATE"]) for e in entries] + [
                (first["ID"], first["TITLE"], first["CREATED_DATE"], first["DEADLINE"])]

        assert snapshot() == snapshot()

    def test_new_ids_follow_the_seeded_ones(self, sandbox: Any) -> None:
        """Tasks and entries added after an offset seed get higher IDs, as on the portal it models."""
        sandbox.reset(seed=f"offset:{TASKS}:{ENTRIES}")
        highest = max(e["ID"] for e in sandbox.entries())
        task_id = sandbox.add_task(TITLE="new")
        assert task_id > 1_000_000 + TASKS
        assert sandbox.add_entry(task_id, 60) == highest + 1

    def test_a_layout_needs_generated_data(self, sandbox: Any) -> None:
        with pytest.raises(RuntimeError, match="seed must be"):
            sandbox.reset(seed="sparse:demo")


class TestFullSweep:
    def test_reads_every_row_in_three_requests(self, make_app: Callable[..., Flask], sandbox: Any,
                                               layout: str) -> None:
        """One request carries the first page and count of both listings; then one chain of pages each.

        Fixed ID windows of 50 would take 404 requests for 300 tasks numbered from a million; every layout takes
        1 + ceil((600 - 50) / 2500) + ceil((300 - 50) / 2500) = 3, with a command per 50 rows and no more.
        """
        app = make_app(CAP_ONLY)
        sandbox.clear_requests()
        stats = run_sweep(app.extensions["taskwarden"], "full", dry_run=True)
        log = sandbox.requests()
        assert (stats.tasks_seen, stats.entries_seen) == (TASKS, ENTRIES)
        assert len(log) == stats.requests == 3 <= bound(TASKS + ENTRIES)
        assert commands_in(log) == TASKS // 50 + ENTRIES // 50
        assert stats.would_change == sum(1 for e in sandbox.entries() if e["SECONDS"] > 28800)


class TestTasksSweep:
    def test_cost_follows_the_changed_tasks(self, make_app: Callable[..., Flask], sandbox: Any,
                                            layout: str) -> None:
        """Nothing changed: one request. Three tasks changed, spread over the ID range: within the bound."""
        app = make_app(CAP_ONLY)
        rt = app.extensions["taskwarden"]
        assert run_sweep(rt, "tasks").tasks_seen == TASKS  # the first sweep sets the cursor

        sandbox.clear_requests()
        idle = run_sweep(rt, "tasks", dry_run=True)
        assert (idle.tasks_seen, len(sandbox.requests())) == (0, 1)

        task_ids = sorted({e["TASK_ID"] for e in sandbox.entries()})
        for task_id in (task_ids[0], task_ids[len(task_ids) // 2], task_ids[-1]):
            sandbox.update_task(task_id, TITLE="edited")
        sandbox.clear_requests()
        three = run_sweep(rt, "tasks", dry_run=True)
        assert three.tasks_seen == 3
        assert len(sandbox.requests()) == three.requests <= bound(3)
