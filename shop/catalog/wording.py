"""How the shop words counts of packs and pills, so every message says "1 pack of 90 tablets" the
same way (never "90 x Naltrexone", which reads as 90 packs, nor "pack(s)")."""

from __future__ import annotations

import re

# The noun a dosage form counts in: "film-coated tablet" and "tablet, film-coated" both count tablets.
_COUNT_NOUNS = ("tablet", "capsule", "caplet", "softgel", "lozenge", "patch", "sachet", "suppository",
                "ampoule", "vial", "pen", "syringe")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """"1 pack", "2 packs", "0 packs"."""
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural_form or _plural_of(singular)}"


def _plural_of(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def count_noun(dosage_form: str) -> str:
    """What one unit of a dosage form is called when counting: "tablet" for "film-coated tablet"."""
    words = re.findall(r"[a-z]+", dosage_form.lower())
    for noun in _COUNT_NOUNS:
        if noun in words:
            return noun
    return dosage_form.strip().lower() or "unit"


def units_of(units: int, dosage_form: str) -> str:
    """"90 tablets", "1 capsule"."""
    return plural(units, count_noun(dosage_form))


def packs_of(packs: int, units: int, dosage_form: str) -> str:
    """"1 pack of 90 tablets", "2 packs of 30 capsules"."""
    return f"{plural(packs, 'pack')} of {units_of(units, dosage_form)}"
