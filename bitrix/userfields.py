"""Task custom-field definitions (``task.item.userfield.*``): positional commands, like the old task.* methods."""

from __future__ import annotations

from typing import Any

from bitrix.batch import Command


def list_definitions() -> Command:
    """All task field definitions (positions: ORDER, FILTER)."""
    return Command("task.item.userfield.getlist", [{"ID": "asc"}, {}])


def make_mandatory(field_id: int) -> Command:
    """Set MANDATORY to Y and nothing else (positions: ID, DATA); other settings stay as they are."""
    return Command("task.item.userfield.update", [field_id, {"MANDATORY": "Y"}])


def definitions_by_name(result: Any) -> dict[str, dict[str, Any]]:
    rows = result.values() if isinstance(result, dict) else result or []
    return {str(row.get("FIELD_NAME")): row for row in rows if isinstance(row, dict)}
