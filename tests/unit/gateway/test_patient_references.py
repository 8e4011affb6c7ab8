"""The gateway checks patient references as the data service does, before calling it."""

import pytest
from pydantic import ValidationError

from data_service.patients import schemas as data
from gateway.patients import schemas as gateway

REFUSED = ["../x", "H-1/2", "H\\1", "H..1", ".H", "H\n1", "H\x1b1", "Jane Doe", "-H"]
# What a spreadsheet would run as a formula from a cell of the label export.
FORMULAS = [
    '=HYPERLINK("http://evil.example","x")',
    "=1+1",
    "+1+1",
    "@SUM(1)",
    "-2+3",
    "\t1",
    "\r1",
]
REFUSED += FORMULAS
ACCEPTED = ["H-2026-00042", "H_77", "H-2026.001", "X9"]


@pytest.mark.parametrize("reference", REFUSED + ACCEPTED)
def test_the_gateway_and_the_data_service_take_the_same_references(reference):
    def message(model: type) -> str | None:
        try:
            model(external_ref=reference)
        except ValidationError as error:
            return error.errors()[0]["msg"]
        return None

    assert message(gateway.PatientCreate) == message(data.PatientCreate)
    assert message(gateway.PatientUpdate) == message(data.PatientUpdate)
    assert (message(data.PatientCreate) is None) == (reference in ACCEPTED)
    assert gateway.PATIENT_REFERENCE == data.REFERENCE
