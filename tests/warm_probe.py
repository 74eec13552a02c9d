"""A flow for the warm worker's tests: reports the process it ran in, then ends as asked."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from prefect import flow


@flow(name="warm-probe")
def probe(out: str, outcome: str = "succeed", sleep_s: float = 0.0) -> None:
    """Write where and how this run ran to ``out``; then succeed, fail, or sleep first."""
    Path(out).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "sid": os.getsid(0),
                "probe_env": os.environ.get("WARM_PROBE"),
                "flow_run_id": os.environ.get("PREFECT__FLOW_RUN_ID"),
                "random": random.random(),
            }
        ),
        encoding="utf-8",
    )
    time.sleep(sleep_s)
    if outcome == "fail":
        raise RuntimeError("the probe was asked to fail")
