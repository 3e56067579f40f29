"""The datasets of ``programs/``: ``python -m nanolang.demo.datasets [--out programs/data]``.

Each program's rows come from the same task generators as the demo model's training corpus
(``nanolang.demo.tasks``) but from their own seeds, so the questions are fresh draws: the facts
(capitals) are the ones the model learned, the numbers, names and option orders are new
combinations (a few arithmetic problems may coincide with training ones by chance).
Each row holds the program's arguments, an ``id`` and the ``expected`` answer.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.demo.tasks import TASKS


@dataclass(frozen=True)
class DatasetSpec:
    """Rows for ``programs/<name>.nano``: ``rows`` examples of ``task`` from ``seed``."""

    name: str
    task: str
    seed: int
    rows: int = 100


SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec("classify", "classify", 1001),
    DatasetSpec("mmlu", "mmlu", 1002),
    DatasetSpec("gsm8k", "gsm8k", 1003),
    DatasetSpec("self_consistency", "gsm8k", 1004),
    DatasetSpec("tree_of_thought", "tree_of_thought", 1005),
    DatasetSpec("judge", "judge", 1006),
    DatasetSpec("extract", "extract", 1007),
    DatasetSpec("chat", "chat", 1008),
    DatasetSpec("react", "react", 1009),
)


def rows(spec: DatasetSpec) -> list[dict[str, Any]]:
    rng = random.Random(spec.seed)
    out = []
    for i in range(spec.rows):
        example = TASKS[spec.task](rng)
        out.append({"id": f"{spec.name}-{i}", **example.args, "expected": example.expected})
    return out


def write(spec: DatasetSpec, directory: Path) -> Path:
    path = directory / f"{spec.name}.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) for row in rows(spec)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("programs/data"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in SPECS:
        print(write(spec, args.out))


if __name__ == "__main__":
    main()
