"""How commands print: JSON for scripts, aligned text for people."""

from __future__ import annotations

import json
from typing import Any


def emit(payload: Any, as_json: bool, text: str) -> None:
    """Print ``payload`` as JSON when asked, else the human ``text``."""
    print(json.dumps(payload, indent=2, sort_keys=False, default=str) if as_json else text)


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain aligned text table."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
