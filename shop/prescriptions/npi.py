"""National Provider Identifier check: 10 digits whose last is a Luhn check digit computed over
"80840" followed by the first nine digits (the NPI's card-issuer prefix)."""

from __future__ import annotations


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def npi_valid(npi: str) -> bool:
    return len(npi) == 10 and npi.isascii() and npi.isdigit() and luhn_valid("80840" + npi)
