"""`task.elapseditem.*` and `task.item.userfield.*` in the sandbox: positional binding, errors, paging."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox

TIMEOUT = 5
WRONG_ARGS = "TASKS_ERROR_EXCEPTION_#256; Param #{n} ({name}) for method ctaskelapseditem::{m}() {tail}; " \
             "256/TE/WRONG_ARGUMENTS<br>"


def call(server: RunningSandbox, method: str, **kwargs: Any) -> requests.Response:
    """POST to a classic method of the sandbox's webhook URL."""
    return requests.post(server.webhook_url + method, timeout=TIMEOUT, **kwargs)


def stored(sandbox: SandboxControl, entry_id: int) -> dict[str, Any]:
    """The stored entry, which must exist."""
    entry = sandbox.entry(entry_id)
    assert entry is not None
    return entry


@pytest.fixture
def task_id(sandbox: SandboxControl) -> int:
    """A task with three entries of 100, 200 and 300 seconds (ids 1, 2, 3)."""
    new_id = sandbox.add_task(TITLE="timed")
    for seconds in (100, 200, 300):
        sandbox.add_entry(new_id, seconds, comment=f"c{seconds}")
    return new_id


class TestPositionalBinding:
    @pytest.mark.parametrize("body", [
        {"TASKID": "{task}", "ARFIELDS": {"SECONDS": 60, "COMMENT_TEXT": "x"}},
        {"a": "{task}", "b": {"SECONDS": 60, "COMMENT_TEXT": "x"}},
        ["{task}", {"SECONDS": 60, "COMMENT_TEXT": "x"}],
    ])
    def test_names_are_ignored(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int,
                               body: Any) -> None:
        """Any key names work as long as the order is taskId, fields."""
        body = [task_id, body[1]] if isinstance(body, list) else {key: task_id if value == "{task}" else value
                                                                  for key, value in body.items()}
        response = call(sandbox_server, "task.elapseditem.add", json=body)
        assert response.status_code == 200
        assert response.json()["result"] == 4

    def test_reordered_keys_are_a_type_error(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                             task_id: int) -> None:
        """Fields first and task id second puts the fields into position 0, like the real server."""
        response = call(sandbox_server, "task.elapseditem.add",
                        json={"ARFIELDS": {"SECONDS": 60}, "TASKID": task_id})
        assert response.status_code == 400
        assert response.json() == {"error": "ERROR_CORE", "error_description": WRONG_ARGS.format(
            n=0, name="taskId", m="add", tail='expected to be of type "integer", but given something else.')}

    def test_stray_key_shifts_positions(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                        task_id: int) -> None:
        """A cache-buster key in front shifts every argument."""
        response = call(sandbox_server, "task.elapseditem.get", json={"_": "x", "TASKID": task_id, "ITEMID": 1})
        assert response.status_code == 400
        assert "Param #0 (taskId)" in response.json()["error_description"]

    def test_missing_mandatory_param(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                     task_id: int) -> None:
        """A missing mandatory position names the parameter."""
        response = call(sandbox_server, "task.elapseditem.get", json=[task_id])
        assert response.json()["error_description"] == (
            "TASKS_ERROR_EXCEPTION_#256; Param #1 (itemId) expected by method ctaskelapseditem::get(), "
            "but not given.; 256/TE/WRONG_ARGUMENTS<br>")

    def test_lax_integers_and_form_encoding(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                            task_id: int) -> None:
        """Numeric strings pass as integers; `0=..&1[SECONDS]=..` is a valid form body."""
        response = call(sandbox_server, "task.elapseditem.add",
                        data={"0": str(task_id), "1[SECONDS]": "60", "1[COMMENT_TEXT]": "form"})
        assert response.json()["result"] == 4
        assert stored(sandbox, 4)["COMMENT_TEXT"] == "form"

    def test_unknown_field_key_is_refused(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                          task_id: int) -> None:
        """MINUTES is not writable: "must not contain key"."""
        response = call(sandbox_server, "task.elapseditem.add", json=[task_id, {"MINUTES": 5}])
        assert response.json()["error_description"] == WRONG_ARGS.format(
            n=1, name="fields", m="add", tail='must not contain key "MINUTES".')

    def test_logged_params_are_a_list(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                      task_id: int) -> None:
        """The request log shows positional params as the list of values the method saw."""
        call(sandbox_server, "task.elapseditem.get", json={"TASKID": task_id, "ITEMID": 2})
        assert sandbox.requests()[-1]["params"] == [task_id, 2]


class TestGetList:
    def test_numbers_are_strings(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                 task_id: int) -> None:
        """Rows carry strings for numbers and server-zone dates; MINUTES is derived."""
        rows = call(sandbox_server, "task.elapseditem.getlist", json=[task_id]).json()["result"]
        assert rows[0]["ID"] == "1"
        assert rows[0]["SECONDS"] == "100"
        assert rows[0]["MINUTES"] == "2"
        assert rows[0]["SOURCE"] == "2"
        assert rows[0]["CREATED_DATE"].endswith(("+01:00", "+02:00"))

    def test_all_entries_of_a_task_without_nav_params(self, sandbox: SandboxControl,
                                                      sandbox_server: RunningSandbox) -> None:
        """With a task id and no NAV_PARAMS every entry comes back in one answer."""
        sandbox.reset(burst=0)
        new_id = sandbox.add_task(TITLE="big")
        for _ in range(60):
            sandbox.add_entry(new_id, 10)
        body = call(sandbox_server, "task.elapseditem.getlist", json=[new_id]).json()
        assert (len(body["result"]), body["total"]) == (60, 60)
        assert "next" not in body

    def test_nav_params_paging_and_start_ignored(self, sandbox: SandboxControl,
                                                 sandbox_server: RunningSandbox, task_id: int) -> None:
        """NAV_PARAMS pages the list, `next` is an item offset, and `start` changes nothing."""
        nav = {"NAV_PARAMS": {"nPageSize": 2, "iNumPage": 2}}
        second = call(sandbox_server, "task.elapseditem.getlist",
                      json=[task_id, {"ID": "asc"}, {}, ["ID"], nav]).json()
        first = call(sandbox_server, "task.elapseditem.getlist",
                     json={"0": task_id, "1": {"ID": "asc"}, "2": {}, "3": ["ID"],
                           "4": {"NAV_PARAMS": {"nPageSize": 2}}, "start": 2}).json()
        assert [row["ID"] for row in second["result"]] == ["3"]
        assert "next" not in second
        assert [row["ID"] for row in first["result"]] == ["1", "2"]
        assert (first["next"], first["total"]) == (2, 3)

    def test_page_size_is_capped_at_fifty(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """nPageSize above 50 gives pages of 50."""
        new_id = sandbox.add_task(TITLE="big")
        for _ in range(55):
            sandbox.add_entry(new_id, 10)
        body = call(sandbox_server, "task.elapseditem.getlist",
                    json=[new_id, {}, {}, [], {"NAV_PARAMS": {"nPageSize": 500, "iNumPage": 1}}]).json()
        assert (len(body["result"]), body["next"]) == (50, 50)

    def test_order_first_means_all_tasks(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                         task_id: int) -> None:
        """Position 0 as an array inserts task id 0: entries of every task."""
        other = sandbox.add_task(TITLE="other")
        sandbox.add_entry(other, 50)
        rows = call(sandbox_server, "task.elapseditem.getlist", json=[{"ID": "desc"}, {}]).json()["result"]
        assert [row["ID"] for row in rows] == ["4", "3", "2", "1"]

    @pytest.mark.parametrize(("filter_", "expected"), [
        ({">ID": 1}, ["2", "3"]),
        ({"ID": [1, 3]}, ["1", "3"]),
        ({"!ID": 2}, ["1", "3"]),
        ({"<=CREATED_DATE": "2000-01-01T00:00:00+00:00"}, []),
        ({">=CREATED_DATE": "2000-01-01T00:00:00+00:00", "USER_ID": 1}, ["1", "2", "3"]),
    ])
    def test_filters(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int,
                     filter_: dict[str, Any], expected: list[str]) -> None:
        """Filter keys take operator prefixes and list values."""
        rows = call(sandbox_server, "task.elapseditem.getlist", json=[task_id, {}, filter_]).json()["result"]
        assert [row["ID"] for row in rows] == expected

    def test_form_encoded_empty_order(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                      task_id: int) -> None:
        """`1[]=` is an empty ORDER, keeping FILTER in position 2."""
        rows = call(sandbox_server, "task.elapseditem.getlist",
                    data={"0": task_id, "1[]": "", "2[>ID]": "2"}).json()["result"]
        assert [row["ID"] for row in rows] == ["3"]

    def test_missing_task(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A task id that does not exist is a TasksException #1."""
        response = call(sandbox_server, "task.elapseditem.getlist", json=[999])
        assert response.status_code == 400
        assert response.json()["error_description"].startswith("TASKS_ERROR_EXCEPTION_#1; ")


class TestItem:
    def test_get_returns_an_object(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                   task_id: int) -> None:
        """`get` answers one object fetched by item id."""
        item = call(sandbox_server, "task.elapseditem.get", json=[task_id, 2]).json()["result"]
        assert (item["ID"], item["SECONDS"], item["COMMENT_TEXT"]) == ("2", "200", "c200")

    def test_missing_item(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int) -> None:
        """An unknown item is #512 ITEM_NOT_FOUND_OR_NOT_ACCESSIBLE."""
        response = call(sandbox_server, "task.elapseditem.get", json=[task_id, 99])
        assert response.status_code == 400
        assert response.json() == {"error": "ERROR_CORE", "error_description":
                                   "TASKS_ERROR_EXCEPTION_#512; Check listitem not found or not accessible; "
                                   "512/TE/ITEM_NOT_FOUND_OR_NOT_ACCESSIBLE<br>"}

    def test_update_with_comment(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                 task_id: int) -> None:
        """SECONDS and COMMENT_TEXT are written; MINUTES follows; the answer is null."""
        response = call(sandbox_server, "task.elapseditem.update",
                        json=[task_id, 1, {"SECONDS": 28800, "COMMENT_TEXT": "capped"}])
        assert response.json()["result"] is None
        entry = stored(sandbox, 1)
        assert (entry["SECONDS"], entry["MINUTES"], entry["COMMENT_TEXT"]) == (28800, 480, "capped")

    def test_update_without_comment_wipes_it(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                             task_id: int) -> None:
        """Omitting COMMENT_TEXT wipes the comment (the newer-server risk the sandbox enforces)."""
        call(sandbox_server, "task.elapseditem.update", json=[task_id, 1, {"SECONDS": 50}])
        assert stored(sandbox, 1)["COMMENT_TEXT"] == ""

    @pytest.mark.parametrize(("fields", "description"), [
        ({"COMMENT_TEXT": "x"}, "TASKS_ERROR_ASSERT_EXCEPTION<br>"),
        ({"SECONDS": 5, "USER_ID": 2}, "TASKS_ERROR_EXCEPTION_#256; ; 256/TE/WRONG_ARGUMENTS<br>"),
        ({"SECONDS": 5, "DATE_START": "2025-01-01T00:00:00+00:00"},
         "TASKS_ERROR_EXCEPTION_#256; ; 256/TE/WRONG_ARGUMENTS<br>"),
        ({"SECONDS": 5, "MINUTES": 1}, WRONG_ARGS.format(n=2, name="fields", m="update",
                                                         tail='must not contain key "MINUTES".')),
    ])
    def test_update_errors(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int,
                           fields: dict[str, Any], description: str) -> None:
        """Update needs SECONDS and refuses USER_ID, DATE_START and MINUTES."""
        response = call(sandbox_server, "task.elapseditem.update", json=[task_id, 1, fields])
        assert response.status_code == 400
        assert response.json() == {"error": "ERROR_CORE", "error_description": description}
        assert stored(sandbox, 1)["SECONDS"] == 100

    def test_add_requires_seconds(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                  task_id: int) -> None:
        """Adding without SECONDS is an assertion error."""
        response = call(sandbox_server, "task.elapseditem.add", json=[task_id, {"COMMENT_TEXT": "x"}])
        assert response.json()["error_description"] == "TASKS_ERROR_ASSERT_EXCEPTION<br>"

    def test_delete_and_action_check(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                     task_id: int) -> None:
        """`isactionallowed` answers a bool; `delete` answers null and removes the entry."""
        allowed = call(sandbox_server, "task.elapseditem.isActionAllowed", json=[task_id, 3, 3]).json()
        deleted = call(sandbox_server, "task.elapseditem.delete", json=[task_id, 3]).json()
        assert allowed["result"] is True
        assert deleted["result"] is None
        assert sandbox.entry(3) is None


class TestUserfields:
    def test_getlist_includes_system_fields_as_strings(self, sandbox: SandboxControl,
                                                       sandbox_server: RunningSandbox) -> None:
        """The list always has the system fields, and every scalar is a string."""
        sandbox.add_userfield(FIELD_NAME="PROJECT_CODE", USER_TYPE_ID="string")
        rows = call(sandbox_server, "task.item.userfield.getlist", json={}).json()
        names = [row["FIELD_NAME"] for row in rows["result"]]
        assert names == ["UF_CRM_TASK", "UF_MAIL_MESSAGE", "UF_TASK_WEBDAV_FILES", "UF_PROJECT_CODE"]
        assert rows["result"][3]["ID"] == "4"
        assert rows["result"][3]["MANDATORY"] == "N"
        assert rows["total"] == 4

    def test_update_mandatory_keeps_other_settings(self, sandbox: SandboxControl,
                                                   sandbox_server: RunningSandbox) -> None:
        """`update` with MANDATORY=Y changes only that flag."""
        field_id = sandbox.add_userfield(FIELD_NAME="UF_X", USER_TYPE_ID="string", SORT=220,
                                         SETTINGS={"ROWS": 3})
        response = call(sandbox_server, "task.item.userfield.update", json=[field_id, {"MANDATORY": "Y"}])
        definition = sandbox.userfield(field_id)
        assert response.json()["result"] is True
        assert (definition["MANDATORY"], definition["SORT"], definition["SETTINGS"]["ROWS"]) == ("Y", 220, 3)

    @pytest.mark.parametrize(("method", "body", "description"), [
        ("update", [999, {"MANDATORY": "Y"}], "The entity with ID '999' is not found.<br>"),
        ("get", [0], "ID is not defined or invalid.<br>"),
        ("get", [], "No parameters found.<br>"),
        ("add", [{"FIELD_NAME": "X", "USER_TYPE_ID": "enumeration"}], "The 'USER_TYPE_ID' field is not found.<br>"),
    ])
    def test_errors_are_error_core(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, method: str,
                                   body: Any, description: str) -> None:
        """Userfield errors come as ERROR_CORE with `<br>` texts."""
        response = call(sandbox_server, f"task.item.userfield.{method}", json=body)
        assert response.status_code == 400
        assert response.json() == {"error": "ERROR_CORE", "error_description": description}

    def test_writes_need_an_admin(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A non-admin webhook owner gets "Access denied."."""
        sandbox.configure(is_admin=False)
        response = call(sandbox_server, "task.item.userfield.update", json=[1, {"MANDATORY": "Y"}])
        assert response.json() == {"error": "ERROR_CORE", "error_description": "Access denied.<br>"}

    def test_add_prefixes_and_uppercases(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """FIELD_NAME gets upper-cased and the UF_ prefix."""
        response = call(sandbox_server, "task.item.userfield.add",
                        json={"PARAMS": {"FIELD_NAME": "budget", "USER_TYPE_ID": "double", "MANDATORY": "yes"}})
        definition = sandbox.userfield(response.json()["result"])
        assert (definition["FIELD_NAME"], definition["MANDATORY"]) == ("UF_BUDGET", "N")
