"""Where programs' requests go: the ``Backend`` interface (``base``), ``Local`` (in-process
engine), ``HTTP`` (a nanolang server), ``OpenAI`` (any OpenAI-compatible server; gen and roles
only). The three load on first use, so importing the interface does not import torch or httpx."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nanolang.backends.local import LocalBackend as Local
    from nanolang.backends.native_http import HTTPBackend as HTTP
    from nanolang.backends.native_http import RemoteError
    from nanolang.backends.openai_compat import OpenAIBackend as OpenAI
    from nanolang.backends.openai_compat import UnsupportedByServer

_LAZY = {
    "HTTP": ("nanolang.backends.native_http", "HTTPBackend"),
    "RemoteError": ("nanolang.backends.native_http", "RemoteError"),
    "OpenAI": ("nanolang.backends.openai_compat", "OpenAIBackend"),
    "UnsupportedByServer": ("nanolang.backends.openai_compat", "UnsupportedByServer"),
    "Local": ("nanolang.backends.local", "LocalBackend"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


__all__ = ["HTTP", "Local", "OpenAI", "RemoteError", "UnsupportedByServer"]
