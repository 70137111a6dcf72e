"""Markdown to safe HTML: markdown-it renders, nh3 keeps only the tags a monograph needs."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "sup", "sub",
}
# No style attributes: the Content-Security-Policy allows no inline styles.
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "td": {"data-label"}}
# Only the class that the table rule below gives (raw HTML in the source is never passed through).
ALLOWED_CLASSES = {"table": {"table-cards"}}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html=False: raw HTML in the source is shown as text, never passed through.
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    parser.core.ruler.push("table_cards", _table_cards)
    return parser


def _plain(inline: Token) -> str:
    return "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))


def _table_cards(state: StateCore) -> None:
    """A table reads as one card per row on a phone, as the shop's own tables do (static/css,
    `.table-cards`): each body cell carries its column's heading."""
    headings: list[str] = []
    column = 0
    for index, token in enumerate(state.tokens):
        if token.type == "table_open":
            token.attrSet("class", "table-cards")
            headings = []
        elif token.type == "th_open":
            headings.append(_plain(state.tokens[index + 1]))
        elif token.type == "tr_open":
            column = 0
        elif token.type == "td_open":
            if column < len(headings) and headings[column]:
                token.attrSet("data-label", headings[column])
            column += 1


# Texts up to this size are cached (a monograph section is a few KB); longer ones, such as an admin's
# oversized preview, are rendered each time so the cache stays small (at most ~20 MB).
CACHE_MAX_CHARS = 20_000


def render_markdown(text: str) -> Markup:
    text = text or ""
    html = _cached(text) if len(text) <= CACHE_MAX_CHARS else _render(text)
    return Markup(html)  # noqa: S704 - sanitized by nh3 in _render


# A pure function of the text: a monograph page renders its sections from the cache, and an edited
# section is simply new text (a new entry); the oldest entries drop out.
@lru_cache(maxsize=1024)
def _cached(text: str) -> str:
    return _render(text)


def _render(text: str) -> str:
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
