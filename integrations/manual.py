"""Systems without an API: a person looks, acts and records the answer.

Some places that hold personal data cannot be searched by a program: a paper archive, a
vendor's portal, or a processor such as LINK Mobility that offers no data-subject API and
must be asked by e-mail. Every step on such a system raises :class:`NeedsOperator`; the
flow then pauses with a form in the Prefect UI where a named operator records what they
found or did. When ``processor_contact`` is set, the pipeline first e-mails the processor's
privacy contact with the request, so the operator records the processor's answer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from integrations.base import ErasureOutcome, Export, LookupResult, Subject
from integrations.errors import NeedsOperator

__all__ = ["ManualConfig", "ManualSystem", "from_config"]


class ManualConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: str = Field(min_length=1)  # where and how to look; shown to the operator, no personal data
    processor_contact: str | None = None  # e-mail of a processor's privacy contact, asked on our behalf


class ManualSystem:
    """A system an operator handles by hand; every step asks for them."""

    kind = "manual"

    def __init__(self, name: str, *, instructions: str, processor_contact: str | None = None) -> None:
        self.name = name
        self.instructions = instructions
        self.processor_contact = processor_contact

    def check(self) -> None:
        """Nothing to connect to."""

    def lookup(self, subject: Subject) -> LookupResult:
        raise self._ask("an operator must search this system")

    def export(self, subject: Subject) -> Export:
        raise self._ask("an operator must export from this system")

    def erase(self, subject: Subject) -> ErasureOutcome:
        raise self._ask("an operator must erase in this system")

    def close(self) -> None:
        """Nothing to release."""

    def _ask(self, message: str) -> NeedsOperator:
        return NeedsOperator(
            message,
            system=self.name,
            instructions=self.instructions,
            processor_contact=self.processor_contact,
        )


def from_config(name: str, config: ManualConfig) -> ManualSystem:
    return ManualSystem(name, instructions=config.instructions, processor_contact=config.processor_contact)
