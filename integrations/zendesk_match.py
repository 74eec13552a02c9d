"""Deciding which Zendesk users are the subject, and where the subject appears in comment text.

Zendesk stores e-mails and phones as typed, in the user and in its identities; e-mails compare
case-insensitively (lower case, since they are also looked for in comment text) and phones in
E.164 as :func:`integrations.matching.normal_phone` reads them. A name alone never makes a match:
full names are only looked for, for redaction, in tickets already tied to the subject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from integrations.matching import normal_phone

__all__ = ["Needles", "extend", "hits", "is_match", "search_terms"]

Json = dict[str, Any]


@dataclass
class Needles:
    """The subject's identifiers: e-mails (lower case), E.164 phones, full names (lower case)."""

    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)


def search_terms(wanted: Needles) -> list[str]:
    """Search queries: each e-mail, and each phone in E.164 and as national digits."""
    national = [str(phonenumbers.parse(phone).national_number) for phone in sorted(wanted.phones)]
    return sorted(wanted.emails) + sorted(wanted.phones) + national


def _values(user: Json, identities: list[Json]) -> tuple[set[str], set[str]]:
    """A user's e-mails (lower case) and E.164 phones, from its fields and its identities."""
    emails = {str(i.get("value", "")).lower() for i in identities if i.get("type") == "email"}
    emails |= {str(user["email"]).lower()} if user.get("email") else set()
    typed = [str(i.get("value", "")) for i in identities if "phone" in str(i.get("type", ""))]
    phones = {normal_phone(str(v)) for v in [*typed, user.get("phone")] if v}
    return emails - {""}, {p for p in phones if p}


def is_match(user: Json, identities: list[Json], wanted: Needles) -> bool:
    """True if the user's e-mail or phone, or one of its identities, is the subject's."""
    emails, phones = _values(user, identities)
    return bool(emails & wanted.emails or phones & wanted.phones)


def extend(needles: Needles, user: Json, identities: list[Json]) -> None:
    """Add a matched user's other e-mails, phones and full name to what redaction looks for."""
    emails, phones = _values(user, identities)
    needles.emails |= emails
    needles.phones |= phones
    name = str(user.get("name") or "").strip()
    needles.names |= {name.lower()} if " " in name else set()


def hits(comment: Json, needles: Needles) -> list[str]:
    """The exact substrings of a comment's body that are the subject's e-mail, phone or name."""
    text = str(comment.get("body") or "")
    lower, found = text.lower(), set()
    for needle in needles.emails | needles.names:
        start = lower.find(needle)
        while start >= 0:
            found.add(text[start : start + len(needle)])
            start = lower.find(needle, start + 1)
    for match in phonenumbers.PhoneNumberMatcher(text, "NO"):
        if normal_phone(match.raw_string) in needles.phones:
            found.add(match.raw_string)
    return sorted(found, key=len, reverse=True)
