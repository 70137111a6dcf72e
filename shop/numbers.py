"""The one rule for integers that come from outside: URL path ids, form fields and query strings.

Only ASCII digits count: `str.isdigit()` also passes "²" (which `int()` refuses) and `int()` also
reads "٣" as 3, so neither is used on input. Every integer column of the schema is a 32-bit
`integer` on PostgreSQL (SQLite's INTEGER is 64-bit), so a number beyond 2**31 - 1 can never name a
row or fit a column: it is refused here rather than overflowing the database driver.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from werkzeug.routing import BaseConverter, Map, ValidationError
from wtforms import DecimalField, Field
from wtforms.widgets import NumberInput

# The largest value of PostgreSQL's `integer`, the type of every id and count column.
INT_MAX = 2**31 - 1
INT_MIN = -(2**31)
_ASCII_DIGITS = frozenset("0123456789")
# More digits than the largest value has cannot be in range; checked before int() so a
# 10,000-digit string costs nothing (and never meets Python's int() digit limit).
_MAX_DIGITS = len(str(INT_MAX))


def parse_int(text: object, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """The integer `text` spells in ASCII digits (an optional leading "-", surrounding whitespace
    ignored), or None when it spells none or lies outside minimum..maximum (default: the range of
    a database integer)."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    digits = text[1:] if text.startswith("-") else text
    if not digits or len(digits) > _MAX_DIGITS or not _ASCII_DIGITS.issuperset(digits):
        return None
    value = int(text)
    low = INT_MIN if minimum is None else max(minimum, INT_MIN)
    high = INT_MAX if maximum is None else min(maximum, INT_MAX)
    return value if low <= value <= high else None


# A typed decimal: ASCII digits with at most one point. Decimal() alone also takes "٣", "NaN",
# "Infinity" and "1e999999", which no field means and which NaN turns into an error on comparison.
_DECIMAL = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")


def parse_decimal(text: object) -> Decimal | None:
    """The number `text` spells as a plain decimal ("1.5", "-2", ".25"), or None."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text := text.strip()):
        return None
    return Decimal(text)


def parse_id(text: object) -> int | None:
    """A row id: 1..INT_MAX in ASCII digits, or None."""
    return parse_int(text, minimum=1)


class IdConverter(BaseConverter):
    """`<int:...>` in every route: a row id in ASCII digits, 1..INT_MAX; anything else is a 404
    (Werkzeug's own converter matches Unicode digits and has no upper bound)."""

    regex = r"[0-9]+"
    part_isolating = True

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:  # e.g. <int(signed=True):...>: ids are never signed nor otherwise bounded
            raise TypeError(f"<int:...> takes no options here, not {args or kwargs}")
        super().__init__(map)

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


class IntField(Field):
    """A WTForms integer field read with `parse_int` (WTForms' IntegerField uses `int()`, which
    accepts Unicode digits and unbounded values). Bounds give the message a person reads."""

    widget = NumberInput()

    def __init__(self, label: str | None = None, validators: Any = None, *,
                 minimum: int | None = None, maximum: int | None = None,
                 message: str = "Enter a whole number.", **kwargs: Any) -> None:
        super().__init__(label, validators, **kwargs)
        self.minimum, self.maximum, self.message = minimum, maximum, message

    def _value(self) -> str:
        if self.raw_data:
            return str(self.raw_data[0])
        return "" if self.data is None else str(self.data)

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or valuelist[0] in ("", None):
            self.data = None  # InputRequired / Optional decide whether empty is allowed
            return
        self.data = parse_int(valuelist[0], minimum=self.minimum, maximum=self.maximum)
        if self.data is None:
            raise ValueError(self.message)


class DecimalNumberField(DecimalField):
    """WTForms' DecimalField read with `parse_decimal`: the field's ranges are the services' rules."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or valuelist[0] in ("", None):
            self.data = None
            return
        self.data = parse_decimal(valuelist[0])
        if self.data is None:
            raise ValueError("Enter a number such as 2 or 1.5.")
