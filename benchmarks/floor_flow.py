"""The orchestrator's floor: a flow run shaped like an access request's, whose tasks do nothing.

``bench_pipeline_scale.py`` deploys it to the same server and worker as the pipeline and runs a
burst of it, so that Prefect's own cost of a deployment run (scheduling, states, task runs,
events, logs) is measured beside the pipeline's, in the same run.
"""

from __future__ import annotations

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner


@task(cache_policy=NO_CACHE, persist_result=False)
def step(request_id: str, n: int) -> None:
    """A task that does nothing: what remains is the orchestration."""


@flow(
    name="floor",
    flow_run_name="floor-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def floor(request_id: str, sequential: int, parallel: int) -> None:
    """``parallel`` tasks at once (the systems), then ``sequential`` one after another."""
    step.map(unmapped(request_id), range(parallel), return_state=True)
    for n in range(sequential):
        step(request_id, n)
