"""`dsar erasure-plan`, `dsar restriction ...` and `dsar suppression ...`: the rights beyond access.

Same contract as :mod:`dsar.cli`: exit 0 on success, 2 on bad input (one line on stderr), 1 on
anything else; standard output carries only the answer, never personal data (the suppression
check answers yes or no).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated

import typer

from dsar.calendar import OSLO
from dsar.cli_retention import _guard, _runtime
from dsar.errors import BadInput

__all__ = ["erasure_plan", "restriction_app", "suppression_app"]

restriction_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Restriction of processing (GDPR Art. 18): tell the subject, then lift it.",
)
suppression_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The direct-marketing suppression list (GDPR Art. 21(2)-(3), 7(3)).",
)


def erasure_plan(request_id: Annotated[str, typer.Argument(help="the erasure request")]) -> None:
    """Dry run: look the subject up everywhere and print what erasure would do (nothing is erased)."""

    def body() -> None:
        from flows.erasure import erasure_request

        with _runtime():
            plan = erasure_request(request_id, dry_run=True)
        if plan is not None:
            raise BadInput(f"{request_id} is not waiting for an erasure plan")
        _print_plan(request_id)

    _guard(body)


def _print_plan(request_id: str) -> None:
    """The plan this dry run recorded; a run that stopped before planning (identity) says so."""
    from sqlalchemy import select

    from dsar.ledger import repository as repo
    from dsar.ledger.models import Event

    with _runtime() as rt, rt.ledger.session() as session:
        stmt = select(Event).where(
            Event.request_id == request_id, Event.kind.in_(("erasure.planned", "erasure.dry_run"))
        )
        last_two = list(session.scalars(stmt.order_by(Event.seq.desc()).limit(2)))
        request = repo.get_request(session, request_id)
        status, checkpoint = request.status.value, request.checkpoint
    if [e.kind for e in last_two] != ["erasure.dry_run", "erasure.planned"]:
        raise BadInput(f"no plan was made: {request_id} is {status} (at {checkpoint})")
    typer.echo(json.dumps(last_two[1].data, indent=2, ensure_ascii=False))


@restriction_app.command("announce-lift")
def announce_lift(
    request_id: Annotated[str, typer.Argument(help="the restriction request")],
    on: Annotated[str, typer.Option("--on", help="the day the restriction ends (YYYY-MM-DD)")],
) -> None:
    """Tell the subject when their restriction will be lifted (Art. 18(3)); prints the letter's path."""

    def body() -> None:
        from dsar import letters
        from dsar.ledger import repository as repo

        try:
            lift_on = date.fromisoformat(on)
        except ValueError:
            raise BadInput("--on must be a date, YYYY-MM-DD") from None
        today = datetime.now(OSLO).date()
        if lift_on < today:
            raise BadInput("the subject must be told before the restriction is lifted: give today or later")
        with _runtime() as rt:
            with rt.ledger.session() as session:
                try:
                    request = repo.get_request(session, request_id)
                except repo.UnknownRequest as exc:
                    raise BadInput(str(exc)) from None
                if request.type.value != "restriction" or request.checkpoint != "restricted":
                    raise BadInput(f"{request_id} is not a carried-out restriction")
            typer.echo(letters.announce_lift(rt, request_id, lift_on=lift_on, today=today))

    _guard(body)


@restriction_app.command("lift")
def lift(
    request_id: Annotated[str, typer.Argument(help="the restriction request")],
    operator: Annotated[str, typer.Option(help="your name: you answer for lifting it")],
) -> None:
    """Lift the restriction everywhere (after the announced day) and tell the recipients (Art. 19)."""

    def body() -> None:
        from prefect.exceptions import FailedRun

        from flows.rights import lift_restriction

        if len(operator.strip()) < 2:
            raise BadInput("name the operator who lifts the restriction")
        with _runtime():
            state = lift_restriction(request_id, operator.strip(), return_state=True)
        try:
            state.result()
        except BadInput:
            raise
        except FailedRun as exc:
            raise RuntimeError(str(exc)) from None
        typer.echo(request_id)

    _guard(body)


@suppression_app.command("check")
def check(
    email: Annotated[str | None, typer.Option(help="an e-mail address from a list to import")] = None,
    phone: Annotated[str | None, typer.Option(help="a phone number from a list to import")] = None,
) -> None:
    """Is this person on the suppression list? Prints "suppressed" or "not suppressed"."""

    def body() -> None:
        from dsar import intake, suppression

        with _runtime() as rt:
            subject = intake.build_subject(
                email=email, phone=phone, name=None, region=rt.settings.default_phone_region
            )
            with rt.ledger.session() as session:
                found = suppression.is_suppressed(
                    session, keys=rt.ledger.keys, email=subject.email, phone=subject.phone
                )
        typer.echo("suppressed" if found else "not suppressed")

    _guard(body)
