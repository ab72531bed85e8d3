"""`task.elapseditem.*`: time entries, positional parameters (reference §7)."""

from __future__ import annotations

from typing import Any

from sandbox import dates, querying, records
from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.errors import (
    TE_ITEM_NOT_FOUND,
    TE_TASK_NOT_FOUND,
    TE_WRONG_ARGUMENTS,
    assert_exception,
    tasks_exception,
)
from sandbox.positional import Param, Signature, bind

READABLE = ("ID", "TASK_ID", "USER_ID", "COMMENT_TEXT", "SECONDS", "MINUTES", "SOURCE",
            "CREATED_DATE", "DATE_START", "DATE_STOP")
WRITABLE = ("USER_ID", "COMMENT_TEXT", "SECONDS", "SOURCE", "CREATED_DATE", "DATE_START", "DATE_STOP")
SORTABLE = ("ID", "TASK_ID", "USER_ID", "SECONDS", "MINUTES", "CREATED_DATE", "DATE_START", "DATE_STOP")
FILTERABLE = ("ID", "TASK_ID", "USER_ID", "CREATED_DATE")
DATE_KEYS = ("CREATED_DATE", "DATE_START", "DATE_STOP")
UPDATE_WHITELIST = ("MINUTES", "SECONDS", "COMMENT_TEXT", "CREATED_DATE")
AGGREGATES = tuple(f"{column}_{func}" for func in ("MAX", "MIN", "COUNT", "SUM", "AVG")
                   for column in ("ID", "USER_ID", "SECONDS", "MINUTES"))
PAGE_SIZE = 50
ITEM_NOT_FOUND_TEXT = "Check listitem not found or not accessible"
TASK_NOT_FOUND_TEXT = "Task not found or not accessible"

_TASK = Param("taskId", "integer")
_ITEM = Param("itemId", "integer")
_FIELDS = Param("fields", "array", allowed_keys=WRITABLE)


def _sig(method: str, mandatory: int, *params: Param) -> Signature:
    return Signature("ctaskelapseditem", method, params, mandatory, DATE_KEYS)


def _getlist(filterable: tuple[str, ...]) -> Signature:
    return _sig("getlist", 0, _TASK, Param("order", "array", allowed_keys=SORTABLE),
                Param("filter", "array", allowed_keys=filterable, key_prefixes=("!", "<=", "<", ">=", ">")),
                Param("select", "array", allowed_values=("", "*", *READABLE, *AGGREGATES)),
                Param("params", "array", allowed_keys=("NAV_PARAMS",)))


GETLIST = _getlist(FILTERABLE)
FILTERABLE_WITHOUT_TASK = tuple(name for name in FILTERABLE if name != "TASK_ID")
GETLIST_WITHOUT_TASK_FILTER = _getlist(FILTERABLE_WITHOUT_TASK)
"""A server whose getlist cannot filter by TASK_ID, as the documentation's filter table has it
(``SandboxConfig.elapsed_task_filter`` off)."""
GET = _sig("get", 2, _TASK, _ITEM)
ADD = _sig("add", 2, _TASK, _FIELDS)
UPDATE = _sig("update", 3, _TASK, _ITEM, _FIELDS)
DELETE = _sig("delete", 2, _TASK, _ITEM)
IS_ACTION_ALLOWED = _sig("isactionallowed", 3, _TASK, _ITEM, Param("actionId", "integer"))


def _names(method: str) -> tuple[str, str]:
    return f"task.elapseditem.{method}", f"task.ctaskelapseditem.{method}"


def row(call: Call, entry: dict[str, Any], select: list[str] | None = None) -> dict[str, Any]:
    """An entry as the REST layer prints it: numbers as strings, dates in the server zone."""
    tz = call.portal.config.server_tz
    out = {}
    for name, value in records.entry_view(entry).items():
        if select and name not in select:
            continue
        out[name] = dates.iso(value, tz) if name in DATE_KEYS else str(value)
    return out


def _task(call: Call, task_id: int) -> dict[str, Any]:
    task = call.portal.tasks.get(task_id)
    if task is None:
        raise tasks_exception(TE_TASK_NOT_FOUND, TASK_NOT_FOUND_TEXT)
    return task


def _entry(call: Call, item_id: int) -> dict[str, Any]:
    entry = call.portal.entries.get(item_id)
    if entry is None:
        raise tasks_exception(TE_ITEM_NOT_FOUND, ITEM_NOT_FOUND_TEXT)
    return entry


@register(CLASSIC, *_names("getlist"), positional=True)
def getlist(call: Call) -> Outcome:
    """Entries of one task (all of them without NAV_PARAMS) or of every task (first 50)."""
    values = call.values()
    if values and isinstance(values[0], dict | list):
        values.insert(0, 0)  # [ORDER, FILTER, ...] without a task id: all tasks
    filterable = _filterable(call)
    signature = GETLIST if filterable is FILTERABLE else GETLIST_WITHOUT_TASK_FILTER
    args = bind(signature, values, call.portal.config.server_tz)
    defaults: list[Any] = [0, {}, {}, [], {}]
    task_id, order, filter_, select, params = args + defaults[len(args):]
    conditions = querying.compile_filter(filter_, _coerce, filterable)
    if task_id:
        _task(call, task_id)
        conditions.append(querying.Condition("TASK_ID", "=", task_id))
    sort = querying.parse_order(order, SORTABLE) or [("ID", False)]
    pool = querying.candidates(call.portal.entries, conditions)
    wanted_tasks = {task_id} if task_id else _task_ids_in(conditions)
    if wanted_tasks is not None:  # cheap pre-filter on the raw record before building each view
        pool = [entry for entry in pool if entry["TASK_ID"] in wanted_tasks]
    found = [entry for entry in pool if querying.matches(records.entry_view(entry), conditions)]
    found = querying.sort_records([records.entry_view(entry) for entry in found], sort)
    size, offset = _navigation(params.get("NAV_PARAMS") if isinstance(params, dict) else None, bool(task_id))
    page = found[offset:offset + size] if size > 0 else found[offset:]
    chosen = [str(name) for name in (select.values() if isinstance(select, dict) else select)]
    chosen = [] if not chosen or "*" in chosen else chosen
    rows = [row(call, entry, chosen) for entry in page]
    after = offset + len(rows)
    return Outcome(rows, total=len(found), next=after if after < len(found) else None)


def _filterable(call: Call) -> tuple[str, ...]:
    return FILTERABLE if call.portal.config.elapsed_task_filter else FILTERABLE_WITHOUT_TASK


def _task_ids_in(conditions: list[querying.Condition]) -> set[Any] | None:
    """The task ids a TASK_ID = / IN condition allows, or None when there is none."""
    for condition in conditions:
        if condition.field == "TASK_ID" and condition.op == "=":
            value = condition.value
            return set(value) if isinstance(value, tuple) else {value}
    return None


def _navigation(nav: Any, by_task: bool) -> tuple[int, int]:
    """(page size, item offset) exactly as `runRestMethod` computes them (§7.4)."""
    if not isinstance(nav, dict):
        return (0 if by_task else PAGE_SIZE), 0
    size = min(PAGE_SIZE, records.php_int(nav["nPageSize"])) if "nPageSize" in nav else PAGE_SIZE
    page = records.php_int(nav.get("iNumPage"))
    return size, (page - 1) * size if page > 0 else 0


def _coerce(field: str, value: Any) -> Any:
    if field == "CREATED_DATE":
        return value
    return records.php_int(value)


@register(CLASSIC, *_names("get"), positional=True)
def get(call: Call) -> Outcome:
    """One entry, fetched by item id only; the task id just has to be readable (§7.7)."""
    task_id, item_id = bind(GET, call.values(), call.portal.config.server_tz)
    _task(call, task_id)
    return Outcome(row(call, _entry(call, item_id)))


@register(CLASSIC, *_names("add"), positional=True)
def add(call: Call) -> Outcome:
    """A new entry; SECONDS is required, USER_ID 0/absent is the caller, no event (§7.5)."""
    task_id, fields = bind(ADD, call.values(), call.portal.config.server_tz)
    _task(call, task_id)
    if fields.get("SECONDS") in (None, ""):
        raise assert_exception()
    return Outcome(records.add_entry(call.portal, task_id, fields))


@register(CLASSIC, *_names("update"), positional=True)
def update(call: Call) -> Outcome:
    """Change SECONDS / COMMENT_TEXT / CREATED_DATE; an omitted COMMENT_TEXT wipes the comment.

    The wipe simulates the newer V2 elapsed-time service risk (§7.6), so a client that does not
    send the comment back is caught here rather than on a customer's portal.
    """
    task_id, item_id, fields = bind(UPDATE, call.values(), call.portal.config.server_tz)
    _task(call, task_id)
    if not fields:
        return Outcome(None)  # the item returns before any check (§7.6)
    entry = _entry(call, item_id)
    _require_author(call, entry)
    if any(key not in UPDATE_WHITELIST for key in fields):
        raise tasks_exception(TE_WRONG_ARGUMENTS)
    if fields.get("SECONDS") in (None, ""):
        raise assert_exception()
    entry["SECONDS"] = records.php_int(fields["SECONDS"])
    entry["COMMENT_TEXT"] = str(fields.get("COMMENT_TEXT") or "")
    entry["SOURCE"] = 2
    if fields.get("CREATED_DATE"):
        entry["CREATED_DATE"] = fields["CREATED_DATE"]
    return Outcome(None)


def _require_author(call: Call, entry: dict[str, Any]) -> None:
    config = call.portal.config
    if not (config.is_admin or entry["USER_ID"] == config.user_id):
        raise tasks_exception((4, "ACTION_NOT_ALLOWED"))


@register(CLASSIC, *_names("delete"), positional=True)
def delete(call: Call) -> Outcome:
    """Remove an entry (author or admin only); result null."""
    task_id, item_id = bind(DELETE, call.values(), call.portal.config.server_tz)
    _task(call, task_id)
    entry = _entry(call, item_id)
    _require_author(call, entry)
    del call.portal.entries[item_id]
    return Outcome(None)


@register(CLASSIC, *_names("isactionallowed"), positional=True)
def is_action_allowed(call: Call) -> Outcome:
    """1 add (task access), 2 modify / 3 remove (author or admin) → bool (§7.7)."""
    task_id, item_id, action_id = bind(IS_ACTION_ALLOWED, call.values(), call.portal.config.server_tz)
    _task(call, task_id)
    if item_id <= 0:
        raise assert_exception()
    if action_id == 1:
        return Outcome(True)
    if action_id in (2, 3):
        entry = _entry(call, item_id)
        config = call.portal.config
        return Outcome(config.is_admin or entry["USER_ID"] == config.user_id)
    return Outcome(False)


@register(CLASSIC, *_names("getmanifest"))
def get_manifest(call: Call) -> Outcome:
    """A short form of the server manifest (do not rely on its format, says the server)."""
    return Outcome({
        "Manifest version": "1.2",
        "REST: shortname alias to class": "elapseditem",
        "REST: writable elapseditem data fields": list(WRITABLE),
        "REST: readable elapseditem data fields": list(READABLE),
        "REST: sortable elapseditem data fields": list(SORTABLE),
        "REST: filterable elapseditem data fields": list(_filterable(call)),
        "REST: date fields": list(DATE_KEYS),
    })
