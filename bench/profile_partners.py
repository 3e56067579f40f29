"""Adds each interference entry's partner placement to a profile measured before the profiler
recorded it (2026-11-29 H200 profile): the profiler measures pairs in a fixed order, so the
partner follows from the position. For each interference row size, for each (attention side,
other side) pair, for each operation but attention: the operation beside attention, then (for a
GEMM) attention beside the operation. Entries of one pair group are checked for consistency.

    python bench/profile_partners.py IN.json OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def with_partners(d: dict[str, Any]) -> dict[str, Any]:
    att = next(n for n, k in d["ops"] if k == "attention")
    gemms = [n for n, k in d["ops"] if k == "gemm"]
    group = sum(1 + (n in gemms) for n, _ in d["ops"] if n != att)
    rows = d["interference"]
    if len(rows) % group:
        raise SystemExit(f"{len(rows)} entries are not whole groups of {group}")
    for g in range(0, len(rows), group):
        part = rows[g : g + group]
        att_rows = [r for r in part if r["op"] == att]
        other_rows = [r for r in part if r["op"] != att]
        att_place = {r["placement"] for r in att_rows}
        other_place = {r["placement"] for r in other_rows}
        tokens = {r["tokens"] for r in part}
        if len(att_place) != 1 or len(other_place) != 1 or len(tokens) != 1:
            raise SystemExit(f"group at {g} is not one pair: {att_place} {other_place} {tokens}")
        if [r["op"] for r in other_rows] != [n for n, _ in d["ops"] if n != att]:
            raise SystemExit(f"group at {g} is not in the profiler's order")
        for r in att_rows:
            r["partner"] = other_place.copy().pop()
        for r in other_rows:
            r["partner"] = att_place.copy().pop()
    d["notes"]["partners"] = "recovered from the measurement order by bench/profile_partners.py"
    return d


def main() -> None:
    d = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(with_partners(d), indent=1) + "\n")


if __name__ == "__main__":
    main()
