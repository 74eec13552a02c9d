"""The mail outbox: queued once, delivered once, kept when the server is down."""

from __future__ import annotations

import threading

from dsar import outbox
from dsar.ledger import Ledger
from emulators.mailbox import Mailbox
from integrations.mail import Mail, Mailer, SmtpConfig


def mail(n: int) -> Mail:
    return Mail(to="privacy@processor.example", subject=f"case {n}", body="body", message_id=f"<m{n}@test>")


def test_queuing_twice_queues_once_and_concurrent_deliverers_send_each_mail_once(ledger: Ledger) -> None:
    for n in range(6):
        assert outbox.enqueue(ledger, request_id=None, kind="test", mail=mail(n))
        assert not outbox.enqueue(ledger, request_id=None, kind="test", mail=mail(n))
    with Mailbox() as box:
        box.delay_s = 0.05  # long enough for the two deliverers to overlap
        mailer = Mailer(SmtpConfig(host="127.0.0.1", port=box.port))
        threads = [threading.Thread(target=outbox.deliver, args=(ledger, mailer)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = sorted(str(m["Message-ID"]) for m in box.messages)
    assert ids == sorted(f"<m{n}@test>" for n in range(6))


def test_a_refusing_server_delays_mail_but_loses_none(ledger: Ledger) -> None:
    outbox.enqueue(ledger, request_id=None, kind="test", mail=mail(1))
    with Mailbox() as box:
        mailer = Mailer(SmtpConfig(host="127.0.0.1", port=box.port))
        box.refuse_next = 1
        assert outbox.deliver(ledger, mailer) == outbox.Delivery(sent=0, failed=1)
        assert outbox.deliver(ledger, mailer) == outbox.Delivery(sent=1, failed=0)
        assert outbox.deliver(ledger, mailer) == outbox.Delivery(sent=0, failed=0)
        assert len(box.messages) == 1
