"""One engine on the demo model (CPU, float32) for the program suite's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nanolang.backends.local import LocalBackend


@pytest.fixture(scope="module")
def demo_backend() -> Iterator[LocalBackend]:
    from nanolang.demo import model_dir

    backend = LocalBackend.from_model(model_dir())
    yield backend
    backend.close()
