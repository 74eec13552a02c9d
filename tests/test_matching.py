"""The shared rules for telling whether a value a system holds is the subject's."""

from __future__ import annotations

import pytest

from integrations.base import Subject
from integrations.errors import PermanentError
from integrations.matching import Identifiers, identifiers, normal_email, normal_phone, same_email


def test_phone_normalisation() -> None:
    assert normal_phone("912 34 567") == normal_phone("+47 91234567") == "+4791234567"
    assert normal_phone("0047 912 34 567") == "+4791234567"
    assert normal_phone("+47-912 34 567") == "+4791234567"
    assert normal_phone("ring meg") is None
    assert normal_phone(None) is None
    assert normal_phone("   ") is None
    assert normal_phone(4791234567) is None  # only text is a phone as typed
    assert normal_phone("12") is None  # parses, but cannot be a number


def test_phone_region_reads_national_numbers() -> None:
    assert normal_phone("070 123 45 67", region="SE") == "+46701234567"
    assert normal_phone("+47 912 34 567", region="SE") == "+4791234567"


def test_email_normalisation_and_comparison() -> None:
    assert normal_email("  Kari.Nordmann@Example.NO ") == "kari.nordmann@example.no"
    assert normal_email("") is normal_email(" ") is normal_email(None) is None
    assert same_email("Kari@Example.no", " kari@example.NO")
    assert not same_email("kari@example.no", "kari@example.com")
    assert not same_email(None, None)
    assert not same_email("", "")


def test_identifiers_of_a_subject() -> None:
    wanted = Identifiers.of(Subject(email=" Kari@Example.no", phone="912 34 567", name="Kari Nordmann"))
    assert wanted.emails == {"kari@example.no"}
    assert wanted.phones == {"+4791234567"}
    assert wanted
    assert not Identifiers.of(Subject(name="Kari Nordmann"))
    assert not Identifiers.of(Subject(phone="not a number"))


def test_identifiers_match_held_values() -> None:
    wanted = Identifiers.of(Subject(email="kari@example.no", phone="+4791234567"))
    assert wanted.has_email("KARI@example.no ")
    assert wanted.has_phone("+47 912 34 567")
    assert not wanted.has_email(None)
    assert not wanted.has_phone(91234567)
    assert wanted.matches(emails=["ola@example.no", "Kari@Example.no"])
    assert wanted.matches(emails=[None], phones=["", "912 34 567"])
    assert not wanted.matches(emails=["ola@example.no"], phones=["+4798765432", None])
    assert not wanted.matches()


def test_a_name_alone_is_refused() -> None:
    with pytest.raises(PermanentError) as info:
        identifiers(Subject(name="Kari Nordmann"), system="crm", vendor="Some CRM")
    assert info.value.system == "crm"
    assert "Kari" not in str(info.value)
    assert identifiers(Subject(phone="912 34 567"), system="crm", vendor="Some CRM").phones == {"+4791234567"}
