"""The demo's fictional people, seeded into every emulated system alike.

Kari Nordmann is the data subject of the demo; the others prove that requests touch only
her. All names, addresses and numbers are invented.
"""

from __future__ import annotations

from emulators.hubspot import SUBSCRIPTION_TYPES, HubSpotState
from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE, Person

__all__ = ["DEMO_SUBJECT", "seed_hubspot"]


def _contact(person: Person) -> dict[str, str]:
    first, _, last = person.name.partition(" ")
    return {
        "email": person.email.lower(),
        "firstname": first,
        "lastname": last,
        "phone": person.phone,
        "address": person.street_address,
        "zip": person.postal_code,
        "city": person.city,
        "company": "Fjordlys kunde",
    }


def _subscribe(state: HubSpotState, email: str) -> None:
    """The address is subscribed to the newsletter and has not opted in to product updates."""
    (newsletter, _, _), (updates, _, _) = SUBSCRIPTION_TYPES
    state.set_subscription(email, newsletter, "SUBSCRIBED")
    state.set_subscription(email, updates, "NOT_SUBSCRIBED")


def seed_hubspot(state: HubSpotState) -> None:
    """Kari with notes, e-mails and deals (enough to page), plus the other people; each subscribed."""
    for person in (DEMO_SUBJECT, *OTHER_PEOPLE):
        _subscribe(state, person.email)
    state.add_contact(
        _contact(DEMO_SUBJECT),
        notes=[
            {
                "hs_note_body": "Ringte om faktura 10023; ønsker e-postfaktura.",
                "hs_timestamp": "2025-04-02T10:15:00Z",
            },
            {
                "hs_note_body": "Møte på kontoret i Storgata: oppgradering til Pluss.",
                "hs_timestamp": "2025-06-11T13:00:00Z",
            },
            {
                "hs_note_body": "Spurte om å flytte data fra Tripletex.",
                "hs_timestamp": "2025-09-30T08:40:00Z",
            },
        ],
        emails=[
            {
                "hs_email_subject": "Velkommen til Fjordlys",
                "hs_email_direction": "EMAIL",
                "hs_email_text": "Hei Kari!",
            },
            {
                "hs_email_subject": "Din faktura for mars",
                "hs_email_direction": "EMAIL",
                "hs_email_text": "Vedlagt.",
            },
        ],
        deals=[{"dealname": "Fjordlys Pluss - Nordmann", "amount": "5988", "dealstage": "closedwon"}],
    )
    for person in OTHER_PEOPLE:
        state.add_contact(_contact(person), notes=[{"hs_note_body": f"Notat om {person.name}"}])
