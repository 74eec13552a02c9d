"""Issue 7, the operator's view: in a real headless Chromium, against a real `prefect server
start`, a request paused for LINK Mobility (no API) shows its approval form, the form names
the request and the system but never the person, and answering it in the browser completes
the request with the operator's answer in the ledger.

Both of Prefect's UIs are opened: the classic one at ``/runs/flow-run/<id>`` and the new one
under ``/v2``, where a browser opening the server without a saved preference lands. The form is
answered in the new one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import phonenumbers
import pytest
from PIL import Image, ImageStat  # weasyprint's own dependency: no new package
from playwright.sync_api import Locator, Page, ViewportSize, expect, sync_playwright

from dsar import intake
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.models import RequestStatus, SystemStatus
from dsar.settings import PROJECT_ROOT, Settings
from emulators.internal_db import DEMO_SUBJECT
from emulators.stack import EmulatorStack, emulator_stack
from tests.conftest import make_settings
from tests.identity_helpers import confirm_identity
from tests.prefect_server import PrefectServer, prefect_env, running_prefect_server, stop

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by scripts/bootstrap.sh
pytestmark = [
    pytest.mark.prefect,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: scripts/bootstrap.sh installs it"),
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # offline box: no update, sync or safe-browsing calls
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = ViewportSize(width=1280, height=900)  # a laptop screen
UI_TIMEOUT_MS = 30_000  # the UI's first load on a busy 2-core machine
PAUSE_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 90.0
SYSTEM = "link-mobility"
LINK = "privacy@linkmobility.example"
OPERATOR = "Ingrid Operatør"
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"  # git-ignored; kept for people to look at

# The flow runs in its own process, as a worker would run it: only PREFECT_API_URL and the
# DSAR_* settings tie it to this test.
FLOW_SCRIPT = "import sys\nfrom flows.access import access_request\nprint(access_request(sys.argv[1]))"


def subject_identifiers() -> list[str]:
    """The demo subject's identifiers as they could show up in a page, lowercased."""
    national = str(phonenumbers.parse(DEMO_SUBJECT.phone).national_number)
    values = {
        DEMO_SUBJECT.email,
        DEMO_SUBJECT.phone,
        national,
        DEMO_SUBJECT.name,
        DEMO_SUBJECT.street_address,
    }
    values |= {DEMO_SUBJECT.name.split()[-1]}  # the surname alone
    return sorted(value.lower() for value in values)


@dataclass(frozen=True)
class PausedRequest:
    request_id: str
    flow_run_id: UUID
    flow: subprocess.Popen[bytes]
    flow_out: Path  # what the flow printed: the report's path
    flow_log: Path  # Prefect's console log
    settings: Settings
    stack: EmulatorStack


@pytest.fixture
def prefect_ui(tmp_path: Path) -> Iterator[PrefectServer]:
    """A real Prefect server with its UI; the UI's static files are copied into tmp_path, not the venv."""
    with running_prefect_server(
        tmp_path / "prefect-home",
        tmp_path / "prefect-server.log",
        PREFECT_UI_STATIC_DIRECTORY=str(tmp_path / "prefect-ui"),
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
    ) as server:
        yield server


@pytest.fixture
def paused(prefect_ui: PrefectServer, tmp_path: Path) -> Iterator[PausedRequest]:
    """An access request of the demo subject whose flow run waits for LINK Mobility's operator."""
    with emulator_stack(tmp_path / "systems", only=[SYSTEM]) as stack:
        settings = make_settings(
            tmp_path / "var",
            systems_file=stack.systems_file,
            smtp_port=stack.mailbox.port,
            operator_poll_s=1,
            task_retries=0,
        )
        ledger = Ledger(settings)
        try:
            subject = intake.build_subject(
                email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name
            )
            request_id = intake.register(
                ledger, request_type="access", subject=subject, language="en"
            ).request_id
            confirm_identity(ledger, request_id)  # identity is another form's business; LINK's is this test's
        finally:
            ledger.close()

        flow_out, flow_log = tmp_path / "flow.out", tmp_path / "flow.log"
        flow = _start_flow(prefect_ui, settings, request_id, flow_out, flow_log)
        try:
            run_id = _wait_paused(prefect_ui, flow, flow_log, f"access-{request_id}")
            yield PausedRequest(request_id, run_id, flow, flow_out, flow_log, settings, stack)
        finally:
            stop(flow)


def _start_flow(
    server: PrefectServer, settings: Settings, request_id: str, out_file: Path, log_file: Path
) -> subprocess.Popen[bytes]:
    dsar = {
        "DSAR_VAR_DIR": str(settings.var_dir),
        "DSAR_ENCRYPTION_KEY": settings.secret("encryption_key"),
        "DSAR_HASH_KEY": settings.secret("hash_key"),
        "DSAR_SYSTEMS_FILE": str(settings.systems_file),
        "DSAR_SMTP_PORT": str(settings.smtp_port),
        "DSAR_OPERATOR_POLL_S": str(settings.operator_poll_s),
        "DSAR_TASK_RETRIES": "0",
    }
    env = prefect_env(server.home, PREFECT_API_URL=server.api_url)
    env = {k: v for k, v in env.items() if not k.startswith("DSAR_")} | dsar
    with out_file.open("wb") as out, log_file.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", FLOW_SCRIPT, request_id],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_paused(server: PrefectServer, flow: subprocess.Popen[bytes], log_file: Path, run_name: str) -> UUID:
    """The id of the flow run once the server has it Paused for LINK's form."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    named = FlowRunFilter(name=FlowRunFilterName(any_=[run_name]))
    deadline = time.monotonic() + PAUSE_TIMEOUT_S
    with SyncPrefectClient(server.api_url) as client:
        while time.monotonic() < deadline:
            if flow.poll() is not None:
                pytest.fail(f"the flow exited ({flow.returncode}) before pausing:\n{log_file.read_text()}")
            for run in client.read_flow_runs(flow_run_filter=named):
                if run.state is not None and run.state.is_paused():
                    assert run.state.state_details.pause_key == f"collect-{SYSTEM}"
                    return run.id
            time.sleep(0.5)
    pytest.fail(f"{run_name} did not pause within {PAUSE_TIMEOUT_S:.0f} s:\n{log_file.read_text()}")


def _check_screenshot(png: bytes, path: Path) -> None:
    """A real PNG of the viewport with a rendered page in it, not a blank or single-colour frame."""
    path.write_bytes(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        image.verify()  # chunk CRCs and structure
    with Image.open(path) as image:
        image.load()  # the compressed pixel data decodes in full
        assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
        gray = image.convert("L")
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None
    assert len(colours) > 50, "too few colours for a rendered form"  # text is anti-aliased
    assert ImageStat.Stat(gray).stddev[0] > 10, "the screenshot is nearly uniform"
    assert 20_000 < len(png) < 5_000_000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)


def _on_screen(locator: Locator) -> bool:
    """A person sees the element without scrolling: at its centre it is neither clipped nor covered."""
    return bool(
        locator.evaluate(
            """element => {
                const box = element.getBoundingClientRect();
                const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
                return hit !== null && element.contains(hit);
            }"""
        )
    )


def _assert_no_personal_data(where: str, text: str) -> None:
    hits = [value for value in subject_identifiers() if value in text.lower()]
    assert hits == [], f"the subject's identifiers in {where}"


def test_paused_request_shows_its_form_and_is_answered_in_the_browser(
    paused: PausedRequest, prefect_ui: PrefectServer, tmp_path: Path
) -> None:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    request_id = paused.request_id

    request_line = f"Request {request_id}, system {SYSTEM}, step collect."
    instructions = "LINK Mobility has no API for data-subject requests."
    mail_line = f"Message-ID <{request_id}.{SYSTEM}@dsar-pipeline>"
    warning = "Do not type the person's data into this form."

    def assert_form(page: Page, dialog: Locator, name: str, seen: tuple[str, ...]) -> None:
        """The form's description and fields, a screenshot of it, and no personal data on the page.

        ``seen`` are the description's parts the operator must see without scrolling.
        """
        expect(dialog).to_contain_text("Resume Flow Run")
        for text in (request_line, instructions, mail_line, warning):
            expect(dialog).to_contain_text(text)
        for text in seen:
            assert _on_screen(dialog.get_by_text(text).first), f"{text!r} is hidden ({name})"
        for label in ("Operator", "Note (Optional)", "Evidence (Optional)", "Outcome", "Records (Optional)"):
            expect(dialog.get_by_text(label, exact=True)).to_be_visible()
        # Operator, note and evidence are text boxes, records a number (the classic UI does not tie
        # labels to inputs, so they are counted by role); the outcome is a select.
        expect(dialog.get_by_role("textbox")).to_have_count(3)
        expect(dialog.get_by_role("spinbutton")).to_have_count(1)
        _check_screenshot(page.screenshot(), tmp_path / f"operator-form-{name}.png")
        _assert_no_personal_data(f"the {name} page's text", page.inner_text("body"))
        _assert_no_personal_data(f"the {name} page's HTML", page.content())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # The classic UI: a Resume button on the run's page opens the form.
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{prefect_ui.url}/runs/flow-run/{paused.flow_run_id}")
            expect(page.get_by_text(f"access-{request_id}").first).to_be_visible()
            expect(page.get_by_text("Paused", exact=True).first).to_be_visible()
            page.get_by_role("button", name="Resume").click()
            # This UI fits the description into a small scroll box above the fields: at this window
            # size only its top shows, so the form puts the no-personal-data warning there.
            assert_form(page, page.get_by_role("dialog"), "v1", seen=(request_line, warning))
            page.close()

            # The new UI, the default: Resume sits in the run's menu.
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{prefect_ui.url}/v2/runs/flow-run/{paused.flow_run_id}")
            expect(page.get_by_text(f"access-{request_id}").first).to_be_visible()
            expect(page.get_by_text("Paused", exact=True).first).to_be_visible()
            page.get_by_role("button", name="Open menu").click()
            page.get_by_role("menuitem", name="Resume").click()
            dialog = page.get_by_role("dialog")
            assert_form(page, dialog, "v2", seen=(request_line, instructions, mail_line, warning))

            # Answer as an operator would; the flow, polling every second, resumes with it.
            dialog.get_by_label("Operator", exact=True).fill(OPERATOR)
            dialog.get_by_label("Note (Optional)").fill("LINK answered by e-mail.")
            dialog.get_by_label("Evidence (Optional)").fill("saksmappe/link-svar.pdf")
            dialog.get_by_role("button", name="Select Outcome").click()
            page.get_by_role("option", name="found", exact=True).click()
            dialog.get_by_label("Records (Optional)").fill("2")
            dialog.get_by_role("button", name="Resume").click()
            expect(dialog).to_be_hidden()

            try:
                code = paused.flow.wait(timeout=FINISH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the flow did not finish after the answer:\n{paused.flow_log.read_text()}")
            assert code == 0, paused.flow_log.read_text()
            page.reload()
            expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
            _assert_no_personal_data("the completed run's page", page.inner_text("body"))
        finally:
            browser.close()

    report = Path(paused.flow_out.read_text().strip())
    assert report.name.endswith(".pdf.enc")  # stored encrypted
    assert report.is_file()
    assert len(paused.stack.mailbox.to(LINK)) == 1  # the processor was asked before the form was shown
    ledger = Ledger(paused.settings)
    try:
        with ledger.session() as session:
            request = repo.get_request(session, request_id)
            assert request.status is RequestStatus.COMPLETED
            (row,) = request.systems
            assert (row.system, row.status, row.operator) == (SYSTEM, SystemStatus.MANUAL, OPERATOR)
            assert row.counts == {"manual": 2}
            assert row.operator_note == "LINK answered by e-mail. (file: saksmappe/link-svar.pdf)"
    finally:
        ledger.close()
