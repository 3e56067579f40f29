"""Server settings: a frozen config, and the one place that picks the default model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

API_KEY_ENV = "NANOLANG_API_KEY"


def default_model() -> str:
    """The model served when none is given: the bundled demo model."""
    from nanolang.demo import model_dir

    return str(model_dir())


@dataclass(frozen=True)
class ServerConfig:
    """How the server runs.

    ``model``: a Hugging Face model directory; ``model_name``: the id clients send (default: the
    directory's name). ``api_key``: when set, every route but /health needs
    ``Authorization: Bearer <key>``. ``max_body_bytes``: larger request bodies get 413.
    ``llm_kwargs``: extra arguments for ``runtime.LLM`` (dtype, device, engine settings).
    ``shutdown_timeout_s``: on SIGTERM or Ctrl-C, how long requests in flight may run on before
    they are cancelled (answered 503, or their stream ended with that error); None: no limit.
    ``max_choices``: the most choices one request may ask for (a completion's prompts times
    ``n``); more is a 400 naming this limit and ``--max-choices``.
    """

    model: str
    model_name: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    max_n: int = 16
    max_choices: int = 4096
    llm_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    shutdown_timeout_s: float | None = 30.0

    def __post_init__(self) -> None:
        if not self.model_name:
            object.__setattr__(self, "model_name", Path(self.model).name or self.model)
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_choices < 1:
            raise ValueError(f"max_choices must be >= 1, got {self.max_choices}")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.shutdown_timeout_s is not None and not self.shutdown_timeout_s >= 0:
            raise ValueError(f"shutdown_timeout_s must be >= 0, got {self.shutdown_timeout_s}")
        if self.api_key == "":
            raise ValueError("api_key must be non-empty when given")

    @classmethod
    def from_env(cls, model: str | None = None, **kwargs: Any) -> ServerConfig:
        """A config whose API key falls back to $NANOLANG_API_KEY and model to the default."""
        kwargs.setdefault("api_key", os.environ.get(API_KEY_ENV) or None)
        return cls(model=model or default_model(), **kwargs)
