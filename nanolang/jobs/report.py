"""``--report FILE.html``: the end-of-job summary, each kind of error's whole text (the table
shows first lines only) and a latency histogram per program, in one self-contained HTML file
(inline SVG, no scripts, no network)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

BINS = 20
WIDTH, HEIGHT, MARGIN = 560, 180, 30


def histogram(values: Sequence[float], bins: int = BINS) -> tuple[float, float, list[int]]:
    """(low, bin width, counts) over ``bins`` equal bins from the smallest to the largest."""
    low, high = min(values), max(values)
    width = (high - low) / bins or 1e-9
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / width))] += 1
    return low, width, counts


def histogram_svg(values: Sequence[float]) -> str:
    low, width, counts = histogram(values)
    top = max(counts)
    bar_w = (WIDTH - 2 * MARGIN) / len(counts)
    bars = []
    for i, count in enumerate(counts):
        h = (HEIGHT - 2 * MARGIN) * count / top
        x, y = MARGIN + i * bar_w, HEIGHT - MARGIN - h
        tip = f"{low + i * width:.3f}-{low + (i + 1) * width:.3f}s: {count}"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
            f'fill="#4c78a8"><title>{tip}</title></rect>'
        )
    axis = (
        f'<text x="{MARGIN}" y="{HEIGHT - 8}">{low:.3f}s</text>'
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{low + width * len(counts):.3f}s</text>"
        f'<text x="{MARGIN}" y="{MARGIN - 10}">max {top} rows per bin</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="11">{"".join(bars)}{axis}</svg>'
    )


def errors_html(errors: Sequence[tuple[int, str]]) -> str:
    """A section with each error's whole text (``(rows, text)`` pairs), as it is in the results."""
    if not errors:
        return ""
    items = "".join(f"<h3>{count} x</h3><pre>{html.escape(text)}</pre>" for count, text in errors)
    return f"<h2>errors (one of each kind, whole)</h2>{items}"


def render(
    title: str,
    rows: Sequence[tuple[str, str]],
    latencies: Mapping[str, Sequence[float]],
    errors: Sequence[tuple[int, str]] = (),
) -> str:
    """The report's HTML: the summary table, each error kind's whole text, then one latency
    histogram per program."""
    esc = html.escape
    table = "".join(f"<tr><td>{esc(m)}</td><td>{esc(v)}</td></tr>" for m, v in rows)
    sections = [errors_html(errors)]
    for program, values in latencies.items():
        body = histogram_svg(values) if values else "<p>no finished rows</p>"
        sections.append(f"<h2>latency: {esc(program)} ({len(values)} rows)</h2>{body}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}"
        "tr:nth-child(odd){background:#f3f3f3}pre{white-space:pre-wrap;background:#f8f8f8;"
        "padding:6px}</style></head><body>"
        f"<h1>{esc(title)}</h1><table>{table}</table>{''.join(sections)}</body></html>\n"
    )


def write_report(
    path: Path,
    title: str,
    rows: Sequence[tuple[str, str]],
    latencies: Mapping[str, Sequence[float]],
    errors: Sequence[tuple[int, str]] = (),
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(title, rows, latencies, errors), encoding="utf-8")
