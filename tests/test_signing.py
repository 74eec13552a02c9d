"""The deletion certificate's PAdES signature: what validates, what any change breaks, and the CLI."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from dsar.documents import Controller, DeletionCertificate, DocumentRenderer, ErasureSection
from dsar.settings import PROJECT_ROOT, Settings
from dsar.signing import SigningIdentity, load_signing_identity, load_trust_roots, sign_pdf, verify_pdf
from integrations.errors import ConfigurationError
from tests.conftest import make_settings

DSAR = str(Path(sys.executable).with_name("dsar"))
REQUEST_ID = "dsar-0123456789ab"


def sign(pdf: bytes, identity: SigningIdentity) -> bytes:
    return sign_pdf(pdf, identity, reason="Deletion certificate", location="Oslo", contact="dpo@x.example")


@pytest.fixture(scope="module")
def unsigned_pdf() -> bytes:
    """A real deletion certificate, as weasyprint lays it out."""
    done = datetime(2026, 11, 30, 12, tzinfo=UTC)
    cert = DeletionCertificate(
        request_id=REQUEST_ID,
        language="en",
        controller=Controller("Fjordlys AS", "999 999 999", "Storgata 1, 0155 Oslo", "personvern@x.example"),
        received=date(2026, 11, 22),
        due=date(2026, 12, 22),
        completed=date(2026, 11, 30),
        systems=(ErasureSection("crm", "hubspot", "erased", "hard_delete", {"contact": 1}, done, True),),
        chain_hash="0" * 64,
    )
    renderer = DocumentRenderer(PROJECT_ROOT / "templates")
    return renderer.to_pdf(renderer.render_certificate(cert))


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module")
def settings(var_dir: Path) -> Settings:
    return make_settings(var_dir)


@pytest.fixture(scope="module")
def identity(settings: Settings) -> SigningIdentity:
    return load_signing_identity(settings)


@pytest.fixture(scope="module")
def signed(unsigned_pdf: bytes, identity: SigningIdentity) -> bytes:
    return sign(unsigned_pdf, identity)


def test_a_signed_certificate_validates_and_names_its_signer(
    signed: bytes, settings: Settings, identity: SigningIdentity
) -> None:
    result = verify_pdf(signed, trust_roots=load_trust_roots(settings))
    assert (result.intact, result.trusted, result.reason) == (True, True, None)
    assert result.signer is not None
    assert (result.signer.common_name, result.signer.organisation) == ("Fjordlys AS", "Fjordlys AS")
    assert result.signer.fingerprint == identity.fingerprint
    assert result.signed_at is not None
    assert abs(datetime.now(UTC) - result.signed_at) < timedelta(minutes=5)
    assert result.title is not None
    assert REQUEST_ID in result.title


def test_without_trust_roots_it_is_intact_but_not_trusted(signed: bytes) -> None:
    result = verify_pdf(signed)
    assert (result.intact, result.trusted, result.reason) == (True, False, "untrusted_signer")


def flip(pdf: bytes, at: int) -> bytes:
    return pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1 :]


def byte_range(pdf: bytes) -> tuple[int, int]:
    """Where the unsigned /Contents hex string lies: [start, end)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    sig = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    _, len1, start2, _ = (int(v) for v in sig.byte_range)
    return len1, start2


def test_a_byte_changed_in_the_page_content_breaks_it(
    unsigned_pdf: bytes, signed: bytes, settings: Settings
) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    # weasyprint keeps page dictionaries in object streams: find the page's content stream by number
    page = PdfFileReader(io.BytesIO(unsigned_pdf)).root["/Pages"]["/Kids"][0]
    number = page.raw_get("/Contents").idnum
    at = unsigned_pdf.index(b"stream", unsigned_pdf.index(b"\n%d 0 obj" % number)) + 40
    result = verify_pdf(flip(signed, at), trust_roots=load_trust_roots(settings))
    assert (result.intact, result.trusted, result.reason) == (False, False, "content_changed")


@pytest.mark.parametrize("where", ["der", "padding", "hex_case"])
def test_a_byte_changed_in_the_signature_contents_breaks_it(
    signed: bytes, settings: Settings, where: str
) -> None:
    start, end = byte_range(signed)
    if where == "der":
        tampered = flip(signed, start + 400)  # inside the CMS signature itself
    elif where == "padding":
        tampered = signed[: end - 10] + b"1" + signed[end - 9 :]  # the zeros after it are unsigned
    else:
        at = next(i for i in range(start + 1, end) if signed[i : i + 1] in b"ABCDEF")
        tampered = signed[:at] + signed[at : at + 1].lower() + signed[at + 1 :]  # decodes the same
    result = verify_pdf(tampered, trust_roots=load_trust_roots(settings))
    assert not result.intact
    assert result.reason in {"bad_signature", "unreadable"}


def test_any_single_changed_byte_breaks_it(signed: bytes, settings: Settings) -> None:
    roots = load_trust_roots(settings)
    positions = range(7, len(signed), len(signed) // 23)  # spread over header, body, signature, trailer
    survivors = [at for at in positions if verify_pdf(flip(signed, at), trust_roots=roots).intact]
    assert survivors == []


def test_an_update_appended_after_signing_is_detected(signed: bytes, settings: Settings) -> None:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    page_ref, _ = writer.find_page_for_modification(0)  # type: ignore[no-untyped-call]
    page = page_ref.get_object()
    page["/Rotate"] = generic.NumberObject(90)  # type: ignore[no-untyped-call]  # turn the page
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    result = verify_pdf(out.getvalue(), trust_roots=load_trust_roots(settings))
    assert (result.intact, result.reason) == (False, "modified_after_signing")
    assert verify_pdf(signed + b"%\n", trust_roots=load_trust_roots(settings)).reason == (
        "modified_after_signing"
    )


def test_another_self_signed_key_is_intact_but_not_trusted(
    unsigned_pdf: bytes, settings: Settings, tmp_path: Path
) -> None:
    impostor = load_signing_identity(make_settings(tmp_path))  # same controller name, another key
    result = verify_pdf(sign(unsigned_pdf, impostor), trust_roots=load_trust_roots(settings))
    assert (result.intact, result.trusted, result.reason) == (True, False, "untrusted_signer")
    assert result.signer is not None
    assert result.signer.fingerprint == impostor.fingerprint


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "not_a_pdf"), (b"hello, world", "not_a_pdf"), (b"%PDF-1.7\n garbage", "unreadable")],
)
def test_garbage_is_a_verdict_not_an_exception(data: bytes, reason: str) -> None:
    assert verify_pdf(data) == verify_pdf(data)  # deterministic, and no exception
    result = verify_pdf(data)
    assert (result.intact, result.reason) == (False, reason)


def test_an_unsigned_pdf_has_no_signature(unsigned_pdf: bytes) -> None:
    result = verify_pdf(unsigned_pdf)
    assert (result.intact, result.reason, result.signer) == (False, "no_signature", None)


# --- the identity ------------------------------------------------------------------------------


def test_the_development_identity_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = load_signing_identity(settings)
    assert load_signing_identity(settings).fingerprint == first.fingerprint
    key = tmp_path / "signing" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    subject = first.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == settings.controller_email
    usage = first.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.content_commitment


def test_production_without_files_refuses(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, environment="production", controller_email="privacy@fjordlys.no")
    with pytest.raises(ConfigurationError, match="must be set in production"):
        load_signing_identity(settings)
    assert not (tmp_path / "signing").exists()


def test_only_one_of_key_and_certificate_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="both"):
        load_signing_identity(make_settings(tmp_path, signing_key_file=tmp_path / "key.pem"))


def make_ca_chain(folder: Path, passphrase: bytes) -> tuple[Path, Path, Path]:
    """A CA and a leaf it issued; the leaf's key encrypted. Returns (key file, chain file, CA file)."""
    now = datetime.now(UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(ca), critical=True)  # a signing certificate without it is refused
            .sign(signer, hashes.SHA256())
        )

    def usage(ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=False,  # digitalSignature alone is enough
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test CA", ca_key, "Test CA", ca_key, True)
    leaf = certificate("Fjordlys AS seal", leaf_key, "Test CA", ca_key, False)
    key_file, chain_file, ca_file = folder / "key.pem", folder / "chain.pem", folder / "ca.pem"
    encryption = serialization.BestAvailableEncryption(passphrase)
    key_file.write_bytes(
        leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    pem = serialization.Encoding.PEM
    chain_file.write_bytes(ca.public_bytes(pem) + leaf.public_bytes(pem))  # order does not matter
    ca_file.write_bytes(ca.public_bytes(pem))
    return key_file, chain_file, ca_file


def test_a_configured_key_and_chain_sign_and_validate_to_the_ca(unsigned_pdf: bytes, tmp_path: Path) -> None:
    key_file, chain_file, ca_file = make_ca_chain(tmp_path, b"s3cret")
    settings = make_settings(
        tmp_path / "var",
        environment="production",
        controller_email="privacy@fjordlys.no",
        signing_key_file=key_file,
        signing_cert_file=chain_file,
        signing_key_passphrase=SecretStr("s3cret"),
    )
    identity = load_signing_identity(settings)
    assert identity.certificate.subject.rfc4514_string() == "CN=Fjordlys AS seal"
    result = verify_pdf(
        sign(unsigned_pdf, identity), trust_roots=x509.load_pem_x509_certificates(ca_file.read_bytes())
    )
    assert (result.intact, result.trusted) == (True, True)
    assert result.signer is not None
    assert (result.signer.common_name, result.signer.organisation) == ("Fjordlys AS seal", None)

    wrong = settings.model_copy(update={"signing_key_passphrase": SecretStr("guess")})
    with pytest.raises(ConfigurationError, match="PASSPHRASE") as caught:
        load_signing_identity(wrong)
    assert "guess" not in str(caught.value)


# --- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_env(var_dir: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("DSAR_", "PREFECT_API"))}
    values.update(DSAR_VAR_DIR=str(var_dir), DSAR_ENCRYPTION_KEY=Fernet.generate_key().decode())
    values.update(DSAR_HASH_KEY="cli-test")
    return values


def verify_cli(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DSAR, "verify-certificate", str(path)],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_reports_an_intact_trusted_certificate(
    cli_env: dict[str, str], signed: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(signed)
    result = verify_cli(cli_env, path)
    assert (result.returncode, result.stderr) == (0, "")
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["intact"].strip() == "yes"
    assert fields["trusted"].strip() == "yes"
    assert "Fjordlys AS" in fields["signer"]
    assert fields["request"].strip() == REQUEST_ID
    assert fields["signed at"].strip().startswith(str(datetime.now(UTC).year))


@pytest.mark.parametrize("case", ["changed", "untrusted"])
def test_cli_exits_1_when_not_intact_or_not_trusted(
    cli_env: dict[str, str], signed: bytes, unsigned_pdf: bytes, tmp_path: Path, case: str
) -> None:
    if case == "changed":
        data = flip(signed, len(signed) // 3)
    else:
        data = sign(unsigned_pdf, load_signing_identity(make_settings(tmp_path / "other")))
    path = tmp_path / "certificate.pdf"
    path.write_bytes(data)
    result = verify_cli(cli_env, path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert ("does not hold" if case == "changed" else "not a trusted signer") in result.stderr
    assert "trusted:" in result.stdout


@pytest.mark.parametrize("case", ["missing", "not_a_pdf"])
def test_cli_exits_2_for_a_missing_file_or_not_a_pdf(
    cli_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    path = tmp_path / "certificate.pdf"
    if case == "not_a_pdf":
        path.write_text("just text")
    result = verify_cli(cli_env, path)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.strip().splitlines()) == 1
