"""Train the demo model: ``python -m nanolang.demo.train [--out DIR] [--steps N]``.

A small Llama (transformers' ``LlamaForCausalLM``) trained from scratch on the CPU on the
synthetic corpus of ``nanolang.demo.corpus``; seeded end to end, so a rerun with the same
arguments on the same torch build gives the same weights. Saved with ``save_pretrained``
(safetensors, bfloat16) and the tokenizer, in the standard Hugging Face directory format.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.demo.corpus import document, pack, sample_examples, train_tokenizer


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    documents: int = 100_000
    vocab_size: int = 1024
    hidden_size: int = 192
    intermediate_size: int = 512
    layers: int = 4
    heads: int = 6
    kv_heads: int = 2
    block: int = 256
    batch: int = 16
    steps: int = 1500
    lr: float = 3e-3
    warmup: int = 40
    threads: int = 2


def model_config(cfg: TrainConfig, vocab_size: int) -> Any:
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        attn_implementation="sdpa",  # the CPU's fused attention: several times faster to train
    )
    return LlamaConfig(**kwargs)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def batches(blocks: Any, weights: Any, cfg: TrainConfig) -> Any:
    """Endless seeded shuffles of the packed blocks, ``cfg.batch`` at a time."""

    order = list(range(len(blocks)))
    rng = random.Random(cfg.seed)
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - cfg.batch + 1, cfg.batch):
            idx = order[i : i + cfg.batch]
            yield blocks[idx], weights[idx]


def weighted_loss(model: Any, ids: Any, weights: Any) -> Any:
    import torch.nn.functional as F

    logits = model(input_ids=ids[:, :-1]).logits.float()  # [B, S, V]
    losses = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    target_weights = weights[:, 1:].flatten()
    return (losses * target_weights).sum() / target_weights.sum()


def train(cfg: TrainConfig, out: Path, log_every: int = 20) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    docs = [document(e) for e in sample_examples(cfg.documents, cfg.seed)]
    tokenizer = train_tokenizer([d.text for d in docs[:20_000]], cfg.vocab_size)
    blocks, block_weights = pack(docs, tokenizer, cfg.block)
    ids, weights = torch.tensor(blocks), torch.tensor(block_weights)
    print(f"{len(docs)} documents, {ids.numel()} tokens in {len(blocks)} blocks", flush=True)
    model = LlamaForCausalLM(model_config(cfg, len(tokenizer))).float()
    print(f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    start = time.time()
    stream = batches(ids, weights, cfg)
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        batch_ids, batch_weights = next(stream)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = weighted_loss(model, batch_ids, batch_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            print(f"step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    from nanolang.demo import model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=model_dir())
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    args = parser.parse_args(argv)
    train(TrainConfig(steps=args.steps, seed=args.seed), args.out)


if __name__ == "__main__":
    main()
