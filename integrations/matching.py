"""Telling whether a value a system holds is one of the data subject's e-mails or phones.

* e-mails compare trimmed and case-folded;
* phones compare in E.164 after parsing what was typed, national numbers read in ``region``
  (Norway unless told); what :mod:`phonenumbers` cannot parse, or what cannot be a number
  there (``is_possible_number``), is no phone.

A name alone never makes a match. Vendors that search by identifier still decide here whether a
candidate they found is really the subject's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers

from integrations.base import Subject
from integrations.errors import PermanentError

__all__ = ["Identifiers", "identifiers", "normal_email", "normal_phone", "same_email"]


def normal_phone(value: object, region: str = "NO") -> str | None:
    """A phone number as typed, in E.164 (national numbers read in ``region``), or None if it is none."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normal_email(value: object) -> str | None:
    """An e-mail address for comparison (trimmed, case-folded), or None if there is none."""
    return value.strip().casefold() if isinstance(value, str) and value.strip() else None


def same_email(a: object, b: object) -> bool:
    """True if ``a`` and ``b`` are the same e-mail address, whatever the case and surrounding space."""
    return normal_email(a) is not None and normal_email(a) == normal_email(b)


@dataclass(frozen=True)
class Identifiers:
    """A subject's e-mails (normalised) and phones (E.164), compared with the values a system holds."""

    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    region: str = "NO"

    @classmethod
    def of(cls, subject: Subject, region: str = "NO") -> Identifiers:
        """The subject's usable e-mail and phone; either may be missing."""
        email, phone = normal_email(subject.email), normal_phone(subject.phone, region)
        return cls(frozenset([email] if email else []), frozenset([phone] if phone else []), region)

    def __bool__(self) -> bool:
        return bool(self.emails or self.phones)

    def has_email(self, value: object) -> bool:
        """True if ``value`` is one of the subject's e-mails."""
        return normal_email(value) in self.emails

    def has_phone(self, value: object) -> bool:
        """True if ``value``, as typed, is one of the subject's phones."""
        return normal_phone(value, self.region) in self.phones

    def matches(self, *, emails: Iterable[object] = (), phones: Iterable[object] = ()) -> bool:
        """True if any of ``emails`` or ``phones`` (values held by a system) is the subject's."""
        return any(map(self.has_email, emails)) or any(map(self.has_phone, phones))


def identifiers(subject: Subject, *, system: str, vendor: str) -> Identifiers:
    """The subject's identifiers; PermanentError if there is neither a usable e-mail nor phone."""
    wanted = Identifiers.of(subject)
    if not wanted:
        raise PermanentError(f"{system}: {vendor} needs an email or a valid phone to search", system=system)
    return wanted
