"""The deployments `dsar serve` runs, and the intake endpoint beside them.

`prefect.yaml` declares the same deployments for work pools. The intake (:mod:`dsar.intake_api`)
runs with uvicorn in a thread on ``intake_host:intake_port``; it starts each registered request as
a run of these deployments (keyed by the request id) and, with ``ticketing_zendesk_url`` set,
comments back on the Zendesk ticket.
"""

from __future__ import annotations

import os
import threading
import time
from typing import cast

import uvicorn
from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from dsar import dispatch
from dsar.dispatch import DEPLOYMENT, FLOWS
from dsar.errors import BadInput
from dsar.intake_api import Commenter, create_intake_app
from dsar.ledger import Ledger
from dsar.prefect_tls import share_api_tls_contexts
from dsar.settings import Settings
from flows.deadlines import scheduled_deployment as watch_deployment
from flows.purge import scheduled_deployment as purge_deployment
from flows.reconcile import scheduled_deployment as reconcile_deployment
from flows.retention import scheduled_deployment as retention_deployment
from integrations.errors import ConfigurationError
from integrations.http import HttpPolicy
from integrations.ticketing import ZendeskTickets

__all__ = ["scheduled_deployments", "serve_all", "start_intake", "zendesk_commenter"]


def scheduled_deployments() -> list[RunnerDeployment]:
    """The flows `dsar serve` runs on a schedule: deadline watch (07:00), purge (02:30), retention (03:00),
    and the reconciler (every 10 minutes)."""
    return [watch_deployment(), purge_deployment(), retention_deployment(), reconcile_deployment()]


def serve_all(*, limit: int, settings: Settings | None = None) -> None:
    """Serve every request flow under the deployment name `dispatch.start` targets, and the intake."""
    if not os.environ.get("PREFECT_API_URL"):
        raise BadInput("set PREFECT_API_URL to the Prefect server the operators use")
    share_api_tls_contexts()
    # to_deployment is sync/async dual; called from sync code it returns the deployment itself.
    deployments = [
        cast(RunnerDeployment, FLOWS[kind]().to_deployment(name=DEPLOYMENT, tags=["dsar", kind]))
        for kind in FLOWS
    ]
    deployments += scheduled_deployments()
    if settings is not None:
        start_intake(settings, Ledger(settings))
    serve(*deployments, limit=limit)


def start_deployment(request_id: str, request_type: str) -> None:
    """Queue a run of the request's deployment (the run is keyed by the request id)."""
    dispatch.start(request_id, request_type, mode="deployment")


def restart_deployment(request_id: str, request_type: str) -> None:
    """Queue the run that continues a request once its subject confirmed their identity."""
    dispatch.start(request_id, request_type, mode="deployment", occasion="identity-verified")


def zendesk_commenter(settings: Settings) -> Commenter | None:
    """Internal notes on Zendesk tickets, if ``ticketing_zendesk_url`` is set."""
    if not settings.ticketing_zendesk_url:
        return None
    if not settings.ticketing_zendesk_email or settings.ticketing_zendesk_token is None:
        raise ConfigurationError(
            "set DSAR_TICKETING_ZENDESK_EMAIL and _TOKEN with DSAR_TICKETING_ZENDESK_URL"
        )
    policy = HttpPolicy(
        timeout_s=settings.http_timeout_s,
        max_attempts=settings.http_max_attempts,
        retry_after_cap_s=settings.retry_after_cap_s,
        backoff_base_s=settings.http_backoff_base_s,
    )
    tickets = ZendeskTickets(
        settings.ticketing_zendesk_url,
        settings.ticketing_zendesk_email,
        settings.ticketing_zendesk_token.get_secret_value(),
        policy,
    )
    return tickets.comment


def start_intake(settings: Settings, ledger: Ledger, *, timeout_s: float = 10.0) -> uvicorn.Server:
    """Run the intake app in a daemon thread; returns once it listens (ConfigurationError if it cannot)."""
    app = create_intake_app(
        ledger,
        settings,
        start=start_deployment,
        comment=zendesk_commenter(settings),
        restart=restart_deployment,
    )
    config = uvicorn.Config(
        app, host=settings.intake_host, port=settings.intake_port, access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=_run, args=(server,), daemon=True, name="dsar-intake")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            where = f"{settings.intake_host}:{settings.intake_port}"
            raise ConfigurationError(f"the intake endpoint could not listen on {where}")
        time.sleep(0.05)
    return server


def _run(server: uvicorn.Server) -> None:
    """Run the server; a failed start (uvicorn exits, having logged why) ends only this thread."""
    try:
        server.run()
    except SystemExit:
        return
