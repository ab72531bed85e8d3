"""The sandbox portal over real HTTP: URLs, decoding, envelopes, tasks, REST 3.0, limits, faults, events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox

TIMEOUT = 5


def call(server: RunningSandbox, method: str, **kwargs: Any) -> requests.Response:
    """POST to a classic method of the sandbox's webhook URL."""
    return requests.post(server.webhook_url + method, timeout=TIMEOUT, **kwargs)


def call_v3(server: RunningSandbox, method: str, body: Any, **kwargs: Any) -> requests.Response:
    """POST a JSON body to a REST 3.0 method."""
    url = f"{server.url}/rest/api/{server.config.user_id}/{server.config.secret}/{method}"
    return requests.post(url, json=body, timeout=TIMEOUT, **kwargs)


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Listener:
    """A tiny HTTP server that records what is POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[str, str]] = []
        self.status = status
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}/handler"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode()
        self.received.append((environ.get("CONTENT_TYPE", ""), body))
        start_response(f"{self.status} X", [("Content-Type", "text/plain")])
        return [b"ok"]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    """An event handler URL that records deliveries."""
    running = Listener()
    yield running
    running.stop()


class TestCredentials:
    def test_wrong_secret_is_401_invalid_credentials(self, sandbox: SandboxControl,
                                                     sandbox_server: RunningSandbox) -> None:
        """A wrong webhook code answers 401 INVALID_CREDENTIALS in the classic envelope."""
        response = requests.post(f"{sandbox_server.url}/rest/1/wrong/tasks.task.get", json={"taskId": 1},
                                 timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json() == {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}

    def test_wrong_user_on_v3_uses_error_object(self, sandbox: SandboxControl,
                                                sandbox_server: RunningSandbox) -> None:
        """REST 3.0 reports bad credentials with an error object."""
        url = f"{sandbox_server.url}/rest/api/2/{sandbox_server.config.secret}/tasks.task.get"
        response = requests.post(url, json={"id": 1}, timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"

    def test_unknown_method_is_404(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """An unknown method answers ERROR_METHOD_NOT_FOUND."""
        response = call(sandbox_server, "tasks.task.frobnicate")
        assert response.status_code == 404
        assert response.json() == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}

    @pytest.mark.parametrize("name", ["TASKS.TASK.GET", "tasks.task.get.json", "Tasks.Task.Get.json"])
    def test_method_names_are_case_insensitive(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                               name: str) -> None:
        """Method names are lower-cased and the `.json` suffix is optional."""
        task_id = sandbox.add_task(TITLE="x")
        assert call(sandbox_server, name, json={"taskId": task_id}).json()["result"]["task"]["id"] == str(task_id)


class TestDecoding:
    def test_form_encoded_nested_params(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """PHP bracket keys in a form body become nested params."""
        task_id = sandbox.add_task(TITLE="old")
        call(sandbox_server, "tasks.task.update", data={"taskId": task_id, "fields[TITLE]": "new"})
        assert sandbox.task(task_id)["TITLE"] == "new"

    def test_query_string_params(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """Params in the query string work for GET, with `select[]=` lists."""
        task_id = sandbox.add_task(TITLE="q")
        response = requests.get(sandbox_server.webhook_url + "tasks.task.get",
                                params=[("taskId", task_id), ("select[]", "ID"), ("select[]", "TITLE")],
                                timeout=TIMEOUT)
        assert set(response.json()["result"]["task"]) >= {"id", "title"}
        assert "status" not in response.json()["result"]["task"]

    @pytest.mark.parametrize(("content_type", "body"), [
        ("text/plain", '{"taskId": 1}'),
        ("application/json", '{"taskId": 1'),
        ("application/json; charset=utf-8", "not json"),
    ])
    def test_non_json_bodies_are_not_parsed_as_json(self, sandbox: SandboxControl,
                                                    sandbox_server: RunningSandbox, content_type: str,
                                                    body: str) -> None:
        """Only valid JSON under exactly application/json is read; otherwise taskId is missing."""
        sandbox.add_task(TITLE="x")
        response = call(sandbox_server, "tasks.task.get", data=body, headers={"Content-Type": content_type})
        assert response.status_code == 400
        assert response.json() == {"error": "0", "error_description": "wrong task id"}

    def test_control_params_are_stripped_and_logged_params_kept(self, sandbox: SandboxControl,
                                                                sandbox_server: RunningSandbox) -> None:
        """`auth` and `start` never reach the method; the log shows what the method saw."""
        task_id = sandbox.add_task(TITLE="x")
        call(sandbox_server, "tasks.task.get", json={"taskId": task_id, "auth": "token", "start": 0})
        logged = sandbox.requests()[-1]
        assert logged["params"] == {"taskId": task_id}
        assert logged["method"] == "tasks.task.get"
        assert logged["api"] == "classic"
        assert logged["content_type"] == "application/json"


class TestTasksGet:
    def test_numbers_are_strings_and_dates_in_user_offset(self, sandbox: SandboxControl,
                                                          sandbox_server: RunningSandbox) -> None:
        """Classic task output is camelCase, numbers as strings, dates in the user's zone (+03:00)."""
        task_id = sandbox.add_task(TITLE="t", RESPONSIBLE_ID=547, GROUP_ID=7,
                                   DEADLINE="2025-10-24T17:00:00+00:00")
        task = call(sandbox_server, "tasks.task.get", json={"taskId": task_id}).json()["result"]["task"]
        assert task["id"] == str(task_id)
        assert task["responsibleId"] == "547"
        assert task["groupId"] == "7"
        assert task["status"] == "2"
        assert task["deadline"] == "2025-10-24T20:00:00+03:00"

    def test_userfields_only_when_selected(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """UF values come back camelCase and only when named in select."""
        task_id = sandbox.add_task(TITLE="t", UF_PROJECT_CODE="P-1")
        plain = call(sandbox_server, "tasks.task.get", json={"taskId": task_id}).json()["result"]["task"]
        chosen = call(sandbox_server, "tasks.task.get",
                      json={"taskId": task_id, "select": ["ID", "UF_PROJECT_CODE"]}).json()["result"]["task"]
        assert "ufProjectCode" not in plain
        assert chosen["ufProjectCode"] == "P-1"

    def test_missing_task_is_200_empty_list(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A missing task is not an error: HTTP 200 and `result: []`."""
        response = call(sandbox_server, "tasks.task.get", json={"taskId": 999})
        assert response.status_code == 200
        assert response.json()["result"] == []

    @pytest.mark.parametrize("task_id", [None, "abc", 0, -3])
    def test_bad_task_id_is_error_zero(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                       task_id: Any) -> None:
        """A missing or invalid taskId answers 400 with error "0"."""
        response = call(sandbox_server, "tasks.task.get", json={"taskId": task_id})
        assert response.status_code == 400
        assert response.json()["error"] == "0"

    def test_time_block_is_present(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """Every answer carries `time` with operating data."""
        body = call(sandbox_server, "tasks.task.get", json={"taskId": 1}).json()
        assert set(body["time"]) == {"start", "finish", "duration", "processing", "date_start", "date_finish",
                                     "operating_reset_at", "operating"}
        assert body["time"]["date_start"].endswith(("+01:00", "+02:00"))


class TestTasksList:
    @pytest.fixture
    def many(self, sandbox: SandboxControl) -> SandboxControl:
        """A portal with 120 generated tasks."""
        sandbox.reset(seed=120)
        return sandbox

    def test_pages_of_fifty_with_next_and_total(self, many: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """`start` pages by 50; `next` is the next offset; the last page has no `next`."""
        first = call(sandbox_server, "tasks.task.list", json={"select": ["ID"]}).json()
        last = call(sandbox_server, "tasks.task.list", json={"select": ["ID"], "start": 100}).json()
        assert (len(first["result"]["tasks"]), first["next"], first["total"]) == (50, 50, 120)
        assert first["result"]["tasks"][0]["id"] == "120"
        assert len(last["result"]["tasks"]) == 20
        assert "next" not in last

    def test_start_minus_one_skips_count(self, many: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """`start=-1` gives up to 50 rows and neither `next` nor `total`."""
        body = call(sandbox_server, "tasks.task.list",
                    json={"order": {"ID": "asc"}, "filter": {">ID": 60}, "select": ["ID"], "start": -1}).json()
        ids = [int(task["id"]) for task in body["result"]["tasks"]]
        assert ids == list(range(61, 111))
        assert "next" not in body
        assert "total" not in body

    @pytest.mark.parametrize(("filter_", "expected"), [
        ({"ID": [3, 5]}, [3, 5]),
        ({"!ID": [1, 2]}, [3, 4, 5]),
        ({">=ID": 4}, [4, 5]),
        ({"<ID": 3}, [1, 2]),
        ({"<=ID": 2, "RESPONSIBLE_ID": 9}, [2]),
        ({"GROUP_ID": 0, "!STATUS": 5}, [1, 2]),
    ])
    def test_filter_operators(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                              filter_: dict[str, Any], expected: list[int]) -> None:
        """Filter prefixes and list values select the right tasks."""
        for number in range(1, 6):
            sandbox.add_task(TITLE=f"t{number}", RESPONSIBLE_ID=9 if number == 2 else 1,
                             GROUP_ID=0 if number < 4 else 7, STATUS=5 if number == 3 else 2)
        body = call(sandbox_server, "tasks.task.list",
                    json={"filter": filter_, "order": {"ID": "asc"}, "select": ["ID"]}).json()
        assert [int(task["id"]) for task in body["result"]["tasks"]] == expected

    def test_changed_date_filter_reads_offsets(self, sandbox: SandboxControl,
                                               sandbox_server: RunningSandbox) -> None:
        """`>CHANGED_DATE` compares instants, whatever offset the value carries."""
        sandbox.add_task(TITLE="old", CREATED_DATE="2025-01-01T10:00:00+00:00")
        new_id = sandbox.add_task(TITLE="new", CREATED_DATE="2025-01-01T12:00:00+00:00")
        body = call(sandbox_server, "tasks.task.list",
                    json={"filter": {">CHANGED_DATE": "2025-01-01T12:30:00+02:00"}, "select": ["ID"]}).json()
        assert [task["id"] for task in body["result"]["tasks"]] == [str(new_id)]


class TestTasksUpdate:
    def test_update_returns_task_and_bumps_changed_date(self, sandbox: SandboxControl,
                                                        sandbox_server: RunningSandbox) -> None:
        """The answer is the whole task; CHANGED_DATE moves; UF values are written."""
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE="2025-01-01T00:00:00+00:00")
        response = call(sandbox_server, "tasks.task.update", json={
            "taskId": task_id, "fields": {"DEADLINE": "2025-12-31T18:00:00+02:00", "UF_PROJECT_CODE": "X"}})
        stored = sandbox.task(task_id)
        assert response.json()["result"]["task"]["deadline"] == "2025-12-31T19:00:00+03:00"
        assert stored["DEADLINE"] == datetime.fromisoformat("2025-12-31T16:00:00+00:00")
        assert stored["UF_PROJECT_CODE"] == "X"
        assert stored["CHANGED_DATE"] > datetime.fromisoformat("2025-01-01T00:00:00+00:00")

    def test_naive_dates_are_server_zone(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A date without offset is read in the server zone (Europe/Berlin)."""
        task_id = sandbox.add_task(TITLE="t")
        call(sandbox_server, "tasks.task.update", json={"taskId": task_id, "fields": {"DEADLINE": "2025-07-01 18:00"}})
        assert sandbox.task(task_id)["DEADLINE"] == datetime.fromisoformat("2025-07-01T16:00:00+00:00")

    def test_empty_fields_is_error_100(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """Missing `fields` answers 400 with error "100"."""
        task_id = sandbox.add_task(TITLE="t")
        response = call(sandbox_server, "tasks.task.update", json={"taskId": task_id, "fields": {}})
        assert response.status_code == 400
        assert response.json() == {"error": "100",
                                   "error_description": "Could not find value for parameter {fields} (internal error)"}


class TestRestV3:
    def test_get_gives_ints_and_status_words(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """REST 3.0 returns typed values in `result.item`."""
        task_id = sandbox.add_task(TITLE="t", STATUS=3, RESPONSIBLE_ID=5)
        item = call_v3(sandbox_server, "tasks.task.get", {"id": task_id}).json()["result"]["item"]
        assert item["id"] == task_id
        assert item["responsibleId"] == 5
        assert item["status"] == "in_progress"

    @pytest.mark.parametrize(("body", "status", "suffix"), [
        ({"id": "1"}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
        ({"id": 999}, 400, "ENTITYNOTFOUNDEXCEPTION"),
    ])
    def test_get_errors(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, body: dict[str, Any],
                        status: int, suffix: str) -> None:
        """A string id fails validation; a missing task is ENTITYNOTFOUND."""
        sandbox.add_task(TITLE="t")
        response = call_v3(sandbox_server, "tasks.task.get", body)
        assert response.status_code == status
        assert response.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_" + suffix

    def test_update_deadline(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """`fields.deadline` is written and the answer is `{"result": true}`."""
        task_id = sandbox.add_task(TITLE="t")
        response = call_v3(sandbox_server, "tasks.task.update",
                           {"id": task_id, "fields": {"deadline": "2025-12-31T23:59:59+02:00"}})
        assert response.json()["result"] == {"result": True}
        assert sandbox.task(task_id)["DEADLINE"] == datetime.fromisoformat("2025-12-31T21:59:59+00:00")

    @pytest.mark.parametrize(("body", "status", "suffix"), [
        ({"id": 1, "fields": {"creatorId": 5}}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
        ({"id": 999, "fields": {"title": "x"}}, 403, "ACCESSDENIEDEXCEPTION"),
        ({"id": 1, "fields": {"nonsense": 1}}, 400, "UNKNOWNDTOPROPERTYEXCEPTION"),
    ])
    def test_update_errors(self, sandbox: SandboxControl, sandbox_server: RunningSandbox, body: dict[str, Any],
                           status: int, suffix: str) -> None:
        """Non-editable fields, unknown fields and missing tasks are refused."""
        sandbox.add_task(TITLE="t")
        response = call_v3(sandbox_server, "tasks.task.update", body)
        assert response.status_code == status
        assert response.json()["error"]["code"].endswith(suffix)

    def test_form_body_is_invalid_json(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """REST 3.0 rejects form bodies."""
        url = f"{sandbox_server.url}/rest/api/1/{sandbox_server.config.secret}/tasks.task.get"
        response = requests.post(url, data={"id": 1}, timeout=TIMEOUT)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"

    def test_v3_switched_off_is_classic_404(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A portal without REST 3.0 answers ERROR_METHOD_NOT_FOUND in the classic envelope."""
        sandbox.configure(v3_enabled=False)
        response = call_v3(sandbox_server, "tasks.task.update", {"id": 1, "fields": {"title": "x"}})
        assert response.status_code == 404
        assert response.json()["error"] == "ERROR_METHOD_NOT_FOUND"

    def test_idempotency_key_replays_without_executing(self, sandbox: SandboxControl,
                                                       sandbox_server: RunningSandbox) -> None:
        """A repeated write with the same key is answered from store and changes nothing."""
        task_id = sandbox.add_task(TITLE="t")
        body = {"id": task_id, "fields": {"title": "first"}}
        first = call_v3(sandbox_server, "tasks.task.update", body, headers={"Idempotency-Key": "k-1"})
        sandbox.update_task(task_id, TITLE="edited meanwhile")
        second = call_v3(sandbox_server, "tasks.task.update", body, headers={"Idempotency-Key": "k-1"})
        assert second.json() == first.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        assert sandbox.task(task_id)["TITLE"] == "edited meanwhile"
        assert [entry["replayed"] for entry in sandbox.requests()] == [False, True]

    def test_idempotency_key_reused_with_other_body(self, sandbox: SandboxControl,
                                                    sandbox_server: RunningSandbox) -> None:
        """The same key with a different body is a 422 conflict."""
        task_id = sandbox.add_task(TITLE="t")
        call_v3(sandbox_server, "tasks.task.update", {"id": task_id, "fields": {"title": "a"}},
                headers={"Idempotency-Key": "k-2"})
        response = call_v3(sandbox_server, "tasks.task.update", {"id": task_id, "fields": {"title": "b"}},
                           headers={"Idempotency-Key": "k-2"})
        assert response.status_code == 422
        assert response.json()["error"]["code"].endswith("IDEMPOTENCYKEYREUSEDEXCEPTION")


class TestLimits:
    def test_budget_rejects_after_burst(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """With a full bucket the portal answers 503 QUERY_LIMIT_EXCEEDED and runs nothing."""
        sandbox.reset(burst=3, rate=0.01)
        statuses = [call(sandbox_server, "tasks.task.get", json={"taskId": 1}).status_code for _ in range(4)]
        response = call(sandbox_server, "tasks.task.get", json={"taskId": 1})
        assert statuses == [200, 200, 200, 503]
        assert response.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}

    def test_batch_counts_once(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A batch of many commands uses one unit of the budget."""
        sandbox.reset(burst=2, rate=0.01)
        cmd = {f"c{number}": "tasks.task.get?taskId=1" for number in range(10)}
        assert call(sandbox_server, "batch", json={"cmd": cmd}).status_code == 200
        assert call(sandbox_server, "tasks.task.get", json={"taskId": 1}).status_code == 200
        assert call(sandbox_server, "tasks.task.get", json={"taskId": 1}).status_code == 503

    def test_operating_limit_blocks_the_method_only(self, sandbox: SandboxControl,
                                                    sandbox_server: RunningSandbox) -> None:
        """Once a method's total passes the limit it answers 429; the crossing call completes."""
        sandbox.reset(operating_limit=1.0, operating_costs={"tasks.task.get": 0.6})
        first = call(sandbox_server, "tasks.task.get", json={"taskId": 1})
        crossing = call(sandbox_server, "tasks.task.get", json={"taskId": 1})
        blocked = call(sandbox_server, "tasks.task.get", json={"taskId": 1})
        other = call(sandbox_server, "tasks.task.list", json={})
        assert (first.status_code, crossing.status_code, blocked.status_code, other.status_code) == (200, 200, 429,
                                                                                                     200)
        assert crossing.json()["time"]["operating"] == pytest.approx(1.2)
        # the window reopens 600 s after the first counted call, by the portal's own clock
        assert crossing.json()["time"]["operating_reset_at"] == int(first.json()["time"]["start"] + 600)
        assert blocked.json() == {"error": "OPERATION_TIME_LIMIT",
                                  "error_description": "Method is blocked due to operation time limit."}


class TestFaults:
    def test_fault_answers_given_times(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A fault answers its status and code for `times` calls, then the method works again."""
        sandbox.fault("tasks.task.get", status=503, error="QUERY_LIMIT_EXCEEDED", description="Too many", times=2)
        statuses = [call(sandbox_server, "tasks.task.get", json={"taskId": 1}).status_code for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert sandbox.requests()[0]["error"] == "QUERY_LIMIT_EXCEEDED"

    def test_v3_envelope_fault(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A fault can use the REST 3.0 error object."""
        sandbox.fault("*", status=500, error="BITRIX_REST_V3_EXCEPTION_INTERNALEXCEPTION", envelope="v3")
        response = call_v3(sandbox_server, "tasks.task.get", {"id": 1})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INTERNALEXCEPTION"

    def test_status_zero_drops_the_connection(self, sandbox: SandboxControl,
                                              sandbox_server: RunningSandbox) -> None:
        """Status 0 closes the connection without an answer."""
        sandbox.fault("tasks.task.get", status=0)
        with pytest.raises(requests.ConnectionError):
            call(sandbox_server, "tasks.task.get", json={"taskId": 1})
        assert call(sandbox_server, "tasks.task.get", json={"taskId": 1}).status_code == 200

    def test_delay_makes_client_time_out(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """A delayed fault lets a client's read timeout fire."""
        sandbox.fault("tasks.task.get", status=200, delay=0.5)
        with pytest.raises(requests.Timeout):
            requests.post(sandbox_server.webhook_url + "tasks.task.get", json={"taskId": 1}, timeout=0.1)


class TestEvents:
    def test_update_posts_form_encoded_event(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                             listener: Listener) -> None:
        """A REST update sends ONTASKUPDATE to the handler, form-encoded with PHP bracket keys."""
        sandbox.configure(handler_url=listener.url)
        task_id = sandbox.add_task(TITLE="t")
        call(sandbox_server, "tasks.task.update", json={"taskId": task_id, "fields": {"TITLE": "u"}})
        events = sandbox.wait_for_events(2)
        content_type, body = listener.received[1]
        fields = dict(parse_qsl(body, keep_blank_values=True))
        assert [event["outcome"] for event in events] == ["delivered", "delivered"]
        assert content_type == "application/x-www-form-urlencoded"
        assert fields["event"] == "ONTASKUPDATE"
        assert fields["data[FIELDS_BEFORE][ID]"] == fields["data[FIELDS_AFTER][ID]"] == str(task_id)
        assert fields["data[IS_ACCESSIBLE_BEFORE]"] == "undefined"
        assert fields["auth[application_token]"] == sandbox_server.config.application_token
        assert fields["auth[member_id]"] == sandbox_server.config.member_id
        assert fields["auth[client_endpoint]"] == sandbox_server.url + "/rest/"
        assert "auth[access_token]" not in fields

    def test_add_event_has_undefined_before(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                            listener: Listener) -> None:
        """ONTASKADD carries FIELDS_BEFORE=undefined and IS_ACCESSIBLE_BEFORE=N."""
        sandbox.configure(handler_url=listener.url)
        task_id = sandbox.add_task(TITLE="t")
        sandbox.wait_for_events(1)
        fields = dict(parse_qsl(listener.received[0][1]))
        assert fields["event"] == "ONTASKADD"
        assert fields["data[FIELDS_BEFORE]"] == "undefined"
        assert fields["data[FIELDS_AFTER][ID]"] == str(task_id)
        assert fields["data[IS_ACCESSIBLE_BEFORE]"] == "N"

    def test_paused_events_are_dropped(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                       listener: Listener) -> None:
        """With events paused nothing is posted and the event is recorded as dropped."""
        sandbox.configure(handler_url=listener.url, events_paused=True)
        sandbox.add_task(TITLE="t")
        assert [event["outcome"] for event in sandbox.wait_for_events(1)] == ["dropped"]
        assert listener.received == []

    def test_no_event_for_time_entries(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        """Adding or updating time entries raises no event, as on a real portal."""
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 60)
        call(sandbox_server, "task.elapseditem.update", json=[task_id, entry_id, {"SECONDS": 120}])
        assert [event["event"] for event in sandbox.events()] == ["ONTASKADD"]

    def test_failed_handler_is_recorded_and_not_retried(self, sandbox: SandboxControl,
                                                        sandbox_server: RunningSandbox) -> None:
        """A handler answering 500 is recorded as failed, once."""
        failing = Listener(status=500)
        try:
            sandbox.configure(handler_url=failing.url)
            sandbox.add_task(TITLE="t")
            events = sandbox.wait_for_events(1)
        finally:
            failing.stop()
        assert (events[0]["outcome"], events[0]["status"]) == ("failed", 500)
        assert len(failing.received) == 1


class TestSeeds:
    def test_demo_seed(self, sandbox: SandboxControl) -> None:
        """The demo set has the over-cap entry, a task without deadline and an empty project code."""
        sandbox.reset(seed="demo")
        first = sandbox.entries(task_id=1)
        assert [(entry["SECONDS"], entry["COMMENT_TEXT"]) for entry in first] == [(36000, "client call"),
                                                                                   (3600, "standup")]
        assert sandbox.task(1)["TITLE"] == "Prepare quarterly report"
        assert sandbox.task(2)["DEADLINE"] is None
        assert sandbox.task(3)["STATUS"] == 5
        assert sandbox.task(4)["UF_PROJECT_CODE"] == ""
        assert sandbox.events() == []

    def test_generated_seed_is_deterministic(self, sandbox: SandboxControl) -> None:
        """N=10,000 gives 10,000 tasks with about 3 entries each, about 10% of them over the cap, the same
        every time."""
        first = sandbox.reset(seed=10_000)
        entries = sandbox.entries(task_id=77)
        over_cap = sum(1 for entry in sandbox.entries() if entry["SECONDS"] > 28800)
        again = sandbox.reset(seed=10_000)
        assert first["tasks"] == 10_000
        assert first["entries"] == again["entries"]
        assert 2.5 < first["entries"] / 10_000 < 3.5
        assert 0.08 < over_cap / first["entries"] < 0.12
        assert sandbox.entries(task_id=77) == entries


class TestControlApi:
    def test_unknown_setting_is_refused(self, sandbox: SandboxControl) -> None:
        """A misspelled override fails loudly instead of being ignored."""
        with pytest.raises(RuntimeError, match="unknown sandbox setting"):
            sandbox.reset(brust=3)

    def test_lowercase_task_field_is_refused(self, sandbox: SandboxControl) -> None:
        """The control API only takes UPPER_CASE Bitrix field names."""
        with pytest.raises(RuntimeError, match="unknown task field"):
            sandbox.add_task(title="x")

    def test_cli_help_lists_options(self) -> None:
        """The `sandbox` command exposes its options and env variables."""
        from click.testing import CliRunner

        from sandbox.cli import sandbox_command

        result = CliRunner().invoke(sandbox_command, ["--help"])
        assert result.exit_code == 0
        assert "--handler-url" in result.output
        assert "--seed" in result.output
