"""The processing register (GDPR Art. 30) facts each configured system declares.

Every system in the systems file carries a ``register:`` block. The access report builds its
Art. 15(1)(a)-(h) and 15(2) content from it, erasure takes its retention rules from it, and
Art. 19 notices go to the ``privacy_contact`` of each recipient. Texts a data subject reads
are given in both languages (``{nb: ..., en: ...}``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dsar.retention import RetentionRule

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
    retention_rules: tuple[RetentionRule, ...] = ()  # on erasure; a category without a rule is erased
    direct_marketing: bool = False  # used for direct marketing: an objection (Art. 21(2)) applies here
    portable: tuple[str, ...] | None = None  # categories the subject provided (Art. 20); None: by basis

    @property
    def is_recipient(self) -> bool:
        """Data held here has been disclosed to someone outside the controller (Art. 4(9))."""
        return self.role != "internal"

    @property
    def portable_categories(self) -> tuple[str, ...]:
        """Art. 20(1): data the subject provided, processed on consent or contract, by automated means.

        Declared with ``portable``; otherwise every category when the basis includes consent
        (6(1)(a)) or contract (6(1)(b)), none when it does not.
        """
        if self.portable is not None:
            return self.portable
        if any(basis.replace(" ", "").endswith(("6(1)(a)", "6(1)(b)")) for basis in self.legal_basis):
            return self.categories
        return ()

    @model_validator(mode="after")
    def _rules_name_declared_categories(self) -> RegisterEntry:
        declared = set(self.categories)
        for rule in self.retention_rules:
            unknown = set(rule.categories) - declared
            if unknown:
                raise ValueError(f"retention rule for undeclared categories {sorted(unknown)}")
        if self.portable is not None and not set(self.portable) <= declared:
            raise ValueError("portable names undeclared categories")
        return self

    @field_validator("legal_basis")
    @classmethod
    def _gdpr_articles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for basis in value:
            if "Art." not in basis:
                raise ValueError("name the article, e.g. 'GDPR Art. 6(1)(b)'")
        return value
