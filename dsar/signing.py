"""Digital signatures on the documents we issue (PAdES B-B, with pyHanko).

The deletion certificate is the controller's proof that an erasure happened (GDPR Art. 5(2));
signing it lets anyone holding the file check that it is the one we issued, unchanged.

- :func:`load_signing_identity` reads the key and certificate named in the settings; in
  development, with neither set, it generates a self-signed one once into
  ``<var_dir>/signing/`` and reuses it.
- :func:`sign_pdf` adds one invisible signature as an incremental update over the whole file.
- :func:`verify_pdf` never raises: it says whether the file is intact, who signed it, when, and
  whether the signer chains to a trusted root; ``reason`` is a short, PII-free code otherwise.

pyHanko is imported inside the functions so that importing this module (and the CLI) stays fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import io
import logging
import os
import re
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from integrations.errors import ConfigurationError

if TYPE_CHECKING:
    from pyhanko.sign.signers import SimpleSigner
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

    from dsar.settings import Settings

__all__ = [
    "Signer",
    "SigningIdentity",
    "Verification",
    "load_signing_identity",
    "load_trust_roots",
    "sign_pdf",
    "verify_pdf",
]

_DEV_KEY = "key.pem"
_DEV_CERT = "cert.pem"
_DEV_VALIDITY = timedelta(days=5 * 365)
_FIELD_NAME = "Signature1"
T = TypeVar("T")


@dataclass(frozen=True)
class SigningIdentity:
    """The signing key with its certificate (and any chain), ready for pyHanko's ``SimpleSigner``."""

    certificate: x509.Certificate  # the one whose public key matches the private key
    chain: tuple[x509.Certificate, ...]  # intermediates/roots from the certificate file, if any
    signer: SimpleSigner = field(repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the signing certificate, hex: identifies the key in logs and tests."""
        return self.certificate.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class Signer:
    """Who signed: names from the signing certificate's subject (a company, not a data subject)."""

    common_name: str | None
    organisation: str | None
    fingerprint: str  # SHA-256 of the signing certificate, hex

    def __str__(self) -> str:
        names = [n for n in (self.common_name, self.organisation) if n]
        unique = list(dict.fromkeys(names))
        return " / ".join(unique) if unique else f"certificate {self.fingerprint[:16]}"


@dataclass(frozen=True)
class Verification:
    """The result of checking a signed PDF.

    ``intact``: the signature is cryptographically valid and covers every byte of the file.
    ``trusted``: additionally, the signing certificate chains to one of the given roots.
    ``reason``: why not intact (or, when intact, ``"untrusted_signer"`` if not trusted), else None.
    """

    intact: bool
    trusted: bool = False
    reason: str | None = None
    signer: Signer | None = None
    signed_at: datetime | None = None
    title: str | None = None  # the document's /Info title (names the request id on our documents)

    @property
    def ok(self) -> bool:
        return self.intact and self.trusted


# --- the signing identity -------------------------------------------------------------------


def load_signing_identity(settings: Settings) -> SigningIdentity:
    """The key and certificate from the settings; in development, a generated one if none is set."""
    key_file, cert_file = settings.signing_key_file, settings.signing_cert_file
    passphrase = settings.signing_key_passphrase
    secret = passphrase.get_secret_value().encode() if passphrase else None
    if key_file is not None and cert_file is not None:
        return _identity(_read(key_file, "DSAR_SIGNING_KEY_FILE"), secret, _read_certs(cert_file))
    if key_file is not None or cert_file is not None:
        raise ConfigurationError("set both DSAR_SIGNING_KEY_FILE and DSAR_SIGNING_CERT_FILE, or neither")
    if settings.environment != "development":
        raise ConfigurationError("DSAR_SIGNING_KEY_FILE and DSAR_SIGNING_CERT_FILE must be set in production")
    folder = settings.var_dir / "signing"
    with _locked(folder):  # two processes starting at once must not write two different keys
        if not (folder / _DEV_KEY).exists():
            _write_development_identity(folder, settings)
        key_pem = (folder / _DEV_KEY).read_bytes()
        certs = x509.load_pem_x509_certificates((folder / _DEV_CERT).read_bytes())
    return _identity(key_pem, None, certs)


def load_trust_roots(settings: Settings) -> list[x509.Certificate]:
    """Certificates a signature may chain to: the signing certificate(s) plus DSAR_SIGNING_TRUST_FILE.

    Reads no private key and generates nothing, so verifying works without the signing secrets.
    """
    roots: list[x509.Certificate] = []
    if settings.signing_cert_file is not None:
        roots += _read_certs(settings.signing_cert_file)
    elif settings.environment == "development":
        generated = settings.var_dir / "signing" / _DEV_CERT
        if generated.exists():
            roots += x509.load_pem_x509_certificates(generated.read_bytes())
    if settings.signing_trust_file is not None:
        roots += _read_certs(settings.signing_trust_file, "DSAR_SIGNING_TRUST_FILE")
    return roots


def _identity(key_pem: bytes, passphrase: bytes | None, certs: list[x509.Certificate]) -> SigningIdentity:
    from asn1crypto import keys as asn1_keys
    from pyhanko.sign.signers import SimpleSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    try:
        key = serialization.load_pem_private_key(key_pem, password=passphrase)
    except (ValueError, TypeError):
        # wrong or missing passphrase, or not a PEM key; the message names the setting, not the secret
        raise ConfigurationError(
            "DSAR_SIGNING_KEY_FILE is not a PEM private key, or DSAR_SIGNING_KEY_PASSPHRASE does not open it"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigurationError("the signing key must be RSA or EC")
    own = _public_der(key)
    leaf = next((c for c in certs if _public_der_of_cert(c) == own), None)
    if leaf is None:
        raise ConfigurationError("no certificate in DSAR_SIGNING_CERT_FILE matches the signing key")
    chain = tuple(c for c in certs if c is not leaf)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = SimpleSigner(
        signing_cert=_to_asn1(leaf),
        signing_key=asn1_keys.PrivateKeyInfo.load(der),
        # The chain is embedded so verifiers can build the path; the leaf is not listed again, or it
        # would be embedded twice and the unused copy's bytes would go unchecked.
        cert_registry=SimpleCertificateStore.from_certs([_to_asn1(c) for c in chain]),  # type: ignore[no-untyped-call]
    )
    return SigningIdentity(certificate=leaf, chain=chain, signer=signer)


def _to_asn1(cert: x509.Certificate) -> Any:
    from asn1crypto import x509 as asn1_x509

    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _public_der(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public_der_of_cert(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{setting} cannot be read ({type(exc).__name__})") from None


def _read_certs(path: Path, setting: str = "DSAR_SIGNING_CERT_FILE") -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path, setting))
    except ValueError:
        raise ConfigurationError(f"{setting} holds no PEM certificate") from None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_development_identity(folder: Path, settings: Settings) -> None:
    """A self-signed P-256 certificate for the controller (P-256: instant to generate, PAdES-valid)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, settings.controller_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.controller_name),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, settings.controller_email),
        ]
    )
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,  # nonRepudiation: pyHanko expects it on document signatures
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # tolerate small clock differences
        .not_valid_after(now + _DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The certificate first: the key's presence is what marks the identity as complete.
    (folder / _DEV_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp = folder / f"{_DEV_KEY}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.replace(tmp, folder / _DEV_KEY)


# --- signing ---------------------------------------------------------------------------------


def sign_pdf(pdf: bytes, identity: SigningIdentity, *, reason: str, location: str, contact: str) -> bytes:
    """``pdf`` with an invisible PAdES B-B signature (SHA-256) appended as an incremental update."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=True)
    metadata = signers.PdfSignatureMetadata(
        field_name=_FIELD_NAME,
        subfilter=SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason,
        location=location,
        contact_info=contact,
    )
    pdf_signer = signers.PdfSigner(metadata, identity.signer)
    out = _run(pdf_signer.async_sign_pdf(writer, output=io.BytesIO()))
    assert isinstance(out, io.BytesIO)
    return out.getvalue()


# --- verifying -------------------------------------------------------------------------------


def verify_pdf(pdf: bytes, *, trust_roots: Sequence[x509.Certificate] | None = None) -> Verification:
    """Check every signature in ``pdf``; the last must cover the whole file. Never raises."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    if not pdf.startswith(b"%PDF-"):
        return Verification(intact=False, reason="not_a_pdf")
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=True)
        signatures = list(reader.embedded_regular_signatures)
    except Exception:  # a damaged file, or a /Contents that is not CMS
        return Verification(intact=False, reason="unreadable")
    if not signatures:
        return Verification(intact=False, reason="no_signature", title=_title(reader))
    try:
        with _quiet_pyhanko():
            return _verify(pdf, reader, signatures, trust_roots or ())
    except Exception:  # pyHanko raises on malformed signatures; a verdict, not a crash
        return Verification(intact=False, reason="bad_signature")


def _verify(
    pdf: bytes,
    reader: Any,
    signatures: list[EmbeddedPdfSignature],
    trust_roots: Sequence[x509.Certificate],
) -> Verification:
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.settings import KeyUsageConstraints
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    roots = [_to_asn1(c) for c in trust_roots]
    # Either usage is accepted: organisation seals often carry only one of them.
    usage = KeyUsageConstraints(
        key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False
    )
    last = signatures[-1]
    signer = _signer(last.signer_cert.dump())
    base = Verification(intact=False, signer=signer, title=_title(reader))
    for embedded in signatures:
        if not _canonical_contents(pdf, embedded):
            return _with(base, reason="bad_signature")
        # No network: trust comes only from the given roots, revocation is soft-fail.
        context = ValidationContext(trust_roots=roots, allow_fetching=False)
        status = _run(
            async_validate_pdf_signature(
                embedded, context, key_usage_settings=usage, skip_diff=embedded is not last
            )
        )
        if not status.intact:
            return _with(base, reason="content_changed")  # a signed byte differs from what was signed
        if not status.valid:
            return _with(base, reason="bad_signature")
        if embedded is last:
            if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
                return _with(base, reason="modified_after_signing")
            signed_at = status.signer_reported_dt
            if status.trusted:
                return _with(base, intact=True, trusted=True, signed_at=signed_at)
            return _with(base, intact=True, reason="untrusted_signer", signed_at=signed_at)
    raise AssertionError("unreachable")


def _canonical_contents(pdf: bytes, embedded: EmbeddedPdfSignature) -> bool:
    """The unsigned gap holds exactly the signature, as pyHanko wrote it: upper-case hex, zero padded.

    The /Contents string is the one part of a signed PDF no digest covers; without this, a changed
    padding digit or the case of a hex letter would go unnoticed.
    """
    _, len1, start2, _ = (int(v) for v in embedded.byte_range)
    contents: bytes = embedded.pkcs7_content
    if pdf[len1:start2] != b"<" + contents.hex().upper().encode() + b">":
        return False
    from asn1crypto import cms, parser

    _, _, _, header, body, trailer = parser.parse(contents)
    used = len(header) + len(body) + len(trailer)
    if contents[used:].strip(b"\x00"):
        return False
    # Parts of the CMS container no signature covers (lengths, the digest-algorithm list) must be
    # exactly as a fresh DER encoding of what was parsed, and name only the algorithm actually used.
    der = contents[:used]
    info = cms.ContentInfo.load(der)
    if info.dump(force=True) != der:
        return False
    signed_data = info["content"]
    used_algorithms = {si["digest_algorithm"].dump() for si in signed_data["signer_infos"]}
    if {a.dump() for a in signed_data["digest_algorithms"]} != used_algorithms:
        return False
    return _versions_as_required(signed_data)


def _versions_as_required(signed_data: Any) -> bool:
    """The version numbers RFC 5652 (5.1, 5.3) prescribes; no digest covers them either."""
    signer_versions = []
    for signer_info in signed_data["signer_infos"]:
        expected = "v1" if signer_info["sid"].name == "issuer_and_serial_number" else "v3"
        if signer_info["version"].native != expected:
            return False
        signer_versions.append(expected)
    kinds = {c.name for c in signed_data["certificates"]} if signed_data["certificates"] else set()
    if "other" in kinds:
        expected = "v5"
    elif "v2_attr_cert" in kinds:
        expected = "v4"
    elif (
        "v1_attr_cert" in kinds
        or "v3" in signer_versions
        or signed_data["encap_content_info"]["content_type"].native != "data"
    ):
        expected = "v3"
    else:
        expected = "v1"
    return bool(signed_data["version"].native == expected)


def _signer(cert_der: bytes) -> Signer:
    cert = x509.load_der_x509_certificate(cert_der)

    def first(oid: x509.ObjectIdentifier) -> str | None:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    return Signer(
        common_name=first(NameOID.COMMON_NAME),
        organisation=first(NameOID.ORGANIZATION_NAME),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _title(reader: Any) -> str | None:
    try:
        title = reader.trailer_view["/Info"]["/Title"]
    except Exception:  # no /Info, or no title: optional
        return None
    text = re.sub(r"\s+", " ", str(title)).strip()
    return text or None


@contextlib.contextmanager
def _quiet_pyhanko() -> Iterator[None]:
    """pyHanko logs an untrusted or broken signature as a warning with a traceback and the
    certificate's subject; here that is an expected verdict, returned instead of logged."""
    loggers = [logging.getLogger(name) for name in ("pyhanko", "pyhanko_certvalidator")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _with(base: Verification, **changes: Any) -> Verification:
    return replace(base, **changes)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run pyHanko's coroutine; in a thread when called from a running event loop (e.g. an async task)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
