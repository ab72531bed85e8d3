"""Deadline arithmetic for the ``deadline`` policy, in the rules file's time zone.

Bitrix24 hands us datetimes in the calling user's offset, so every function converts to the rules'
zone before it takes a local date: "Friday" is Friday in the portal's calendar, not the caller's.
Working days skip weekends, the public holidays of the ``holidays`` package and the rules' ``extra``
dates. All of this is pure: no clock, no I/O, so the policy and its tests give the same answers.

Wall times that a DST change makes nonexistent or ambiguous are resolved the way ``zoneinfo`` does
with ``fold=0``: an ambiguous time (fall back) is its first occurrence, with the summer offset; a
nonexistent time (spring forward) is read with the offset from before the gap, so 02:30 on the day
clocks go forward becomes the instant 03:30 summer time. Results are then normalised through UTC so
their wall time and offset are always a real pair. The one exception: when the wall time is the
creation's own (no ``at``), it keeps the creation's fold, so a bound on the creation day itself is
the creation instant even inside the repeated hour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from config.rules import check_holiday_region

_SATURDAY = 5
"""``date.weekday()`` of Saturday; it and every later weekday number is a weekend day."""


@lru_cache(maxsize=32)
def _public_holidays(country: str, subdivision: str | None) -> holidays.HolidayBase:
    """One holidays object per (country, subdivision), shared by every calendar that uses it.

    It lives here rather than in ``WorkCalendar`` so the calendar stays frozen and hashable. With
    ``expand`` on (the default) the object computes a year's holidays the first time a date in it is
    asked about, so later look-ups are dictionary hits.
    """
    return holidays.country_holidays(country, subdiv=subdivision)


@dataclass(frozen=True)
class WorkCalendar:
    """Which local dates are working days, and the zone in which dates are read."""

    tz: ZoneInfo
    country: str | None = None
    subdivision: str | None = None
    extra: frozenset[dt.date] = frozenset()

    def __post_init__(self) -> None:
        # Checked here as well as in calendar_for, so no calendar can fail later, mid-evaluation.
        check_holiday_region(self.country, self.subdivision)

    def is_workday(self, day: dt.date) -> bool:
        """Whether ``day`` is Monday to Friday, not a public holiday and not an extra company holiday.

        Args:
            day: A local date in this calendar's zone.

        Returns:
            True for a working day.
        """
        if day.weekday() >= _SATURDAY or day in self.extra:
            return False
        return self.country is None or day not in _public_holidays(self.country, self.subdivision)

    def add_workdays(self, day: dt.date, n: int) -> dt.date:
        """The date ``n`` working days after ``day``.

        ``day`` is day 0 whatever it is (a Saturday or a holiday included), as the rules file's
        ``workdays`` counts from the creation day; each following working day adds one.

        Args:
            day: The starting local date.
            n: How many working days to add (0 returns ``day``).

        Returns:
            The n-th working day after ``day``.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"workdays must not be negative, got {n}")
        while n > 0:
            day += dt.timedelta(days=1)
            if self.is_workday(day):
                n -= 1
        return day


def calendar_for(
    timezone: str, country: str | None = None, subdivision: str | None = None, extra: Iterable[dt.date] = ()
) -> WorkCalendar:
    """Build a calendar from the rules file's ``timezone`` and ``holidays`` settings.

    Args:
        timezone: IANA zone name, e.g. ``Europe/Berlin``.
        country: ISO country code known to the holidays package, or None for weekends only.
        subdivision: The country's subdivision code (e.g. ``BY``), or None for national holidays only.
        extra: Further non-working dates, such as company holidays.

    Returns:
        The calendar.

    Raises:
        ValueError: If the zone, the country or the subdivision is unknown.
    """
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone '{timezone}'") from None
    return WorkCalendar(tz=tz, country=country, subdivision=subdivision, extra=frozenset(extra))


def _local(value: dt.datetime, cal: WorkCalendar) -> dt.datetime:
    """``value`` in the calendar's zone; a naive value is refused, since its instant is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime must carry a UTC offset, got naive {value.isoformat()}")
    return value.astimezone(cal.tz)


def _at_wall_time(day: dt.date, time: dt.time, cal: WorkCalendar) -> dt.datetime:
    """The instant showing ``time`` on ``day`` in the calendar's zone; ``time.fold`` picks in an overlap."""
    naive = dt.datetime.combine(day, time.replace(tzinfo=None))
    # The UTC round trip moves a nonexistent wall time (in the spring gap) to the real one it denotes.
    return naive.replace(tzinfo=cal.tz).astimezone(dt.UTC).astimezone(cal.tz)


def _one_of(name_a: str, a: int | None, name_b: str, b: int | None) -> None:
    """Refuse both or neither of two alternative units, and a negative count."""
    if (a is None) == (b is None):
        raise ValueError(f"give exactly one of {name_a} or {name_b}")
    for name, count in ((name_a, a), (name_b, b)):
        if count is not None and count < 0:
            raise ValueError(f"{name} must not be negative, got {count}")


def deadline_for_new_task(
    created: dt.datetime,
    cal: WorkCalendar,
    *,
    workdays: int | None = None,
    hours: int | None = None,
    at: dt.time | None = None,
) -> dt.datetime:
    """The deadline ``set_if_missing`` gives a task created at ``created``.

    ``workdays`` counts working days from the local creation date and keeps a wall time (``at``, or
    the creation's own), so the offset may differ across a DST change. ``hours`` is elapsed time, so
    it ignores weekends and DST alike.

    Args:
        created: The task's creation time, with any UTC offset.
        cal: The rules' calendar.
        workdays: Working days after the creation day.
        hours: Hours after the creation instant.
        at: Local time of day for a ``workdays`` deadline.

    Returns:
        The deadline, an aware datetime in ``cal.tz``.

    Raises:
        ValueError: If ``created`` is naive, not exactly one of ``workdays``/``hours`` is given, a count
            is negative, or ``at`` is given with ``hours``.
    """
    _one_of("workdays", workdays, "hours", hours)
    local = _local(created, cal)
    if hours is not None:
        if at is not None:
            raise ValueError("at applies to workdays only")
        # Added in UTC: adding to a ZoneInfo datetime would be wall-clock arithmetic, wrong across DST.
        return (local.astimezone(dt.UTC) + dt.timedelta(hours=hours)).astimezone(cal.tz)
    assert workdays is not None
    day = cal.add_workdays(local.date(), workdays)
    # The creation's own wall time keeps its fold, so day 0 without `at` is the creation instant itself.
    return _at_wall_time(day, at.replace(fold=0) if at is not None else local.time(), cal)


def latest_allowed(
    created: dt.datetime, cal: WorkCalendar, *, workdays: int | None = None, days: int | None = None
) -> dt.datetime:
    """The ``max_ahead`` bound: creation plus N working days or N calendar days, at the creation's wall time.

    Args:
        created: The task's creation time, with any UTC offset.
        cal: The rules' calendar.
        workdays: Working days after the local creation date.
        days: Calendar days after the local creation date.

    Returns:
        The latest deadline allowed, an aware datetime in ``cal.tz``.

    Raises:
        ValueError: If ``created`` is naive, not exactly one of ``workdays``/``days`` is given, or a
            count is negative.
    """
    _one_of("workdays", workdays, "days", days)
    local = _local(created, cal)
    if workdays is not None:
        day = cal.add_workdays(local.date(), workdays)
    else:
        assert days is not None
        day = local.date() + dt.timedelta(days=days)
    return _at_wall_time(day, local.time(), cal)


def to_iso(value: dt.datetime) -> str:
    """Format for Bitrix24: ISO 8601 to the second with the UTC offset, e.g. ``2026-01-21T18:00:00+01:00``.

    Args:
        value: An aware datetime.

    Returns:
        The formatted string.

    Raises:
        ValueError: If ``value`` is naive, since Bitrix24 would read it in the caller's zone.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime must carry a UTC offset, got naive {value.isoformat()}")
    return value.isoformat(timespec="seconds")
