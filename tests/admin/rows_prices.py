"""Access-matrix rows for the admin price editor (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in)."""

from __future__ import annotations

ROWS: list[tuple] = []
