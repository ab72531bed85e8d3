"""Intake parsing: real-shaped Bitrix24 bodies in, ``Event`` out, hostile bodies refused cheaply."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.parse import FORM, JSON, MAX_FIELDS, Event, parse_form
from handlers.refusals import IntakeError, MalformedEvent, UnsupportedMediaType

from .helpers import SAMPLES, TEST_APP_TOKEN


class TestFormBodies:
    def test_outgoing_webhook_sample(self) -> None:
        """The reference's ONTASKUPDATE body yields its task id, ts, handler id and auth fields."""
        event = Event.from_request(FORM, (SAMPLES / "ontaskupdate-webhook.form").read_bytes())
        assert (event.name, event.task_id, event.ts, event.handler_id) == ("ONTASKUPDATE", 8017, "1766047124", "27")
        assert event.application_token == TEST_APP_TOKEN
        assert event.member_id == "a223c6b3710f85df22e9377d6c4f7553"
        assert event.event_id == "ONTASKUPDATE:8017:1766047124:27"

    def test_fields_before_undefined(self) -> None:
        """ONTASKADD carries FIELDS_BEFORE as the literal string ``undefined``; the id comes from AFTER."""
        event = Event.from_request(FORM, (SAMPLES / "ontaskadd-app.form").read_bytes())
        assert (event.name, event.task_id) == ("ONTASKADD", 8018)

    def test_only_before_has_the_id(self) -> None:
        """ONTASKDELETE-like shape: FIELDS_AFTER undefined, the id in FIELDS_BEFORE."""
        body = b"event=ONTASKDELETE&data[FIELDS_BEFORE][ID]=5&data[FIELDS_AFTER]=undefined"
        assert Event.from_request(FORM, body).task_id == 5

    def test_token_not_in_repr(self) -> None:
        """The application token never shows in a repr (and so never in a log line)."""
        event = Event.from_request(FORM, (SAMPLES / "ontaskupdate-webhook.form").read_bytes())
        assert TEST_APP_TOKEN not in repr(event)

    def test_nested_and_list_keys(self) -> None:
        """PHP bracket syntax builds nested maps; ``[]`` appends."""
        tree = parse_form(b"a[b][c]=1&a[b][d]=2&l[]=x&l[]=y&plain=z")
        assert tree == {"a": {"b": {"c": "1", "d": "2"}}, "l": {"0": "x", "1": "y"}, "plain": "z"}

    @pytest.mark.parametrize("body", [
        b"event=ONTASKUPDATE&data[FIELDS_AFTER][ID]=abc",
        b"event=ONTASKUPDATE&data[FIELDS_AFTER][ID]=-4",
        b"event=ONTASKUPDATE&data[FIELDS_AFTER]=undefined&data[FIELDS_BEFORE]=undefined",
        b"event=ONTASKUPDATE&data=undefined",
        b"event=ONTASKUPDATE",
    ])
    def test_no_usable_task_id(self, body: bytes) -> None:
        """Ids that are not positive integers count as absent."""
        assert Event.from_request(FORM, body).task_id is None


class TestRefusals:
    @pytest.mark.parametrize(("content_type", "body", "error"), [
        (FORM, b"data[FIELDS_AFTER][ID]=1", MalformedEvent),
        (FORM, b"event=&data[FIELDS_AFTER][ID]=1", MalformedEvent),
        (FORM, b"\xff\xfe", MalformedEvent),
        (FORM, b"&".join(b"k%d=1" % i for i in range(MAX_FIELDS + 5)), MalformedEvent),
        (FORM, b"a" + b"[b]" * 10_000 + b"=1", MalformedEvent),
        (FORM, b"event=X&a[b][c][d][e][f][g]=1", MalformedEvent),
        (JSON, b"{not json", MalformedEvent),
        (JSON, b"[1, 2]", MalformedEvent),
        (JSON, b"[" * 5000 + b"]" * 5000, MalformedEvent),
        (JSON, json.dumps({"event": "X", "a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}).encode(), MalformedEvent),
        ("text/plain", b"event=ONTASKUPDATE", UnsupportedMediaType),
        ("", b"event=ONTASKUPDATE", UnsupportedMediaType),
    ])
    def test_table(self, content_type: str, body: bytes, error: type[IntakeError]) -> None:
        """Each bad body raises its intake error (which maps to a 4xx), nothing else."""
        with pytest.raises(error):
            Event.from_request(content_type, body)

    def test_json_body_same_structure(self) -> None:
        """The same structure as JSON parses to the same event."""
        body = {"event": "ontaskupdate", "data": {"FIELDS_AFTER": {"ID": 42}}, "ts": 1, "auth": {"application_token": "t"}}
        event = Event.from_request(JSON, json.dumps(body).encode())
        assert (event.name, event.task_id, event.ts, event.application_token) == ("ONTASKUPDATE", 42, "1", "t")


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2048), st.sampled_from([FORM, JSON]))
    def test_any_bytes_parse_or_refuse(self, body: bytes, content_type: str) -> None:
        """Arbitrary bytes either parse or raise an IntakeError; never another exception."""
        with contextlib.suppress(IntakeError):
            Event.from_request(content_type, body)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.text(max_size=30), st.text(max_size=30)), max_size=40))
    def test_any_form_pairs(self, pairs: list[tuple[str, str]]) -> None:
        """Arbitrary key/value pairs, brackets included, parse or raise an IntakeError."""
        from urllib.parse import urlencode

        with contextlib.suppress(IntakeError):
            Event.from_request(FORM, urlencode(pairs).encode())
