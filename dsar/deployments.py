"""The deployments `dsar serve` runs; `prefect.yaml` declares the same ones for work pools."""

from __future__ import annotations

import os
from typing import cast

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from dsar.dispatch import DEPLOYMENT, FLOWS
from dsar.errors import BadInput

__all__ = ["serve_all"]


def serve_all(*, limit: int) -> None:
    """Serve every request flow under the deployment name `dispatch.start` targets."""
    if not os.environ.get("PREFECT_API_URL"):
        raise BadInput("set PREFECT_API_URL to the Prefect server the operators use")
    # to_deployment is sync/async dual; called from sync code it returns the deployment itself.
    deployments = [
        cast(RunnerDeployment, FLOWS[kind]().to_deployment(name=DEPLOYMENT, tags=["dsar", kind]))
        for kind in FLOWS
    ]
    serve(*deployments, limit=limit)
