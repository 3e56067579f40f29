"""How much of an error a job keeps: a results line holds the whole text (up to ``ERROR_CHARS``;
past that its start and its end around a marker that says how much was cut), and the HTML
report shows it whole; the console (a ``--quiet`` line, the summary table) shows its first line,
shortened to ``HEAD_CHARS``."""

from __future__ import annotations

ERROR_CHARS = 8_000  # an error's characters a results line keeps
HEAD_CHARS = 120  # an error's characters the console shows


def kept_error(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` whole when it has at most ``limit`` characters; else its first three quarters
    of ``limit`` and its last quarter (where a traceback's cause is) around a marker line."""
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    tail = limit - head
    cut = len(text) - limit
    marker = f"[... {cut:,} of the error's {len(text):,} characters cut here ...]"
    return f"{text[:head]}\n{marker}\n{text[-tail:]}"


def error_head(error: str) -> str:
    """An error's first line, shortened to ``HEAD_CHARS`` (ending in '...' when cut): errors
    that differ only in detail group together in the summary."""
    lines = error.strip().splitlines()
    if not lines:
        return "(empty error)"
    first = lines[0]
    return first if len(first) <= HEAD_CHARS else first[: HEAD_CHARS - 3] + "..."
