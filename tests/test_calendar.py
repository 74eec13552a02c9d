"""The statutory deadline: Art. 12(3) GDPR counted per Regulation 1182/71 with Norwegian holidays."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsar.calendar import due_date, is_working_day, local_date

# received -> (one month, extended), each checked by hand against a calendar.
TABLE = [
    ("2025-03-05", "2025-04-07", "2025-06-05"),  # EDPB Ex. 32; 5 April 2025 is a Saturday
    ("2025-08-31", "2025-09-30", "2025-12-01"),  # EDPB Ex. 33: no 31 September; 30 Nov is a Sunday
    ("2025-01-31", "2025-02-28", "2025-04-28"),  # clamp to February; extension from the un-rolled end
    ("2024-01-31", "2024-02-29", "2024-04-29"),  # leap year
    ("2025-04-17", "2025-05-19", "2025-07-17"),  # 17 May: Saturday and Constitution Day
    ("2026-03-02", "2026-04-07", "2026-06-02"),  # 2 April Maundy Thursday .. 6 April Easter Monday
    ("2025-11-25", "2025-12-29", "2026-02-25"),  # 25, 26 Dec holidays, 27-28 weekend
    ("2025-11-24", "2025-12-24", "2026-02-24"),  # Christmas Eve is a working day in law
    ("2026-04-14", "2026-05-15", "2026-07-14"),  # 14 May 2026 is Ascension Day -> Friday 15 May
    ("2026-11-22", "2026-12-22", "2027-02-22"),
]


@pytest.mark.parametrize(("received", "one_month", "extended"), TABLE)
def test_table(received: str, one_month: str, extended: str) -> None:
    day = date.fromisoformat(received)
    assert due_date(day).isoformat() == one_month
    assert due_date(day, extended=True).isoformat() == extended


def test_suspension_adds_calendar_days_to_the_unrolled_end_then_rolls() -> None:
    # 5 March + 1 month = 5 April (Sat); + 3 days = 8 April (Tue), a working day.
    assert due_date(date(2025, 3, 5), suspended_days=3) == date(2025, 4, 8)
    # 31 Jan -> 28 Feb (Fri); + 1 day = 1 March (Sat) -> Monday 3 March.
    assert due_date(date(2025, 1, 31), suspended_days=1) == date(2025, 3, 3)


def test_negative_suspension_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        due_date(date(2025, 1, 1), suspended_days=-1)


def test_receipt_is_the_oslo_calendar_day() -> None:
    late_evening_utc = datetime(2025, 1, 31, 23, 30, tzinfo=ZoneInfo("UTC"))  # 00:30 on 1 Feb in Oslo
    assert local_date(late_evening_utc) == date(2025, 2, 1)
    with pytest.raises(ValueError, match="time zone"):
        local_date(datetime(2025, 1, 31, 12))


days = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@given(days)
def test_never_earlier_than_28_days_never_later_than_a_month_and_a_week(received: date) -> None:
    delta = (due_date(received) - received).days
    assert 28 <= delta <= 31 + 6  # the longest roll: Easter (Thu..Mon) after a weekend-adjacent end


@given(days, st.booleans(), st.integers(min_value=0, max_value=120))
def test_always_a_working_day(received: date, extended: bool, suspended: int) -> None:
    assert is_working_day(due_date(received, extended=extended, suspended_days=suspended))


@given(days, days)
def test_monotone_in_the_day_of_receipt(a: date, b: date) -> None:
    early, late = sorted((a, b))
    assert due_date(early) <= due_date(late)
    assert due_date(early, extended=True) <= due_date(late, extended=True)


@given(days, st.integers(min_value=0, max_value=60))
def test_suspension_never_shortens_and_extension_never_shortens(received: date, suspended: int) -> None:
    assert due_date(received, suspended_days=suspended) >= due_date(received)
    assert due_date(received, extended=True) >= due_date(received)
    assert due_date(received, extended=True) - received >= timedelta(days=87)  # 31 Jan -> 28 Apr
