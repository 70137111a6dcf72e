"""NPI check digits and the prescription state machine."""

from __future__ import annotations

import pytest

from shop.prescriptions.npi import npi_valid
from shop.prescriptions.services import TRANSITIONS, IllegalTransition, check_transition


@pytest.mark.parametrize("npi", ["1234567893", "1245319599", "1003000126"])
def test_valid_npis(npi: str) -> None:
    assert npi_valid(npi)


@pytest.mark.parametrize("npi", ["1234567890", "123456789", "12345678930", "abcdefghij", "", "１２３４５６７８９３",
                                 "1234567894", " 123456789"])
def test_invalid_npis(npi: str) -> None:
    assert not npi_valid(npi)


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [("uploaded", "approved"), ("uploaded", "rejected"), ("approved", "in_review"),
     ("approved", "rejected"), ("rejected", "approved"), ("rejected", "in_review"),
     ("approved", "uploaded"), ("uploaded", "uploaded")],
)
def test_illegal_transitions_are_refused(from_status: str, to_status: str) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(from_status, to_status)


def test_legal_transitions() -> None:
    for from_status, to_status in TRANSITIONS:
        check_transition(from_status, to_status)
    assert ("in_review", "approved") in TRANSITIONS and ("in_review", "rejected") in TRANSITIONS
