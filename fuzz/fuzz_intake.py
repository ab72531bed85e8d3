"""atheris target: the intake parser must parse or refuse (IntakeError) any body, never crash.

Run: ``make fuzz`` (installs atheris, runs each target for a bounded number of inputs).
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from handlers.parse import FORM, JSON, Event
    from handlers.refusals import IntakeError


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    content_type = FORM if provider.ConsumeBool() else JSON
    with contextlib.suppress(IntakeError):
        Event.from_request(content_type, provider.ConsumeBytes(provider.remaining_bytes()))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
