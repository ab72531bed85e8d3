"""How a stored task is printed: classic camelCase with strings (§6.1) or REST 3.0 typed (§6.4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox import dates
from sandbox.records import TASK_FIELDS

STATUS_WORDS = {1: "new", 2: "pending", 3: "in_progress", 4: "supposedly_completed", 5: "completed",
                6: "deferred", 7: "declined"}
V3_NAMES = {"ID": "id", "TITLE": "title", "CREATED_BY": "creatorId", "CREATED_DATE": "created",
            "RESPONSIBLE_ID": "responsibleId", "DEADLINE": "deadline", "GROUP_ID": "groupId",
            "STATUS": "status", "CHANGED_DATE": "changed", "CLOSED_DATE": "closed"}


def camel(name: str) -> str:
    """Bitrix `snake2camel` with LC_FIRST: `UF_PROJECT_CODE` → `ufProjectCode` (§6.1)."""
    head, *rest = name.lower().split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def selected_names(task: dict[str, Any], select: list[str] | None) -> list[str]:
    """Stored field names a classic `select` picks: default = all non-UF, UF only when named."""
    wanted = [str(name).upper() for name in (select or [])]
    names = list(TASK_FIELDS) if not wanted or "*" in wanted else ["ID"]
    names += [name for name in wanted if name in TASK_FIELDS and name not in names]
    for name in wanted:
        if name == "UF_*":
            names += [key for key in task if key.startswith("UF_") and key not in names]
        elif name.startswith("UF_") and name not in names:
            names.append(name)
    return names


def wants_time_spent(select: list[str] | None) -> bool:
    """``TIME_SPENT_IN_LOGS`` is computed from the entries, so only when named in ``select``."""
    return any(str(name).upper() == "TIME_SPENT_IN_LOGS" for name in select or [])


def classic(task: dict[str, Any], select: list[str] | None, user_tz: str, listing: bool = False,
            spent: dict[int, int] | None = None) -> dict[str, Any]:
    """The classic task object: camelCase keys, numbers as strings, dates in the user's offset.

    ``spent`` holds ``TIME_SPENT_IN_LOGS`` (see ``wants_time_spent``), printed only when selected.
    """
    out: dict[str, Any] = {}
    for name in selected_names(task, select):
        out[camel(name)] = _classic_value(task.get(name), user_tz)
    if spent is not None:
        out["timeSpentInLogs"] = _classic_value(spent.get(task["ID"]), user_tz)
    if listing and "status" in out:
        out["subStatus"] = out["status"]
    out.update(_extras(task))
    return out


def _classic_value(value: Any, user_tz: str) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, datetime):
        return dates.iso(value, user_tz)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _extras(task: dict[str, Any]) -> dict[str, Any]:
    """Objects the controller always adds (§6.1), reduced to what a client might read."""
    def person(user_id: int) -> dict[str, Any]:
        return {"id": str(user_id), "name": f"User {user_id}", "link": f"/company/personal/user/{user_id}/",
                "icon": "/bitrix/images/1.gif"}
    group: Any = [] if not task["GROUP_ID"] else {"id": str(task["GROUP_ID"]), "name": f"Group {task['GROUP_ID']}",
                                                   "opened": True}
    return {"creator": person(task["CREATED_BY"]), "responsible": person(task["RESPONSIBLE_ID"]),
            "group": group, "action": {"edit": True, "remove": True, "complete": task["STATUS"] != 5,
                                       "changeDeadline": True, "elapsedTime": True}}


def v3(task: dict[str, Any], select: list[str] | None, user_tz: str) -> dict[str, Any]:
    """The REST 3.0 item: ints as ints, status as a word, ISO dates; unknown select names dropped."""
    wanted = set(select or V3_NAMES.values())
    item: dict[str, Any] = {}
    for name, key in V3_NAMES.items():
        if key not in wanted:
            continue
        value = task.get(name)
        if name == "STATUS":
            value = STATUS_WORDS.get(int(value or 0), str(value))
        elif isinstance(value, datetime):
            value = dates.iso(value, user_tz)
        item[key] = value
    return item
