"""The e-mail one-time code: six digits to the address on record, kept only as a keyed hash.

The code expires (``identity_code_valid_s``), allows ``identity_code_attempts`` tries, and is
compared in constant time. The page that takes it is reached through the personal link sent
with it, so a code is useless without the link and the link without the code.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import replace
from datetime import datetime

from dsar.identity.answers import Answer, lock_request, needs_restart
from dsar.identity.checks import find_by_link, mark_failed, mark_verified, secret_hash
from dsar.ledger import Ledger
from dsar.ledger.chain import as_utc
from dsar.ledger.models import IdentityStatus, Request
from dsar.settings import Settings

__all__ = ["check_code", "link_language", "new_code"]

CODE_DIGITS = 6


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def link_language(ledger: Ledger, token: str) -> str | None:
    """The language of the request behind a code link, or None for an unknown link."""
    with ledger.session() as session:
        check = find_by_link(session, ledger.keys, token)
        if check is None or check.method != "email_code":
            return None
        request = session.get(Request, check.request_id)
        return request.language if request is not None else None


def check_code(ledger: Ledger, settings: Settings, *, token: str, code: str, now: datetime) -> Answer:
    """Check a typed code against the challenge behind ``token``; every attempt is recorded."""
    typed = "".join(code.split())
    with ledger.session() as session:
        check = find_by_link(session, ledger.keys, token)
        if check is None or check.method != "email_code":
            return Answer(verified=False, reason="unknown_link")
        request = lock_request(session, check.request_id)
        known = Answer(
            verified=False,
            request_id=request.id,
            request_type=request.type.value,
            language=request.language,
        )
        if check.status is IdentityStatus.VERIFIED:
            return replace(known, verified=True, reason="already_verified")
        if check.status is not IdentityStatus.PENDING:
            return replace(known, reason="link_no_longer_valid")
        if now >= as_utc(check.expires_at):
            mark_failed(session, check, reason="code_expired", now=now, final=True)
            return replace(known, reason="code_expired")
        expected = check.code_hash or ""
        given = secret_hash(ledger.keys, f"code:{token}", typed) if typed.isdigit() else ""
        if not hmac.compare_digest(expected, given):
            final = check.attempts + 1 >= settings.identity_code_attempts
            reason = "too_many_attempts" if final else "wrong_code"
            mark_failed(session, check, reason=reason, now=now, final=final)
            return replace(known, reason=reason)
        mark_verified(session, check, now=now, matched_by="email_on_record")
        return replace(known, verified=True, restart=needs_restart(request))
