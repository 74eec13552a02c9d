"""`dsar demo`: one access and one erasure request, end to end, against the emulators.

The data subject confirms each request with BankID at the emulated broker (a stand-in follows
the link mailed to them); a stand-in operator answers for the system without an API.

Each run starts from a clean demo folder (its own ledger, product database and documents),
so running it twice gives the same result. With ``PREFECT_API_URL`` set, the demo uses that
Prefect server; otherwise it starts an embedded one of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from rich.table import Table

from dsar import dispatch, intake
from dsar.identity.bankid import CALLBACK_PATH
from dsar.identity.web import create_identity_app
from dsar.runtime import Runtime, using
from dsar.settings import Settings
from emulators.demo_data import DEMO_SUBJECT
from emulators.oidc import OidcProviderState
from emulators.oidc import create_app as oidc_app
from emulators.operator import Operator
from emulators.server import free_port, serve_in_thread
from emulators.stack import emulator_stack
from emulators.subject import DataSubject

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    documents: list[Path]
    table: Table


def run_demo(var_dir: Path) -> DemoResult:
    """Run both requests through Prefect and return the documents they produced."""
    for stale in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "documents", "systems", "out"):
        path = var_dir / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    with (
        emulator_stack(var_dir / "systems") as stack,
        serve_in_thread(oidc_app(broker := OidcProviderState(next_person="kari"))) as idp,
        demo_prefect(),
    ):
        port = free_port()
        broker.redirect_uris = [f"http://127.0.0.1:{port}{CALLBACK_PATH}"]
        settings = Settings(
            var_dir=var_dir,
            systems_file=stack.systems_file,
            smtp_port=stack.mailbox.port,
            operator_poll_s=1,
            oidc_issuer=idp.url,
            oidc_client_id=broker.client_id,
            oidc_client_secret=SecretStr(broker.client_secret),
            public_url=f"http://127.0.0.1:{port}",
            identity_poll_s=0.5,
        )
        runtime = Runtime.from_settings(settings)
        # The subject's side of `dsar serve`: the BankID link and the broker's callback.
        pages = create_identity_app(runtime.ledger, settings, restart=_no_restart)
        with (
            using(runtime),
            serve_in_thread(pages, port=port),
            Operator(demo_operator_answer),
            DataSubject(stack.mailbox, DEMO_SUBJECT.email),
        ):
            documents = [Path(_run(runtime, kind)) for kind in ("access", "erasure")]
        table = _summary(runtime)
        runtime.close()
    return DemoResult(documents=documents, table=table)


@contextmanager
def demo_prefect() -> Iterator[None]:
    """The Prefect server named by ``PREFECT_API_URL`` if the environment sets one, else an embedded one."""
    if not os.environ.get("PREFECT_API_URL"):
        with embedded_prefect():
            yield
        return
    from prefect.logging.handlers import APILogWorker

    try:
        yield
    finally:
        APILogWorker.drain_all(timeout=5)  # deliver the last run logs before the process exits


@contextmanager
def embedded_prefect() -> Iterator[None]:
    """One local Prefect server for the demo's flows and its operator thread alike.

    Without it, each thread that talks to Prefect would start a temporary server of its own.
    """
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "false")  # no automations in the demo
    server = SubprocessASGIServer()
    server.start(timeout=120)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        APILogWorker.drain_all(timeout=5)  # deliver the last run logs while the server still listens
        server.stop()


def _no_restart(request_id: str, request_type: str) -> None:
    """The demo's flows wait for the subject in-process, so an answer never needs to restart one."""


def demo_operator_answer(pause_key: str) -> dict[str, object]:
    """What the demo's automatic operator answers: the erasure plan, and systems without an API."""
    signature = "Demo operator (automatic)"
    if pause_key == "approve-erasure":
        return {"decision": "approve", "operator": signature, "reason": "Demo: plan read and approved."}
    if pause_key.startswith("erase-"):
        return {"outcome": "erased", "operator": signature, "note": "Processor confirmed erasure in writing."}
    return {"outcome": "found", "operator": signature, "records": 3, "note": "Processor answered by e-mail."}


def _run(runtime: Runtime, request_type: str) -> str:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    registered = intake.register(
        runtime.ledger,
        request_type=request_type,
        subject=subject,
        ticket_ref=f"DEMO-{request_type.upper()}",
        language="nb",
    )
    stored = dispatch.start(registered.request_id, request_type, "inline")
    assert stored is not None
    return str(_clear_copy(runtime, stored))


def _clear_copy(runtime: Runtime, stored: str) -> Path:
    """Documents are kept encrypted; the person running the demo gets a readable copy to open."""
    from sqlalchemy import select

    from dsar import document_store
    from dsar.ledger.models import Document

    with runtime.ledger.session() as session:
        document = session.scalars(select(Document).where(Document.path == stored)).one()
        return document_store.clear_copy(runtime.ledger, document, runtime.settings.var_dir / "out")


def _summary(runtime: Runtime) -> Table:
    from dsar.ledger.models import Request

    table = Table(title="dsar demo")
    for column in ("request", "type", "status", "due", "system", "answer", "found", "erased"):
        table.add_column(column)
    with runtime.ledger.session() as session:
        for request in session.query(Request).order_by(Request.received_at):
            for row in request.systems:
                table.add_row(
                    request.id,
                    request.type.value,
                    request.status.value,
                    request.due_date.isoformat(),
                    row.system,
                    row.status.value,
                    str(sum(row.counts.values())),
                    str(sum(row.erased_counts.values())),
                )
    return table
