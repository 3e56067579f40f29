"""The bundled demo model: a small Llama trained here on synthetic tasks (see ``train``).

``model_dir()`` is the default model of ``nanolang run`` and ``nanolang eval``: it needs no
download and runs on the CPU.
"""

from __future__ import annotations

from pathlib import Path


def model_dir() -> Path:
    """The directory of the bundled demo model (a standard Hugging Face model directory)."""
    return Path(__file__).resolve().parent / "model"


__all__ = ["model_dir"]
