"""Tables written in a monograph's Markdown read as cards on a phone, like the shop's own tables."""

from __future__ import annotations

from shop.markdown import render_markdown

EVIDENCE = """\
| Study (as reported) | Condition | Design and **size** |
|---|---|---|
| COMBINE (2006) | Alcohol dependence | Large randomised trial |
| Case reports | Hailey-Hailey disease | Individual cases |
"""


def test_each_cell_carries_its_column_heading_and_the_table_the_card_class() -> None:
    html = str(render_markdown(EVIDENCE))
    assert html.startswith('<table class="table-cards">')
    assert html.count('<td data-label="Study (as reported)">') == 2
    assert '<td data-label="Condition">Alcohol dependence</td>' in html
    assert '<td data-label="Design and size">Individual cases</td>' in html  # the words, not the markup


def test_the_source_cannot_set_classes_or_labels_of_its_own() -> None:
    html = str(render_markdown('<table class="evil"><td data-label="x" onclick="y">1</td></table>\n\n'
                               '| A "quoted" <b>head</b> |\n|---|\n| 1 |\n'))
    assert '<table class="evil"' not in html and '<td data-label="x"' not in html
    assert '<p>&lt;table class="evil"&gt;' in html  # raw HTML is shown as text
    assert '<td data-label="A &quot;quoted&quot; &lt;b&gt;head&lt;/b&gt;">1</td>' in html
