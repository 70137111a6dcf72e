"""Catalog models: Product -> Strength -> Package, and the Monograph a product links to."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.extensions import db

SEVERITIES = ("severe", "moderate", "minor")
EVIDENCE_LEVELS = ("strong", "moderate", "limited", "very limited")
SECTION_KEYS = (
    "overview",
    "mechanism",
    "pharmacokinetics",
    "approved_uses",
    "off_label_uses",
    "dosing",
    "contraindications",
    "interactions",
    "side_effects",
    "evidence",
    "comparison",
)


def search_key(text: str) -> str:
    """Lower-case, hyphens and punctuation as spaces, single spaces: "Low-dose" matches "low dose"."""
    cleaned = "".join(ch if ch.isalnum() else " " for ch in text.casefold())
    return " ".join(cleaned.split())


class Monograph(db.Model):
    __tablename__ = "monograph"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(80), unique=True)
    title: Mapped[str] = mapped_column(sa.String(120))
    drug_name: Mapped[str] = mapped_column(sa.String(120))
    drug_class: Mapped[str] = mapped_column(sa.String(120))
    summary: Mapped[str] = mapped_column(sa.Text)
    last_reviewed: Mapped[dt.date] = mapped_column(sa.Date)
    reviewed_by: Mapped[str] = mapped_column(sa.String(120))
    # Bumped by every save of the monograph's own fields (details, review): an editor saving over a
    # version it did not see is told someone else changed it instead of silently overwriting it.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    sections: Mapped[list[MonographSection]] = relationship(
        back_populates="monograph",
        order_by="MonographSection.position",
        cascade="all, delete-orphan",
    )
    uses: Mapped[list[MonographUse]] = relationship(
        order_by="MonographUse.position", cascade="all, delete-orphan"
    )
    dosing: Mapped[list[DosingRow]] = relationship(
        order_by="DosingRow.position", cascade="all, delete-orphan"
    )
    safety_entries: Mapped[list[SafetyEntry]] = relationship(
        order_by="SafetyEntry.position", cascade="all, delete-orphan"
    )
    faq: Mapped[list[FaqEntry]] = relationship(
        order_by="FaqEntry.position", cascade="all, delete-orphan"
    )
    products: Mapped[list[Product]] = relationship(
        back_populates="monograph", order_by="Product.name"
    )

    @property
    def shown_sections(self) -> list[MonographSection]:
        """Sections the public page shows: those with text or with a table (an unwritten section of a
        new monograph is left out rather than shown as a bare heading)."""
        tables = {
            "approved_uses": any(u.approved for u in self.uses),
            "off_label_uses": any(not u.approved for u in self.uses),
            "dosing": bool(self.dosing),
            "contraindications": bool(self.contraindications),
            "interactions": bool(self.interactions),
        }
        return [s for s in self.sections if s.body_markdown.strip() or tables.get(s.key)]

    @property
    def contraindications(self) -> list[SafetyEntry]:
        return [e for e in self.safety_entries if e.kind == "contraindication"]

    @property
    def interactions(self) -> list[SafetyEntry]:
        return [e for e in self.safety_entries if e.kind == "interaction"]


class MonographSection(db.Model):
    __tablename__ = "monograph_section"
    __table_args__ = (sa.UniqueConstraint("monograph_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    monograph_id: Mapped[int] = mapped_column(
        sa.ForeignKey("monograph.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(sa.String(40))
    title: Mapped[str] = mapped_column(sa.String(120))
    body_markdown: Mapped[str] = mapped_column(sa.Text)
    position: Mapped[int] = mapped_column(default=0)
    # Bumped by every save of the section (see Monograph.version).
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    monograph: Mapped[Monograph] = relationship(back_populates="sections")


class MonographUse(db.Model):
    """An approved or off-label use, with the strength of its evidence."""

    __tablename__ = "monograph_use"

    id: Mapped[int] = mapped_column(primary_key=True)
    monograph_id: Mapped[int] = mapped_column(
        sa.ForeignKey("monograph.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(160))
    approved: Mapped[bool]
    evidence: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    position: Mapped[int] = mapped_column(default=0)
    # Bumped by every save of the row (see Monograph.version); moving it changes only its position.
    version: Mapped[int] = mapped_column(default=1, server_default="1")


class DosingRow(db.Model):
    __tablename__ = "dosing_row"

    id: Mapped[int] = mapped_column(primary_key=True)
    monograph_id: Mapped[int] = mapped_column(
        sa.ForeignKey("monograph.id", ondelete="CASCADE"), index=True
    )
    indication: Mapped[str] = mapped_column(sa.String(160))
    dose: Mapped[str] = mapped_column(sa.String(80))
    frequency: Mapped[str] = mapped_column(sa.String(80))
    timing: Mapped[str] = mapped_column(sa.String(160))
    duration: Mapped[str] = mapped_column(sa.String(160))
    off_label: Mapped[bool] = mapped_column(default=False)
    # Usual total daily dose range; the pharmacist's review flags a prescription outside it.
    min_daily_mg: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 3))
    max_daily_mg: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 3))
    position: Mapped[int] = mapped_column(default=0)
    # Bumped by every save of the row (see MonographUse.version).
    version: Mapped[int] = mapped_column(default=1, server_default="1")


class SafetyEntry(db.Model):
    """A contraindication or interaction: a term, a severity, a note, and the words that trigger it
    when found in a patient's medications or conditions."""

    __tablename__ = "safety_entry"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('contraindication', 'interaction')", name="kind"),
        sa.CheckConstraint("severity IN ('severe', 'moderate', 'minor')", name="severity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    monograph_id: Mapped[int] = mapped_column(
        sa.ForeignKey("monograph.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(20))
    term: Mapped[str] = mapped_column(sa.String(160))
    severity: Mapped[str] = mapped_column(sa.String(10))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    # Newline-separated lower-case match terms (portable across SQLite and PostgreSQL).
    match_terms: Mapped[str] = mapped_column(sa.Text, default="")
    position: Mapped[int] = mapped_column(default=0)
    # Bumped by every save of the entry (see MonographUse.version).
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    @property
    def match_list(self) -> list[str]:
        return [t for t in self.match_terms.splitlines() if t]


class FaqEntry(db.Model):
    __tablename__ = "faq_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    monograph_id: Mapped[int] = mapped_column(
        sa.ForeignKey("monograph.id", ondelete="CASCADE"), index=True
    )
    question: Mapped[str] = mapped_column(sa.String(300))
    answer_markdown: Mapped[str] = mapped_column(sa.Text)
    position: Mapped[int] = mapped_column(default=0)
    # Bumped by every save of the question (see MonographUse.version).
    version: Mapped[int] = mapped_column(default=1, server_default="1")


class Product(db.Model):
    __tablename__ = "product"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(80), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    generic_name: Mapped[str] = mapped_column(sa.String(120))
    short_description: Mapped[str] = mapped_column(sa.Text, default="")
    prescription_only: Mapped[bool] = mapped_column(default=True)
    # This shop never sells controlled substances online; the flag keeps them out of any cart.
    controlled_substance: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True, index=True)
    monograph_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("monograph.id", ondelete="SET NULL"), index=True
    )
    # Bumped by every save of the product's details form (see Monograph.version).
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    monograph: Mapped[Monograph | None] = relationship(back_populates="products")
    strengths: Mapped[list[Strength]] = relationship(
        back_populates="product",
        order_by="Strength.position",
        cascade="all, delete-orphan",
    )
    aliases: Mapped[list[ProductAlias]] = relationship(
        back_populates="product",
        order_by="ProductAlias.position",
        cascade="all, delete-orphan",
    )

    @property
    def brand_names(self) -> list[str]:
        return [a.name for a in self.aliases if a.kind == "brand"]

    @property
    def synonyms(self) -> list[str]:
        return [a.name for a in self.aliases if a.kind == "synonym"]

    @property
    def active_strengths(self) -> list[Strength]:
        return [s for s in self.strengths if s.active]


class ProductAlias(db.Model):
    """A brand name or synonym a customer may search by ("ReVia", "LDN")."""

    __tablename__ = "product_alias"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('brand', 'synonym')", name="kind"),
        sa.UniqueConstraint("product_id", "search_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("product.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(10))
    name: Mapped[str] = mapped_column(sa.String(120))
    search_key: Mapped[str] = mapped_column(sa.String(120), index=True)
    position: Mapped[int] = mapped_column(default=0)

    product: Mapped[Product] = relationship(back_populates="aliases")


class Strength(db.Model):
    __tablename__ = "strength"
    __table_args__ = (
        sa.UniqueConstraint("product_id", "slug"),
        sa.CheckConstraint("stock_on_hand >= 0", name="stock_on_hand_not_negative"),
        sa.CheckConstraint("stock_allocated >= 0", name="stock_allocated_not_negative"),
        sa.CheckConstraint("stock_allocated <= stock_on_hand", name="allocated_within_on_hand"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("product.id", ondelete="CASCADE"), index=True
    )
    slug: Mapped[str] = mapped_column(sa.String(40))
    label: Mapped[str] = mapped_column(sa.String(40))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(10, 3))
    unit: Mapped[str] = mapped_column(sa.String(10))
    dosage_form: Mapped[str] = mapped_column(sa.String(80))
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    # Units (tablets, capsules) on the shelf, and those promised to unpaid or unshipped orders.
    stock_on_hand: Mapped[int] = mapped_column(default=0)
    stock_allocated: Mapped[int] = mapped_column(default=0)
    # Available units at or below this show on the admin low-stock page (None: the shop default).
    low_stock_units: Mapped[int | None]

    product: Mapped[Product] = relationship(back_populates="strengths")
    packages: Mapped[list[Package]] = relationship(
        back_populates="strength", order_by="Package.units", cascade="all, delete-orphan"
    )

    @property
    def stock_available(self) -> int:
        return self.stock_on_hand - self.stock_allocated

    @property
    def active_packages(self) -> list[Package]:
        return [p for p in self.packages if p.active]


class Package(db.Model):
    __tablename__ = "package"
    __table_args__ = (
        sa.UniqueConstraint("strength_id", "units"),
        sa.CheckConstraint("units > 0", name="units_positive"),
        sa.CheckConstraint("price_cents > 0", name="price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    strength_id: Mapped[int] = mapped_column(
        sa.ForeignKey("strength.id", ondelete="CASCADE"), index=True
    )
    units: Mapped[int]
    price_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(sa.String(3), default="USD")
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped by every price or state change: an editor saving over a version it did not see is
    # told the price changed meanwhile instead of silently overwriting it.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    strength: Mapped[Strength] = relationship(back_populates="packages")
