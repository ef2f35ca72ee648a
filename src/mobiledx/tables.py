"""Markdown tables, the one way every report (validation, model card, comparison, cross-validation) writes them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], cell: Callable[[Any], str] = str,
                   right_aligned: Sequence[bool] | None = None) -> list[str]:
    """The lines of a Markdown table: ``cell`` formats each value; ``|`` and line breaks in text are escaped.

    ``right_aligned`` (one flag per column) right-aligns numeric columns (``---:``).
    """
    def text(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    rule = [("---:" if right else "---") for right in (right_aligned or [False] * len(header))]
    lines = ["| " + " | ".join(text(name) for name in header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(text(cell(value)) for value in row) + " |" for row in rows]
    return lines
