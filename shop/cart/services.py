"""The cart: in the database for signed-in customers, in the session for visitors (merged into the
account at sign-in). Prices and stock are always read from the database."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import current_app, session
from sqlalchemy.orm import joinedload

from shop import money
from shop.accounts.models import User
from shop.cart.gate import RETIRED_PACKAGE, Coverage, evaluate
from shop.cart.models import CartLine
from shop.catalog.models import Package, Product, Strength
from shop.catalog.wording import packs_of, plural, units_of
from shop.database import begin_write
from shop.extensions import db
from shop.inventory.services import available_by_strength, available_units
from shop.numbers import parse_id

SESSION_KEY = "cart"
MAX_PACKS_PER_LINE = 10


class CartError(ValueError):
    """A cart change that cannot be made; the message says why."""


@dataclass
class LineView:
    package: Package
    quantity: int
    price_when_added: int | None
    coverage: Coverage | None = None
    units_available: int = 0  # of the strength, in unexpired lots and not promised to orders

    @property
    def strength(self) -> Strength:
        return self.package.strength

    @property
    def product(self) -> Product:
        return self.package.strength.product

    @property
    def per_unit_cents(self) -> int:
        return money.per_unit_cents(self.package.price_cents, self.package.units)

    @property
    def total_cents(self) -> int:
        return self.package.price_cents * self.quantity

    @property
    def price_changed(self) -> bool:
        return self.price_when_added is not None and self.price_when_added != self.package.price_cents

    @property
    def packs_available(self) -> int:
        return self.units_available // self.package.units

    @property
    def stock_note(self) -> str:
        """What the cart page says when this line cannot be sent as it is ('' when it can)."""
        packs = self.packs_available
        if packs >= self.quantity:
            return ""
        then = (f"Choose {plural(packs, 'pack')} or fewer to check out." if packs
                else "Remove it to check out.")
        return stock_shortage(self.package, packs, self.units_available, then)


@dataclass
class CartView:
    lines: list[LineView] = field(default_factory=list)
    currency: str = "USD"
    shipping_cents: int = 0

    @property
    def subtotal_cents(self) -> int:
        return sum(line.total_cents for line in self.lines)

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents + self.shipping_cents

    @property
    def can_checkout(self) -> bool:
        return bool(self.lines) and all(
            line.coverage is not None and line.coverage.ok and line.packs_available >= line.quantity
            for line in self.lines)

    @property
    def count(self) -> int:
        return sum(line.quantity for line in self.lines)


def shipping_for(subtotal_cents: int) -> int:
    config = current_app.config
    if subtotal_cents == 0 or subtotal_cents >= config["FREE_SHIPPING_FROM_CENTS"]:
        return 0
    return config["SHIPPING_CENTS"]


def _packages(ids: list[int]) -> dict[int, Package]:
    if not ids:
        return {}
    # With each strength's packages: a sold-out line names the smaller packs in stock (stock_shortage).
    strength = joinedload(Package.strength)
    stmt = sa.select(Package).where(Package.id.in_(ids)).options(
        strength.joinedload(Strength.product), strength.selectinload(Strength.packages))
    return {p.id: p for p in db.session.scalars(stmt)}


def _session_items() -> dict[str, int]:
    raw = session.get(SESSION_KEY, {})
    return {k: v for k, v in raw.items() if parse_id(k) is not None and isinstance(v, int) and v > 0} \
        if isinstance(raw, dict) else {}


def view(user: User | None) -> CartView:
    if user is not None:
        rows = db.session.scalars(sa.select(CartLine).where(CartLine.user_id == user.id)
                                  .order_by(CartLine.id)).all()
        items = [(row.package_id, row.quantity, row.price_cents_when_added) for row in rows]
    else:
        items = [(int(k), v, None) for k, v in _session_items().items()]
    packages = _packages([i[0] for i in items])
    lines = [LineView(packages[pid], qty, added) for pid, qty, added in items if pid in packages]
    coverage = evaluate(user, [(line.package, line.quantity) for line in lines])
    available = available_by_strength({line.strength.id: line.strength for line in lines}.values())
    for line in lines:
        line.units_available = available[line.strength.id]
        # A package size retired after it went into the cart can no longer be bought (this line only).
        line.coverage = coverage[line.package.strength_id] if line.package.active else RETIRED_PACKAGE
    cart = CartView(lines, current_app.config["CURRENCY"])
    cart.shipping_cents = shipping_for(cart.subtotal_cents)
    return cart


def stock_shortage(package: Package, packs_available: int, units_available: int | None = None,
                   then: str = "") -> str:
    """The one wording of "not enough of this package": how many packs are left, or sold out and
    what the customer can do about it. `then` (e.g. "Your cart is unchanged.") follows the first
    sentence; `units_available` (of the strength) lets a sold-out message name smaller packs in stock."""
    name = f"{package.strength.product.name} {package.strength.label}"
    form = package.strength.dosage_form
    if packs_available > 0:
        verb = "is" if packs_available == 1 else "are"
        return " ".join(filter(None, [
            f"Only {packs_of(packs_available, package.units, form)} of {name} {verb} left.", then]))
    sentences = [f"{name} in packs of {units_of(package.units, form)} is sold out.", then]
    smaller = [p.units for p in package.strength.active_packages
               if units_available and p.units < package.units and p.units <= units_available]
    if smaller:
        sentences.append("Packs of " + " or ".join(units_of(u, form) for u in smaller)
                         + " are still in stock.")
    # The shop records no delivery dates, so it cannot say when more arrives: say how to find out.
    sentences.append("We do not know yet when more will arrive: please check back, or call us on "
                     f"{current_app.config['PHARMACY_PHONE']} to ask.")
    return " ".join(filter(None, sentences))


def _check_stock(package: Package, quantity: int, in_cart: int) -> None:
    """:raise CartError: fewer than `quantity` packs are left (the cart is not changed)."""
    units = available_units(package.strength)
    packs = units // package.units
    if quantity <= packs:
        return
    then = "Your cart is unchanged."
    if packs > 0 and in_cart:
        then = f"Your cart is unchanged: it has {plural(in_cart, 'pack')} of this already."
    raise CartError(stock_shortage(package, packs, units, then))


def _sellable_package(package_id: int) -> Package:
    package = _packages([package_id]).get(package_id)
    if package is None or not (
        package.active and package.strength.active and package.strength.product.active
    ):
        raise CartError("This package is not available.")
    if package.strength.product.controlled_substance:
        raise CartError("This shop does not sell controlled substances online.")
    return package


def add(user: User | None, package_id: int, quantity: int = 1) -> str:
    """Add packs of a package (or more of it) and say what was added.
    :raise CartError: nothing changes."""
    if not 1 <= quantity <= MAX_PACKS_PER_LINE:
        raise CartError(f"Choose between 1 and {MAX_PACKS_PER_LINE} packs.")
    package = _sellable_package(package_id)
    if user is None:
        items = _session_items()
        new = items.get(str(package_id), 0) + quantity
        if new > MAX_PACKS_PER_LINE:
            raise CartError(f"At most {MAX_PACKS_PER_LINE} packs of one package per order.")
        _check_stock(package, new, items.get(str(package_id), 0))
        items[str(package_id)] = new
        session[SESSION_KEY] = items
        return _added(package, quantity)
    begin_write()
    line = db.session.scalars(sa.select(CartLine).where(CartLine.user_id == user.id,
                                                        CartLine.package_id == package_id)).first()
    if line is not None and line.quantity + quantity > MAX_PACKS_PER_LINE:
        db.session.rollback()
        raise CartError(f"At most {MAX_PACKS_PER_LINE} packs of one package per order.")
    try:
        _check_stock(package, quantity + (line.quantity if line else 0), line.quantity if line else 0)
    except CartError:
        db.session.rollback()
        raise
    if line is None:
        db.session.add(CartLine(user_id=user.id, package_id=package_id, quantity=quantity,
                                price_cents_when_added=package.price_cents))
    else:
        line.quantity += quantity
    db.session.commit()
    return _added(package, quantity)


def _added(package: Package, quantity: int) -> str:
    # "Added 90 x Naltrexone" read as 90 packs: name the packs and what is in them.
    return (f"Added {packs_of(quantity, package.units, package.strength.dosage_form)} of "
            f"{package.strength.product.name} {package.strength.label} to your cart.")


def set_quantity(user: User | None, package_id: int, quantity: int) -> None:
    """Change a line's packs; 0 removes it. :raise CartError: nothing changes."""
    if not 0 <= quantity <= MAX_PACKS_PER_LINE:
        raise CartError(f"Choose between 0 and {MAX_PACKS_PER_LINE} packs.")
    if user is None:
        items = _session_items()
        if str(package_id) not in items:
            raise CartError("That item is not in your cart.")
        if quantity > items[str(package_id)]:
            _check_stock(_sellable_package(package_id), quantity, items[str(package_id)])
        if quantity:
            items[str(package_id)] = quantity
        else:
            items.pop(str(package_id))
        session[SESSION_KEY] = items
        return
    begin_write()
    line = db.session.scalars(sa.select(CartLine).where(CartLine.user_id == user.id,
                                                        CartLine.package_id == package_id)).first()
    if line is None:
        db.session.rollback()
        raise CartError("That item is not in your cart.")
    if quantity > line.quantity:  # fewer packs, or none, are always allowed
        try:
            _check_stock(_sellable_package(package_id), quantity, line.quantity)
        except CartError:
            db.session.rollback()
            raise
    if quantity:
        line.quantity = quantity
    else:
        db.session.delete(line)
    db.session.commit()


def merge_session_cart(user: User) -> None:
    """Move a visitor's cart into their account after sign-in (quantities add up, capped)."""
    items = _session_items()
    if not items:
        return
    begin_write()
    packages = _packages([int(k) for k in items])
    for key, quantity in items.items():
        package = packages.get(int(key))
        if package is None:
            continue
        line = db.session.scalars(sa.select(CartLine).where(CartLine.user_id == user.id,
                                                            CartLine.package_id == package.id)).first()
        if line is None:
            db.session.add(CartLine(user_id=user.id, package_id=package.id,
                                    quantity=min(quantity, MAX_PACKS_PER_LINE),
                                    price_cents_when_added=package.price_cents))
        else:
            line.quantity = min(line.quantity + quantity, MAX_PACKS_PER_LINE)
    db.session.commit()
    session.pop(SESSION_KEY, None)


def clear(user: User) -> None:
    """Empty the cart (the caller commits, as part of placing the order)."""
    db.session.execute(sa.delete(CartLine).where(CartLine.user_id == user.id))
