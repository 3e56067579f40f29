"""Loading a model directory's tokenizer (with its chat template)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.config import ModelLoadError


def load_tokenizer(path: Path | None) -> Any:
    """The directory's tokenizer, or None for a preset without files (token ids only)."""
    if path is None:
        return None
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model")):
        raise ModelLoadError(f"{path} has no tokenizer.json or tokenizer.model")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer in {path}: {exc}") from exc
