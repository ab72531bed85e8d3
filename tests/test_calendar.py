"""Deadline arithmetic: working days, holidays, time zones and DST in ``policies.calendar``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.calendar import (
    WorkCalendar,
    calendar_for,
    deadline_for_new_task,
    latest_allowed,
    to_iso,
)

BERLIN = calendar_for("Europe/Berlin")
"""Weekends only, no public holidays."""

DE = calendar_for("Europe/Berlin", country="DE")
BY = calendar_for("Europe/Berlin", country="DE", subdivision="BY")
BE = calendar_for("Europe/Berlin", country="DE", subdivision="BE")
SPEC = calendar_for("Europe/Berlin", extra=[dt.date(2026, 1, 19)])
"""The SPEC example's calendar: Monday 2026-01-19 is a company holiday."""


def same_instant(a: dt.datetime, b: dt.datetime) -> bool:
    """Compare instants by timestamp: PEP 495 makes ``==`` across zones False inside a repeated hour."""
    return a.timestamp() == b.timestamp()


def aware(text: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp that carries its offset."""
    value = dt.datetime.fromisoformat(text)
    assert value.tzinfo is not None
    return value


class TestWorkCalendar:
    @pytest.mark.parametrize(
        ("cal", "day", "expected"),
        [
            (BERLIN, dt.date(2026, 1, 16), True),  # Friday
            (BERLIN, dt.date(2026, 1, 17), False),  # Saturday
            (BERLIN, dt.date(2026, 1, 18), False),  # Sunday
            (BERLIN, dt.date(2026, 5, 1), True),  # Labour Day, but no country given
            (DE, dt.date(2026, 5, 1), False),  # Labour Day
            (DE, dt.date(2026, 1, 6), True),  # Epiphany is not national
            (BY, dt.date(2026, 1, 6), False),  # Epiphany in Bavaria
            (BE, dt.date(2026, 1, 6), True),  # not in Berlin
            (SPEC, dt.date(2026, 1, 19), False),  # extra date
            (SPEC, dt.date(2026, 1, 20), True),
        ],
    )
    def test_is_workday(self, cal: WorkCalendar, day: dt.date, expected: bool) -> None:
        """Weekends, the package's holidays for the country and subdivision, and extra dates are not working days."""
        assert cal.is_workday(day) is expected

    @pytest.mark.parametrize(
        ("cal", "day", "n", "expected"),
        [
            (BERLIN, dt.date(2026, 1, 14), 0, dt.date(2026, 1, 14)),
            (BERLIN, dt.date(2026, 1, 17), 0, dt.date(2026, 1, 17)),  # n=0 keeps even a Saturday
            (BERLIN, dt.date(2026, 1, 14), 1, dt.date(2026, 1, 15)),
            (BERLIN, dt.date(2026, 1, 16), 1, dt.date(2026, 1, 19)),  # across a weekend
            (BERLIN, dt.date(2026, 1, 17), 1, dt.date(2026, 1, 19)),  # Saturday is day 0
            (BERLIN, dt.date(2026, 1, 18), 5, dt.date(2026, 1, 23)),  # Sunday is day 0
            (BERLIN, dt.date(2026, 1, 16), 10, dt.date(2026, 1, 30)),
            (SPEC, dt.date(2026, 1, 16), 2, dt.date(2026, 1, 21)),  # extra Monday skipped
            (DE, dt.date(2026, 4, 30), 1, dt.date(2026, 5, 4)),  # Labour Day Friday, then the weekend
            (BY, dt.date(2026, 1, 5), 1, dt.date(2026, 1, 7)),  # Epiphany skipped in Bavaria
            (BE, dt.date(2026, 1, 5), 1, dt.date(2026, 1, 6)),  # but not in Berlin
            (DE, dt.date(2026, 12, 23), 2, dt.date(2026, 12, 28)),  # Christmas Day and Boxing Day
        ],
    )
    def test_add_workdays(self, cal: WorkCalendar, day: dt.date, n: int, expected: dt.date) -> None:
        """Each working day after day 0 adds one; weekends and holidays add nothing."""
        assert cal.add_workdays(day, n) == expected

    def test_negative_workdays(self) -> None:
        """A negative count is refused rather than counted backwards."""
        with pytest.raises(ValueError, match="negative"):
            BERLIN.add_workdays(dt.date(2026, 1, 16), -1)

    def test_hashable(self) -> None:
        """Equal calendars hash alike, so they can key caches and sit in frozen settings."""
        again = calendar_for("Europe/Berlin", extra=[dt.date(2026, 1, 19)])
        assert again == SPEC
        assert hash(again) == hash(SPEC)

    def test_direct_construction_validates(self) -> None:
        """Building a WorkCalendar directly checks the country as calendar_for does."""
        with pytest.raises(ValueError, match="unknown holiday country 'XX'"):
            WorkCalendar(tz=BERLIN.tz, country="XX")


class TestCalendarFor:
    def test_fields(self) -> None:
        """The zone is parsed and extra dates become a frozenset."""
        cal = calendar_for("Europe/Berlin", "DE", "BY", [dt.date(2026, 12, 24), dt.date(2026, 12, 24)])
        assert cal.tz.key == "Europe/Berlin"
        assert (cal.country, cal.subdivision) == ("DE", "BY")
        assert cal.extra == frozenset({dt.date(2026, 12, 24)})

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("Europe/Berlin", "XX"), "unknown holiday country 'XX'"),
            (("Europe/Berlin", "DE", "ZZ"), "unknown subdivision 'ZZ' for country 'DE'"),
            (("Europe/Berlin", None, "BY"), "subdivision needs a country"),
            (("Mars/Olympus_Mons",), "unknown IANA time zone 'Mars/Olympus_Mons'"),
            (("",), "unknown IANA time zone ''"),
        ],
    )
    def test_invalid(self, args: tuple[Any, ...], message: str) -> None:
        """An unknown zone, country or subdivision is a ValueError that names it."""
        with pytest.raises(ValueError, match=message):
            calendar_for(*args)


class TestDeadlineForNewTask:
    @pytest.mark.parametrize(
        ("cal", "created", "kwargs", "expected"),
        [
            # The SPEC example: Friday 15:00, two working days at 18:00, Monday a holiday.
            (SPEC, "2026-01-16T15:00:00+01:00", {"workdays": 2, "at": dt.time(18)}, "2026-01-21T18:00:00+01:00"),
            (BERLIN, "2026-01-16T15:00:00+01:00", {"workdays": 2, "at": dt.time(18)}, "2026-01-20T18:00:00+01:00"),
            (BERLIN, "2026-01-16T15:00:00+01:00", {"workdays": 1}, "2026-01-19T15:00:00+01:00"),  # keeps 15:00
            (BERLIN, "2026-01-14T09:15:42+01:00", {"workdays": 0}, "2026-01-14T09:15:42+01:00"),
            (BERLIN, "2026-01-14T16:00:00+01:00", {"workdays": 0, "at": dt.time(9)}, "2026-01-14T09:00:00+01:00"),
            (BERLIN, "2026-01-17T11:00:00+01:00", {"workdays": 1}, "2026-01-19T11:00:00+01:00"),  # Saturday day 0
            (DE, "2026-04-30T10:00:00+02:00", {"workdays": 1, "at": dt.time(17, 30)}, "2026-05-04T17:30:00+02:00"),
            (BY, "2026-01-05T10:00:00+01:00", {"workdays": 1}, "2026-01-07T10:00:00+01:00"),
            (BE, "2026-01-05T10:00:00+01:00", {"workdays": 1}, "2026-01-06T10:00:00+01:00"),
            # Other offsets: the Berlin date decides. 23:30+03:00 is Friday 21:30 in Berlin.
            (BERLIN, "2026-01-16T23:30:00+03:00", {"workdays": 1}, "2026-01-19T21:30:00+01:00"),
            # 00:30+03:00 on Saturday is still Friday 22:30 in Berlin, so day 0 is Friday.
            (BERLIN, "2026-01-17T00:30:00+03:00", {"workdays": 1}, "2026-01-19T22:30:00+01:00"),
            # 02:00 UTC on Saturday, but Friday 21:00 in New York: Berlin says Saturday.
            (BERLIN, "2026-01-16T21:00:00-05:00", {"workdays": 1}, "2026-01-19T03:00:00+01:00"),
            (BERLIN, "2026-01-16T14:00:00+00:00", {"workdays": 1}, "2026-01-19T15:00:00+01:00"),
            # Spring forward on Sunday 2026-03-29: the wall time stays 10:00 with the new offset.
            (BERLIN, "2026-03-27T10:00:00+01:00", {"workdays": 1}, "2026-03-30T10:00:00+02:00"),
            # Fall back on Sunday 2026-10-25.
            (BERLIN, "2026-10-23T10:00:00+02:00", {"workdays": 1}, "2026-10-26T10:00:00+01:00"),
            # Hours are elapsed time: no weekend skipping, and DST shows in the wall time.
            (BERLIN, "2026-01-16T15:00:00+01:00", {"hours": 48}, "2026-01-18T15:00:00+01:00"),
            (SPEC, "2026-01-16T15:00:00+01:00", {"hours": 72}, "2026-01-19T15:00:00+01:00"),
            (BERLIN, "2026-01-16T23:30:00+03:00", {"hours": 1}, "2026-01-16T22:30:00+01:00"),
            (BERLIN, "2026-03-28T10:00:00+01:00", {"hours": 24}, "2026-03-29T11:00:00+02:00"),
            (BERLIN, "2026-10-24T10:00:00+02:00", {"hours": 24}, "2026-10-25T09:00:00+01:00"),
            (BERLIN, "2026-03-29T01:30:00+01:00", {"hours": 1}, "2026-03-29T03:30:00+02:00"),
        ],
    )
    def test_deadline(self, cal: WorkCalendar, created: str, kwargs: dict[str, Any], expected: str) -> None:
        """The deadline is in the rules' zone, counted from the local creation date or instant."""
        result = deadline_for_new_task(aware(created), cal, **kwargs)
        assert result.tzinfo is cal.tz
        assert to_iso(result) == expected
        assert same_instant(result, aware(expected))  # the same instant, not only the same text

    def test_hours_from_zoneinfo_input(self) -> None:
        """Hours are real elapsed time even when created already carries the rules' ZoneInfo."""
        created = dt.datetime(2026, 3, 28, 10, tzinfo=BERLIN.tz)
        result = deadline_for_new_task(created, BERLIN, hours=24)
        assert result.timestamp() - created.timestamp() == 24 * 3600
        assert to_iso(result) == "2026-03-29T11:00:00+02:00"

    @pytest.mark.parametrize(
        ("created", "at", "expected"),
        [
            # 02:30 does not exist on Sunday 2026-03-29; fold=0 reads it with +01:00, the instant 03:30+02:00.
            ("2026-03-29T00:10:00+01:00", dt.time(2, 30), "2026-03-29T03:30:00+02:00"),
            # 02:30 happens twice on Sunday 2026-10-25; fold=0 is the first, still in summer time.
            ("2026-10-25T00:10:00+02:00", dt.time(2, 30), "2026-10-25T02:30:00+02:00"),
        ],
    )
    def test_dst_gap_and_overlap(self, created: str, at: dt.time, expected: str) -> None:
        """A nonexistent or ambiguous `at` resolves as zoneinfo does with fold=0."""
        result = deadline_for_new_task(aware(created), BERLIN, workdays=0, at=at)
        assert to_iso(result) == expected
        assert same_instant(result, aware(expected))

    def test_repeated_hour_keeps_creation_instant(self) -> None:
        """Created in the second 02:30 of the fall-back night, day 0 without `at` is that same instant."""
        created = aware("2026-10-25T02:30:00+01:00")
        result = deadline_for_new_task(created, BERLIN, workdays=0)
        assert to_iso(result) == "2026-10-25T02:30:00+01:00"
        assert same_instant(result, created)
        assert same_instant(latest_allowed(created, BERLIN, days=0), created)

    @pytest.mark.parametrize(
        ("created", "kwargs", "message"),
        [
            (dt.datetime(2026, 1, 16, 15), {"workdays": 1}, "naive"),
            (aware("2026-01-16T15:00:00+01:00"), {}, "exactly one of workdays or hours"),
            (aware("2026-01-16T15:00:00+01:00"), {"workdays": 1, "hours": 2}, "exactly one of workdays or hours"),
            (aware("2026-01-16T15:00:00+01:00"), {"hours": 2, "at": dt.time(18)}, "at applies to workdays only"),
            (aware("2026-01-16T15:00:00+01:00"), {"workdays": -1}, "negative"),
            (aware("2026-01-16T15:00:00+01:00"), {"hours": -1}, "negative"),
        ],
    )
    def test_invalid(self, created: dt.datetime, kwargs: dict[str, Any], message: str) -> None:
        """Bad arguments are a ValueError, never a guessed deadline."""
        with pytest.raises(ValueError, match=message):
            deadline_for_new_task(created, BERLIN, **kwargs)


class TestLatestAllowed:
    @pytest.mark.parametrize(
        ("cal", "created", "kwargs", "expected"),
        [
            (BERLIN, "2026-01-16T15:00:00+01:00", {"workdays": 2}, "2026-01-20T15:00:00+01:00"),
            (SPEC, "2026-01-16T15:00:00+01:00", {"workdays": 2}, "2026-01-21T15:00:00+01:00"),
            (BERLIN, "2026-01-16T15:00:00+01:00", {"days": 2}, "2026-01-18T15:00:00+01:00"),  # weekends count
            (SPEC, "2026-01-16T15:00:00+01:00", {"days": 3}, "2026-01-19T15:00:00+01:00"),  # holidays count
            (BERLIN, "2026-01-17T00:30:00+03:00", {"days": 1}, "2026-01-17T22:30:00+01:00"),
            (BERLIN, "2026-03-28T10:00:00+01:00", {"days": 1}, "2026-03-29T10:00:00+02:00"),  # spring forward
            (BERLIN, "2026-10-24T10:00:00+02:00", {"days": 1}, "2026-10-25T10:00:00+01:00"),  # fall back
            (BERLIN, "2026-03-27T10:00:00+01:00", {"workdays": 1}, "2026-03-30T10:00:00+02:00"),
            (BERLIN, "2026-01-16T15:00:00+01:00", {"days": 0}, "2026-01-16T15:00:00+01:00"),
        ],
    )
    def test_bound(self, cal: WorkCalendar, created: str, kwargs: dict[str, Any], expected: str) -> None:
        """The bound is N working or calendar days after the local creation date, at its wall time."""
        result = latest_allowed(aware(created), cal, **kwargs)
        assert result.tzinfo is cal.tz
        assert to_iso(result) == expected
        assert same_instant(result, aware(expected))

    @pytest.mark.parametrize(
        ("created", "kwargs", "message"),
        [
            (dt.datetime(2026, 1, 16, 15), {"days": 1}, "naive"),
            (aware("2026-01-16T15:00:00+01:00"), {}, "exactly one of workdays or days"),
            (aware("2026-01-16T15:00:00+01:00"), {"workdays": 1, "days": 1}, "exactly one of workdays or days"),
            (aware("2026-01-16T15:00:00+01:00"), {"days": -1}, "negative"),
            (aware("2026-01-16T15:00:00+01:00"), {"workdays": -2}, "negative"),
        ],
    )
    def test_invalid(self, created: dt.datetime, kwargs: dict[str, Any], message: str) -> None:
        """Bad arguments are a ValueError."""
        with pytest.raises(ValueError, match=message):
            latest_allowed(created, BERLIN, **kwargs)


class TestToIso:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (dt.datetime(2026, 1, 21, 18, tzinfo=BERLIN.tz), "2026-01-21T18:00:00+01:00"),
            (dt.datetime(2026, 7, 1, 9, 5, 7, 999_999, tzinfo=BERLIN.tz), "2026-07-01T09:05:07+02:00"),
            (dt.datetime(2026, 1, 21, 17, tzinfo=dt.UTC), "2026-01-21T17:00:00+00:00"),
        ],
    )
    def test_format(self, value: dt.datetime, expected: str) -> None:
        """Seconds precision with the value's own offset."""
        assert to_iso(value) == expected

    def test_naive(self) -> None:
        """A naive datetime has no offset to write, so it is refused."""
        with pytest.raises(ValueError, match="naive"):
            to_iso(dt.datetime(2026, 1, 21, 18))


_DAYS = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2090, 12, 31))
_CALENDARS = st.sampled_from([BERLIN, DE, BY, BE, SPEC, calendar_for("America/New_York", "US", "NY")])


class TestProperties:
    @settings(deadline=None)  # the first look-up of a year computes its holidays
    @given(cal=_CALENDARS, day=_DAYS, n=st.integers(min_value=1, max_value=60))
    def test_add_workdays_counts(self, cal: WorkCalendar, day: dt.date, n: int) -> None:
        """The result is a working day after ``day`` with exactly ``n`` working days in (day, result]."""
        result = cal.add_workdays(day, n)
        assert result > day
        assert cal.is_workday(result)
        span = (result - day).days
        assert sum(cal.is_workday(day + dt.timedelta(days=i)) for i in range(1, span + 1)) == n

    @settings(deadline=None)
    @given(
        cal=_CALENDARS,
        created=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 12, 31)),
        offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
        n=st.integers(min_value=0, max_value=30),
        at=st.none() | st.times(),
    )
    def test_deadline_not_before_creation_date(
        self, cal: WorkCalendar, created: dt.datetime, offset_minutes: int, n: int, at: dt.time | None
    ) -> None:
        """A workdays deadline never falls on a local date before the creation's local date."""
        aware_created = created.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes)))
        result = deadline_for_new_task(aware_created, cal, workdays=n, at=at)
        assert result.tzinfo is cal.tz
        assert result.date() >= aware_created.astimezone(cal.tz).date()
        if at is None and n == 0:
            assert same_instant(result, aware_created)
