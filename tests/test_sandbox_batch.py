"""Classic `batch` in the sandbox: results, errors, references, limits, encodings."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import requests

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox

TIMEOUT = 5


def batch(server: RunningSandbox, cmd: Any, halt: Any = 0, **kwargs: Any) -> dict[str, Any]:
    """POST a JSON batch and return its `result` block."""
    response = requests.post(server.webhook_url + "batch", json={"halt": halt, "cmd": cmd}, timeout=TIMEOUT,
                             **kwargs)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()["result"]
    return result


@pytest.fixture
def task_id(sandbox: SandboxControl) -> int:
    """A task with two time entries, responsible user 547."""
    new_id = sandbox.add_task(TITLE="batch & co", RESPONSIBLE_ID=547)
    sandbox.add_entry(new_id, 100, comment="a")
    sandbox.add_entry(new_id, 200, comment="b")
    return new_id


class TestBatch:
    def test_results_errors_totals_and_times(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                             task_id: int) -> None:
        """Each key lands in result or result_error; list totals and times are per key."""
        result = batch(sandbox_server, {
            "t": f"tasks.task.get?taskId={task_id}&select[]=ID&select[]=TITLE",
            "bad": f"tasks.task.update?taskId={task_id}",
            "el": f"task.elapseditem.getlist?TASKID={task_id}",
        })
        assert result["result"]["t"]["task"]["title"] == "batch & co"
        assert len(result["result"]["el"]) == 2
        assert result["result_error"]["bad"]["error"] == "100"
        assert result["result_total"] == {"el": 2}
        assert result["result_next"] == []
        assert set(result["result_time"]) == {"t", "el"}
        assert result["result_time"]["t"]["operating"] > 0

    def test_empty_collections_are_lists(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                         task_id: int) -> None:
        """With no errors `result_error` is `[]`, like a PHP empty array."""
        result = batch(sandbox_server, {"t": f"tasks.task.get?taskId={task_id}"})
        assert result["result_error"] == []
        assert result["result_total"] == []

    def test_references(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int) -> None:
        """`$result[key][path]` feeds one command's output into the next, whole or embedded."""
        result = batch(sandbox_server, {
            "t": f"tasks.task.get?taskId={task_id}&select[]=ID&select[]=RESPONSIBLE_ID",
            "el": "task.elapseditem.getlist?TASKID=$result[t][task][id]",
            "u": "tasks.task.update?taskId=$result[t][task][id]&fields[TITLE]=owner $result[t][task][responsibleId]",
        })
        assert [row["ID"] for row in result["result"]["el"]] == ["1", "2"]
        assert sandbox.task(task_id)["TITLE"] == "owner 547"

    def test_missing_reference_path_is_not_an_error(self, sandbox: SandboxControl,
                                                    sandbox_server: RunningSandbox, task_id: int) -> None:
        """A reference to a missing path stops at the last level; embedded non-scalars stay literal."""
        result = batch(sandbox_server, {
            "t": f"tasks.task.get?taskId={task_id}",
            "u": f"tasks.task.update?taskId={task_id}&fields[TITLE]=x $result[t][task][nothing]",
        })
        assert "u" in result["result"]
        assert sandbox.task(task_id)["TITLE"] == "x $result[t][task][nothing]"

    @pytest.mark.parametrize(("halt", "expected"), [(0, {"a", "c"}), ("false", {"a"}), (1, {"a"})])
    def test_halt_is_php_truthy(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int,
                                halt: Any, expected: set[str]) -> None:
        """`halt` stops after the first failure; the string "false" counts as true."""
        result = batch(sandbox_server, {"a": f"tasks.task.get?taskId={task_id}", "b": "tasks.task.update",
                                        "c": f"tasks.task.get?taskId={task_id}"}, halt=halt)
        assert set(result["result"]) == expected

    def test_more_than_fifty(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int) -> None:
        """Commands after the 50th are not run and each gets ERROR_BATCH_LENGTH_EXCEEDED."""
        cmd = {f"k{number}": f"tasks.task.get?taskId={task_id}" for number in range(52)}
        result = batch(sandbox_server, cmd)
        assert len(result["result"]) == 50
        assert {error["error"] for error in result["result_error"].values()} == {"ERROR_BATCH_LENGTH_EXCEEDED"}
        assert set(result["result_error"]) == {"k50", "k51"}

    def test_batch_inside_batch_is_refused(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """`batch` is not allowed as a command."""
        result = batch(sandbox_server, {"b": "batch?cmd[x]=tasks.task.get"})
        assert result["result_error"]["b"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"

    def test_form_encoded_double_encoding(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                          task_id: int) -> None:
        """A form-encoded batch carries cmd strings encoded twice; `&` in a value survives."""
        inner = f"tasks.task.update?taskId={task_id}&fields[TITLE]={quote('R&D + ops', safe='')}"
        body = f"halt=0&cmd[u]={quote(inner, safe='')}"
        response = requests.post(sandbox_server.webhook_url + "batch", data=body, timeout=TIMEOUT,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.json()["result"]["result_error"] == []
        assert sandbox.task(task_id)["TITLE"] == "R&D + ops"

    def test_commands_are_logged(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                 task_id: int) -> None:
        """The request log lists each command with the params it ran with."""
        batch(sandbox_server, {"el": f"task.elapseditem.get?TASKID={task_id}&ITEMID=1"})
        logged = sandbox.requests()[-1]
        assert logged["method"] == "batch"
        assert logged["commands"] == [{"key": "el", "method": "task.elapseditem.get",
                                       "params": [str(task_id), "1"], "error": None}]

    def test_operating_limit_per_command(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                         task_id: int) -> None:
        """A command whose method is over its operating time fails in result_error with 429's code."""
        sandbox.reset(operating_limit=0.5, operating_costs={"tasks.task.get": 1.0})
        other = sandbox.add_task(TITLE="x")
        result = batch(sandbox_server, {"a": f"tasks.task.get?taskId={other}",
                                        "b": f"tasks.task.get?taskId={other}",
                                        "c": "tasks.task.list?select[]=ID"})
        assert set(result["result"]) == {"a", "c"}
        assert result["result_error"]["b"]["error"] == "OPERATION_TIME_LIMIT"

    def test_fault_in_batch(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, task_id: int) -> None:
        """An in-batch fault fails that method's commands inside an HTTP 200 batch."""
        sandbox.fault("tasks.task.get", status=500, error="INTERNAL_SERVER_ERROR", in_batch=True)
        result = batch(sandbox_server, {"a": f"tasks.task.get?taskId={task_id}",
                                        "b": f"tasks.task.get?taskId={task_id}"})
        assert result["result_error"]["a"]["error"] == "INTERNAL_SERVER_ERROR"
        assert "b" in result["result"]


class TestV3Batch:
    def url(self, server: RunningSandbox) -> str:
        return f"{server.url}/rest/api/{server.config.user_id}/{server.config.secret}/batch"

    def test_results_in_call_order(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A JSON array of calls answers a list of results in the same order."""
        first, second = sandbox.add_task(TITLE="a"), sandbox.add_task(TITLE="b")
        body = [{"method": "tasks.task.get", "query": {"id": second}},
                {"method": "tasks.task.update", "query": {"id": first, "fields": {"title": "renamed"}}}]
        answer = requests.post(self.url(sandbox_server), json=body, timeout=5)
        assert answer.status_code == 200
        result = answer.json()["result"]
        assert result[0]["item"]["id"] == second and result[1] == {"result": True}
        assert sandbox.task(first)["TITLE"] == "renamed"

    def test_first_failure_aborts(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """The failing item's envelope is the answer; items before it ran, items after it did not."""
        ok, later = sandbox.add_task(TITLE="a"), sandbox.add_task(TITLE="b")
        body = [{"method": "tasks.task.update", "query": {"id": ok, "fields": {"title": "done"}}},
                {"method": "tasks.task.update", "query": {"id": 999999, "fields": {"title": "x"}}},
                {"method": "tasks.task.update", "query": {"id": later, "fields": {"title": "never"}}}]
        answer = requests.post(self.url(sandbox_server), json=body, timeout=5)
        assert answer.status_code == 403
        assert answer.json()["error"]["code"].endswith("ACCESSDENIEDEXCEPTION")
        assert (sandbox.task(ok)["TITLE"], sandbox.task(later)["TITLE"]) == ("done", "b")
