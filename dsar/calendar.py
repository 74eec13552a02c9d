"""The statutory deadline of a data-subject request (GDPR Art. 12(3), Regulation 1182/71 Art. 3).

* The day of receipt is not counted (1182/71 Art. 3(1)): a month runs from that day and
  ends on the same-numbered day of the next month, or on the last day of that month when it
  has no such day (Art. 3(2)(c)): 31 January -> 28/29 February.
* An end that falls on a Saturday, Sunday or Norwegian public holiday moves to the next
  working day (Art. 3(4)). Holidays inside the period do not lengthen it (Art. 3(3)).
* Extension (Art. 12(3)): two further months counted from the *un-rolled* one-month end,
  then rolled. legal.md §1.5 notes the alternative reading (receipt + 3 months); counting
  from the un-rolled end gives the earlier, safer date at month ends.
* Identity suspension (EDPB 01/2022 §159): the suspended calendar days are added to the
  un-rolled end, then the result is rolled.

Only the calendar date matters; the period expires at 23:59:59 Europe/Oslo on that date.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from dateutil.relativedelta import relativedelta

__all__ = ["OSLO", "due_date", "is_working_day", "local_date", "next_working_day"]

OSLO = ZoneInfo("Europe/Oslo")


@lru_cache(maxsize=64)
def _norwegian_holidays(year: int) -> holidays.HolidayBase:
    # Norway's `holidays` entry lists every Sunday as a holiday when include_sundays is on;
    # we test weekends ourselves so only the public holidays proper come from the package.
    return holidays.country_holidays("NO", years=year, include_sundays=False)


def is_working_day(day: date) -> bool:
    """True unless ``day`` is a Saturday, Sunday or Norwegian public holiday."""
    return day.weekday() < 5 and day not in _norwegian_holidays(day.year)


def next_working_day(day: date) -> date:
    """``day`` itself if it is a working day, else the first working day after it."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def local_date(moment: datetime) -> date:
    """The calendar date in Oslo of an aware timestamp (when the request reached the controller)."""
    if moment.tzinfo is None:
        raise ValueError("received-at must carry a time zone")
    return moment.astimezone(OSLO).date()


def _add_months(day: date, months: int) -> date:
    # relativedelta clamps to the month's last day, exactly Art. 3(2)(c).
    result: date = day + relativedelta(months=months)
    return result


def due_date(received: date, *, extended: bool = False, suspended_days: int = 0) -> date:
    """The last day on which the answer is in time."""
    if suspended_days < 0:
        raise ValueError("suspended days cannot be negative")
    end = _add_months(received, 1)
    if extended:
        end = _add_months(end, 2)
    return next_working_day(end + timedelta(days=suspended_days))
