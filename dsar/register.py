"""The processing register (GDPR Art. 30) facts each configured system declares.

Every system in the systems file carries a ``register:`` block. The access report builds its
Art. 15(1)(a)-(h) and 15(2) content from it, erasure takes its retention rules from it, and
Art. 19 notices go to the ``privacy_contact`` of each recipient. Texts a data subject reads
are given in both languages (``{nb: ..., en: ...}``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["LocalText", "RegisterEntry", "Transfer"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LocalText(_Frozen):
    """A text in Norwegian bokmål and English."""

    nb: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def __call__(self, language: str) -> str:
        return self.nb if language == "nb" else self.en


class Transfer(_Frozen):
    """A transfer outside the EEA and its Art. 46 (or adequacy) safeguard."""

    country: str = Field(min_length=2)
    safeguard: LocalText


class RegisterEntry(_Frozen):
    """What the controller has declared about one system."""

    description: LocalText
    role: Literal["internal", "processor", "sub-processor", "independent-controller"]
    vendor: str | None = None  # the recipient's legal name, for Art. 15(1)(c) (C-154/21: by name)
    privacy_contact: str | None = None  # where Art. 19 notices and processor requests go
    categories: tuple[str, ...] = Field(min_length=1)
    purposes: tuple[LocalText, ...] = Field(min_length=1)
    legal_basis: tuple[str, ...] = Field(min_length=1)  # e.g. "GDPR Art. 6(1)(b)"
    retention: LocalText
    source: LocalText
    transfers: tuple[Transfer, ...] = ()
    automated_decisions: LocalText | None = None  # Art. 15(1)(h); None means there are none

    @property
    def is_recipient(self) -> bool:
        """Data held here has been disclosed to someone outside the controller (Art. 4(9))."""
        return self.role != "internal"

    @field_validator("legal_basis")
    @classmethod
    def _gdpr_articles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for basis in value:
            if "Art." not in basis:
                raise ValueError("name the article, e.g. 'GDPR Art. 6(1)(b)'")
        return value
