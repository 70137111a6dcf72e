"""Admin catalog and monograph editing through the pages: what the shop, the cart and the pharmacist's
safety check see afterwards, refusals per field, deactivation instead of deletion, and who may do it."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, ProfileEntry, User
from shop.audit import AuditEvent
from shop.cart import services as cart
from shop.cart.models import CartLine
from shop.catalog.models import Monograph, MonographSection, Package, Product, SafetyEntry, Strength
from shop.catalog.price_models import PriceChange
from shop.extensions import db
from shop.orders import services as orders
from tests.conftest import csrf_token, sign_in

BASE = "/admin/catalog"


def text_of(page: str) -> str:
    """Visible text, entities decoded, whitespace collapsed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))).strip()


def flashes(page: str) -> str:
    found = re.search(r'<div class="flashes".*?</div>', page, re.DOTALL)
    return text_of(found.group(0)) if found else ""


def field_error(page: str, field_id: str) -> str:
    """The error shown beside a field (the _forms.html macro ties it to the field by id)."""
    found = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.DOTALL)
    return text_of(found.group(1)) if found else ""


def version_in(page: str, name: str = "version") -> str:
    """The version a form on the page was read at (its hidden field)."""
    found = re.search(rf'name="{re.escape(name)}" type="hidden" value="([^"]*)"', page)
    assert found, f"no {name} field"
    return found.group(1)


def removal_version(page: str, action: str) -> dict[str, str]:
    """The version field of the remove button posting to `action`, as the browser sends it."""
    found = re.search(rf'<form method="post" action="{re.escape(action)}".*?name="version" value="([^"]*)"',
                      page, re.DOTALL)
    assert found, f"no remove button for {action}"
    return {"version": found.group(1)}


class Admin:
    """An admin's browser: posts carry the CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token = csrf_token(client, f"{BASE}/products/new")

    def get(self, url: str) -> str:
        response = self.client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response.get_data(as_text=True)

    def post(self, url: str, data: dict[str, str] | None = None, follow: bool = False):
        return self.client.post(url, data={**(data or {}), "csrf_token": self.token},
                                follow_redirects=follow)


@pytest.fixture
def admin(signed_in: Callable[[str], FlaskClient]) -> Admin:
    return Admin(signed_in("admin"))


def second_admin(app: Flask, make_user: Callable[..., int], email: str = "admin2@example.com") -> Admin:
    """Another admin's browser, signed in with the second factor."""
    make_user(email, role="admin")
    client = app.test_client()
    assert sign_in(client, app, email).status_code == 302
    return Admin(client)


def product_id(app: Flask, slug: str) -> int:
    with app.app_context():
        return db.session.scalars(sa.select(Product.id).where(Product.slug == slug)).one()


def strength_id(app: Flask, product_slug: str, slug: str) -> int:
    with app.app_context():
        return db.session.scalars(sa.select(Strength.id).join(Product).where(
            Product.slug == product_slug, Strength.slug == slug)).one()


def monograph_id(app: Flask, slug: str) -> int:
    with app.app_context():
        return db.session.scalars(sa.select(Monograph.id).where(Monograph.slug == slug)).one()


def audit_actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


def counts(app: Flask) -> tuple[int, ...]:
    """Rows of everything an admin edit could touch, to show that a refusal saved nothing."""
    with app.app_context():
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                     for model in (Product, Strength, Package, SafetyEntry, AuditEvent, PriceChange))


NEW_PRODUCT = {"name": "Topiramate", "slug": "", "generic_name": "topiramate",
               "short_description": "Anticonvulsant also used off-label in alcohol use disorder.",
               "monograph_id": "", "prescription_only": "y"}
NEW_STRENGTH = {"label": "25 mg", "slug": "", "amount": "25", "unit": "mg", "dosage_form": "tablet",
                "position": "", "units": "60", "price": "18.50"}


def create_product(app: Flask, admin: Admin, **changes: str) -> int:
    response = admin.post(f"{BASE}/products/new", {**NEW_PRODUCT, **changes})
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


# Products, strengths, names -------------------------------------------------------------------------


def test_a_new_product_with_a_strength_and_names_is_sold_and_found_by_them(
    app: Flask, admin: Admin, client: FlaskClient
) -> None:
    pid = create_product(app, admin)
    with app.app_context():
        product = db.session.get(Product, pid)
        assert (product.slug, product.active, product.prescription_only) == ("topiramate", False, True)
    assert client.get("/products/topiramate").status_code == 404  # hidden until activated

    refused = admin.post(f"{BASE}/products/{pid}/activate", follow=True).get_data(as_text=True)
    assert "has no active strength with a package yet" in flashes(refused)

    assert admin.post(f"{BASE}/products/{pid}/strengths/new", NEW_STRENGTH).status_code == 302
    for kind, name in (("brand", "Topamax"), ("synonym", "TPM")):
        added = admin.post(f"{BASE}/products/{pid}/aliases", {"alias-kind": kind, "alias-name": name})
        assert added.status_code == 302
    assert admin.post(f"{BASE}/products/{pid}/activate").status_code == 302

    page = text_of(client.get("/products/topiramate").get_data(as_text=True))
    assert "25 mg" in page and "$18.50" in page and "$0.31" in page  # 18.50 / 60 a tablet
    assert "Brand names: Topamax" in page and "Also known as: TPM" in page
    for query in ("Topamax", "tpm", "topiramate"):
        found = client.get("/products", query_string={"q": query}).get_data(as_text=True)
        assert 'href="/products/topiramate"' in found, query
    with app.app_context():
        strength = db.session.scalars(sa.select(Strength).where(Strength.product_id == pid)).one()
        assert (strength.slug, strength.amount, [(p.units, p.price_cents) for p in strength.packages]) == (
            "25-mg", 25, [(60, 1850)])
        history = db.session.scalars(sa.select(PriceChange)).all()
        assert [(c.kind, c.new_price_cents, c.applied_at is not None) for c in history] == [("added", 1850, True)]
    assert audit_actions(app)[-5:] == ["catalog.product_created", "catalog.strength_created",
                                       "catalog.alias_added", "catalog.alias_added",
                                       "catalog.product_activated"]


def test_strength_rows_link_to_the_price_editor_and_the_stock_page(app: Flask, admin: Admin) -> None:
    sid = strength_id(app, "naltrexone", "50-mg")
    page = admin.get(f"{BASE}/products/{product_id(app, 'naltrexone')}")
    assert f'href="/admin/prices/strengths/{sid}"' in page
    assert f'href="/admin/stock/strengths/{sid}"' in page


def test_editing_flags_changes_what_the_shop_and_the_cart_allow(
    app: Flask, admin: Admin, client: FlaskClient, users: dict[str, int]
) -> None:
    pid = product_id(app, "thiamine")
    form = admin.get(f"{BASE}/products/{pid}")
    assert "can never be bought" in form  # the controlled-substance flag says what it does
    fields = {"name": "Thiamine (vitamin B1)", "slug": "thiamine", "generic_name": "thiamine hydrochloride",
              "short_description": "Vitamin B1.", "monograph_id": str(monograph_id(app, "thiamine")),
              "version": version_in(form)}

    assert admin.post(f"{BASE}/products/{pid}", {**fields, "prescription_only": "y"}).status_code == 302
    fields["version"] = version_in(admin.get(f"{BASE}/products/{pid}"))
    assert "Prescription required" in client.get("/products/thiamine").get_data(as_text=True)

    before = counts(app)
    refused = admin.post(f"{BASE}/products/{pid}", {**fields, "controlled_substance": "y"})
    assert refused.status_code == 422
    assert "always prescription-only" in field_error(refused.get_data(as_text=True), "prescription_only")
    assert counts(app) == before

    both = {**fields, "prescription_only": "y", "controlled_substance": "y"}
    assert admin.post(f"{BASE}/products/{pid}", both).status_code == 302
    assert version_in(admin.get(f"{BASE}/products/{pid}")) == "3"  # each save moves the version on
    with app.app_context():
        product = db.session.get(Product, pid)
        assert product.controlled_substance and product.prescription_only
        package = db.session.scalars(sa.select(Package).join(Strength).where(Strength.product_id == pid)).first()
        with pytest.raises(cart.CartError, match="controlled substances"):
            cart.add(db.session.get(User, users["customer"]), package.id)
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "catalog.product_updated").order_by(AuditEvent.id.desc())).first()
        assert event.details_dict["changes"] == {"controlled_substance": [False, True]}


def test_deactivating_hides_a_product_and_carts_holding_it_cannot_check_out(
    app: Flask, admin: Admin, client: FlaskClient, signed_in: Callable[[str], FlaskClient],
    users: dict[str, int]
) -> None:
    pid = product_id(app, "thiamine")
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        package = db.session.scalars(sa.select(Package).join(Strength).where(Strength.product_id == pid)).first()
        cart.add(customer, package.id)
        db.session.add(Address(user_id=customer.id, recipient="C", line1="1 Main St", city="Portland",
                               state="OR", postal_code="97204", is_default=True))
        db.session.commit()
    shopper = signed_in("customer")
    assert shopper.get("/checkout").status_code == 200  # an OTC item in stock: checkout is open

    assert admin.post(f"{BASE}/products/{pid}/deactivate").status_code == 302

    assert "Thiamine" not in text_of(client.get("/products").get_data(as_text=True))
    assert client.get("/products/thiamine").status_code == 404
    assert "Thiamine" not in text_of(client.get("/products?q=aneurine").get_data(as_text=True))
    assert "This item is no longer available" in shopper.get("/cart").get_data(as_text=True)
    response = shopper.get("/checkout")
    assert response.status_code == 302 and response.headers["Location"].endswith("/cart")
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        address = db.session.scalars(sa.select(Address.id)).one()
        with pytest.raises(orders.CheckoutError, match="no longer available"):
            orders.place_order(customer, address, "after-deactivation")

    listing = admin.get(f"{BASE}?q=aneurine")  # the admin still finds it, marked inactive
    assert "Thiamine (vitamin B1)" in listing and "Inactive" in listing
    assert admin.post(f"{BASE}/products/{pid}/activate").status_code == 302
    assert client.get("/products/thiamine").status_code == 200


def test_deactivating_a_strength_hides_only_that_strength(app: Flask, admin: Admin, client: FlaskClient) -> None:
    sid = strength_id(app, "naltrexone", "3-mg")
    assert admin.post(f"{BASE}/strengths/{sid}/deactivate").status_code == 302
    assert client.get("/products/naltrexone?strength=3-mg").status_code == 404
    assert client.get("/products/naltrexone?strength=50-mg").status_code == 200
    assert admin.post(f"{BASE}/strengths/{sid}/activate").status_code == 302
    assert client.get("/products/naltrexone?strength=3-mg").status_code == 200
    assert audit_actions(app)[-2:] == ["catalog.strength_deactivated", "catalog.strength_activated"]

    only = strength_id(app, "thiamine", "100-mg")
    page = admin.post(f"{BASE}/strengths/{only}/deactivate", follow=True).get_data(as_text=True)
    assert "Thiamine (vitamin B1) has no active strength left" in flashes(page)


def test_deleting_is_refused_while_an_order_refers_to_the_product(
    app: Flask, admin: Admin, users: dict[str, int]
) -> None:
    pid, sid = product_id(app, "thiamine"), strength_id(app, "thiamine", "100-mg")
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        address = Address(user_id=customer.id, recipient="C", line1="1 Main St", city="Portland",
                          state="OR", postal_code="97204", is_default=True)
        db.session.add(address)
        db.session.commit()
        package = db.session.scalars(sa.select(Package).where(Package.strength_id == sid)).first()
        cart.add(customer, package.id)
        orders.place_order(customer, address.id, "delete-test")

    page = admin.post(f"{BASE}/products/{pid}/delete", follow=True).get_data(as_text=True)
    message = flashes(page)
    assert "cannot be deleted: 1 order line and the stock ledger refer to it" in message
    assert "Deactivate it instead" in message
    page = admin.post(f"{BASE}/strengths/{sid}/delete", follow=True).get_data(as_text=True)
    assert "100 mg cannot be deleted: 1 order line" in flashes(page)
    with app.app_context():
        assert db.session.get(Product, pid) is not None and db.session.get(Strength, sid) is not None
    assert "catalog.product_deleted" not in audit_actions(app)


def test_a_product_can_be_deleted_only_once_nothing_refers_to_it(
    app: Flask, admin: Admin, users: dict[str, int]
) -> None:
    pid = create_product(app, admin)
    admin.post(f"{BASE}/products/{pid}/strengths/new", NEW_STRENGTH)
    admin.post(f"{BASE}/products/{pid}/activate")
    with app.app_context():
        package = db.session.scalars(sa.select(Package).join(Strength).where(Strength.product_id == pid)).one()
        package_id = package.id
        # Straight into the cart: the new product has no stock, and the shop refuses to add it.
        db.session.add(CartLine(user_id=users["customer"], package_id=package_id, quantity=1,
                                price_cents_when_added=package.price_cents))
        db.session.commit()

    refused = admin.post(f"{BASE}/products/{pid}/delete", follow=True).get_data(as_text=True)
    assert "cannot be deleted: 1 cart line refer to it" in flashes(refused)

    with app.app_context():
        cart.set_quantity(db.session.get(User, users["customer"]), package_id, 0)
    response = admin.post(f"{BASE}/products/{pid}/delete")
    assert response.status_code == 302 and response.headers["Location"].endswith(BASE)
    with app.app_context():
        assert db.session.get(Product, pid) is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PriceChange)) == 0
    assert audit_actions(app)[-1] == "catalog.product_deleted"


def test_a_product_a_prescription_names_cannot_be_deleted(app: Flask, admin: Admin, users: dict[str, int]) -> None:
    from shop.prescriptions.models import Prescription

    pid = create_product(app, admin)
    with app.app_context():
        db.session.add(Prescription(customer_id=users["customer"], requested_product_id=pid))
        db.session.commit()
    page = admin.post(f"{BASE}/products/{pid}/delete", follow=True).get_data(as_text=True)
    assert "Topiramate cannot be deleted: 1 prescription refer to it" in flashes(page)
    with app.app_context():
        assert db.session.get(Product, pid) is not None


def test_a_used_strength_keeps_its_amount_but_may_be_relabelled(app: Flask, admin: Admin) -> None:
    sid = strength_id(app, "naltrexone", "50-mg")
    fields = {"label": "50 mg", "slug": "50-mg", "amount": "100", "unit": "mg",
              "dosage_form": "film-coated tablet", "position": "0"}
    refused = admin.post(f"{BASE}/strengths/{sid}", fields)
    assert refused.status_code == 422
    assert "cannot change: add a new strength" in field_error(refused.get_data(as_text=True), "amount")
    relabelled = admin.post(f"{BASE}/strengths/{sid}", {**fields, "amount": "50", "label": "50 mg tablet"})
    assert relabelled.status_code == 302
    with app.app_context():
        strength = db.session.get(Strength, sid)
        assert (strength.label, strength.amount) == ("50 mg tablet", 50)


def test_the_second_admin_saving_a_product_is_told_and_keeps_their_text(
    app: Flask, admin: Admin, make_user: Callable[..., int], client: FlaskClient
) -> None:
    other = second_admin(app, make_user)
    pid = product_id(app, "naltrexone")
    url = f"{BASE}/products/{pid}"
    first_page, second_page = admin.get(url), other.get(url)
    stored = {"name": "Naltrexone", "slug": "naltrexone", "generic_name": "naltrexone hydrochloride",
              "short_description": "Same text.", "monograph_id": str(monograph_id(app, "naltrexone")),
              "prescription_only": "y"}
    with app.app_context():
        db.session.execute(sa.update(Product).where(Product.id == pid).values(short_description="Same text."))
        db.session.commit()

    first = {**stored, "name": "Naltrexone HCl", "version": version_in(first_page)}
    assert admin.post(url, first).status_code == 302

    second = {**stored, "generic_name": "naltrexone (as hydrochloride)", "version": version_in(second_page)}
    response = other.post(url, second)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "This product was changed by someone else meanwhile" in flashes(page)
    assert field_error(page, "name") == "Changed by someone else meanwhile; saved now: “Naltrexone HCl”."
    assert 'value="naltrexone (as hydrochloride)"' in page and 'value="Naltrexone"' in page  # as they typed
    with app.app_context():
        product = db.session.get(Product, pid)
        assert (product.name, product.generic_name, product.version) == (
            "Naltrexone HCl", "naltrexone hydrochloride", 2)
    assert audit_actions(app).count("catalog.product_updated") == 1

    # Saving the 409 page again (it carries version 2 now) puts their values in, knowingly.
    assert version_in(page) == "2"
    assert other.post(url, {**second, "version": "2"}).status_code == 302
    with app.app_context():
        product = db.session.get(Product, pid)
        assert (product.name, product.generic_name, product.version) == (
            "Naltrexone", "naltrexone (as hydrochloride)", 3)
    assert "Naltrexone" in text_of(client.get("/products/naltrexone").get_data(as_text=True))


def test_a_stale_save_that_changes_nothing_is_accepted(app: Flask, admin: Admin) -> None:
    """Nothing of anyone's would be lost, so an unchanged form saves (nothing) whatever its version."""
    pid = product_id(app, "thiamine")
    page = admin.get(f"{BASE}/products/{pid}")
    with app.app_context():
        product = db.session.get(Product, pid)
        data = {"name": product.name, "slug": product.slug, "generic_name": product.generic_name,
                "short_description": product.short_description, "monograph_id": str(product.monograph_id),
                "version": "0"}
        data.update({"prescription_only": "y"} if product.prescription_only else {})
    assert version_in(page) == "1"
    assert admin.post(f"{BASE}/products/{pid}", data).status_code == 302
    assert admin.post(f"{BASE}/products/{pid}", {**data, "version": "x"}).status_code == 400
    with app.app_context():
        assert db.session.get(Product, pid).version == 1
    assert "catalog.product_updated" not in audit_actions(app)


# Refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "data", "field_id", "message"),
    [
        ("/products/new", {**NEW_PRODUCT, "name": " "}, "name", "Enter the product's name."),
        ("/products/new", {**NEW_PRODUCT, "slug": "naltrexone"}, "slug", "Naltrexone already uses the slug"),
        ("/products/new", {**NEW_PRODUCT, "slug": "Low Dose!"}, "slug", "lower-case letters, digits"),
        ("/products/{product}/strengths/new", {**NEW_STRENGTH, "slug": "50-mg"}, "slug",
         "already has a strength with the slug '50-mg'"),
        ("/products/{product}/strengths/new", {**NEW_STRENGTH, "price": "12.345"}, "price",
         "at most two decimals"),
        ("/products/{product}/strengths/new", {**NEW_STRENGTH, "amount": "0"}, "amount",
         "more than zero"),
        ("/products/{product}/aliases", {"alias-kind": "brand", "alias-name": "  revia "}, "alias-name",
         "already has the name 'ReVia'"),
        ("/monographs/{monograph}/review", {"review-last_reviewed": "2026-02-30", "review-reviewed_by": "A",
                                             "review-version": "1"},
         "review-last_reviewed", "Not a valid date value."),
        ("/monographs/{monograph}/review", {"review-last_reviewed": "2999-01-01", "review-reviewed_by": "A",
                                             "review-version": "1"},
         "review-last_reviewed", "cannot be in the future"),
        ("/monographs/{monograph}/review", {"review-last_reviewed": "2025-01-01", "review-reviewed_by": "",
                                             "review-version": "1"},
         "review-reviewed_by", "Enter the reviewer's name"),
        ("/monographs/{monograph}/safety", {"safety-kind": "interaction", "safety-term": "Alcohol",
                                             "safety-severity": "minor", "safety-match_terms": "alcohol\n!!"},
         "safety-match_terms", "Each line needs letters or digits"),
        ("/monographs/{monograph}/safety", {"safety-kind": "interaction", "safety-term": "",
                                             "safety-severity": "minor", "safety-match_terms": "alcohol"},
         "safety-term", "Enter what it is"),
        ("/monographs/{monograph}/sections/overview", {"s-overview-title": "Overview", "s-overview-body": "",
                                                        "s-overview-version": "1"},
         "s-overview-body", "Enter the section's text."),
        ("/products/{product}", {**NEW_PRODUCT, "slug": "acamprosate", "version": "1"}, "slug",
         "Acamprosate already uses the slug"),
    ],
)
def test_bad_input_is_refused_beside_its_field_and_saves_nothing(
    app: Flask, admin: Admin, url: str, data: dict[str, str], field_id: str, message: str
) -> None:
    url = BASE + url.format(product=product_id(app, "naltrexone"), monograph=monograph_id(app, "naltrexone"))
    with app.app_context():
        monograph = db.session.get(Monograph, monograph_id(app, "naltrexone"))
        saved = (monograph.last_reviewed, monograph.reviewed_by, monograph.sections[0].body_markdown)
    before = counts(app)
    response = admin.post(url, data)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in field_error(page, field_id)
    assert 'class="error-summary"' in page and f'href="#{field_id}"' in page
    assert counts(app) == before
    with app.app_context():
        monograph = db.session.get(Monograph, monograph_id(app, "naltrexone"))
        assert (monograph.last_reviewed, monograph.reviewed_by, monograph.sections[0].body_markdown) == saved


# Monographs ----------------------------------------------------------------------------------------


def test_section_preview_is_sanitised_and_saving_changes_the_public_page(
    app: Flask, admin: Admin, client: FlaskClient
) -> None:
    mid = monograph_id(app, "naltrexone")
    url = f"{BASE}/monographs/{mid}/sections/mechanism"
    body = "<script>alert('x')</script>\n\n**Blocks opioid receptors** [more](javascript:alert(1))"
    form = {"s-mechanism-title": "How it works", "s-mechanism-body": body, "s-mechanism-version": "1"}

    response = admin.post(url, {**form, "action": "preview"})
    assert response.status_code == 200
    preview = response.get_data(as_text=True).split('id="preview-mechanism"')[1].split("</section>")[0]
    assert "<strong>Blocks opioid receptors</strong>" in preview
    assert "&lt;script&gt;" in preview  # shown as text, never run
    assert "<script" not in preview and 'href="javascript:' not in preview
    public = client.get("/monographs/naltrexone").get_data(as_text=True)
    assert "Blocks opioid receptors" not in public  # a preview saves nothing

    saved = admin.post(url, {**form, "action": "save"})
    assert saved.status_code == 302 and saved.headers["Location"].endswith("#section-mechanism")
    public = client.get("/monographs/naltrexone").get_data(as_text=True)
    section = public.split('id="mechanism"')[1].split("</section>")[0]
    assert "How it works" in section and "<strong>Blocks opioid receptors</strong>" in section
    assert "<script" not in section and 'href="javascript:' not in section
    with app.app_context():
        stored = db.session.scalars(sa.select(MonographSection).where(
            MonographSection.monograph_id == mid, MonographSection.key == "mechanism")).one()
        assert stored.body_markdown == body
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "monograph.section_updated")).one()
        assert event.details_dict["key"] == "mechanism" and event.object_id == str(mid)


def test_review_date_and_reviewer_show_on_the_public_page(app: Flask, admin: Admin, client: FlaskClient) -> None:
    mid = monograph_id(app, "acamprosate")
    response = admin.post(f"{BASE}/monographs/{mid}/review",
                          {"review-last_reviewed": "2025-03-04", "review-reviewed_by": "Dana Reyes, PharmD",
                           "review-version": "1"})
    assert response.status_code == 302
    page = text_of(client.get("/monographs/acamprosate").get_data(as_text=True))
    assert "Last reviewed 4 March 2025 by Dana Reyes, PharmD." in page
    assert audit_actions(app)[-1] == "monograph.reviewed"


def test_a_new_interaction_warns_the_pharmacist_reviewing_a_prescription(
    app: Flask, admin: Admin, client: FlaskClient, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    from shop.prescriptions import services as prescriptions
    from shop.prescriptions.storage import store_for_app
    from tests.prescriptions.conftest import png_bytes

    with app.app_context():
        db.session.add(ProfileEntry(user_id=users["customer"], kind="medication", text="Sertraline 50 mg daily"))
        db.session.commit()
        rx = prescriptions.upload(db.session.get(User, users["customer"]),
                                  [prescriptions.Upload(png_bytes(), "rx.png")],
                                  requested_product_id=product_id(app, "naltrexone"), note="",
                                  store=store_for_app(app)).id
    pharmacist = signed_in("pharmacist")
    pharmacist.post(f"/pharmacy/prescriptions/{rx}/claim",
                    data={"csrf_token": csrf_token(pharmacist, "/pharmacy/queue")})
    review_url = f"/pharmacy/prescriptions/{rx}"
    assert "Interaction: SSRI antidepressants" not in pharmacist.get(review_url).get_data(as_text=True)

    mid = monograph_id(app, "naltrexone")
    added = admin.post(f"{BASE}/monographs/{mid}/safety", {
        "safety-kind": "interaction", "safety-term": "SSRI antidepressants", "safety-severity": "moderate",
        "safety-match_terms": "Sertraline\n fluoxetine \nsertraline", "safety-note": "Demo note."})
    assert added.status_code == 302

    warnings = text_of(pharmacist.get(review_url).get_data(as_text=True))
    assert "Moderate Interaction: SSRI antidepressants Patient lists Sertraline 50 mg daily. Demo note." in warnings
    public = client.get("/monographs/naltrexone").get_data(as_text=True)
    assert "SSRI antidepressants" in public.split('id="interaction-table"')[1].split("</table>")[0]
    with app.app_context():
        entry = db.session.scalars(sa.select(SafetyEntry).where(SafetyEntry.term == "SSRI antidepressants")).one()
        assert entry.match_list == ["sertraline", "fluoxetine"]
        entry_id = entry.id

    edit_url = f"{BASE}/monographs/{mid}/safety/{entry_id}"
    form = admin.get(edit_url)
    assert "SSRI antidepressants" in form
    entry_form = {"kind": "interaction", "term": "SSRI antidepressants", "severity": "severe", "note": ""}
    changed = admin.post(edit_url, {**entry_form, "match_terms": "fluoxetine", "version": version_in(form)})
    assert changed.status_code == 302
    assert "SSRI antidepressants" not in pharmacist.get(review_url).get_data(as_text=True)  # no longer matches
    assert admin.post(edit_url, {**entry_form, "match_terms": "sertraline",
                                 "version": version_in(admin.get(edit_url))}).status_code == 302
    assert "Severe Interaction: SSRI antidepressants" in text_of(pharmacist.get(review_url).get_data(as_text=True))

    editor = admin.get(f"{BASE}/monographs/{mid}")
    assert admin.post(f"{edit_url}/remove", removal_version(editor, f"{edit_url}/remove")).status_code == 302
    assert "SSRI antidepressants" not in pharmacist.get(review_url).get_data(as_text=True)
    assert [a for a in audit_actions(app) if a.startswith("monograph.")] == [
        "monograph.safety_added", "monograph.safety_updated", "monograph.safety_updated",
        "monograph.safety_removed"]


def test_admin_pages_list_everything_including_inactive_products(app: Flask, admin: Admin) -> None:
    with app.app_context():
        db.session.execute(sa.update(Product).where(Product.slug == "disulfiram").values(active=False))
        db.session.commit()
    listing = text_of(admin.get(BASE))
    for name in ("Naltrexone", "Acamprosate", "Disulfiram", "Thiamine (vitamin B1)"):
        assert name in listing
    found = text_of(admin.get(f"{BASE}?q=antabuse"))
    assert "1 product matching “antabuse”" in found and "Disulfiram" in found and "Naltrexone" not in found
    monographs = admin.get(f"{BASE}/monographs")
    edit_page = admin.get(f"{BASE}/monographs/{monograph_id(app, 'naltrexone')}")
    assert f'href="{BASE}/monographs/{monograph_id(app, "naltrexone")}"' in monographs
    assert edit_page.count('name="action" value="preview"') == 11  # one preview per section


# Access ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["customer", "pharmacist"])
def test_customers_and_pharmacists_get_403(app: Flask, signed_in: Callable[[str], FlaskClient], role: str) -> None:
    client = signed_in(role)
    pid, mid = product_id(app, "naltrexone"), monograph_id(app, "naltrexone")
    token = csrf_token(client, "/account")
    assert client.get(BASE).status_code == 403
    assert client.get(f"{BASE}/monographs/{mid}").status_code == 403
    assert client.post(f"{BASE}/products/{pid}/deactivate", data={"csrf_token": token}).status_code == 403
    assert client.post(f"{BASE}/monographs/{mid}/review", data={
        "csrf_token": token, "review-last_reviewed": "2025-01-01", "review-reviewed_by": role}).status_code == 403
    with app.app_context():
        assert db.session.get(Product, pid).active
        assert db.session.get(Monograph, mid).reviewed_by != role
    assert not [a for a in audit_actions(app) if a.startswith(("catalog.", "monograph."))]


def test_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    response = client.get(BASE)
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]
