"""REST 3.0 `batch` (reference §4, end): a JSON array of `{method, query, as}`, results in call order.

The first failing item aborts the batch and its error envelope is the answer; the items before it
have run (nothing is rolled back), and the answer does not say which item failed.
`$ref` references are not simulated (their exact shape is unconfirmed).
"""

from __future__ import annotations

from typing import Any

from sandbox import execute
from sandbox.calls import V3, Call, Outcome, register
from sandbox.errors import V3Error

MAX_ITEMS = 50


class BatchItemFailed(V3Error):
    """Carries the failing item's own envelope and status out of the batch."""

    def __init__(self, status: int, body: dict[str, Any], code: str) -> None:
        super().__init__(status, "", str(body.get("error", {}).get("message", "")))
        self.code = code  # the failing item's own code, not prefixed again
        self.item_body = body

    def body(self) -> dict[str, Any]:
        return self.item_body


@register(V3, "batch")
def batch(call: Call) -> Outcome:
    items = call.params.get("_items")
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise V3Error(400, "VALIDATION_REQUESTVALIDATIONEXCEPTION", f"a batch is a list of 1 to {MAX_ITEMS} calls")
    results = []
    for index, item in enumerate(items):
        method = str(item.get("method", "")).lower() if isinstance(item, dict) else ""
        raw_query = item.get("query") if isinstance(item, dict) else None
        query: dict[str, Any] = raw_query if isinstance(raw_query, dict) else {}
        if method in ("", "batch"):
            raise V3Error(400, "VALIDATION_REQUESTVALIDATIONEXCEPTION", f"item {index}: no callable method")
        fault = call.portal.take_fault(method, in_batch=True)
        if fault is not None:
            answer = execute.Answer(fault.status, {"error": {"code": fault.error, "message": fault.description}},
                                    fault.error)
        else:
            answer = execute.run(call.portal, "v3", method, query, None)
        call.commands.append({"key": str(item.get("as") or index), "method": method, "params": query,
                              "error": answer.error})
        if answer.error is not None:
            raise BatchItemFailed(answer.status, answer.body, answer.error)
        results.append(answer.body.get("result"))
    return Outcome(results)
