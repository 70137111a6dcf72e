"""Every form control on an admin page has an accessible name of its own.

A screen-reader user moving through a page's controls hears each one's accessible name; two controls
named alike ("Reason (optional)" twice, "Search" twice) cannot be told apart. The pages are every admin
(and staff) page of the access matrix that an admin can open, so a new page is checked as soon as it
has its row there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.test_access_matrix import MATRIX, objects  # noqa: F401 (objects is a fixture)

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CONTROLS = {"input", "select", "textarea", "button"}
UNNAMED_INPUTS = {"hidden"}  # not presented to anyone


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        """The text content (hidden text included: visually-hidden spans are part of the name)."""
        parts = [child if isinstance(child, str) else child.text() for child in self.children]
        if self.tag == "img":
            parts.append(self.attrs.get("alt", ""))
        return " ".join(" ".join(parts).split())


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root
        self.nodes: list[Node] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs}, self.current)
        self.current.children.append(node)
        self.nodes.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.current = self.current.parent or self.root

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:  # an unmatched end tag is ignored
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def accessible_names(page: str) -> list[tuple[str, str]]:
    """(control, accessible name) for each form control, computed as browsers do for the cases our
    templates use: aria-labelledby, aria-label, <label for>, an enclosing <label>, a button's text, an
    input button's value, then title and placeholder."""
    tree = _Tree()
    tree.feed(page)
    by_id = {node.attrs["id"]: node for node in tree.nodes if "id" in node.attrs}
    labels_for: dict[str, list[Node]] = {}
    for node in tree.nodes:
        if node.tag == "label" and "for" in node.attrs:
            labels_for.setdefault(node.attrs["for"], []).append(node)
    names = []
    for node in tree.nodes:
        if node.tag not in CONTROLS or node.attrs.get("type") in UNNAMED_INPUTS:
            continue
        a = node.attrs
        name = ""
        if a.get("aria-labelledby"):
            name = " ".join(by_id[i].text() for i in a["aria-labelledby"].split() if i in by_id)
        name = name or a.get("aria-label", "")
        if not name and node.tag != "button" and a.get("id") in labels_for:
            name = " ".join(label.text() for label in labels_for[a["id"]])
        if not name and node.tag != "button":
            ancestor = node.parent
            while ancestor is not None and ancestor.tag != "label":
                ancestor = ancestor.parent
            name = ancestor.text() if ancestor is not None else ""
        if not name and node.tag == "button":
            name = node.text()
        if not name and a.get("type") in ("submit", "button", "reset"):
            name = a.get("value") or {"submit": "Submit", "reset": "Reset"}.get(a["type"], "")
        name = name or a.get("title", "") or a.get("placeholder", "")
        control = f"<{node.tag} name={a.get('name', '')!r} id={a.get('id', '')!r}>"
        names.append((control, " ".join(name.split())))
    return names


def duplicates(page: str) -> dict[str, list[str]]:
    """Accessible names (case-insensitive) carried by more than one control, or by none ("")."""
    seen: dict[str, list[str]] = {}
    for control, name in accessible_names(page):
        seen.setdefault(name.casefold(), []).append(control)
    return {name: controls for name, controls in seen.items() if len(controls) > 1 or not name}


ADMIN_PAGES = sorted({url for _, method, url, _, expected in MATRIX
                      if method == "GET" and url.startswith(("/admin", "/staff")) and expected["admin"] == 200
                      and not url.endswith(".csv")})


def test_the_name_check_sees_what_a_screen_reader_hears() -> None:
    page = """
      <form><label for="a">Reason (optional)</label><input id="a" name="reason">
        <button type="submit">Save<span class="visually-hidden"> prices</span></button></form>
      <form><label for="b">Reason <em>(optional)</em></label><input id="b" name="add-reason">
        <label>Units <input name="units"></label><input type="hidden" name="csrf_token">
        <button type="submit" aria-label="Save prices">Go</button><input type="submit" value="Search"></form>
      <form role="search"><input aria-labelledby="h" name="q"><h2 id="h">Search</h2></form>"""
    assert dict((c, n) for c, n in accessible_names(page)) == {
        "<input name='reason' id='a'>": "Reason (optional)", "<button name='' id=''>": "Save prices",
        "<input name='add-reason' id='b'>": "Reason (optional)", "<input name='units' id=''>": "Units",
        "<input name='' id=''>": "Search", "<input name='q' id=''>": "Search"}
    assert set(duplicates(page)) == {"reason (optional)", "save prices", "search"}


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_no_two_controls_on_an_admin_page_share_a_name(
        app: Flask, url: str, signed_in: Callable[[str], FlaskClient], objects: dict[str, object],  # noqa: F811
) -> None:
    admin = signed_in("admin")
    response = admin.get(url.format(**objects))
    assert response.status_code == 200 and response.mimetype == "text/html"
    shared = duplicates(response.get_data(as_text=True))
    assert not shared, "; ".join(f"{name or '(no name)'!r}: {', '.join(controls)}" for name, controls in shared.items())


def test_pages_in_their_fuller_states_too(
        app: Flask, signed_in: Callable[[str], FlaskClient], objects: dict[str, object],  # noqa: F811
        users: dict[str, int]) -> None:
    """The same check with more on the pages: scheduled changes and a retired size on the price editor,
    a refused save, the import's warning step, and the accounts of staff."""
    import datetime as dt

    from shop.accounts.models import User
    from shop.admin import prices
    from shop.audit import utcnow
    from shop.extensions import db
    from tests.admin.test_prices import confirm_form, editor_form, editor_url, ids, submit, upload

    admin = signed_in("admin")
    strength_id, packs = ids(app)
    with app.app_context():
        actor = db.session.get(User, users["admin"])
        for units, text in ((30, "220.00"), (60, "410.00")):
            prices.save_prices(strength_id, [prices.PriceEdit(packs[units], text, 1)], actor,
                               effective_at=utcnow() + dt.timedelta(days=1))
        prices.retire_package(packs[90], 1, actor)
        db.session.remove()
    stale = editor_form(admin, strength_id)
    assert submit(admin, strength_id, {packs[60]: "399.00"}).status_code == 302
    pages = {
        "editor with scheduled changes and a retired size": admin.get(editor_url(strength_id)),
        "editor after a refused save": submit(admin, strength_id, {packs[60]: "398.00"}, form=stale),
        "import's warning step": upload(admin, "product_slug,strength_slug,units,price,active\n"
                                               "naltrexone,50-mg,60,440.00,true\n"),
        **{f"{role} account": admin.get(f"/admin/users/{users[role]}") for role in ("pharmacist", "admin")},
    }
    assert [response.status_code for response in pages.values()] == [200, 409, 200, 200, 200]
    assert confirm_form(pages["import's warning step"].get_data(as_text=True))  # the step is on the page
    found = {name: duplicates(response.get_data(as_text=True)) for name, response in pages.items()}
    assert {name: shared for name, shared in found.items() if shared} == {}
