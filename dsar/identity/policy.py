"""Which identity method a request gets: the first one of its type's list that can be used here."""

from __future__ import annotations

from dsar.settings import IdentityMethod, Settings
from integrations.base import Subject

__all__ = ["choose_method"]


def choose_method(
    settings: Settings, request_type: str, subject: Subject, *, reach_subject: bool = False
) -> IdentityMethod:
    """BankID needs a configured broker and an address to send the link to; a code needs the address.

    The link or code goes only to the e-mail address already on record (EDPB 01/2022 §§72-75),
    so a request with a phone number alone falls through to an operator's review; BankID also
    needs the name the request gives, to compare with the person who logs in.

    ``reach_subject``: an operator asked for more, so only a method that reaches the subject
    will do (``operator`` is the answer when none can).
    """
    for method in settings.identity_methods.get(request_type, ["operator"]):
        if method == "bankid" and settings.oidc_configured and subject.email and subject.name:
            return method
        if method == "email_code" and subject.email:
            return method
        if method == "operator" and not reach_subject:
            return method
    return "operator"
