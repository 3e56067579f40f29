"""Fingerprints: which job wrote a result line, so a resume never mixes two jobs.

Every result line carries ``fingerprint``: short hashes of what decides that row's result,
``{"program": ..., "settings": ..., "row": ...}`` (for ``nanolang eval``: the program file and
entry, the seed, the row's arguments, expected answer and line number; for ``nanolang batch``:
the request line). Resuming compares each finished line with what this job would write for its
row. Any difference (another program, another seed, another dataset's row under the same id, a
row missing from the dataset) stops the job with ``FingerprintMismatch``, which names what
differs and how to start over. Lines are self-describing, so shard files concatenated together
(``--shard``) still check.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nanolang.syntax import tree

Fingerprint = dict[str, str]

DIGEST_CHARS = 16

PART_NAMES = {
    "program": "another program",
    "settings": "other settings (seed)",
    "row": "other rows under the same ids (another dataset?)",
    "request": "other requests under the same custom_id (another input file?)",
}


class FingerprintMismatch(ValueError):
    """The results file holds rows of a different job."""


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def program_digest(module: tree.Module, program: str) -> str:
    """The program's identity: its file's text (or its AST when built from Python) and entry."""
    body = module.source if module.source is not None else repr(module.programs)
    return digest({"source": body, "program": program})


def check_resume(
    path: Path,
    lines: Iterable[Mapping[str, Any]],
    key: str,
    expected: Mapping[str, Fingerprint],
    fingerprint_of: Callable[[Mapping[str, Any]], Any],
) -> None:
    """Raise ``FingerprintMismatch`` unless every line of ``path`` is one this job would write.

    ``expected`` maps each row id of the dataset to its fingerprint; ``fingerprint_of`` reads a
    line's stored fingerprint."""
    problems: Counter[str] = Counter()
    total = 0
    for line in lines:
        total += 1
        row_id = str(line.get(key))
        stored = fingerprint_of(line)
        if row_id not in expected:
            problems["rows that are not in this dataset"] += 1
        elif not isinstance(stored, dict):
            problems["no fingerprint (written by an older nanolang)"] += 1
        else:
            for part, value in expected[row_id].items():
                if stored.get(part) != value:
                    problems[PART_NAMES.get(part, part)] += 1
    if problems:
        found = "; ".join(f"{what}: {n} of {total} lines" for what, n in problems.most_common())
        raise FingerprintMismatch(
            f"{path} holds results of a different job ({found}). Rerun with --restart to "
            "delete them and start over, or write to another output file."
        )
