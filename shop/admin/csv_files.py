"""The admin's CSV files (prices, stock): reading an upload into rows with one set of checks, and
writing an export a spreadsheet opens safely.

A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage return) as a formula, so the
export puts an apostrophe before such a text cell (the spreadsheet then shows it as text) and the
reader takes it off again: a file exported, edited and imported keeps the text as it was.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flask import Response

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CsvRefused(Exception):
    """The file cannot be read as the expected CSV; `line` is the line to blame, if one is."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class CsvLayout:
    """The columns of a file (as its export writes them), the ones an import may leave out, and limits."""

    columns: tuple[str, ...]
    max_bytes: int
    max_rows: int
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class CsvRow:
    line: int  # the file's line number
    cells: dict[str, str]  # every column of the layout, trimmed; "" where the line has no value
    problem: str | None = None  # set when the line has more or fewer values than the header, or a
    # cell holds a control character


def size_text(size: int) -> str:
    """A byte limit in words: 2 * 1024 * 1024 -> "2 MB", 512 * 1024 -> "512 KB"."""
    return f"{size // 2**20} MB" if size % 2**20 == 0 else f"{size // 1024} KB"


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (taken off on import)."""
    return "'" + text if text.startswith(FORMULA_START) else text


def from_spreadsheet(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def _control_character_problem(cells: dict[str, str]) -> str | None:
    """A cell holding a control character (NUL, a tab, a line break inside quotes...): no column means
    one, and PostgreSQL refuses a NUL in text."""
    for name, value in cells.items():
        if bad := next((char for char in value if unicodedata.category(char) == "Cc"), None):
            return (f"{name} holds a control character (U+{ord(bad):04X}); a cell may hold only printable "
                    "text, without tabs or line breaks.")
    return None


def _header_problem(header: list[str], layout: CsvLayout) -> str | None:
    missing = [name for name in layout.columns if name not in header and name not in layout.optional]
    unknown = [name for name in header if name not in layout.columns]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if not (missing or unknown or repeated):
        return None
    optional = f" ({', '.join(layout.optional)} may be left out)" if layout.optional else ""
    return "".join([f"The first line must name the columns {','.join(layout.columns)}{optional}.",
                    *(f" {what}: {', '.join(names)}." for what, names in
                      (("Missing", missing), ("Unknown", unknown), ("Repeated", repeated)) if names)])


def read_csv(data: bytes, layout: CsvLayout) -> list[CsvRow]:
    """The rows below the header, blank lines skipped. A line whose number of values differs from the
    header's, or with a control character in a cell, is returned with a `problem`, for the importer
    to list with the other rows' problems.

    :raise CsvRefused: the file is empty, too large, not UTF-8, has the wrong header, too many rows,
        a line that is not valid CSV, or no rows.
    """
    if not data.strip():
        raise CsvRefused("The file is empty.")
    if len(data) > layout.max_bytes:
        raise CsvRefused(f"The file is larger than {size_text(layout.max_bytes)}.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvRefused("The file is not UTF-8 text: save it as CSV (UTF-8).") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[CsvRow] = []
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if problem := _header_problem(header, layout):
            raise CsvRefused(problem, line=1)
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # blank lines, e.g. at the end
            cells = dict.fromkeys(layout.columns, "")
            for name, value in zip(header, values, strict=False):  # a short line leaves cells empty
                cells[name] = from_spreadsheet(value.strip())
            width = None if len(values) == len(header) else (f"Expected {len(header)} values, found "
                                                                f"{len(values)}.")
            rows.append(CsvRow(reader.line_num, cells, width or _control_character_problem(cells)))
            if len(rows) > layout.max_rows:
                raise CsvRefused(f"The file has more than {layout.max_rows:,} rows.")
    except csv.Error as error:
        line = reader.line_num
        raise CsvRefused(f"Line {line} is not valid CSV ({error}).", line=line) from None
    if not rows:
        raise CsvRefused("The file has no rows after the column names.")
    return rows


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[str | int]]) -> str:
    """A file with a header line; every text cell is made spreadsheet-safe (numbers never need it)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([spreadsheet_safe(cell) if isinstance(cell, str) else cell for cell in row]
                     for row in rows)
    return out.getvalue()


def download(text: str, filename: str) -> Response:
    """An export as a file to save, never cached."""
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})
