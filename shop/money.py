"""Exact money arithmetic on integer minor units (cents). No floats anywhere.

Rules (README, "Pricing rules"): per-unit price = package price / units, shown rounded half-up to
the cent; the list price of a package = its units x the exact per-unit price of the smallest package
of its strength, rounded half-up to the cent; saving % = 1 - price / list price, shown as a whole
percent rounded down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from fractions import Fraction

from shop.numbers import parse_decimal

CURRENCY_SYMBOLS = {"USD": "$"}
MAX_PRICE_CENTS = 10_000_000  # $100,000.00: a sanity ceiling for any single package


class InvalidPrice(ValueError):
    """A price that a person typed is not a valid amount."""


def round_half_up(value: Fraction) -> int:
    """Round a non-negative or negative fraction to the nearest integer, halves away from zero."""
    if value < 0:
        return -round_half_up(-value)
    return int((value * 2 + 1) // 2)


def per_unit_exact(price_cents: int, units: int) -> Fraction:
    if units <= 0:
        raise ValueError("a package has at least one unit")
    return Fraction(price_cents, units)


def per_unit_cents(price_cents: int, units: int) -> int:
    """The per-unit price as shown: rounded half-up to the cent."""
    return round_half_up(per_unit_exact(price_cents, units))


def list_price_cents(units: int, reference_price_cents: int, reference_units: int) -> int:
    """What `units` would cost at the reference (smallest) package's exact per-unit price."""
    return round_half_up(per_unit_exact(reference_price_cents, reference_units) * units)


def saving_percent(price_cents: int, list_cents: int) -> int:
    """Whole percent saved against the list price, rounded down; 0 when there is no saving."""
    if list_cents <= 0 or price_cents >= list_cents:
        return 0
    return int(Fraction(list_cents - price_cents, list_cents) * 100)


def best_per_unit_index(packages: Sequence[tuple[int, int]]) -> int | None:
    """Index of the package (units, price_cents) with the lowest exact per-unit price.

    A tie goes to the larger package. None when there are fewer than two packages, because "best"
    means nothing without a comparison.
    """
    if len(packages) < 2:
        return None
    return min(
        range(len(packages)),
        key=lambda i: (per_unit_exact(packages[i][1], packages[i][0]), -packages[i][0]),
    )


@dataclass(frozen=True)
class PriceLine:
    units: int
    price_cents: int
    per_unit_cents: int
    list_cents: int
    saving_percent: int
    best_per_unit: bool

    @property
    def has_saving(self) -> bool:
        return self.saving_percent > 0


def price_table(packages: Sequence[tuple[int, int]]) -> list[PriceLine]:
    """The package table of one strength: (units, price_cents) pairs in, one PriceLine each out,
    in the same order. The smallest package is the reference for list prices."""
    if not packages:
        return []
    ref_units, ref_price = min(packages)
    best = best_per_unit_index(packages)
    lines = []
    for i, (units, price) in enumerate(packages):
        list_cents = list_price_cents(units, ref_price, ref_units)
        lines.append(
            PriceLine(
                units=units,
                price_cents=price,
                per_unit_cents=per_unit_cents(price, units),
                list_cents=list_cents,
                saving_percent=saving_percent(price, list_cents),
                best_per_unit=i == best,
            )
        )
    return lines


def format_cents(cents: int, currency: str = "USD") -> str:
    """"$1,234.56"; other currencies as "EUR 1,234.56"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    amount = f"{whole:,}.{frac:02d}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{currency} {amount}"


def parse_price(text: str) -> int:
    """Parse a typed price such as "1,234.5" or "$405.46" into cents.

    Refuses negatives, zero, more than two decimals and amounts above MAX_PRICE_CENTS.
    """
    cleaned = str(text).strip().replace(",", "").removeprefix("$").strip()
    # Only the plain-decimal form: Decimal() alone would read "٣" as 3, and take "NaN" or
    # "1e999999" (which overflows the context once multiplied into cents).
    amount = parse_decimal(cleaned)
    if amount is None:
        raise InvalidPrice(f"{text!r} is not an amount of money")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidPrice("a price has at most two decimals")
    cents = int((amount * 100).to_integral_value(rounding=ROUND_HALF_UP))
    if cents <= 0:
        raise InvalidPrice("a price must be more than zero")
    if cents > MAX_PRICE_CENTS:
        raise InvalidPrice(f"a price must be at most {format_cents(MAX_PRICE_CENTS)}")
    return cents
