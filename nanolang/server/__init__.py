"""The HTTP server: OpenAI-compatible completions and chat, native endpoints, metrics."""

from nanolang.server.app import create_app, serve
from nanolang.server.config import API_KEY_ENV, ServerConfig, default_model

__all__ = ["API_KEY_ENV", "ServerConfig", "create_app", "default_model", "serve"]
