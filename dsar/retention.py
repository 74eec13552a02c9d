"""Retention rules: per system and data category, erase, anonymise, or keep until a date on a basis.

The rules live in the processing register (``register.retention_rules`` in the systems file);
a category without a rule is erased. Norwegian defaults ship as presets:

* ``bokforingsloven-primary``: primary bookkeeping documentation (invoices, vouchers, customer
  specifications) is kept five years after the end of the financial year (bokføringsloven § 13
  second paragraph, with GDPR Art. 17(3)(b));
* ``bokforingsloven-secondary``: secondary documentation (agreements, correspondence about a
  booked entry, packing slips) three years and six months after the end of the financial year.

**Until when.** The vendors report what they kept by category and count, not the records' dates.
The until-date is therefore computed from the most recent record the subject can have: one from
the financial year in which the erasure runs. Older records could go sooner; nothing is ever
erased before the law allows it. Example: erasure on 15 March 2025, calendar financial year:
year end 31 December 2025, primary kept until 31 December 2030, secondary until 30 June 2029.

An operator's legal hold (Art. 17(3)(e)) keeps a whole system, with no date, until released.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "PRESETS",
    "CategoryPlan",
    "Preset",
    "RetentionRule",
    "SystemPlan",
    "add_months",
    "financial_year_end",
    "plan_system",
]

Action = Literal["erase", "anonymise", "retain", "hold"]


@dataclass(frozen=True)
class Preset:
    basis: str
    months: int


PRESETS: Mapping[str, Preset] = {
    "bokforingsloven-primary": Preset(
        basis="GDPR Art. 17(3)(b); bokføringsloven § 13 (primærdokumentasjon / primary documentation)",
        months=60,
    ),
    "bokforingsloven-secondary": Preset(
        basis="GDPR Art. 17(3)(b); bokføringsloven § 13 (sekundærdokumentasjon / secondary documentation)",
        months=42,
    ),
}


class RetentionRule(BaseModel):
    """What happens to some categories of one system when the subject asks for erasure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: tuple[str, ...] = Field(min_length=1)
    action: Literal["erase", "anonymise", "retain"]
    preset: Literal["bokforingsloven-primary", "bokforingsloven-secondary"] | None = None
    basis: str | None = Field(default=None, min_length=8)  # the legal basis, naming the article
    months: int | None = Field(default=None, ge=1, le=1200)
    after: Literal["financial_year_end", "erasure"] = "financial_year_end"

    @model_validator(mode="after")
    def _retain_needs_basis_and_period(self) -> RetentionRule:
        if self.action != "retain":
            if self.preset or self.basis or self.months:
                raise ValueError("only 'retain' takes a preset, basis or months")
            return self
        if self.preset is None and (self.basis is None or self.months is None):
            raise ValueError("'retain' needs a preset, or both a basis and months")
        return self

    @property
    def legal_basis(self) -> str:
        if self.basis is not None:  # an explicit basis overrides the preset's
            return self.basis
        return PRESETS[str(self.preset)].basis

    def until(self, erased_on: date, year_end: tuple[int, int]) -> date:
        """The last day the kept data may be held, for an erasure on ``erased_on``."""
        months = self.months or PRESETS[str(self.preset)].months
        start = erased_on if self.after == "erasure" else financial_year_end(erased_on, year_end)
        return add_months(start, months)


def financial_year_end(day: date, year_end: tuple[int, int] = (12, 31)) -> date:
    """The last day of the financial year that contains ``day`` (``year_end`` is (month, day))."""
    month, last = year_end
    this_year = date(day.year, month, min(last, calendar.monthrange(day.year, month)[1]))
    if day <= this_year:
        return this_year
    return date(day.year + 1, month, min(last, calendar.monthrange(day.year + 1, month)[1]))


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months; a month-end stays a month-end (31 Dec + 6 months = 30 Jun)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    month_days = calendar.monthrange(year, month)[1]
    at_month_end = day.day == calendar.monthrange(day.year, day.month)[1]
    return date(year, month, month_days if at_month_end else min(day.day, month_days))


@dataclass(frozen=True)
class CategoryPlan:
    """What erasure will do with one category of one system (counts only, never values)."""

    category: str
    count: int
    action: Action
    basis: str | None = None
    until: date | None = None


@dataclass(frozen=True)
class SystemPlan:
    system: str
    categories: tuple[CategoryPlan, ...]
    hold_id: int | None = None

    @property
    def held(self) -> bool:
        return self.hold_id is not None

    def rule_for(self, category: str) -> CategoryPlan | None:
        return next((c for c in self.categories if c.category == category), None)


def hold_basis(hold_id: int, reason: str) -> str:
    return f"GDPR Art. 17(3)(e) (legal hold #{hold_id}: {reason})"


def plan_system(
    system: str,
    rules: tuple[RetentionRule, ...],
    counts: Mapping[str, int],
    *,
    erased_on: date,
    year_end: tuple[int, int] = (12, 31),
    hold: tuple[int, str] | None = None,
) -> SystemPlan:
    """The plan for one system from what its look-up found, its rules, and any legal hold."""
    found = {category: n for category, n in counts.items() if n}
    if hold is not None:
        basis = hold_basis(*hold)
        held = tuple(CategoryPlan(c, n, "hold", basis) for c, n in sorted(found.items()))
        return SystemPlan(system, held, hold_id=hold[0])
    planned = []
    for category, count in sorted(found.items()):
        rule = rule_for(rules, category)
        if rule is None or rule.action != "retain":
            planned.append(CategoryPlan(category, count, rule.action if rule else "erase"))
        else:
            until = rule.until(erased_on, year_end)
            planned.append(CategoryPlan(category, count, "retain", rule.legal_basis, until))
    return SystemPlan(system, tuple(planned))


def rule_for(rules: tuple[RetentionRule, ...], category: str) -> RetentionRule | None:
    """The first rule naming ``category``."""
    return next((rule for rule in rules if category in rule.categories), None)
