"""The demo catalog: loads once, a second load changes nothing, and its data are complete."""

from __future__ import annotations

import tomllib

import pytest
import sqlalchemy as sa
from flask import Flask

from shop.catalog.demo import DATA_DIR, build_monograph, load_demo_catalog
from shop.catalog.models import SECTION_KEYS, Monograph, Package, Product, Strength
from shop.extensions import db
from tests.catalog.seed_runs import run_hash, stored_hashes, word_runs


def row_counts() -> dict[str, int]:
    return {
        table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }


def test_loading_twice_changes_nothing(app_ctx: Flask) -> None:
    before = row_counts()
    report = load_demo_catalog()
    assert (report.monographs_added, report.products_added) == (0, 0)
    assert row_counts() == before


def test_loading_keeps_an_admins_edit(app_ctx: Flask) -> None:
    package = db.session.scalars(
        sa.select(Package).join(Strength).where(Strength.slug == "50-mg", Package.units == 30)
    ).one()
    package.price_cents = 19999
    db.session.commit()
    load_demo_catalog()
    db.session.refresh(package)
    assert package.price_cents == 19999


def test_seed_prices_are_stored_exactly(app_ctx: Flask) -> None:
    prices = db.session.execute(
        sa.select(Package.units, Package.price_cents, Package.currency)
        .join(Strength)
        .join(Product)
        .where(Product.slug == "naltrexone", Strength.slug == "50-mg")
        .order_by(Package.units)
    ).all()
    assert [tuple(p) for p in prices] == [(30, 21424, "USD"), (60, 40546, "USD"), (90, 59568, "USD")]


def test_demo_catalog_has_what_the_shop_needs(app_ctx: Flask) -> None:
    products = {p.slug: p for p in db.session.scalars(sa.select(Product))}
    assert {"naltrexone", "acamprosate", "disulfiram", "thiamine"} <= set(products)
    naltrexone = products["naltrexone"]
    assert [(s.label, s.dosage_form) for s in naltrexone.strengths] == [
        ("50 mg", "film-coated tablet"),
        ("1.5 mg", "compounded capsule"),
        ("3 mg", "compounded capsule"),
        ("4.5 mg", "compounded capsule"),
    ]
    assert all(len(s.packages) >= 2 for p in products.values() for s in p.strengths)
    assert all(products[s].prescription_only for s in ("naltrexone", "acamprosate", "disulfiram"))
    assert not products["thiamine"].prescription_only
    assert not any(p.controlled_substance for p in products.values())
    assert all(p.monograph is not None for p in products.values())


@pytest.mark.parametrize("path", sorted((DATA_DIR / "monographs").glob("*.toml")), ids=lambda p: p.stem)
def test_monograph_files_are_complete(path) -> None:
    data = tomllib.loads(path.read_text())
    monograph = build_monograph(data)  # validates section order, severities and evidence levels
    assert tuple(s.key for s in monograph.sections) == SECTION_KEYS
    assert all(s.body_markdown.strip() for s in monograph.sections)
    assert any(u.approved for u in monograph.uses)
    assert monograph.dosing and monograph.faq
    assert monograph.contraindications and monograph.interactions
    for row in monograph.dosing:
        if row.min_daily_mg is not None and row.max_daily_mg is not None:
            assert row.min_daily_mg <= row.max_daily_mg


def test_naltrexone_low_dose_uses_are_marked_off_label(app_ctx: Flask) -> None:
    monograph = db.session.scalars(sa.select(Monograph).where(Monograph.slug == "naltrexone")).one()
    off_label = [u for u in monograph.uses if not u.approved]
    assert off_label, "low-dose uses must be listed as off-label"
    assert all(u.evidence in ("limited", "very limited") for u in off_label)
    assert all(row.off_label for row in monograph.dosing if "1.5" in row.dose or "4.5" in row.dose)
    opioid = [e for e in monograph.contraindications if "opioid" in e.match_list]
    assert opioid and opioid[0].severity == "severe"


def test_monographs_do_not_copy_the_seed_page(app_ctx: Flask) -> None:
    """Our own words: no monograph or product text has a run of 8 words in a row from the page we
    replace. Compared by the hashes in seed_page_runs.txt, so nothing outside the repository is read."""
    seed = stored_hashes()
    assert len(seed) > 2000  # the whole page's runs, not an empty or truncated file
    texts = [p.short_description for p in db.session.scalars(sa.select(Product))]
    for monograph in db.session.scalars(sa.select(Monograph)):
        texts += [monograph.summary, *(s.body_markdown for s in monograph.sections),
                  *(f.question + " " + f.answer_markdown for f in monograph.faq)]
    copied = sorted(" ".join(run) for text in texts for run in word_runs(text) if run_hash(run) in seed)
    assert copied == []
