"""The access deployment of ``prefect.yaml``, run by ``dsar worker`` in a fork of its warm zygote.

The real flow, as production runs it: ``prefect deploy`` to a process work pool on a real
``prefect server start``, the request registered in the ledger and started as a deployment run,
the emulated vendors answering over HTTP. The fork inherits everything the zygote imported
(weasyprint, the database drivers, the flows): this proves none of it breaks across ``fork``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import sqlalchemy as sa

from benchmarks.bench_pipeline_scale import (
    DEPLOY_SELECTOR,
    POOL,
    _environment,
    _settings,
    bench_people,
    burst,
    completed_in_ledger,
    emulators,
    prefect,
    process,
    register,
    worker_command,
)
from tests.prefect_server import running_prefect_server


def test_an_access_request_from_prefect_yaml_completes_in_a_warm_fork(tmp_path: Path) -> None:
    people = bench_people(2)
    with (
        emulators(tmp_path / "systems", people, latency_ms=0) as stack,
        running_prefect_server(tmp_path / "server-home", tmp_path / "server.log") as server,
    ):
        env = _environment(tmp_path, stack.systems_file, f"sqlite:///{tmp_path / 'ledger.db'}")
        env |= {"PREFECT_API_URL": server.api_url, "PREFECT_WORKER_QUERY_SECONDS": "1"}
        prefect(env, "work-pool", "create", POOL, "--type", "process")
        prefect(env, "--no-prompt", "deploy", "--name", DEPLOY_SELECTOR)
        ids = register(env, people)
        worker_log = tmp_path / "worker.log"
        with process(worker_command("warm", 2), env, worker_log):
            _, runs = burst(server.api_url, ids, timeout_s=300)

        log = worker_log.read_text(errors="replace")
        assert sorted(run["state"] for run in runs) == ["COMPLETED", "COMPLETED"], log[-3000:]
        assert completed_in_ledger(env, ids) == len(ids)
        assert "zygote" in log
        assert "starting the flow run cold" not in log, "every run forked from the warm zygote"
        for request_id, person in zip(ids, people, strict=True):
            text = report_text(env, request_id)
            assert person.email in text, "the report holds what the systems returned"
            assert "Side 1 av" in text or "Page 1 of" in text


def report_text(env: dict[str, str], request_id: str) -> str:
    """The text of the request's newest access report, decrypted and read back."""
    from dsar import document_store
    from dsar.ledger import Ledger
    from dsar.ledger.models import Document

    ledger = Ledger(_settings(env))
    try:
        with ledger.session() as session:
            document = session.scalars(
                sa.select(Document)
                .where(Document.request_id == request_id, Document.kind == "access_report")
                .order_by(Document.id.desc())
            ).first()
            assert document is not None, "no access report stored"
            pdf = document_store.read(ledger, document)
    finally:
        ledger.close()
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
