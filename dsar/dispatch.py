"""Starting a request's flow: in this process, or as a run of a served deployment.

Only the request id crosses into Prefect. With a Prefect API configured (``dsar serve`` or
a server with workers), ``dsar submit`` creates a deployment run keyed by the request id, so
a repeated submit cannot start two runs; without one, the flow runs here, on an ephemeral
Prefect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prefect import Flow

__all__ = ["DEPLOYMENT", "FLOWS", "flow_for", "start"]

DEPLOYMENT = "dsar"


def _access() -> Flow[..., str | None]:
    from flows.access import access_request

    return access_request


def _erasure() -> Flow[..., str | None]:
    from flows.erasure import erasure_request

    return erasure_request


def _rectification() -> Flow[..., str | None]:
    from flows.rights import rectification_request

    return rectification_request


def _restriction() -> Flow[..., str | None]:
    from flows.rights import restriction_request

    return restriction_request


def _objection() -> Flow[..., str | None]:
    from flows.rights import objection_request

    return objection_request


def _portability() -> Flow[..., str | None]:
    from flows.portability import portability_request

    return portability_request


FLOWS: dict[str, Callable[[], Flow[..., str | None]]] = {
    "access": _access,
    "erasure": _erasure,
    "rectification": _rectification,
    "restriction": _restriction,
    "objection": _objection,
    "portability": _portability,
}


def flow_for(request_type: str) -> Flow[..., str | None]:
    if request_type not in FLOWS:
        raise ValueError(f"no flow handles {request_type!r} requests yet")
    return FLOWS[request_type]()


def start(
    request_id: str,
    request_type: str,
    mode: Literal["auto", "inline", "deployment"] = "auto",
    *,
    occasion: str | None = None,
) -> str | None:
    """Run (inline: returns the document path) or queue (deployment: returns None) the flow.

    A deployment run is keyed by the request id and ``occasion`` (e.g. "identity-verified"), so
    each occasion starts at most one run however often it is asked for.
    """
    flow = flow_for(request_type)
    if mode == "inline" or (mode == "auto" and not os.environ.get("PREFECT_API_URL")):
        return str(flow(request_id))
    from prefect.deployments import run_deployment

    run_deployment(
        f"{flow.name}/{DEPLOYMENT}",
        parameters={"request_id": request_id},
        idempotency_key=f"dsar:{request_id}" + (f":{occasion}" if occasion else ""),
        timeout=0,
    )
    return None
