"""prefect.yaml and `dsar serve` describe the same deployments, and they point at real flows.

Request flows run on demand with the request id as their only parameter; scheduled flows (the
deadline watch) run on their schedule and take no personal data either.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint

from dsar.dispatch import DEPLOYMENT, FLOWS, flow_for

ROOT = Path(__file__).resolve().parents[1]


def source(fn: object) -> Path:
    return Path(inspect.getsourcefile(fn) or "").resolve()  # type: ignore[arg-type]


def deployments() -> list[dict[str, object]]:
    return list(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])


def request_deployments() -> list[dict[str, object]]:
    return [d for d in deployments() if "schedules" not in d]


def scheduled_deployments() -> list[dict[str, object]]:
    return [d for d in deployments() if "schedules" in d]


def test_every_request_flow_has_exactly_one_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    names = sorted(load_flow_from_entrypoint(str(d["entrypoint"])).name for d in request_deployments())
    assert names == sorted(FLOWS)


def scheduled(entrypoint: str) -> dict[str, object]:
    [deployment] = [d for d in scheduled_deployments() if d["entrypoint"] == entrypoint]
    return deployment


def test_the_deadline_watch_runs_every_morning_in_oslo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    deployment = scheduled("flows/deadlines.py:deadline_watch")
    flow: Flow[..., Any] = load_flow_from_entrypoint(str(deployment["entrypoint"]))
    from flows.deadlines import deadline_watch, scheduled_deployment

    assert (flow.name, flow.fn.__qualname__) == (deadline_watch.name, deadline_watch.fn.__qualname__)
    assert source(flow.fn) == source(deadline_watch.fn)
    assert deployment["schedules"] == [{"cron": "0 7 * * *", "timezone": "Europe/Oslo"}]
    served = scheduled_deployment()  # what `dsar serve` runs
    assert (served.name, served.concurrency_limit) == (deployment["name"], 1)
    [schedule] = [s.schedule for s in served.schedules or []]
    assert isinstance(schedule, CronSchedule)
    assert (schedule.cron, schedule.timezone) == ("0 7 * * *", "Europe/Oslo")
    assert deployment["concurrency_limit"] == 1  # two watches at once could race on the same alert
    assert list(flow.parameters.properties) == ["today"]  # an optional date: no personal data in Prefect
    assert flow.parameters.required == []
    assert deployment["enforce_parameter_schema"] is True


@pytest.mark.parametrize("deployment", request_deployments(), ids=lambda d: str(d["entrypoint"]))
def test_deployment_matches_what_dispatch_starts(
    deployment: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    flow: Flow[..., Any] = load_flow_from_entrypoint(str(deployment["entrypoint"]))
    assert deployment["name"] == DEPLOYMENT  # dispatch.start runs "<flow>/<DEPLOYMENT>"
    served = flow_for(flow.name).fn  # the same function, loaded by path rather than by module
    assert (flow.fn.__qualname__, source(flow.fn)) == (served.__qualname__, source(served))
    # ids only (and switches such as erasure's dry run): no personal data in Prefect
    assert next(iter(flow.parameters.properties)) == "request_id"
    assert flow.parameters.required == ["request_id"]
    others = {k: v for k, v in flow.parameters.properties.items() if k != "request_id"}
    assert all(spec.get("type") == "boolean" for spec in others.values()), others
    assert deployment["enforce_parameter_schema"] is True


def test_flow_run_names_carry_the_request_id_only() -> None:
    for kind in FLOWS:
        assert flow_for(kind).flow_run_name == f"{kind}-{{request_id}}"


def test_the_package_purge_runs_every_night_and_takes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    deployment = scheduled("flows/purge.py:purge_documents")
    flow: Flow[..., Any] = load_flow_from_entrypoint(str(deployment["entrypoint"]))
    from flows.purge import CRON, purge_documents, scheduled_deployment

    assert (flow.name, source(flow.fn)) == (purge_documents.name, source(purge_documents.fn))
    assert deployment["schedules"] == [{"cron": CRON, "timezone": "Europe/Oslo"}]
    served = scheduled_deployment()
    assert (served.name, served.concurrency_limit) == (deployment["name"], 1)
    assert flow.parameters.properties == {}


def test_every_scheduled_deployment_is_one_dsar_serve_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    from dsar.deployments import scheduled_deployments as served_on_schedule

    served = {(d.flow_name, d.name) for d in served_on_schedule()}
    declared = {
        (load_flow_from_entrypoint(str(d["entrypoint"])).name, d["name"]) for d in scheduled_deployments()
    }
    assert served == declared
