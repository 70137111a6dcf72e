"""Access-matrix rows for admin catalog and monograph editing (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in)."""

from __future__ import annotations

ROWS: list[tuple] = []
