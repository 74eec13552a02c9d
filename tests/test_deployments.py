"""prefect.yaml and `dsar serve` describe the same deployments, and they point at real flows."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from dsar.dispatch import DEPLOYMENT, FLOWS, flow_for

ROOT = Path(__file__).resolve().parents[1]


def source(fn: object) -> Path:
    return Path(inspect.getsourcefile(fn) or "").resolve()  # type: ignore[arg-type]


def deployments() -> list[dict[str, object]]:
    return list(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])


def test_every_request_flow_has_exactly_one_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    names = sorted(load_flow_from_entrypoint(str(d["entrypoint"])).name for d in deployments())
    assert names == sorted(FLOWS)


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: str(d["entrypoint"]))
def test_deployment_matches_what_dispatch_starts(
    deployment: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(str(deployment["entrypoint"]))
    assert deployment["name"] == DEPLOYMENT  # dispatch.start runs "<flow>/<DEPLOYMENT>"
    served = flow_for(flow.name).fn  # the same function, loaded by path rather than by module
    assert (flow.fn.__qualname__, source(flow.fn)) == (served.__qualname__, source(served))
    assert list(flow.parameters.properties) == ["request_id"]  # ids only: no personal data in Prefect
    assert deployment["enforce_parameter_schema"] is True


def test_flow_run_names_carry_the_request_id_only() -> None:
    for kind in FLOWS:
        assert flow_for(kind).flow_run_name == f"{kind}-{{request_id}}"
