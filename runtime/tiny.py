"""Small random-weight Hugging Face model directories, made locally (no download).

They exist so that tests, the README's first command and benchmarks of the engine's logic have a
real model directory to load: config.json, safetensors weights and tokenizer files, read by the
same code as any downloaded checkpoint. Their weights are random, so their text is gibberish.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m.get('tool_calls') %}{% for c in m['tool_calls'] %}"
    "{{ {'name': c['function']['name'], 'arguments': c['function']['arguments']} | tojson }}"
    "{% endfor %}{% else %}{{ m['content'] }}{% endif %}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)  # an assistant's tool calls render as {"name": ..., "arguments": ...}, the server's format
SPECIAL_TOKENS = ["<unk>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
_CORPUS = (
    "The quick brown fox jumps over the lazy dog. A model reads tokens and writes tokens. "
    "Programs ask questions, pick answers and count: one two three four five six seven eight nine "
    "ten. 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100. positive negative neutral yes no true false. "
    'The answer is {"name": "Ada", "age": 36}. Review: great film, I loved it. Score: 7.\n'
)
ARCH_CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
}


def build_tokenizer(vocab_size: int = 384) -> Any:
    """A byte-level BPE tokenizer trained on a built-in corpus, wrapped for transformers."""
    return train_tokenizer([_CORPUS] * 4, vocab_size)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with the chat template attached."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="<|end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config_kwargs(arch: str, vocab_size: int, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.1,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    if arch == "mistral":
        kwargs["sliding_window"] = None
    kwargs.update(overrides)
    return kwargs


def make_tiny_model(
    path: str | os.PathLike[str],
    arch: str = "llama",
    seed: int = 0,
    max_shard_size: str | None = None,
    **config_overrides: Any,
) -> Path:
    """Write a random-weight ``arch`` model (llama, mistral, qwen2) and tokenizer to ``path``."""
    import torch
    import transformers

    if arch not in ARCH_CLASSES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {sorted(ARCH_CLASSES)}")
    config_cls, model_cls = (getattr(transformers, n) for n in ARCH_CLASSES[arch])
    tokenizer = build_tokenizer()
    config = config_cls(**tiny_config_kwargs(arch, len(tokenizer), **config_overrides))
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_kwargs: dict[str, Any] = {}
    if max_shard_size is not None:
        save_kwargs["max_shard_size"] = max_shard_size
    model.save_pretrained(out, **save_kwargs)
    tokenizer.save_pretrained(out)
    return out


def cache_root() -> Path:
    return Path(os.environ.get("NANOLANG_CACHE", Path.home() / ".cache" / "nanolang"))


def default_model_dir() -> Path:
    """The cached tiny model used when no model is given (made once, atomically)."""
    target = cache_root() / "tiny-llama"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tiny-"))
    try:
        make_tiny_model(staging, arch="llama", seed=0)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
