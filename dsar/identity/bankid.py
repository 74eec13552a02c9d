"""BankID (or ID-porten) through the company's OpenID Connect broker.

The subject's personal link (``/identity/login/<token>``) starts a fresh login each time it is
followed: new state, nonce and PKCE verifier, the state stored as a keyed hash and the rest
encrypted. The callback (``/identity/oidc/callback``) consumes the state before anything else,
so a replayed callback finds nothing; then the code is exchanged and the id_token validated by
:mod:`integrations.oidc`. The person who logged in must be the one the request names: by the
national id or name and birth date on record where the request carries them, else by the name
on the request, which the login link, sent only to the address on record, ties to its mailbox.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.orm import Session

from dsar.identity.answers import Answer, lock_request, needs_restart
from dsar.identity.checks import find_by_link, find_by_state, mark_failed, mark_verified, secret_hash
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, as_utc
from dsar.ledger.models import IdentityCheck, IdentityStatus
from dsar.settings import Settings
from integrations.oidc import (
    IdentityRejected,
    OidcClient,
    OidcConfig,
    VerifiedIdentity,
    identity_matches,
    normal_name,
    normal_national_id,
)

__all__ = ["CALLBACK_PATH", "begin_login", "finish_login", "oidc_client"]

CALLBACK_PATH = "/identity/oidc/callback"


def oidc_client(settings: Settings, http: httpx.Client | None = None) -> OidcClient:
    assert settings.oidc_issuer
    assert settings.oidc_client_id
    assert settings.oidc_client_secret
    return OidcClient(
        OidcConfig(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            redirect_uri=settings.public_url.rstrip("/") + CALLBACK_PATH,
            min_loa=settings.oidc_min_loa,
        ),
        http,
    )


def begin_login(ledger: Ledger, client: OidcClient, *, token: str, now: datetime) -> str | Answer:
    """The broker's authorization URL for the challenge behind ``token``, or why there is none."""
    with ledger.session() as session:
        check = find_by_link(session, ledger.keys, token)
        if check is None or check.method != "bankid":
            return Answer(verified=False, reason="unknown_link")
        if check.status is not IdentityStatus.PENDING or as_utc(check.expires_at) <= now:
            return Answer(verified=False, reason="link_no_longer_valid", request_id=check.request_id)
    try:
        start = client.start_login()  # network: outside the transaction
    except IdentityRejected as exc:
        return Answer(verified=False, reason=exc.reason)
    with ledger.session() as session:
        check = find_by_link(session, ledger.keys, token)
        assert check is not None
        check.state_hash = secret_hash(ledger.keys, "state", start.state)
        check.login_ciphertext = ledger.keys.cipher.encrypt_json(
            {"nonce": start.nonce, "code_verifier": start.code_verifier}
        )
        append_event(
            session, request_id=check.request_id, kind="identity.login_started", data={"check": check.id}
        )
    return start.url


def finish_login(ledger: Ledger, client: OidcClient, *, params: dict[str, str], now: datetime) -> Answer:
    """Handle the broker's redirect back: consume the state, exchange, validate, match, record."""
    state = params.get("state", "")
    login = _consume_state(ledger, state) if state else None
    if login is None:
        return Answer(verified=False, reason="unknown_or_used_state")
    check_id, known, secrets = login
    try:
        if "error" in params or not params.get("code"):
            raise IdentityRejected("login_failed", "the broker sent no code")
        identity = client.finish_login(
            code=params["code"], code_verifier=secrets["code_verifier"], nonce=secrets["nonce"]
        )
    except IdentityRejected as exc:
        return _record_failure(ledger, check_id, known, exc.reason, now)
    return _record_identity(ledger, check_id, known, identity, now)


def _consume_state(ledger: Ledger, state: str) -> tuple[int, Answer, dict[str, Any]] | None:
    """Take the login's secrets and forget its state, in one committed step (no replay)."""
    with ledger.session() as session:
        check = find_by_state(session, ledger.keys, state)
        if check is None or check.login_ciphertext is None:
            return None
        secrets: dict[str, Any] = ledger.keys.cipher.decrypt_json(check.login_ciphertext)
        check.state_hash, check.login_ciphertext = None, None
        request = repo.get_request(session, check.request_id)
        known = Answer(
            verified=False, request_id=request.id, request_type=request.type.value, language=request.language
        )
        if check.status is not IdentityStatus.PENDING:
            return None
        return check.id, known, secrets


def _record_failure(ledger: Ledger, check_id: int, known: Answer, reason: str, now: datetime) -> Answer:
    with ledger.session() as session:
        check = _check(session, check_id)
        mark_failed(session, check, reason=reason, now=now, final=False)  # the subject may try again
    return replace(known, reason=reason)


def _record_identity(
    ledger: Ledger, check_id: int, known: Answer, identity: VerifiedIdentity, now: datetime
) -> Answer:
    with ledger.session() as session:
        check = _check(session, check_id)
        request = lock_request(session, check.request_id)
        if check.status is not IdentityStatus.PENDING:
            return replace(known, reason="link_no_longer_valid")
        on_record: dict[str, Any] = ledger.keys.cipher.decrypt_json(request.subject_ciphertext)
        matched_by = _match(identity, on_record, ledger.keys)
        if matched_by is None:
            mark_failed(session, check, reason="identity_mismatch", now=now, final=False)
            return replace(known, reason="identity_mismatch")
        mark_verified(session, check, now=now, level=identity.loa, matched_by=matched_by)
        return replace(known, verified=True, restart=needs_restart(request))


def _match(identity: VerifiedIdentity, on_record: dict[str, Any], keys: repo.Keys) -> str | None:
    """How the logged-in person matches the request, or None if they do not."""

    def hash_fn(national_id: str) -> str:
        return secret_hash(keys, "national_id", national_id)

    national_id_hash = on_record.get("national_id_hash")
    if national_id_hash or on_record.get("birthdate"):
        matched = identity_matches(
            identity,
            national_id_hash=national_id_hash,
            name=on_record.get("name"),
            birthdate=on_record.get("birthdate"),
            hash_fn=hash_fn,
        )
        return ("national_id" if national_id_hash else "name_birthdate") if matched else None
    name = normal_name(on_record.get("name"))
    if name and normal_name(identity.name) == name and normal_national_id(identity.national_id):
        return "name_and_mailbox"
    return None


def _check(session: Session, check_id: int) -> IdentityCheck:
    check = session.get(IdentityCheck, check_id, with_for_update=True)
    assert check is not None
    return check
