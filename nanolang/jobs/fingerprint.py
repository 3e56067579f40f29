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

from nanolang.jobs.row_file import RowRef
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


def kept_fingerprints(refs: Iterable[RowRef]) -> dict[str, Fingerprint]:
    """Each row's fingerprint by id, as the one scan of its input kept it (``RowRef.kept``:
    ``nanolang eval``'s ``RowFacts``, ``nanolang batch``'s ``RequestFacts``): what resuming
    checks the results file against."""
    return {ref.id: ref.kept.fingerprint for ref in refs}


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def program_digest(module: tree.Module, program: str) -> str:
    """The program's identity: its file's text (or its AST when built from Python) and entry."""
    body = module.source if module.source is not None else repr(module.programs)
    return digest({"source": body, "program": program})


def line_problems(
    line: Mapping[str, Any],
    key: str,
    expected: Mapping[str, Fingerprint],
    fingerprint_of: Callable[[Mapping[str, Any]], Any],
) -> list[str]:
    """Why ``line`` is not one this job would write (empty when it is). ``expected`` maps each
    row id of the dataset to its fingerprint; ``fingerprint_of`` reads a line's stored one."""
    row_id = str(line.get(key))
    stored = fingerprint_of(line)
    if row_id not in expected:
        return ["rows that are not in this dataset"]
    if not isinstance(stored, dict):
        return ["no fingerprint (written by an older nanolang)"]
    return [
        PART_NAMES.get(part, part)
        for part, value in expected[row_id].items()
        if stored.get(part) != value
    ]


def check_resume(
    path: Path,
    lines: Iterable[Mapping[str, Any]],
    key: str,
    expected: Mapping[str, Fingerprint],
    fingerprint_of: Callable[[Mapping[str, Any]], Any],
) -> None:
    """Raise ``FingerprintMismatch`` unless every line of ``path`` is one this job would write
    (``line_problems``)."""
    problems: Counter[str] = Counter()
    total = 0
    for line in lines:
        total += 1
        problems.update(line_problems(line, key, expected, fingerprint_of))
    if problems:
        found = "; ".join(f"{what}: {n} of {total} lines" for what, n in problems.most_common())
        raise FingerprintMismatch(
            f"{path} holds results of a different job ({found}). Rerun with --restart to "
            "delete them and start over, or write to another output file."
        )
