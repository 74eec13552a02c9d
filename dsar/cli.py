"""The `dsar` command line: the contract users, scripts and acceptance checks rely on.

Exit codes: 0 success, 2 bad input (one line on stderr saying why), 1 anything else.
Standard output carries only the answer (an id, a date, paths, JSON); progress and logs go
to standard error.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dsar.calendar import OSLO, due_date
from dsar.cli_retention import hold_app, retention_app
from dsar.cli_rights import erasure_plan, restriction_app, suppression_app
from dsar.errors import BadInput
from dsar.settings import Settings
from integrations.errors import ConfigurationError

if TYPE_CHECKING:
    from dsar.ledger.models import Request
    from dsar.runtime import Runtime

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="GDPR data-subject requests, end to end.",
)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
T = TypeVar("T")


def _fail(code: int, message: str) -> NoReturn:
    err.print(f"dsar: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def _guard(action: Callable[[], T]) -> T:
    """Run a command body with the exit-code contract; messages are PII-free by construction."""
    try:
        return action()
    except (BadInput, ConfigurationError) as exc:
        _fail(2, str(exc))
    except typer.Exit:
        raise
    except Exception as exc:
        _fail(1, f"{type(exc).__name__}: {exc}")


def _settings() -> Settings:
    settings = Settings()
    _prefect_defaults(settings.var_dir)
    return settings


LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"  # survives a server restart


def _prefect_defaults(var_dir: Path) -> None:
    """Keep Prefect's own state beside ours and quiet offline, unless the operator chose otherwise."""
    home = Path(os.environ.setdefault("PREFECT_HOME", str((var_dir / "prefect").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT", "false")
    # Vendor slots (dsar.limits) are leased; leases kept only in memory are lost when the server
    # restarts and the slots they held stay taken for good (tests/fault_scenarios.py, scenario 10).
    os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", LEASE_STORAGE)


@app.command()
def deadline(
    received: Annotated[str, typer.Argument(metavar="RECEIVED_DATE", help="YYYY-MM-DD, the day it arrived")],
    extended: Annotated[bool, typer.Option("--extended", help="with the two-month extension")] = False,
    suspended_days: Annotated[int, typer.Option(help="days the clock stood still for identity checks")] = 0,
) -> None:
    """Print the statutory due date (GDPR Art. 12(3), Regulation 1182/71)."""

    def body() -> None:
        try:
            day = date.fromisoformat(received)
        except ValueError:
            raise BadInput(f"not a valid date (YYYY-MM-DD): {received!r}") from None
        if suspended_days < 0:
            raise BadInput("--suspended-days cannot be negative")
        typer.echo(due_date(day, extended=extended, suspended_days=suspended_days).isoformat())

    _guard(body)


@app.command()
def submit(
    request_type: Annotated[
        str,
        typer.Option(
            "--type", help="access | erasure | rectification | restriction | objection | portability"
        ),
    ],
    email: Annotated[str | None, typer.Option(help="the subject's e-mail address")] = None,
    phone: Annotated[str | None, typer.Option(help="the subject's phone number")] = None,
    name: Annotated[str | None, typer.Option(help="the subject's name")] = None,
    ticket: Annotated[str | None, typer.Option(help="the ticket it arrived in")] = None,
    language: Annotated[str, typer.Option(help="nb | en, for everything the subject reads")] = "nb",
    no_start: Annotated[bool, typer.Option("--no-start", help="register only; start the flow later")] = False,
    correct_name: Annotated[str | None, typer.Option(help="rectification: the corrected name")] = None,
    correct_email: Annotated[str | None, typer.Option(help="rectification: the corrected e-mail")] = None,
    correct_phone: Annotated[str | None, typer.Option(help="rectification: the corrected phone")] = None,
    controller: Annotated[
        str | None, typer.Option(help="the customer we only process the data for: forward, do not act")
    ] = None,
    controller_email: Annotated[str | None, typer.Option(help="the customer's privacy contact")] = None,
    withdraws_consent: Annotated[
        bool, typer.Option("--withdraws-consent", help="objection: the subject withdraws consent (Art. 7(3))")
    ] = False,
) -> None:
    """Register a request and start its flow; prints the request id."""

    def body() -> None:
        from dsar import dispatch, intake
        from dsar.runtime import Runtime, install

        if request_type not in dispatch.FLOWS:
            raise BadInput(f"unknown request type {request_type!r} (use: {' | '.join(dispatch.FLOWS)})")
        settings = _settings()
        subject = intake.build_subject(
            email=email, phone=phone, name=name, region=settings.default_phone_region
        )
        details = intake.build_details(
            corrections={"name": correct_name, "email": correct_email, "phone": correct_phone},
            controller=controller,
            controller_email=controller_email,
            region=settings.default_phone_region,
        )
        if withdraws_consent:
            details["withdraws_consent"] = True
        runtime = Runtime.from_settings(settings)  # checks the systems file before anything is written
        install(runtime)
        registered = intake.register(
            runtime.ledger,
            request_type=request_type,
            subject=subject,
            ticket_ref=ticket,
            language=language,
            details=details,
        )
        typer.echo(registered.request_id)
        sys.stdout.flush()
        if not no_start:
            dispatch.start(registered.request_id, request_type, settings.dispatch)

    _guard(body)


@app.command()
def reopen(
    request_id: Annotated[str, typer.Argument(help="a request closed because identity was not confirmed")],
    no_start: Annotated[bool, typer.Option("--no-start", help="reopen only; start the flow later")] = False,
) -> None:
    """Reopen a request closed for want of identity (the subject came back) and start its flow."""

    def body() -> None:
        from dsar import dispatch
        from dsar.ledger import repository as repo
        from dsar.runtime import Runtime, install

        settings = _settings()
        runtime = Runtime.from_settings(settings)
        install(runtime)
        try:
            with runtime.ledger.session() as session:
                request = repo.reopen_request(
                    session,
                    request_id=request_id,
                    today=datetime.now(OSLO).date(),
                    note="reopened by an operator",
                )
                request_type = request.type.value
        except (repo.UnknownRequest, repo.DuplicateRequest, ValueError) as exc:
            raise BadInput(str(exc)) from None
        typer.echo(request_id)
        sys.stdout.flush()
        if not no_start:
            dispatch.start(request_id, request_type, settings.dispatch, occasion="reopened")

    _guard(body)


@app.command()
def run(
    request_id: Annotated[str, typer.Argument(help="an open request: waiting, incomplete, or a dry run")],
) -> None:
    """Run an open request's flow again: it continues from its checkpoints in the ledger."""

    def body() -> None:
        from dsar import dispatch
        from dsar.ledger import repository as repo
        from dsar.runtime import Runtime, install

        settings = _settings()
        runtime = Runtime.from_settings(settings)
        install(runtime)
        try:
            with runtime.ledger.session() as session:
                request = repo.get_request(session, request_id)
                request_type, is_open = request.type.value, request.status.is_open
        except repo.UnknownRequest as exc:
            raise BadInput(str(exc)) from None
        if not is_open:
            raise BadInput(f"{request_id} is finished; a closed request is opened again with dsar reopen")
        typer.echo(request_id)
        sys.stdout.flush()
        stamp = datetime.now(OSLO).strftime("%Y%m%dT%H%M%S")  # each operator's run is its own occasion
        dispatch.start(request_id, request_type, settings.dispatch, occasion=f"run-{stamp}")

    _guard(body)


@app.command()
def extend(
    request_id: Annotated[str, typer.Argument(help="the request to extend by two months")],
    reasons: Annotated[str, typer.Option(help="why more time is needed, written for the subject")],
) -> None:
    """Extend the deadline (GDPR Art. 12(3)), within the first month; the subject gets the letter."""

    def issue(rt: Runtime, today: date) -> str:
        from dsar import letters

        return letters.extend(rt, request_id, reasons=reasons, today=today)

    _letter_command(issue)


@app.command()
def refuse(
    request_id: Annotated[str, typer.Argument(help="the request to refuse")],
    reasons: Annotated[str, typer.Option(help="the written justification, for the subject")],
    partial: Annotated[bool, typer.Option("--partial", help="refuse in part; the answer goes on")] = False,
) -> None:
    """Refuse a request, or part of it (GDPR Art. 12(4)); the letter names the right to complain."""

    def issue(rt: Runtime, today: date) -> str:
        from dsar import letters

        return letters.refuse(rt, request_id, reasons=reasons, partial=partial, today=today)

    _letter_command(issue)


@app.command("notify-controller")
def notify_controller(
    request_id: Annotated[str, typer.Argument(help="a request about data we process for a customer")],
    customer: Annotated[str, typer.Option(help="the customer's name (the controller)")],
    customer_email: Annotated[str, typer.Option(help="the customer's privacy contact")],
) -> None:
    """We are only the customer's processor: tell the customer (GDPR Art. 28(3)(e)) and record it."""

    def issue(rt: Runtime, today: date) -> str:
        from dsar import letters

        return letters.notify_controller_customer(
            rt, request_id, customer=customer, customer_email=customer_email, today=today
        )

    _letter_command(issue)


def _letter_command(issue: Callable[[Runtime, date], str]) -> None:
    """Run a letter command; prints the stored letter's path."""

    def body() -> None:
        from dsar.runtime import Runtime, install

        runtime = Runtime.from_settings(_settings())
        install(runtime)
        typer.echo(issue(runtime, datetime.now(OSLO).date()))

    _guard(body)


@app.command()
def documents(
    request_id: Annotated[str, typer.Argument(help="the request whose documents to open")],
    out: Annotated[Path, typer.Option(help="where to write the readable copies")] = Path("var/out"),
) -> None:
    """Decrypt a request's documents (report, export, certificate, letters); prints the copies' paths."""

    def body() -> None:
        from sqlalchemy import select

        from dsar import document_store
        from dsar.ledger import Ledger
        from dsar.ledger.models import Document

        ledger = Ledger(_settings())
        with ledger.session() as session:
            stmt = select(Document).where(Document.request_id == request_id, Document.purged_at.is_(None))
            stored = list(session.scalars(stmt.order_by(Document.id)))
            if not stored:
                raise BadInput(f"no documents for {request_id} (unknown, not answered yet, or purged)")
            for document in stored:
                typer.echo(str(document_store.clear_copy(ledger, document, out / request_id)))

    _guard(body)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Open requests with their state, deadline and days left."""

    def body() -> None:
        from dsar.ledger import Ledger
        from dsar.ledger.repository import effective_due_date, open_requests

        ledger = Ledger(_settings())
        today = datetime.now(OSLO).date()
        with ledger.session() as session:
            rows = [_status_row(r, effective_due_date(r, today), today) for r in open_requests(session)]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            Console().print(_status_table(rows))

    _guard(body)


def _status_row(request: Request, due: date, today: date) -> dict[str, object]:
    return {
        "id": request.id,
        "type": request.type.value,
        "status": request.status.value,
        "checkpoint": request.checkpoint,
        "received": request.received_date.isoformat(),
        "due": due.isoformat(),
        "days_left": (due - today).days,
        "extended": request.extended,
        "ticket": request.ticket_ref,
        "systems": {row.system: row.status.value for row in request.systems},
    }


def _status_table(rows: list[dict[str, object]]) -> Table:
    table = Table(title=f"Open requests ({len(rows)})")
    for column in ("id", "type", "status", "received", "due", "days_left", "ticket"):
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(
            *(str(row[c] or "") for c in ("id", "type", "status", "received", "due", "days_left", "ticket"))
        )
    return table


@app.command()
def demo(
    var_dir: Annotated[Path, typer.Option(help="where the demo keeps its ledger and documents")] = Path(
        "var/demo"
    ),
) -> None:
    """Start the emulators, run an access and an erasure request end to end, print the documents."""

    def body() -> None:
        _prefect_defaults(var_dir)
        from dsar.demo import run_demo

        result = run_demo(var_dir)
        err.print(result.table)
        for path in result.documents:
            typer.echo(str(path))

    _guard(body)


@app.command()
def serve(
    limit: Annotated[int, typer.Option(help="flow runs executed at the same time")] = 4,
) -> None:
    """Serve the flows as deployments (needs a Prefect API: PREFECT_API_URL) and the intake webhook."""

    def body() -> None:
        settings = _settings()
        from dsar.deployments import serve_all

        serve_all(limit=limit, settings=settings)

    _guard(body)


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="the process work pool to serve")] = "dsar-pool",
    limit: Annotated[int, typer.Option(help="flow runs executed at the same time")] = 4,
    name: Annotated[str | None, typer.Option(help="the worker's name in Prefect")] = None,
) -> None:
    """Run a process worker whose flow runs fork from a warm zygote (needs PREFECT_API_URL)."""

    def body() -> None:
        settings = _settings()
        from dsar.warm.worker import run_worker

        socket_path = os.environ.get("DSAR_WARM_SOCKET") or str(
            settings.var_dir.resolve() / "run" / "warm.sock"
        )
        run_worker(pool, limit=limit, name=name, socket_path=socket_path)

    _guard(body)


@app.command("verify-certificate")
def verify_certificate(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="a signed PDF, e.g. a deletion certificate")],
) -> None:
    """Check a document's signature: intact, who signed it and when, and whether the signer is trusted."""

    def body() -> None:
        from dsar.signing import load_trust_roots, verify_pdf  # pyHanko loads only for this command

        try:
            pdf = file.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read the file ({type(exc).__name__})") from None
        result = verify_pdf(pdf, trust_roots=load_trust_roots(_settings()))
        if result.reason == "not_a_pdf":
            raise BadInput("not a PDF file")
        request = re.search(r"\bdsar-[0-9a-f]{12}\b", result.title or "")
        lines = {
            "intact": "yes" if result.intact else f"no ({result.reason})",
            "signer": str(result.signer) if result.signer else "-",
            "fingerprint": result.signer.fingerprint if result.signer else "-",
            "signed at": result.signed_at.isoformat() if result.signed_at else "-",
            "trusted": "yes" if result.trusted else "no",
            "request": request.group(0) if request else "-",
        }
        for label, value in lines.items():
            typer.echo(f"{label + ':':<13}{value}")
        if not result.intact:
            _fail(1, f"the signature does not hold: {result.reason}")
        if not result.trusted:
            _fail(1, "intact, but the signer is not a trusted signer (DSAR_SIGNING_CERT_FILE / _TRUST_FILE)")

    _guard(body)


app.add_typer(hold_app, name="hold")
app.add_typer(retention_app, name="retention")
app.add_typer(restriction_app, name="restriction")
app.add_typer(suppression_app, name="suppression")
app.command("erasure-plan")(erasure_plan)
