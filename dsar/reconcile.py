"""The reconciler: every open request in the ledger against what Prefect knows of its flow runs.

The ledger says what must happen; Prefect says whether something is making it happen. For each
open request (received, in progress, awaiting an operator, incomplete; a request waiting for its
subject is the deadline watch's business) the newest flow run of the request is found, by its
name ``<type>-<request id>`` or by the idempotency key ``dispatch.start`` gave it, and:

* a live run (scheduled, pending, running with a sign of life, paused) is left alone; a run
  paused for a human (or queued without a worker) longer than ``escalate_after`` is escalated
  once: a ``reconcile.escalated`` event and one mail to the privacy mailbox;
* no run at all (its start failed), a failed, crashed or cancelled run, a completed run while the
  ledger still says open, or a running run with no state change, no ledger event and no heartbeat
  for ``stale_after`` (a SIGKILL leaves it "running" forever) is restarted: the flow resumes from
  its ledger checkpoints. ``reconcile.restarted`` records the attempt and why; after
  ``max_restarts`` restarts without progress the request is escalated instead;
* an incomplete request (a system gave no definite answer) is restarted at most once per
  ``incomplete_backoff``; a request an operator held or rejected (``awaiting_operator``, no live
  run) is never restarted, only escalated once it waited ``escalate_after``.

Every action is decided twice: once from a snapshot, then again under the request's row lock
(:func:`dsar.ledger.chain.lock_request`) with the events re-read, so two reconcilers at once act
once. The restart is recorded before it is made (then the lock is released: an inline restart
writes to the same request); a restart that fails to start is recorded too and retried later.
Events carry ids, state names, counts and a hash of the request's progress: no personal data.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar.ledger import Ledger
from dsar.ledger.chain import append_event, as_utc, lock_request
from dsar.ledger.models import AlertSent, Event, Request, RequestStatus, SystemResult
from dsar.settings import Settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

__all__ = [
    "OPEN_STATES",
    "RESTARTED",
    "Decision",
    "Escalation",
    "LedgerView",
    "Policy",
    "RunView",
    "Starter",
    "Summary",
    "decide",
    "reconcile_requests",
    "start_request",
]

log = logging.getLogger(__name__)

# Open and the reconciler's business; AWAITING_SUBJECT waits for the subject (the deadline watch).
OPEN_STATES = (
    RequestStatus.RECEIVED,
    RequestStatus.IN_PROGRESS,
    RequestStatus.AWAITING_OPERATOR,
    RequestStatus.INCOMPLETE,
)
RESTARTED, RESTART_FAILED, ESCALATED = (
    "reconcile.restarted",
    "reconcile.restart_failed",
    "reconcile.escalated",
)
START_FAILED = ("flow.start_failed", "request.start_failed")  # the intake's and the identity page's
STATUS_EVENTS = ("request.registered", "request.status")
QUIET = ("reconcile.", "mail.")  # events that are no sign of a flow's life (the reconciler's, alert mail)
LIVE = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
_BATCH = 50  # requests per Prefect query
_PAGE = 200  # flow runs per page

Action = Literal["none", "restart", "escalate"]
Starter = Callable[[str, str, str], object]  # (request id, request type, occasion)
Heartbeat = Callable[["RunView", datetime], bool]  # did the run beat since the given moment?


def start_request(request_id: str, request_type: str, occasion: str) -> object:
    """The default starter: the request's flow, as ``dsar submit`` would start it (settings.dispatch)."""
    from dsar import dispatch, runtime

    mode = runtime.current().settings.dispatch
    return dispatch.start(request_id, request_type, mode=mode, occasion=occasion)


@dataclass(frozen=True)
class Policy:
    stale_after: timedelta = timedelta(minutes=60)
    escalate_after: timedelta = timedelta(hours=48)
    max_restarts: int = 3
    incomplete_backoff: timedelta = timedelta(minutes=60)
    grace: timedelta = timedelta(minutes=10)

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            stale_after=timedelta(minutes=s.reconcile_stale_after_minutes),
            escalate_after=timedelta(hours=s.reconcile_escalate_after_hours),
            max_restarts=s.reconcile_max_restarts,
            incomplete_backoff=timedelta(minutes=s.reconcile_incomplete_backoff_minutes),
            grace=timedelta(minutes=s.reconcile_grace_minutes),
        )


@dataclass(frozen=True)
class RunView:
    """What the reconciler needs of one flow run: no parameters beyond the id, no results."""

    id: str
    state: str  # a Prefect StateType name: RUNNING, PAUSED, FAILED, ...
    state_name: str  # e.g. Late, Suspended, Crashed
    since: datetime  # when the run entered its state
    created: datetime

    @classmethod
    def of(cls, run: FlowRun) -> RunView:
        state = run.state
        created = as_utc(run.created) if run.created else datetime.now(UTC)
        since = as_utc(state.timestamp) if state is not None else created
        return cls(
            id=str(run.id),
            state=state.type.value if state is not None else "SCHEDULED",
            state_name=state.name if state is not None and state.name else "",
            since=since,
            created=created,
        )


@dataclass(frozen=True)
class Restart:
    attempt: int
    run: str  # the run the restart replaced ("none": there was none)
    progress: str
    at: datetime


@dataclass(frozen=True)
class LedgerView:
    """One open request as the ledger has it: state, activity, and the reconciler's own record."""

    request_id: str
    request_type: str
    status: RequestStatus
    checkpoint: str
    progress: str  # a hash of the checkpoint and every system's status: changes when work is done
    last_activity: datetime | None  # the newest event that is not the reconciler's or a mail's
    last_kind: str | None
    last_status_at: datetime  # registered, or the last status change
    start_failed: bool  # a start failed after the last restart
    restarts: tuple[Restart, ...] = ()
    last_restart_failed: datetime | None = None
    escalated: frozenset[str] = frozenset()  # keys of the escalations recorded
    mailed: frozenset[str] = frozenset()  # of those, the ones whose mail is queued (alerts_sent)

    @property
    def attempts(self) -> int:
        return max((r.attempt for r in self.restarts), default=0)

    def restarts_without_progress(self) -> int:
        count = 0
        for restart in reversed(self.restarts):
            if restart.progress != self.progress:
                break
            count += 1
        return count


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str
    run: str = "none"  # the newest run's id: what the decision was made about
    key: str = ""  # an escalation's key (alerts_sent, Message-ID)
    since: datetime | None = None  # an escalation: since when the request has waited


@dataclass(frozen=True)
class Escalation:
    """What the privacy mailbox is told: ids, type, reason, dates. No personal data."""

    key: str
    request_id: str
    request_type: str
    why: str
    since: datetime | None
    restarts: int


@dataclass
class Summary:
    """What one reconciler run did, in counts and request ids (no personal data)."""

    checked: int = 0
    actions: dict[str, int] = field(default_factory=dict)  # "restart:failed", "none:running", ...
    restarted: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # restarts that could not be started

    def count(self, decision: Decision) -> None:
        name = f"{decision.action}:{decision.why}"
        self.actions[name] = self.actions.get(name, 0) + 1

    def as_dict(self) -> dict[str, int]:
        return {
            "checked": self.checked,
            "restarted": len(self.restarted),
            "escalated": len(self.escalated),
            "restart_failed": len(self.failed),
            "left_alone": self.checked - len(self.restarted) - len(self.escalated),
        }

    def markdown(self, now: datetime) -> str:
        lines = [
            f"# Reconciler {now.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC",
            "",
            f"{self.checked} open requests checked: {len(self.restarted)} restarted, "
            f"{len(self.escalated)} escalated, {len(self.failed)} could not be restarted.",
            "",
            "| action | why | requests |",
            "|---|---|---|",
            *[
                f"| {name.split(':')[0]} | {name.split(':')[1]} | {n} |"
                for name, n in sorted(self.actions.items())
            ],
        ]
        for title, ids in (("Restarted", self.restarted), ("Escalated", self.escalated)):
            if ids:
                lines += ["", f"{title}: " + ", ".join(f"`{i}`" for i in ids)]
        if self.failed:
            lines += ["", "Start failed (retried next run): " + ", ".join(f"`{i}`" for i in self.failed)]
        return "\n".join(lines)


# --- deciding -----------------------------------------------------------------------------------


def decide(
    view: LedgerView, run: RunView | None, now: datetime, policy: Policy, heartbeat: Heartbeat
) -> Decision:
    """What to do about one open request, given its newest flow run (None: it has none)."""
    rid = view.request_id
    if run is not None and run.state in LIVE:
        return _live(view, run, now, policy, heartbeat)
    if view.status is RequestStatus.AWAITING_OPERATOR:  # held or rejected by an operator: theirs to re-run
        since = view.last_status_at
        if now - since < policy.escalate_after:
            return Decision("none", "held", _id(run))
        key = f"reconcile:{rid}:held:{view.checkpoint}:{int(since.timestamp())}"
        return _escalate(view, "held", _id(run), key, since)
    if run is None:
        why = "start_failed" if view.start_failed else "no_run"
        registered_or_active = view.last_activity or view.last_status_at
        if why == "no_run" and not view.restarts and now - registered_or_active < policy.grace:
            return Decision("none", "starting")
    elif run.state == "COMPLETED":
        if view.last_kind == "erasure.dry_run":
            return Decision("none", "dry_run", run.id)  # a dry run stops after its plan, on purpose
        why = "completed_open"
    else:
        why = run.state.lower()  # failed, crashed, cancelled
    if view.status is RequestStatus.INCOMPLETE:
        why = "incomplete"
    return _restart(view, why, _id(run), now, policy)


def _live(view: LedgerView, run: RunView, now: datetime, policy: Policy, heartbeat: Heartbeat) -> Decision:
    rid = view.request_id
    waited = now - run.since
    if run.state == "PAUSED":  # waiting for a human (a form in the Prefect UI)
        if waited < policy.escalate_after:
            return Decision("none", "paused", run.id)
        key = f"reconcile:{rid}:paused:{run.id}:{int(run.since.timestamp())}"
        return _escalate(view, "paused", run.id, key, run.since)
    if run.state == "SCHEDULED":  # waiting for a worker: restarting would only queue another one
        if waited < policy.escalate_after:
            return Decision("none", "queued", run.id)
        key = f"reconcile:{rid}:queued:{run.id}"
        return _escalate(view, "queued", run.id, key, run.since)
    last_sign = max(run.since, view.last_activity or run.since)
    cutoff = now - policy.stale_after
    if last_sign > cutoff or heartbeat(run, cutoff):
        return Decision("none", "running", run.id)
    return _restart(view, "stale", run.id, now, policy)


def _restart(view: LedgerView, why: str, run: str, now: datetime, policy: Policy) -> Decision:
    last = view.restarts[-1] if view.restarts else None
    failed_since = (
        last is not None and view.last_restart_failed is not None and view.last_restart_failed >= last.at
    )
    if last is not None and last.run == run and now - last.at < policy.stale_after and not failed_since:
        return Decision("none", "restart_pending", run)  # restarted for this already; its run is coming
    if why == "incomplete" and last is not None and now - last.at < policy.incomplete_backoff:
        return Decision("none", "backoff", run)
    if view.restarts_without_progress() >= policy.max_restarts:
        key = f"reconcile:{view.request_id}:no_progress:{view.progress}"
        return _escalate(view, "no_progress", run, key, last.at if last else None)
    return Decision("restart", why, run)


def _escalate(view: LedgerView, why: str, run: str, key: str, since: datetime | None) -> Decision:
    if key in view.escalated and key in view.mailed:
        return Decision("none", "escalated", run, key)
    return Decision("escalate", why, run, key, since)


def _when(data: dict[str, Any] | None, occurred: datetime) -> datetime:
    """When the reconciler decided: its recorded ``now`` (a test's clock), else the event's time."""
    try:
        return as_utc(datetime.fromisoformat(str((data or {})["at"])))
    except (KeyError, ValueError):
        return occurred


def _id(run: RunView | None) -> str:
    return run.id if run is not None else "none"


# --- the ledger's side ----------------------------------------------------------------------------


def open_request_ids(session: Session) -> list[str]:
    stmt = select(Request.id).where(Request.status.in_(OPEN_STATES)).order_by(Request.received_at, Request.id)
    return list(session.scalars(stmt))


def load_view(session: Session, request_id: str) -> LedgerView | None:
    """The request's view, or None if it is no longer the reconciler's business."""
    request = session.get(Request, request_id, populate_existing=True)
    if request is None or request.status not in OPEN_STATES:
        return None
    systems = session.execute(
        select(SystemResult.system, SystemResult.status).where(SystemResult.request_id == request_id)
    )
    fingerprint = request.checkpoint + "|" + ",".join(sorted(f"{s}={st.value}" for s, st in systems))
    events = session.execute(
        select(Event.kind, Event.occurred_at, Event.data)
        .where(Event.request_id == request_id)
        .order_by(Event.seq)
    ).all()
    restarts: list[Restart] = []
    escalated: set[str] = set()
    last_activity: datetime | None = None
    last_kind: str | None = None
    last_status = as_utc(request.received_at)
    last_failed: datetime | None = None
    start_failed_at: datetime | None = None
    for kind, occurred, data in events:
        at = as_utc(occurred)
        decided = _when(data, at)  # the reconciler's own events: the ``now`` it decided on
        if kind == RESTARTED:
            restarts.append(
                Restart(
                    int(data.get("attempt", 0)),
                    str(data.get("run", "none")),
                    str(data.get("progress", "")),
                    decided,
                )
            )
        elif kind == RESTART_FAILED:
            last_failed = decided
        elif kind == ESCALATED:
            escalated.add(str(data.get("key", "")))
        if kind in START_FAILED:
            start_failed_at = at
        if kind in STATUS_EVENTS:
            last_status = at
        if not kind.startswith(QUIET):
            last_activity, last_kind = at, kind
    last_restart = restarts[-1].at if restarts else None
    return LedgerView(
        request_id=request.id,
        request_type=request.type.value,
        status=request.status,
        checkpoint=request.checkpoint,
        progress=hashlib.sha256(fingerprint.encode()).hexdigest()[:12],
        last_activity=last_activity,
        last_kind=last_kind,
        last_status_at=last_status,
        start_failed=start_failed_at is not None and (last_restart is None or start_failed_at > last_restart),
        restarts=tuple(restarts),
        last_restart_failed=last_failed,
        escalated=frozenset(escalated),
        mailed=frozenset(sent_keys(session, sorted(escalated))),
    )


# --- Prefect's side -------------------------------------------------------------------------------


def newest_runs(client: SyncPrefectClient, views: Sequence[LedgerView]) -> dict[str, RunView]:
    """The newest flow run of each request, by run name or by the idempotency keys it was started with."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterIdempotencyKey,
        FlowRunFilterName,
        Operator,
    )

    newest: dict[str, RunView] = {}
    for start in range(0, len(views), _BATCH):
        batch = views[start : start + _BATCH]
        by_name = {f"{v.request_type}-{v.request_id}": v.request_id for v in batch}
        by_key = {key: v.request_id for v in batch for key in _idempotency_keys(v)}
        flow_filter = FlowRunFilter(  # type: ignore[call-arg]  # operator: a mixin field mypy misses
            operator=Operator.or_,
            name=FlowRunFilterName(any_=list(by_name)),
            idempotency_key=FlowRunFilterIdempotencyKey(any_=list(by_key)),
        )
        offset = 0
        while True:
            page = client.read_flow_runs(flow_run_filter=flow_filter, limit=_PAGE, offset=offset)
            for run in page:
                rid = by_name.get(run.name) or by_key.get(run.idempotency_key or "")
                if rid is None:
                    continue
                seen = RunView.of(run)
                if rid not in newest or seen.created > newest[rid].created:
                    newest[rid] = seen
            if len(page) < _PAGE:
                break
            offset += _PAGE
    return newest


def _idempotency_keys(view: LedgerView) -> list[str]:
    """The keys ``dispatch.start`` gives deployment runs of the request (named randomly until they start)."""
    base = f"dsar:{view.request_id}"
    return [base, f"{base}:identity-verified", *(f"{base}:reconcile-{r.attempt}" for r in view.restarts)]


def heartbeat_of(client: SyncPrefectClient) -> Heartbeat:
    """Did the run send a heartbeat event since a moment (flow-run heartbeats, on by default)?"""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    def beat(run: RunView, since: datetime) -> bool:
        query = EventFilter(
            occurred=EventOccurredFilter(since=since),  # type: ignore[arg-type]  # a datetime is one
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
        )
        try:
            return bool(client.read_events(query, limit=1).events)
        except Exception as exc:  # no answer is no sign of life; the run's state decides
            log.warning("reconcile: could not read heartbeats of %s (%s)", run.id, type(exc).__name__)
            return False

    return beat


def _mark_crashed(client: SyncPrefectClient, run: str, why: str) -> None:
    """Tell Prefect the stale run is dead (its concurrency slot is freed; the UI shows the truth)."""
    from prefect.states import Crashed

    try:
        client.set_flow_run_state(
            run, Crashed(message=f"the reconciler found no sign of life ({why})"), force=True
        )
    except Exception as exc:  # the restart matters more than the old run's label
        log.warning("reconcile: could not mark %s crashed (%s)", run, type(exc).__name__)


# --- acting ---------------------------------------------------------------------------------------


def reconcile_requests(
    ledger: Ledger,
    client: SyncPrefectClient,
    *,
    now: datetime,
    policy: Policy,
    starter: Starter,
    escalate: Callable[[Escalation], None],
    heartbeat: Heartbeat | None = None,
    request_ids: Iterable[str] | None = None,
) -> Summary:
    """Check every open request (or ``request_ids``) once; restart or escalate what needs it."""
    summary = Summary()
    with ledger.session() as session:
        ids = list(request_ids) if request_ids is not None else open_request_ids(session)
        views = [v for v in (load_view(session, rid) for rid in ids) if v is not None]
    runs = newest_runs(client, views)
    beat = _memo(heartbeat or heartbeat_of(client))
    for view in views:
        summary.checked += 1
        run = runs.get(view.request_id)
        decision = decide(view, run, now, policy, beat)
        if decision.action != "none":
            decision = _act(
                ledger, client, view.request_id, run, decision, now, policy, beat, starter, escalate, summary
            )
        summary.count(decision)
    return summary


def _memo(heartbeat: Heartbeat) -> Heartbeat:
    seen: dict[tuple[str, datetime], bool] = {}

    def beat(run: RunView, since: datetime) -> bool:
        if (run.id, since) not in seen:
            seen[run.id, since] = heartbeat(run, since)
        return seen[run.id, since]

    return beat


def _act(
    ledger: Ledger,
    client: SyncPrefectClient,
    request_id: str,
    run: RunView | None,
    decision: Decision,
    now: datetime,
    policy: Policy,
    heartbeat: Heartbeat,
    starter: Starter,
    escalate: Callable[[Escalation], None],
    summary: Summary,
) -> Decision:
    """Re-decide under the row lock with fresh events; record the action before making it."""
    with ledger.session() as session:
        lock_request(session, request_id)
        view = load_view(session, request_id)
        if view is None:
            return Decision("none", "closed", decision.run)
        again = decide(view, run, now, policy, heartbeat)
        if again != decision:
            return again if again.action == "none" else Decision("none", "changed", decision.run)
        if decision.action == "restart":
            attempt = view.attempts + 1
            data: dict[str, Any] = {
                "attempt": attempt,
                "why": decision.why,
                "run": decision.run,
                "at": now.isoformat(),
            }
            append_event(
                session, request_id=request_id, kind=RESTARTED, data=data | {"progress": view.progress}
            )
        else:
            restarts = view.restarts_without_progress()
            data = {"why": decision.why, "key": decision.key, "run": decision.run, "restarts": restarts}
            if decision.key not in view.escalated:  # else recorded, but its mail was never queued
                append_event(session, request_id=request_id, kind=ESCALATED, data=data)
    # The lock is released: an inline restart writes to this request, a mail is queued under the lock.
    if decision.action == "escalate":
        escalate(
            Escalation(decision.key, request_id, view.request_type, decision.why, decision.since, restarts)
        )
        summary.escalated.append(request_id)
        return decision
    if run is not None and run.state in LIVE:
        _mark_crashed(client, run.id, decision.why)
    try:
        starter(request_id, view.request_type, f"reconcile-{attempt}")
    except Exception as exc:  # recorded; the next run tries again (and counts the attempt)
        log.warning("reconcile: restarting %s failed (%s)", request_id, type(exc).__name__)
        with ledger.session() as session:
            append_event(
                session,
                request_id=request_id,
                kind=RESTART_FAILED,
                data={"attempt": attempt, "error": type(exc).__name__, "at": now.isoformat()},
            )
        summary.failed.append(request_id)
    summary.restarted.append(request_id)
    return decision


def sent_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` were queued to the privacy mailbox already."""
    return set(session.scalars(select(AlertSent.key).where(AlertSent.key.in_(keys)))) if keys else set()
