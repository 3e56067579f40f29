"""The server's own tokenizer, rebuilt on the client from the files it serves."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any


def tokenizer_from_files(files: dict[str, str]) -> Any:
    """A Hugging Face tokenizer from ``{file name: base64 content}``, as served by
    ``GET /v1/nano/tokenizer``."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="nanolang-tok-") as tmp:
        for name, content in files.items():
            if Path(name).name != name:
                raise ValueError(f"the server sent a tokenizer file with a path: {name!r}")
            (Path(tmp) / name).write_bytes(base64.b64decode(content))
        return AutoTokenizer.from_pretrained(tmp)
