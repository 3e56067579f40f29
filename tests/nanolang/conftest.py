"""Shared fixtures: one real engine (tiny random model) for every end-to-end test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nanolang.backends.local import LocalBackend


@pytest.fixture(scope="session")
def backend() -> Iterator[LocalBackend]:
    from runtime import LLM
    from runtime.tiny import default_model_dir

    local = LocalBackend(LLM(str(default_model_dir()), dtype="float32", device="cpu"))
    yield local
    local.close()


@pytest.fixture(scope="session")
def tokenizer(backend: LocalBackend) -> object:
    return backend.tokenizer
