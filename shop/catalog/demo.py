"""Load the demo catalog and monographs. Idempotent: what already exists (by slug) is left alone,
so a second run changes nothing and an admin's edits survive a re-run."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shop import money
from shop.catalog.models import (
    EVIDENCE_LEVELS,
    SECTION_KEYS,
    SEVERITIES,
    DosingRow,
    FaqEntry,
    Monograph,
    MonographSection,
    MonographUse,
    Package,
    Product,
    ProductAlias,
    SafetyEntry,
    Strength,
    search_key,
)
from shop.database import begin_write
from shop.extensions import db
from shop.inventory.services import add_lot

DATA_DIR = Path(__file__).parent / "demo_data"


@dataclass
class LoadReport:
    monographs_added: int = 0
    products_added: int = 0

    def __str__(self) -> str:
        return f"{self.monographs_added} monographs and {self.products_added} products added"


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _optional_decimal(value: str | None) -> Decimal | None:
    return None if value in (None, "") else Decimal(value)


def build_monograph(data: dict[str, Any]) -> Monograph:
    keys = [s["key"] for s in data["sections"]]
    if tuple(keys) != SECTION_KEYS:
        raise ValueError(f"monograph {data['slug']}: sections must be {SECTION_KEYS}, not {keys}")
    monograph = Monograph(
        slug=data["slug"],
        title=data["title"],
        drug_name=data["drug_name"],
        drug_class=data["drug_class"],
        summary=data["summary"].strip(),
        last_reviewed=dt.date.fromisoformat(data["last_reviewed"]),
        reviewed_by=data["reviewed_by"],
    )
    monograph.sections = [
        MonographSection(key=s["key"], title=s["title"], body_markdown=s["body"].strip(), position=i)
        for i, s in enumerate(data["sections"])
    ]
    for i, use in enumerate(data.get("uses", [])):
        if use["evidence"] not in EVIDENCE_LEVELS:
            raise ValueError(f"{data['slug']}: evidence {use['evidence']!r} unknown")
        monograph.uses.append(
            MonographUse(
                name=use["name"],
                approved=use["approved"],
                evidence=use["evidence"],
                note=use.get("note", ""),
                position=i,
            )
        )
    for i, row in enumerate(data.get("dosing", [])):
        monograph.dosing.append(
            DosingRow(
                indication=row["indication"],
                dose=row["dose"],
                frequency=row["frequency"],
                timing=row["timing"],
                duration=row["duration"],
                off_label=row.get("off_label", False),
                min_daily_mg=_optional_decimal(row.get("min_mg")),
                max_daily_mg=_optional_decimal(row.get("max_mg")),
                position=i,
            )
        )
    position = 0
    for kind, entries in (
        ("contraindication", data.get("contraindications", [])),
        ("interaction", data.get("interactions", [])),
    ):
        for entry in entries:
            if entry["severity"] not in SEVERITIES:
                raise ValueError(f"{data['slug']}: severity {entry['severity']!r} unknown")
            monograph.safety_entries.append(
                SafetyEntry(
                    kind=kind,
                    term=entry["term"],
                    severity=entry["severity"],
                    note=entry.get("note", ""),
                    match_terms="\n".join(t.strip().lower() for t in entry.get("match", [])),
                    position=position,
                )
            )
            position += 1
    monograph.faq = [
        FaqEntry(question=f["question"], answer_markdown=f["answer"].strip(), position=i)
        for i, f in enumerate(data.get("faq", []))
    ]
    return monograph


def build_product(data: dict[str, Any], monographs: dict[str, Monograph]) -> Product:
    monograph_slug = data.get("monograph")
    if monograph_slug and monograph_slug not in monographs:
        raise ValueError(f"product {data['slug']}: no monograph {monograph_slug!r}")
    product = Product(
        slug=data["slug"],
        name=data["name"],
        generic_name=data["generic_name"],
        short_description=data.get("short_description", ""),
        prescription_only=data["prescription_only"],
        controlled_substance=data.get("controlled_substance", False),
        monograph=monographs[monograph_slug] if monograph_slug else None,
    )
    names = [("brand", n) for n in data.get("brand_names", [])]
    names += [("synonym", n) for n in data.get("synonyms", [])]
    product.aliases = [
        ProductAlias(kind=kind, name=name, search_key=search_key(name), position=i)
        for i, (kind, name) in enumerate(names)
    ]
    for i, s in enumerate(data["strengths"]):
        strength = Strength(
            slug=s["slug"],
            label=s["label"],
            amount=Decimal(s["amount"]),
            unit=s["unit"],
            dosage_form=s["dosage_form"],
            position=i,
        )
        strength.packages = [
            Package(units=units, price_cents=money.parse_price(price)) for units, price in s["packages"]
        ]
        product.strengths.append(strength)
    return product


def _receive_demo_stock(product: Product, data: dict[str, Any]) -> None:
    # Each demo strength's stock arrives as one lot that expires in two years.
    expiry = dt.date.today().replace(day=1) + dt.timedelta(days=730)
    for strength, spec in zip(product.strengths, data["strengths"], strict=True):
        if spec.get("stock"):
            add_lot(strength, lot_number=f"DEMO-{product.slug}-{strength.slug}".upper(),
                    expiry_date=expiry, units=spec["stock"], supplier_reference="demo stock")


def load_demo_catalog(data_dir: Path = DATA_DIR) -> LoadReport:
    """Add the demo monographs and products that are missing, in one transaction."""
    begin_write()
    report = LoadReport()
    existing_monographs = {m.slug: m for m in db.session.scalars(sa.select(Monograph))}
    existing_products = set(db.session.scalars(sa.select(Product.slug)))
    try:
        for path in sorted((data_dir / "monographs").glob("*.toml")):
            data = _read(path)
            if data["slug"] not in existing_monographs:
                monograph = build_monograph(data)
                db.session.add(monograph)
                existing_monographs[monograph.slug] = monograph
                report.monographs_added += 1
        for data in _read(data_dir / "catalog.toml")["products"]:
            if data["slug"] not in existing_products:
                product = build_product(data, existing_monographs)
                db.session.add(product)
                db.session.flush()
                _receive_demo_stock(product, data)
                report.products_added += 1
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return report
