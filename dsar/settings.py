"""One typed settings object, built at the entry point and passed down.

Every value comes from the environment (prefix ``DSAR_``) or a ``.env`` file. In
development the encryption and hashing keys are generated once into ``var/keys.json``
(mode 0600) so the demo works out of the box; in production they must be given, and the
settings refuse to start without them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.mail import SmtpConfig

__all__ = ["PROJECT_ROOT", "IdentityMethod", "Settings"]

IdentityMethod = Literal["bankid", "email_code", "operator"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Configuration of the pipeline: ledger, keys, systems, documents, controller identity."""

    model_config = SettingsConfigDict(env_prefix="DSAR_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    ledger_url: str = ""  # default: sqlite:///<var_dir>/ledger.db
    encryption_key: SecretStr | None = None  # Fernet key (urlsafe base64, 32 bytes)
    hash_key: SecretStr | None = None  # HMAC key for identifier hashes
    systems_file: Path | None = None  # YAML list of configured systems
    templates_dir: Path = PROJECT_ROOT / "templates"
    documents_dir: Path | None = None  # default: <var_dir>/documents
    documents_retention_days: int = Field(default=90, ge=1)  # after the request closed; then purged
    default_phone_region: str = "NO"
    financial_year_end: str = Field(default="12-31", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    # Erasure waits for an operator to approve its plan (a Prefect pause form); "automatic" approves
    # in the name of the policy, recorded as such. Dry runs stop after the plan either way.
    erasure_approval: Literal["operator", "automatic"] = "operator"

    # The controller named on every letter; the defaults are the demo's fictional company.
    controller_name: str = "Fjordlys AS"
    controller_org_number: str = "999 999 999"
    controller_address: str = "Storgata 1, 0155 Oslo"
    controller_email: str = "personvern@fjordlys.example"
    controller_dpo_email: str | None = "dpo@fjordlys.example"

    # Signing the deletion certificate (PAdES, dsar/signing.py). Development with neither file set:
    # a self-signed certificate is generated once into <var_dir>/signing/. Production: both required.
    signing_key_file: Path | None = None  # PEM private key (RSA or EC), optionally encrypted
    signing_cert_file: Path | None = None  # PEM certificate matching the key, optionally with its chain
    signing_key_passphrase: SecretStr | None = None
    signing_trust_file: Path | None = None  # extra PEM roots for verify-certificate (default: the cert file)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    privacy_mailbox: str = "personvern@fjordlys.example"  # deadline alerts and operator notices go here
    processor_language: Literal["nb", "en"] = "nb"  # language of requests sent to processors
    operator_timeout_s: int = Field(default=7 * 24 * 3600, ge=10)  # how long a flow waits for an operator
    operator_poll_s: int = Field(default=10, ge=1)

    # Intake from ticketing (dsar serve): Zendesk webhooks are signed; other systems send a bearer token.
    intake_host: str = "127.0.0.1"
    intake_port: int = Field(default=8787, ge=1, le=65535)
    intake_zendesk_secret: SecretStr | None = None  # the webhook's signing secret
    intake_bearer_token: SecretStr | None = None  # for the generic JSON intake
    intake_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    intake_signature_tolerance_s: int = Field(default=300, ge=1)  # older signed timestamps are refused
    ticketing_zendesk_url: str | None = None  # where to comment back on the ticket (request id, due date)
    ticketing_zendesk_email: str | None = None
    ticketing_zendesk_token: SecretStr | None = None

    # Deadline watch: alerts to the privacy mailbox, each sent once.
    alert_thresholds_days: list[int] = Field(default=[14, 7, 3, 1])
    alert_language: Literal["nb", "en"] = "nb"
    stuck_after_days: int = Field(
        default=3, ge=1
    )  # waiting for a subject or an operator this long is "stuck"

    # Reconciler (flows/reconcile.py): every 10 minutes, open requests against their Prefect flow runs.
    reconcile_stale_after_minutes: int = Field(default=60, ge=1)  # a run with no sign of life is dead
    reconcile_escalate_after_hours: float = Field(default=48, gt=0)  # paused for a human this long
    reconcile_max_restarts: int = Field(default=3, ge=1)  # restarts without progress, then escalate
    reconcile_incomplete_backoff_minutes: int = Field(default=60, ge=0)  # between restarts when incomplete
    reconcile_grace_minutes: int = Field(default=10, ge=0)  # a new request's flow may take this to appear

    # Identity verification (GDPR Art. 12(6)): the methods tried per request type, first usable wins.
    # bankid needs the OIDC broker below; email_code needs an e-mail address on record; operator always works.
    identity_methods: dict[str, list[IdentityMethod]] = Field(
        default={
            "access": ["bankid", "email_code", "operator"],
            "erasure": ["bankid", "email_code", "operator"],
            "portability": ["bankid", "email_code", "operator"],
            "rectification": ["bankid", "email_code", "operator"],
            "restriction": ["email_code", "operator"],
            "objection": ["email_code", "operator"],
        }
    )
    oidc_issuer: str | None = None  # BankID through an OIDC broker (Idura, Signicat) or ID-porten
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_min_loa: Literal["substantial", "high"] = "high"
    public_url: str = "http://127.0.0.1:8787"  # where subjects reach `dsar serve` (links in mails)
    identity_link_valid_days: int = Field(default=14, ge=1)  # a login link / code page stays usable
    identity_code_valid_s: int = Field(default=30 * 60, ge=60)  # an e-mail code expires sooner
    identity_code_attempts: int = Field(default=5, ge=1)
    identity_wait_s: int = Field(default=15 * 60, ge=0)  # a flow waits this long, then stops until verified
    identity_poll_s: float = Field(default=5.0, gt=0)
    identity_reminder_days: int = Field(default=7, ge=1)  # one reminder after this many days
    identity_close_after_days: int = Field(default=21, ge=2)  # then closed as "identity not confirmed"

    # Concurrent steps per vendor kind, across all workers (Prefect global concurrency limits).
    vendor_concurrency: dict[str, int] = Field(
        default={"hubspot": 4, "zendesk": 4, "poweroffice": 2, "tripletex": 2, "24sevenoffice": 2}
    )
    vendor_slot_timeout_s: float = Field(default=600, gt=0)

    http_timeout_s: float = Field(default=10.0, gt=0)
    http_max_attempts: int = Field(default=4, ge=1)
    retry_after_cap_s: float = Field(default=60.0, gt=0)
    http_backoff_base_s: float = Field(default=0.5, ge=0)
    task_retries: int = Field(default=3, ge=0)  # Prefect retries of a system step, on retryable errors
    task_retry_delay_s: float = Field(default=30.0, ge=0)
    dispatch: Literal["auto", "inline", "deployment"] = "auto"  # how `dsar submit` starts the flow

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.ledger_url:
            self.ledger_url = f"sqlite:///{(self.var_dir / 'ledger.db').as_posix()}"
        if self.documents_dir is None:
            self.documents_dir = self.var_dir / "documents"
        if self.environment == "production" and self.controller_email.endswith(".example"):
            raise ValueError("set the controller's identity (DSAR_CONTROLLER_*) in production")
        if self.encryption_key is None or self.hash_key is None:
            if self.environment == "production":
                raise ValueError("DSAR_ENCRYPTION_KEY and DSAR_HASH_KEY must be set in production")
            keys = _development_keys(self.var_dir)
            self.encryption_key = self.encryption_key or SecretStr(keys["encryption_key"])
            self.hash_key = self.hash_key or SecretStr(keys["hash_key"])
        return self

    @property
    def documents_path(self) -> Path:
        assert self.documents_dir is not None
        return self.documents_dir

    def smtp(self) -> SmtpConfig:
        """The mail server, with the controller's privacy address as sender."""
        password = self.smtp_password.get_secret_value() if self.smtp_password else None
        return SmtpConfig(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=password,
            sender=self.controller_email,
        )

    @property
    def year_end(self) -> tuple[int, int]:
        """The financial year's last day as (month, day)."""
        month, day = self.financial_year_end.split("-")
        return int(month), int(day)

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    def secret(self, name: Literal["encryption_key", "hash_key"]) -> str:
        """The clear value of a key (filled by the validator)."""
        value = getattr(self, name)
        assert isinstance(value, SecretStr)
        return value.get_secret_value()


def _development_keys(var_dir: Path) -> dict[str, str]:
    """Keys for development, generated once and kept beside the development ledger."""
    path = var_dir / "keys.json"
    if path.exists():
        loaded: dict[str, str] = json.loads(path.read_text())
        return loaded
    var_dir.mkdir(parents=True, exist_ok=True)
    keys = {
        "encryption_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "hash_key": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh)
    return keys
