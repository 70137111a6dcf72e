"""Markdown to safe HTML: markdown-it renders, nh3 keeps only the tags a monograph needs."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "sup", "sub",
}
# No style attributes: the Content-Security-Policy allows no inline styles.
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html=False: raw HTML in the source is shown as text, never passed through.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


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
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
