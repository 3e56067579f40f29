"""The program suite of ``programs/``: which file, program, dataset and metric each entry uses,
and its chance level (what guessing would score), for the accuracy report and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROGRAMS_DIR = REPO / "programs"


@dataclass(frozen=True)
class SuiteEntry:
    """``programs/<file>.nano`` run as ``program`` over ``programs/data/<data>.jsonl``."""

    name: str
    file: str
    data: str
    metric: str
    chance: str
    workload: str
    program: str = "main"
    tools: str | None = None  # programs/<tools>.py: the host functions of its tool declarations

    @property
    def path(self) -> Path:
        return PROGRAMS_DIR / f"{self.file}.nano"

    @property
    def tools_path(self) -> Path | None:
        return None if self.tools is None else PROGRAMS_DIR / f"{self.tools}.py"

    @property
    def data_path(self) -> Path:
        return PROGRAMS_DIR / "data" / f"{self.data}.jsonl"


SUITE: tuple[SuiteEntry, ...] = (
    SuiteEntry("classify", "classify", "classify", "choice", "50%", "select between labels"),
    SuiteEntry("mmlu", "mmlu", "mmlu", "exact", "25%", "few-shot multiple choice, select"),
    SuiteEntry("gsm8k", "gsm8k", "gsm8k", "exact", "~0%", "chain of thought, stop strings"),
    SuiteEntry(
        "self_consistency",
        "self_consistency",
        "self_consistency",
        "exact",
        "~0%",
        "3 sampled chains (fork) + vote",
    ),
    SuiteEntry(
        "tree_of_thought",
        "tree_of_thought",
        "tree_of_thought",
        "exact",
        "~0%",
        "nested forks (3 x 3) + votes",
    ),
    SuiteEntry("judge", "judge", "judge", "choice", "50%", "LLM as judge, fork + vote"),
    SuiteEntry("extract", "extract", "extract", "exact", "~0%", "per-field regex JSON"),
    SuiteEntry(
        "extract_schema", "extract", "extract", "json", "~0%", "JSON-schema decoding", "schema"
    ),
    SuiteEntry("chat", "chat", "chat", "exact", "~0%", "multi-turn running total"),
    SuiteEntry(
        "react",
        "react",
        "react",
        "exact",
        "~0%",
        "ReAct loop: thought/action/host tool",
        tools="react_tools",
    ),
)


def entry(name: str) -> SuiteEntry:
    for item in SUITE:
        if item.name == name:
            return item
    raise KeyError(f"no suite entry {name!r}")
