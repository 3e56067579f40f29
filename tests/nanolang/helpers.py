"""Paths and golden-file comparison shared by the nanolang tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from nanolang.backends.base import Backend
from runtime.outputs import RequestMetrics, RequestOutput
from runtime.sampling_params import SamplingParams

HERE = Path(__file__).parent
PROGRAMS = HERE / "programs"
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("NANOLANG_UPDATE_GOLDEN") == "1"


def golden(name: str, actual: str) -> None:
    """Compare with tests/nanolang/golden/NAME (rewrite it with NANOLANG_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with NANOLANG_UPDATE_GOLDEN=1")
    assert actual == path.read_text(encoding="utf-8")


class CharTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids)

    def apply_chat_template(self, chat: list[dict[str, str]], **_: Any) -> str:
        return "".join(f"<{m['role']}>{m['content']}</>" for m in chat)


class CountingBackend(Backend):
    """Answers every request with "ok" after a short delay; records peak concurrency."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.count = 0

    @property
    def tokenizer(self) -> CharTokenizer:
        return CharTokenizer()

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.count += 1
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return RequestOutput(
            request_id=f"r{self.count}",
            prompt=None,
            prompt_token_ids=prompt_ids,
            text="ok",
            token_ids=[ord("o"), ord("k")],
            finished=True,
            finish_reason="length",
            stop_reason=None,
            logprobs=None,
            prompt_logprobs=None,
            metrics=RequestMetrics(arrival_time=0.0),
        )

    def close(self) -> None:
        self.in_flight = 0
