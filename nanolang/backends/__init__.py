"""Where programs' requests go: ``Local`` (in-process engine), ``HTTP`` (a nanolang server),
``OpenAI`` (any OpenAI-compatible server; gen and roles only)."""

from nanolang.backends.http import HTTPBackend as HTTP
from nanolang.backends.http import RemoteError
from nanolang.backends.openai_compat import OpenAIBackend as OpenAI
from nanolang.backends.openai_compat import UnsupportedByServer
from nanolang.local_backend import LocalBackend as Local

__all__ = ["HTTP", "Local", "OpenAI", "RemoteError", "UnsupportedByServer"]
