"""Task userfield definitions (`task.item.userfield.*`, reference §8).

Stored with native values; shown with every value as a string except SETTINGS (§8.2).
"""

from __future__ import annotations

from typing import Any

from sandbox.errors import core_error
from sandbox.store import Portal

ENTITY_ID = "TASKS_TASK"
TASK_TYPES = ("string", "double", "datetime", "boolean")
WRITABLE = ("FIELD_NAME", "USER_TYPE_ID", "XML_ID", "SORT", "MULTIPLE", "MANDATORY", "SHOW_FILTER",
            "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE", "EDIT_FORM_LABEL", "LIST_COLUMN_LABEL",
            "LIST_FILTER_LABEL", "ERROR_MESSAGE", "HELP_MESSAGE", "LIST", "SETTINGS")
IMMUTABLE = ("FIELD_NAME", "USER_TYPE_ID", "MULTIPLE")
LABELS = ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL")
SYSTEM_FIELDS = (("UF_CRM_TASK", "crm"), ("UF_MAIL_MESSAGE", "mail_message"),
                 ("UF_TASK_WEBDAV_FILES", "disk_file"))
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "string": {"DEFAULT_VALUE": "", "ROWS": 1},
    "double": {"DEFAULT_VALUE": None, "PRECISION": 2},
    "boolean": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX"},
    "datetime": {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}},
}


def install_system_fields(portal: Portal) -> None:
    """Every portal has the three system userfields of tasks."""
    for name, type_id in SYSTEM_FIELDS:
        field_id = portal.new_id("field")
        portal.userfields[field_id] = _definition(field_id, {"FIELD_NAME": name, "USER_TYPE_ID": type_id,
                                                             "MULTIPLE": "Y"})


def add_definition(portal: Portal, params: dict[str, Any]) -> int:
    """Create a definition the way UserFieldProxy does: whitelist, `UF_` prefix, Y/N flags.

    Raises:
        RestError: ERROR_CORE with the proxy's message.
    """
    fields = {key: value for key, value in params.items() if key in (*WRITABLE, "LABEL")}
    name = str(fields.get("FIELD_NAME") or "").upper()
    if not name:
        raise core_error("The 'FIELD_NAME' field is not found.")
    if not name.startswith("UF_"):
        name = "UF_" + name
    type_id = str(fields.get("USER_TYPE_ID") or "")
    if type_id not in TASK_TYPES:
        raise core_error("The 'USER_TYPE_ID' field is not found.")
    if any(existing["FIELD_NAME"] == name for existing in portal.userfields.values()):
        raise core_error(f"The field {name} for the object {ENTITY_ID} already exists.")
    fields["FIELD_NAME"] = name
    label = fields.pop("LABEL", None)
    for key in LABELS:
        if label is not None and key not in fields:
            fields[key] = label
    field_id = portal.new_id("field")
    portal.userfields[field_id] = _definition(field_id, fields)
    return field_id


def _definition(field_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    type_id = fields["USER_TYPE_ID"]
    settings = dict(DEFAULT_SETTINGS.get(type_id, {}))
    if isinstance(fields.get("SETTINGS"), dict):
        settings.update(fields["SETTINGS"])
    definition = {
        "ID": field_id, "ENTITY_ID": ENTITY_ID, "FIELD_NAME": fields["FIELD_NAME"], "USER_TYPE_ID": type_id,
        "XML_ID": fields.get("XML_ID"), "SORT": int(fields.get("SORT") or 100),
        "MULTIPLE": "N" if type_id == "boolean" else _yes_no(fields.get("MULTIPLE")),
        "MANDATORY": _yes_no(fields.get("MANDATORY")),
        "SHOW_FILTER": "E" if fields.get("SHOW_FILTER") == "Y" else "N",
        "SHOW_IN_LIST": _yes_no(fields.get("SHOW_IN_LIST", "Y")),
        "EDIT_IN_LIST": _yes_no(fields.get("EDIT_IN_LIST", "Y")),
        "IS_SEARCHABLE": _yes_no(fields.get("IS_SEARCHABLE")),
        "SETTINGS": settings,
    }
    for key in (*LABELS, "ERROR_MESSAGE", "HELP_MESSAGE"):
        definition[key] = _label(fields.get(key))
    return definition


def update_definition(portal: Portal, field_id: int, data: dict[str, Any]) -> None:
    """Change the given settings only; type and name stay as created (§8.2)."""
    definition = portal.userfields[field_id]
    for key, value in data.items():
        if key not in WRITABLE or key in IMMUTABLE:
            continue
        if key in ("MANDATORY", "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE"):
            definition[key] = _yes_no(value)
        elif key == "SHOW_FILTER":
            definition[key] = "E" if value == "Y" else "N"
        elif key == "SETTINGS" and isinstance(value, dict):
            definition["SETTINGS"] = {**definition["SETTINGS"], **value}
        elif key in (*LABELS, "ERROR_MESSAGE", "HELP_MESSAGE"):
            definition[key] = _label(value)
        elif key == "SORT":
            definition[key] = int(value)
        else:
            definition[key] = value


def view(definition: dict[str, Any]) -> dict[str, Any]:
    """The REST shape: every scalar a string, SETTINGS and labels native."""
    out: dict[str, Any] = {}
    for key, value in definition.items():
        if key == "SETTINGS" or isinstance(value, dict) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


def find(portal: Portal, raw_id: Any) -> dict[str, Any]:
    """The definition with id `raw_id`, or the proxy's error."""
    field_id = _positive_id(raw_id)
    definition = portal.userfields.get(field_id)
    if definition is None:
        raise core_error(f"The entity with ID '{field_id}' is not found.")
    return definition


def _positive_id(raw_id: Any) -> int:
    try:
        field_id = int(raw_id)
    except (TypeError, ValueError):
        field_id = 0
    if field_id <= 0:
        raise core_error("ID is not defined or invalid.")
    return field_id


def _yes_no(value: Any) -> str:
    return "Y" if value == "Y" else "N"


def _label(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(lang): str(text) for lang, text in value.items()}
    if value is None:
        return {"en": ""}
    return {"en": str(value), "de": str(value), "ru": str(value)}
