"""Every SGLang port in both forms on the demo model (the runner's PASS/FAIL lines as tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nanolang as nl
from nanolang.backends.local import LocalBackend
from tests.sglang_ports.ports import PORTS
from tests.sglang_ports.run_ports import run_one

# what does not hold on the demo model or this runtime yet, and why (reported, not hidden)
KNOWN = {
    "decode_json_regex": (
        "at temperature 0 the demo model writes numbers such as -000..., which SGLang's "
        "REGEX_INT ([-+]?[0-9]+) admits and JSON does not"
    ),
}


@pytest.fixture(scope="module")
def demo() -> Iterator[LocalBackend]:
    backend = LocalBackend.from_model()
    nl.set_backend(backend)
    yield backend
    nl.set_backend(None)
    backend.close()


@pytest.mark.parametrize("form", ["nano", "py"])
@pytest.mark.parametrize("port", PORTS, ids=[p.name for p in PORTS])
def test_port(port: object, form: str, demo: LocalBackend) -> None:
    problem = run_one(port, form)  # type: ignore[arg-type]
    if problem is not None and port.name in KNOWN:  # type: ignore[attr-defined]
        pytest.xfail(f"{KNOWN[port.name]}: {problem}")  # type: ignore[attr-defined]
    assert problem is None, problem
