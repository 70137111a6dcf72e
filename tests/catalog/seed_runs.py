"""Fingerprints of the page this shop replaces, so the tests can check we did not copy its prose
without the page itself being part of the repository.

`seed_page_runs.txt` (beside this file) holds one SHA-256 per distinct run of 8 words of that page,
sorted, and nothing of its text. It was generated once, from the page as handed to us
(`naltrexone-storefront-page.txt`, 16,790 bytes), with

    .venv/bin/python tests/catalog/seed_runs.py path/to/naltrexone-storefront-page.txt

Normalisation (the test must use the same): lower-case; a word is a maximal run of letters, so
digits, punctuation and spacing only separate words. Runs that name the tablet's inactive ingredients
(lactose, stearate) are left out: that list is a fact, not prose, and ours may state it the same way.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

RUN_LENGTH = 8
HASHES_FILE = Path(__file__).with_name("seed_page_runs.txt")
FACT_WORDS = frozenset({"lactose", "stearate"})
_WORD = re.compile(r"[^\W\d_]+")  # letters only, any script


def word_runs(text: str, n: int = RUN_LENGTH) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def run_hash(run: tuple[str, ...]) -> str:
    return hashlib.sha256(" ".join(run).encode()).hexdigest()


def prose_hashes(text: str) -> set[str]:
    """The hashes of the text's 8-word runs, leaving out the runs that are facts (see above)."""
    return {run_hash(run) for run in word_runs(text) if not FACT_WORDS & set(run)}


def stored_hashes() -> set[str]:
    return set(HASHES_FILE.read_text().split())


if __name__ == "__main__":
    page = Path(sys.argv[1]).read_text()
    HASHES_FILE.write_text("".join(f"{h}\n" for h in sorted(prose_hashes(page))))
    print(f"wrote {len(prose_hashes(page))} hashes to {HASHES_FILE}")
