"""The client's pure parts: PHP encoding, both envelopes, error classes, batch answers, backoff."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

import pytest

from bitrix.batch import MAX_COMMANDS, Command, batch_params, chunks, parse_batch
from bitrix.decode import decode_response
from bitrix.encode import build_query
from bitrix.errors import (
    AccessDenied,
    AuthError,
    BitrixError,
    MethodError,
    MethodNotFound,
    NotFound,
    OperationTimeLimit,
    QueryLimitExceeded,
    ServerError,
    TransportError,
)
from bitrix.retry import MAX_ATTEMPTS, backoff_seconds, should_retry


class TestEncode:
    def test_positional_list_keeps_order(self) -> None:
        """A positional list encodes as 0=..&1[..]=.. in order, with empty placeholders kept."""
        query = build_query([691, {}, {">=ID": 5}, ["ID", "SECONDS"]])
        assert query == "0=691&1%5B%5D=&2%5B%3E%3DID%5D=5&3%5B0%5D=ID&3%5B1%5D=SECONDS"

    def test_inner_values_are_encoded(self) -> None:
        """``&``, ``+``, ``%`` and ``#`` inside values survive PHP's parse_str."""
        query = build_query({"fields": {"COMMENT_TEXT": "a&b+c%d#e"}})
        assert parse_qsl(query) == [("fields[COMMENT_TEXT]", "a&b+c%d#e")]

    def test_batch_body(self) -> None:
        """A batch body carries halt as 0/1 (never the string "false") and method?query strings."""
        body = batch_params({"t": Command("tasks.task.get", {"taskId": 1}), "n": Command("batch.noargs")}, halt=False)
        assert body == {"halt": 0, "cmd": {"t": "tasks.task.get?taskId=1", "n": "batch.noargs"}}

    def test_batch_size_limit(self) -> None:
        """More than 50 commands never go into one batch; chunks() splits them in order."""
        commands = {f"c{i}": Command("m") for i in range(120)}
        with pytest.raises(ValueError, match="at most 50"):
            batch_params(commands)
        parts = list(chunks(commands))
        assert [len(p) for p in parts] == [MAX_COMMANDS, MAX_COMMANDS, 20]
        assert list(parts[2]) == [f"c{i}" for i in range(100, 120)]


class TestDecode:
    def test_classic_success(self) -> None:
        """Result, total, next and time are lifted out of the classic envelope."""
        answer = decode_response("m", 200, b'{"result": [1], "total": "137", "next": 50, "time": {"operating": 0.1}}')
        assert (answer.result, answer.total, answer.next, answer.time["operating"]) == ([1], 137, 50, 0.1)

    @pytest.mark.parametrize(("status", "body", "cls", "code"), [
        (503, b'{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}', QueryLimitExceeded,
         "QUERY_LIMIT_EXCEEDED"),
        (429, b'{"error":"OPERATION_TIME_LIMIT","error_description":"blocked"}', OperationTimeLimit,
         "OPERATION_TIME_LIMIT"),
        (401, b'{"error":"expired_token","error_description":"x"}', AuthError, "expired_token"),
        (401, b'{"error":"INVALID_CREDENTIALS","error_description":"x"}', AuthError, "INVALID_CREDENTIALS"),
        (403, b'{"error":"ACCESS_DENIED","error_description":"x"}', AccessDenied, "ACCESS_DENIED"),
        (404, b'{"error":"ERROR_METHOD_NOT_FOUND","error_description":"Method not found!"}', MethodNotFound,
         "ERROR_METHOD_NOT_FOUND"),
        (400, b'{"error":"ERROR_CORE","error_description":"TASKS_ERROR_EXCEPTION_#512; Item not found; 512/TE<br>"}',
         NotFound, "ERROR_CORE"),
        (400, b'{"error":"ERROR_CORE","error_description":"Access denied.<br>"}', AccessDenied, "ERROR_CORE"),
        # the plain forms the docs show beside the TASKS_ERROR_EXCEPTION_#N ones
        (400, b'{"error":"ACTION_NOT_ALLOWED","error_description":""}', AccessDenied, "ACTION_NOT_ALLOWED"),
        (400, b'{"error":"ERROR_CORE","error_description":"ACTION_NOT_ALLOWED"}', AccessDenied, "ERROR_CORE"),
        (400, b'{"error":"ERROR_CORE","error_description":"Task not found"}', NotFound, "ERROR_CORE"),
        (400, b'{"error":"TASKS_ERROR_EXCEPTION_#4","error_description":"Action not allowed"}', AccessDenied,
         "TASKS_ERROR_EXCEPTION_#4"),
        (400, b'{"error":"100","error_description":"Could not find value for parameter {fields}"}', MethodError, "100"),
        (500, b'{"error":"INTERNAL_SERVER_ERROR","error_description":"x"}', ServerError, "INTERNAL_SERVER_ERROR"),
        (502, b"<html>Bad gateway</html>", ServerError, "HTTP_502"),
        (200, b"<html>maintenance</html>", TransportError, "HTTP_200"),
        (403, b'{"error":{"code":"BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION","message":"no"}}', AccessDenied,
         "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"),
        (400, b'{"error":{"code":"BITRIX_REST_V3_EXCEPTIONS_ENTITYNOTFOUNDEXCEPTION","message":"no"}}', NotFound,
         "BITRIX_REST_V3_EXCEPTIONS_ENTITYNOTFOUNDEXCEPTION"),
        (429, b'{"error":{"code":"BITRIX_REST_V3_EXCEPTION_RATELIMITEXCEPTION","message":"slow"}}', OperationTimeLimit,
         "BITRIX_REST_V3_EXCEPTION_RATELIMITEXCEPTION"),
    ])
    def test_error_table(self, status: int, body: bytes, cls: type, code: str) -> None:
        """Errors are classed by code (and the old methods' text), never by HTTP status alone."""
        with pytest.raises(BitrixError) as caught:
            decode_response("some.method", status, body)
        assert type(caught.value) is cls
        assert caught.value.code == code and caught.value.method == "some.method"

    def test_v3_validation_details(self) -> None:
        """v3 validation entries are kept in the description."""
        body = (b'{"error":{"code":"BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",'
                b'"message":"Invalid","validation":[{"field":"id","message":"must be int"}]}}')
        with pytest.raises(MethodError, match="id: must be int"):
            decode_response("tasks.task.update", 400, body)

    def test_operating_reset_kept(self) -> None:
        """An OPERATION_TIME_LIMIT answer keeps operating_reset_at, to pause the method until then."""
        body = b'{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"operating_reset_at":1700000000}}'
        with pytest.raises(OperationTimeLimit) as caught:
            decode_response("m", 429, body)
        assert caught.value.reset_at == 1700000000


class TestBatchAnswer:
    def test_per_command_results_and_errors(self) -> None:
        """Results and typed errors per key; empty collections arrive as []."""
        commands = {"a": Command("tasks.task.get"), "b": Command("task.elapseditem.update")}
        result = {"result": {"a": {"task": {"id": "1"}}}, "result_error": {"b": {"error": "ERROR_CORE",
                  "error_description": "Access denied.<br>"}}, "result_total": [], "result_time": []}
        parsed = parse_batch(commands, result)
        assert parsed.results == {"a": {"task": {"id": "1"}}}
        assert isinstance(parsed.errors["b"], AccessDenied) and parsed.errors["b"].method == "task.elapseditem.update"

    def test_list_shaped_collections(self) -> None:
        """With numeric keys the collections may come back as JSON lists."""
        parsed = parse_batch({"0": Command("m"), "1": Command("m")}, {"result": [[1], [2]], "result_error": []})
        assert parsed.results == {"0": [1], "1": [2]} and parsed.errors == {}


class TestRetryRules:
    def test_rules(self) -> None:
        """5xx and network errors retry a few times; the limit waits longer; refusals never retry."""
        assert should_retry(ServerError("m", "X", status=500), 1)
        assert not should_retry(ServerError("m", "X", status=500), MAX_ATTEMPTS)
        assert should_retry(TransportError("m", "NETWORK_ERROR"), 2)
        assert should_retry(QueryLimitExceeded("m", "QUERY_LIMIT_EXCEEDED"), MAX_ATTEMPTS + 3)
        for refused in (AccessDenied("m", "A"), AuthError("m", "B"), MethodError("m", "C"), NotFound("m", "D")):
            assert not should_retry(refused, 1)

    def test_backoff_is_capped_and_jittered(self) -> None:
        """Delays grow, stay under the cap, and differ between draws."""
        rng = random.Random(7)
        delays = [backoff_seconds(n, rng) for n in range(1, 12)]
        assert all(0 < d <= 20 for d in delays)
        assert delays[0] <= 0.5 and delays[-1] >= 10
        assert len({round(backoff_seconds(3, rng), 6) for _ in range(10)}) > 1


class TestErrorText:
    def test_no_url_in_messages(self) -> None:
        """An error's str and repr show method, code and description only."""
        error = TransportError("tasks.task.get", "NETWORK_ERROR", "ConnectionError")
        assert str(error) == "tasks.task.get: NETWORK_ERROR: ConnectionError"
        assert "http" not in repr(error)
