"""Pricing arithmetic: the seed page's table exactly, and properties that hold for any prices."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shop import money

SEED = [(30, 21424), (60, 40546), (90, 59568)]


def test_seed_table_per_pill_prices() -> None:
    assert [money.per_unit_cents(price, units) for units, price in SEED] == [714, 676, 662]


def test_seed_table_list_prices_savings_and_best() -> None:
    lines = money.price_table(SEED)
    # The list price is units x the exact per-pill price of the 30 pack ($214.24 / 30).
    # The seed page prints $428.49 and $642.73, a cent above the exact $428.48 and $642.72.
    assert [line.list_cents for line in lines] == [21424, 42848, 64272]
    assert [line.saving_percent for line in lines] == [0, 5, 7]
    assert [line.best_per_unit for line in lines] == [False, False, True]
    assert [line.has_saving for line in lines] == [False, True, True]


def test_formatting() -> None:
    assert money.format_cents(21424) == "$214.24"
    assert money.format_cents(123456) == "$1,234.56"
    assert money.format_cents(5) == "$0.05"
    assert money.format_cents(0) == "$0.00"
    assert money.format_cents(-1999) == "-$19.99"
    assert money.format_cents(100000000) == "$1,000,000.00"
    assert money.format_cents(1050, "EUR") == "EUR 10.50"


@pytest.mark.parametrize(
    ("price", "units", "shown"),
    [(1, 2, 1), (3, 2, 2), (5, 2, 3), (1, 3, 0), (2, 3, 1), (21424, 30, 714), (99, 1, 99)],
)
def test_per_unit_rounds_half_up(price: int, units: int, shown: int) -> None:
    assert money.per_unit_cents(price, units) == shown


def test_saving_is_rounded_down_and_never_negative() -> None:
    assert money.saving_percent(9901, 10000) == 0  # 0.99% saved shows as 0
    assert money.saving_percent(9899, 10000) == 1
    assert money.saving_percent(12000, 10000) == 0  # dearer than list: no saving shown
    assert money.saving_percent(0, 0) == 0


def test_best_per_pill_needs_a_comparison_and_ties_go_to_the_larger_pack() -> None:
    assert money.best_per_unit_index([(30, 3000)]) is None
    assert money.best_per_unit_index([(30, 3000), (60, 6000)]) == 1
    assert money.best_per_unit_index([(90, 9900), (30, 2700)]) == 1


@pytest.mark.parametrize(
    ("text", "cents"),
    [("214.24", 21424), ("$1,234.5", 123450), (" 7 ", 700), ("0.01", 1)],
)
def test_parse_price_accepts_money(text: str, cents: int) -> None:
    assert money.parse_price(text) == cents


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not an amount"),
        ("abc", "not an amount"),
        ("1.234", "two decimals"),
        ("-5", "more than zero"),
        ("0", "more than zero"),
        ("NaN", "not an amount"),
        ("Infinity", "not an amount"),
        ("100000.01", "at most"),
    ],
)
def test_parse_price_refuses_bad_input(text: str, reason: str) -> None:
    with pytest.raises(money.InvalidPrice, match=reason):
        money.parse_price(text)


units = st.integers(min_value=1, max_value=1000)
prices = st.integers(min_value=1, max_value=money.MAX_PRICE_CENTS)


@given(price=prices, n=units)
def test_per_unit_is_the_nearest_cent(price: int, n: int) -> None:
    shown = money.per_unit_cents(price, n)
    exact = Fraction(price, n)
    assert abs(shown - exact) <= Fraction(1, 2)
    # Half-up: exactly half a cent goes up.
    if exact - int(exact) == Fraction(1, 2):
        assert shown == int(exact) + 1


@given(packages=st.lists(st.tuples(units, prices), min_size=1, max_size=6, unique_by=lambda p: p[0]))
def test_price_table_properties(packages: list[tuple[int, int]]) -> None:
    lines = money.price_table(packages)
    assert len(lines) == len(packages)
    smallest = min(packages)
    for (n, price), line in zip(packages, lines, strict=True):
        assert line.price_cents == price and line.units == n
        assert 0 <= line.saving_percent < 100
        if line.saving_percent:
            # The saving shown never overstates the real one.
            assert Fraction(line.saving_percent, 100) <= 1 - Fraction(price, line.list_cents)
        if n == smallest[0]:
            assert line.list_cents == price and line.saving_percent == 0
    best = [line for line in lines if line.best_per_unit]
    if len(packages) < 2:
        assert best == []
    else:
        assert len(best) == 1
        lowest = min(Fraction(p, n) for n, p in packages)
        assert Fraction(best[0].price_cents, best[0].units) == lowest


@given(cents=st.integers(min_value=-(10**12), max_value=10**12))
def test_format_then_parse_round_trips(cents: int) -> None:
    text = money.format_cents(cents)
    assert text.count(".") == 1 and len(text.split(".")[1]) == 2
    if 0 < cents <= money.MAX_PRICE_CENTS:
        assert money.parse_price(text) == cents
