"""Encryption at rest and keyed hashes for subject identifiers.

Identifiers (e-mail, phone, name) are stored encrypted with Fernet (AES-128-CBC + HMAC,
from ``cryptography``). For duplicate detection and matching without decrypting, each
normalised identifier also gets a keyed hash (HMAC-SHA256): without the key the hash
cannot be reversed by guessing addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import email_validator
import phonenumbers
from cryptography.fernet import Fernet, InvalidToken

__all__ = ["Cipher", "InvalidToken", "keyed_hash", "normalise_email", "normalise_phone"]


class Cipher:
    """Encrypts and decrypts small JSON values with one Fernet key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt_json(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode())

    def decrypt_json(self, token: bytes) -> Any:
        return json.loads(self._fernet.decrypt(token))

    def encrypt_bytes(self, value: bytes) -> bytes:
        return self._fernet.encrypt(value)

    def decrypt_bytes(self, token: bytes) -> bytes:
        """Raises ValueError (InvalidToken) when the token was altered or made with another key."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise ValueError("the encrypted data was altered or made with another key") from None


def keyed_hash(key: str, value: str) -> str:
    """HMAC-SHA256 of an already-normalised identifier, hex encoded."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def normalise_email(email: str) -> str:
    """Validated, trimmed and lower-cased; raises ValueError when it is not an address."""
    try:
        valid = email_validator.validate_email(email.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError("not a valid e-mail address") from exc
    # Lower-case the local part too: the vendors we search match addresses case-insensitively.
    return valid.normalized.lower()


def normalise_phone(phone: str, region: str = "NO") -> str:
    """E.164 form (+4791234567); raises ValueError when it is not a valid number."""
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a valid phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
