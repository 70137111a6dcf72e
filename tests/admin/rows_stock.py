"""Access-matrix rows for admin stock pages and CSV (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in)."""

from __future__ import annotations

ROWS: list[tuple] = []
