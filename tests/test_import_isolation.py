"""Our generic package names (``runtime``, ``kernels``) must not confuse libraries beside them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_transformers_does_not_mistake_our_kernels_for_hugging_face_kernels() -> None:
    code = (
        "import kernels, transformers.utils.import_utils as iu;"
        f"print(kernels.__file__.startswith({str(ROOT)!r}), iu.is_kernels_available())"
    )
    assert run(code) == "True False"


def test_transformers_models_still_build_beside_our_packages() -> None:
    code = (
        "import runtime, kernels, transformers;"
        "c = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,"
        " num_attention_heads=2, vocab_size=64);"
        "m = transformers.LlamaForCausalLM(c); print(type(m).__name__)"
    )
    assert run(code) == "LlamaForCausalLM"
