"""Catalog, search, product and monograph pages through the Flask client."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.catalog.models import Product, Strength
from shop.extensions import db


def text_of(html: str) -> str:
    """Visible text, whitespace collapsed: what a reader (or a screen reader) gets."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def package_rows(html: str) -> list[str]:
    table = html[html.index('<table class="package-table table-cards"') : html.index("</table>")]
    body = table[table.index("<tbody>") :]
    # Visible text only: the screen-reader suffixes of the buttons are checked elsewhere.
    body = re.sub(r'<span class="visually-hidden"> \(.*?\)</span>', "", body)
    return [text_of(row) for row in re.findall(r"<tr\b.*?</tr>", body, re.DOTALL)]


def test_home_lists_active_products_with_lowest_per_pill_price(client: FlaskClient) -> None:
    page = text_of(client.get("/").get_data(as_text=True))
    for name in ("Naltrexone", "Acamprosate", "Disulfiram", "Thiamine (vitamin B1)"):
        assert name in page
    # Per strength, lowest to highest per pill: the 1.5 mg capsule's $1.10 is not the 50 mg tablet's.
    assert "1.5 mg compounded capsule: $1.10 to $1.30 per pill" in page
    assert "100 mg tablet: $0.08 to $0.09 per pill" in page  # thiamine: $19.99 / 250 and $8.99 / 100
    assert "No prescription needed" in page and "Prescription required" in page


def test_a_search_for_revia_prices_the_50_mg_tablets_it_is(client: FlaskClient) -> None:
    """ReVia is naltrexone 50 mg tablets: the card must not offer the low-dose capsule's $1.10 as
    their price."""
    page = text_of(client.get("/products", query_string={"q": "ReVia"}).get_data(as_text=True))
    assert "50 mg film-coated tablet: $6.62 to $7.14 per pill" in page
    assert "4.5 mg compounded capsule: $1.32 to $1.50 per pill" in page
    assert "from $1.10 per pill" not in page


def test_inactive_product_is_not_listed_and_its_page_is_404(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        db.session.execute(sa.update(Product).where(Product.slug == "disulfiram").values(active=False))
        db.session.commit()
    assert "Disulfiram" not in text_of(client.get("/products").get_data(as_text=True))
    assert client.get("/products/disulfiram").status_code == 404
    assert "Disulfiram" not in text_of(client.get("/products?q=antabuse").get_data(as_text=True))


@pytest.mark.parametrize(
    "query",
    ["ReVia", "revia", "LDN", "low dose naltrexone", "Low-Dose Naltrexone", "naltrexone", "NALTREX",
     "naltrexone hydrochloride", "depade"],
)
def test_search_finds_naltrexone_by_any_of_its_names(client: FlaskClient, query: str) -> None:
    response = client.get("/products", query_string={"q": query})
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert "1 medicine found" in page
    assert 'href="/products/naltrexone"' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "slug"),
    [("Campral", "acamprosate"), ("antabuse", "disulfiram"), ("vitamin b1", "thiamine")],
)
def test_search_by_brand_or_synonym(client: FlaskClient, query: str, slug: str) -> None:
    html = client.get("/products", query_string={"q": query}).get_data(as_text=True)
    assert f'href="/products/{slug}"' in html


@pytest.mark.parametrize("query", ["aspirin", "%", "_", "%%", "' OR 1=1 --", "naltrexone 500"])
def test_search_miss_says_so_and_suggests_browsing(client: FlaskClient, query: str) -> None:
    response = client.get("/products", query_string={"q": query})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "No medicine matches" in text_of(html)
    assert "browse all medicines" in text_of(html)
    assert 'class="product-card"' not in html


def test_search_query_is_escaped_in_the_page(client: FlaskClient) -> None:
    html = client.get("/products", query_string={"q": "<script>alert(1)</script>"}).get_data(
        as_text=True
    )
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_naltrexone_page_shows_the_seed_table(client: FlaskClient) -> None:
    response = client.get("/products/naltrexone")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = text_of(html)
    assert "Generic name: naltrexone hydrochloride" in page
    assert "Brand names: ReVia, Depade" in page
    assert "Prescription required" in page
    assert "valid prescription" in page
    assert package_rows(html) == [
        "30 film-coated tablets $7.14 $214.24 — — In stock Add to cart",
        "60 film-coated tablets $6.76 $405.46 was $428.48 5% In stock Add to cart",
        "90 film-coated tablets $6.62 Best per pill $595.68 was $642.72 7% In stock Add to cart",
    ]
    # The list price is struck through only where there is a saving.
    assert html.count("<s>") == 2
    # Each package has its own add-to-cart form posting only the package id.
    assert html.count('action="/cart/add"') == 3
    assert "Add to cart (90 film-coated tablets)" in page  # the button's name says which package
    assert "checkout needs an approved prescription" in page
    assert 'href="/monographs/naltrexone"' in html


@pytest.mark.parametrize(
    ("strength", "rows"),
    [
        (
            "1-5-mg",
            [
                "30 compounded capsules $1.30 $39.00 — — In stock Add to cart",
                "60 compounded capsules $1.20 $72.00 was $78.00 7% In stock Add to cart",
                "90 compounded capsules $1.10 Best per pill $99.00 was $117.00 15% In stock Add to cart",
            ],
        ),
        (
            "3-mg",  # 150 capsules on hand: 5 packs of 30, 2 of 60, 1 of 90
            [
                "30 compounded capsules $1.40 $42.00 — — Only 5 left Add to cart",
                "60 compounded capsules $1.30 $78.00 was $84.00 7% Only 2 left Add to cart",
                "90 compounded capsules $1.20 Best per pill $108.00 was $126.00 14% Only 1 left Add to cart",
            ],
        ),
        (
            "4-5-mg",
            [
                "30 compounded capsules $1.50 $45.00 — — In stock Add to cart",
                "90 compounded capsules $1.32 Best per pill $118.80 was $135.00 12% In stock Add to cart",
            ],
        ),
    ],
)
def test_each_strength_has_its_own_linkable_table(
    client: FlaskClient, strength: str, rows: list[str]
) -> None:
    html = client.get(f"/products/naltrexone?strength={strength}").get_data(as_text=True)
    assert package_rows(html) == rows
    selected = re.search(r'<a href="([^"]+)" aria-current="true"', html)
    assert selected and selected.group(1) == f"/products/naltrexone?strength={strength}"


def test_strength_selector_links_every_strength(client: FlaskClient) -> None:
    html = client.get("/products/naltrexone").get_data(as_text=True)
    for slug in ("50-mg", "1-5-mg", "3-mg", "4-5-mg"):
        assert f'href="/products/naltrexone?strength={slug}"' in html


def test_out_of_stock_strength(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Strength).where(Strength.slug == "500-mg").values(stock_on_hand=0)
        )
        db.session.commit()
    rows = package_rows(client.get("/products/disulfiram?strength=500-mg").get_data(as_text=True))
    assert all("Out of stock" in row for row in rows)


def test_over_the_counter_product_says_no_prescription_needed(client: FlaskClient) -> None:
    page = text_of(client.get("/products/thiamine").get_data(as_text=True))
    assert "No prescription needed" in page
    assert "Prescription required" not in page


@pytest.mark.parametrize(
    "url",
    ["/products/unknown", "/products/naltrexone?strength=7-mg", "/monographs/unknown",
     "/products/NALTREXONE"],
)
def test_unknown_things_are_404_in_the_shop_layout(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert "Page not found" in text_of(response.get_data(as_text=True))
    assert "browse our medicines" in text_of(response.get_data(as_text=True))


def test_monograph_page_has_sections_toc_review_date_and_back_links(client: FlaskClient) -> None:
    response = client.get("/monographs/naltrexone")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = text_of(html)
    for key in ("overview", "mechanism", "approved_uses", "off_label_uses", "dosing",
                "contraindications", "interactions", "side_effects", "evidence", "comparison",
                "faq"):
        assert f'id="{key}"' in html
        assert f'href="#{key}"' in html
    assert "Last reviewed" in page
    assert 'datetime="2026-11-20"' in html
    assert 'href="/products/naltrexone"' in html
    # Off-label uses are marked as such, with their strength of evidence.
    off_label = html[html.index('id="off_label_uses"') : html.index('id="dosing"')]
    assert "Off-label" in off_label and "Fibromyalgia" in off_label
    assert re.search(r"(Limited|Very limited)", off_label)
    # Structured safety entries: the opioid contraindication is severe.
    contraindications = html[html.index('id="contraindication-table"') :]
    assert re.search(r"opioid.*?badge-severe", contraindications, re.IGNORECASE | re.DOTALL)


@pytest.mark.parametrize("slug", ["naltrexone", "acamprosate", "disulfiram", "thiamine"])
def test_every_product_links_to_its_monograph_and_back(client: FlaskClient, slug: str) -> None:
    product_html = client.get(f"/products/{slug}").get_data(as_text=True)
    link = re.search(r'href="(/monographs/[^"]+)"', product_html)
    assert link, f"{slug} has no monograph link"
    monograph = client.get(link.group(1))
    assert monograph.status_code == 200
    assert f'href="/products/{slug}"' in monograph.get_data(as_text=True)


def test_monograph_markdown_is_sanitized(app: Flask, client: FlaskClient) -> None:
    from shop.catalog.models import MonographSection

    with app.app_context():
        section = db.session.scalars(
            sa.select(MonographSection).where(MonographSection.key == "overview")
        ).first()
        section.body_markdown = (
            '<script>alert("x")</script>\n\n[click](javascript:alert(1))\n\n'
            '<img src=x onerror=alert(1)>\n\n**bold**'
        )
        slug = section.monograph.slug
        db.session.commit()
    html = client.get(f"/monographs/{slug}").get_data(as_text=True)
    overview = html.split('id="overview"')[1].split("</section>")[0]
    assert "<script>alert" not in overview
    assert 'href="javascript:' not in overview
    assert "<img" not in overview
    assert "<strong>bold</strong>" in overview


def test_monograph_list(client: FlaskClient) -> None:
    html = client.get("/monographs").get_data(as_text=True)
    for slug in ("naltrexone", "acamprosate", "disulfiram", "thiamine"):
        assert f'href="/monographs/{slug}"' in html


@pytest.mark.parametrize("url", ["/", "/products", "/products/naltrexone", "/monographs/naltrexone",
                                 "/about", "/privacy", "/terms", "/does-not-exist"])
def test_every_page_shows_the_pharmacy_details(app: Flask, client: FlaskClient, url: str) -> None:
    page = text_of(client.get(url).get_data(as_text=True))
    for key in ("PHARMACY_NAME", "PHARMACY_PHONE", "PHARMACY_LICENCE", "PHARMACIST_IN_CHARGE"):
        assert app.config[key] in page
    assert "120 Harbor Street" in page
    for link in ("About and licensing", "Notice of privacy practices", "Terms"):
        assert link in page
