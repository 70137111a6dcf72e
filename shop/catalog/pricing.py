"""The package table a customer sees: money.price_table plus stock state per package."""

from __future__ import annotations

from dataclasses import dataclass

from shop import money
from shop.catalog.models import Package, Strength

IN_STOCK, LOW_STOCK, OUT_OF_STOCK = "in_stock", "low_stock", "out_of_stock"


@dataclass(frozen=True)
class PackageRow:
    package: Package
    price: money.PriceLine
    packs_available: int
    stock_state: str

    @property
    def currency(self) -> str:
        return self.package.currency


def stock_state(packs_available: int, low_stock_packs: int) -> str:
    if packs_available <= 0:
        return OUT_OF_STOCK
    if packs_available <= low_stock_packs:
        return LOW_STOCK
    return IN_STOCK


def package_rows(strength: Strength, low_stock_packs: int) -> list[PackageRow]:
    from shop.inventory.services import available_units

    packages = strength.active_packages
    lines = money.price_table([(p.units, p.price_cents) for p in packages])
    # Only units in unexpired lots count, even before the worker writes expired lots off.
    available = available_units(strength)
    rows = []
    for package, line in zip(packages, lines, strict=True):
        packs = available // package.units
        rows.append(PackageRow(package, line, packs, stock_state(packs, low_stock_packs)))
    return rows

