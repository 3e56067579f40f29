"""The sgl-kernel backend registers only when sgl_kernel loads; a broken install is absent."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from kernels import implementations, registry

HAS_SGL = importlib.util.find_spec("sgl_kernel") is not None


def _forget_backend() -> None:
    for name in ("kernels.sgl_kernel_backend", "sgl_kernel"):
        sys.modules.pop(name, None)
    for impls in registry._REGISTRY.values():
        impls[:] = [i for i in impls if i.backend != "sgl_kernel"]


@pytest.mark.skipif(HAS_SGL, reason="sgl_kernel is installed here")
def test_backend_is_absent_without_sgl_kernel() -> None:
    with pytest.raises(ImportError):
        importlib.import_module("kernels.sgl_kernel_backend")
    assert all("sgl_kernel" not in implementations(op) for op in registry.OPERATORS)


@pytest.mark.skipif(HAS_SGL, reason="would unload the real sgl_kernel")
def test_a_library_that_fails_to_load_counts_as_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "sgl_kernel"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise OSError('libcudart.so.12: cannot open shared object')")
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget_backend()
    try:
        with pytest.raises(ImportError, match="failed to load"):
            importlib.import_module("kernels.sgl_kernel_backend")
        registry._load_optional_backends()  # logs the backend as unavailable, raises nothing
        assert all("sgl_kernel" not in implementations(op) for op in registry.OPERATORS)
    finally:
        _forget_backend()
