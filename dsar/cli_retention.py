"""`dsar hold ...` and `dsar retention ...`: legal holds, and what erasures kept on purpose.

Same contract as :mod:`dsar.cli`: exit 0 on success, 2 on bad input (one line on stderr), 1 on
anything else; standard output carries only the answer. Nothing printed here holds personal
data: request ids, systems, categories, counts, legal bases, dates, and the operators' names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dsar.errors import BadInput

if TYPE_CHECKING:
    from dsar.ledger import Ledger
    from dsar.ledger.models import LegalHold, RetainedData
    from dsar.runtime import Runtime

__all__ = ["hold_app", "retention_app"]

hold_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Legal holds (GDPR Art. 17(3)(e)): keep a request's data for a legal claim.",
)
retention_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="What erasures kept on purpose (bookkeeping, legal holds), and the job that ends it.",
)
T = TypeVar("T")


def _guard(action: Callable[[], T]) -> T:
    from dsar.cli import _guard as guard  # dsar.cli registers these apps: imported when run

    return guard(action)


@contextmanager
def _runtime() -> Iterator[Runtime]:
    """The runtime from settings (the systems file too), installed for the command, closed after it."""
    from dsar.cli import _settings
    from dsar.runtime import Runtime, using

    runtime = Runtime.from_settings(_settings())
    try:
        with using(runtime):
            yield runtime
    finally:
        runtime.close()


@contextmanager
def _ledger() -> Iterator[Ledger]:
    """The ledger alone, for commands that call no system."""
    from dsar.cli import _settings
    from dsar.ledger import Ledger

    ledger = Ledger(_settings())
    try:
        yield ledger
    finally:
        ledger.close()


def _known_request(ledger: Ledger, request_id: str) -> None:
    from dsar.ledger import repository as repo

    with ledger.session() as session:
        try:
            repo.get_request(session, request_id)
        except repo.UnknownRequest as exc:
            raise BadInput(str(exc)) from None


# --- dsar hold ---------------------------------------------------------------------------------


@hold_app.command("place")
def hold_place(
    request_id: Annotated[str, typer.Argument(help="the request whose data must be kept")],
    reason: Annotated[str, typer.Option(help="the claim's reference (8+ characters, no personal data)")],
    operator: Annotated[str, typer.Option(help="your name")],
    system: Annotated[str | None, typer.Option(help="only this system (default: every system)")] = None,
) -> None:
    """Place a legal hold: erasure keeps the data and the retention job leaves it; prints the hold id."""

    def body() -> None:
        from dsar.holds import place_hold

        with _runtime() as rt:
            _known_request(rt.ledger, request_id)
            with rt.ledger.session() as session:
                hold = place_hold(
                    session,
                    request_id=request_id,
                    system=system,
                    reason=reason,
                    operator=operator,
                    known=rt.system_names,
                )
                hold_id = hold.id
        typer.echo(str(hold_id))

    _guard(body)


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[int, typer.Argument(help="the hold to end")],
    operator: Annotated[str, typer.Option(help="your name")],
) -> None:
    """Release a legal hold: what it kept is erased by the next retention run; prints the hold id."""

    def body() -> None:
        from dsar.holds import release_hold

        with _ledger() as ledger, ledger.session() as session:
            release_hold(session, hold_id=hold_id, operator=operator)
        typer.echo(str(hold_id))

    _guard(body)


@hold_app.command("list")
def hold_list(
    request_id: Annotated[str | None, typer.Argument(help="one request (default: every request)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Legal holds, placed and released, oldest first."""

    def body() -> None:
        from sqlalchemy import select

        from dsar.ledger.models import LegalHold

        with _ledger() as ledger:
            if request_id is not None:
                _known_request(ledger, request_id)
            with ledger.session() as session:
                stmt = select(LegalHold).order_by(LegalHold.id)
                if request_id is not None:
                    stmt = stmt.where(LegalHold.request_id == request_id)
                rows = [_hold_row(hold) for hold in session.scalars(stmt)]
        _print(rows, "Legal holds", as_json)

    _guard(body)


def _hold_row(hold: LegalHold) -> dict[str, object]:
    return {
        "id": hold.id,
        "request": hold.request_id,
        "system": hold.system or "(all)",
        "reason": hold.reason,
        "placed_by": hold.placed_by,
        "placed_at": hold.placed_at.isoformat(timespec="seconds"),
        "released_by": hold.released_by,
        "released_at": hold.released_at.isoformat(timespec="seconds") if hold.released_at else None,
        "active": hold.released_at is None,
    }


# --- dsar retention ----------------------------------------------------------------------------


@retention_app.command("list")
def retention_list(
    due: Annotated[
        bool,
        typer.Option("--due", help="only what is over: due for the job, or waiting for manual deletion"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What erasures kept: request, system, category, count, basis, until, status."""

    def body() -> None:
        from sqlalchemy import select

        from dsar.ledger.models import RetainedData
        from tasks.retention import DUE, due_rows, today_in_oslo

        with _ledger() as ledger, ledger.session() as session:
            order = (RetainedData.request_id, RetainedData.system, RetainedData.category)
            if due:
                waiting = session.scalars(select(RetainedData).where(RetainedData.status == DUE))
                kept = [*due_rows(session, today_in_oslo()), *waiting]
                selected = sorted(kept, key=lambda r: (r.request_id, r.system, r.category))
            else:
                selected = list(session.scalars(select(RetainedData).order_by(*order)))
            rows = [_retained_row(row) for row in selected]
        _print(rows, "Retained data", as_json)

    _guard(body)


def _retained_row(row: RetainedData) -> dict[str, object]:
    return {
        "request": row.request_id,
        "system": row.system,
        "category": row.category,
        "count": row.count,
        "basis": row.basis,
        "until": row.until.isoformat() if row.until else f"legal hold #{row.hold_id}",
        "status": row.status,
    }


@retention_app.command("run")
def retention_run(
    today: Annotated[str | None, typer.Option(help="YYYY-MM-DD instead of today (Oslo)")] = None,
) -> None:
    """Run the retention job here and now; prints its summary (JSON). Exit 1 if a system failed."""

    def body() -> None:
        from datetime import date

        if today is not None:
            try:
                date.fromisoformat(today)
            except ValueError:
                raise BadInput(f"not a valid date (YYYY-MM-DD): {today!r}") from None
        from flows.retention import retention

        with _runtime():
            summary = retention(today)
        typer.echo(json.dumps(summary, indent=2))

    _guard(body)


@retention_app.command("confirm")
def retention_confirm(
    request_id: Annotated[str, typer.Argument(help="the request whose kept data you deleted by hand")],
    system: Annotated[str, typer.Option(help="the system you deleted it in")],
    operator: Annotated[str, typer.Option(help="your name")],
    note: Annotated[str, typer.Option(help="what you deleted, and where (no personal data)")],
) -> None:
    """Record that you deleted the data the job handed to you (status due); prints the categories."""

    def body() -> None:
        from tasks.retention import confirm_manual

        with _ledger() as ledger:
            _known_request(ledger, request_id)
            with ledger.session() as session:
                rows = confirm_manual(
                    session, request_id=request_id, system=system, operator=operator, note=note
                )
                categories = [row.category for row in rows]
        for category in categories:
            typer.echo(category)

    _guard(body)


def _print(rows: list[dict[str, object]], title: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{title} ({len(rows)})")
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    Console().print(table)
