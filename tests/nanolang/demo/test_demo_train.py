"""The demo model's training script is deterministic: the same seed gives byte-identical weights
and tokenizer (a miniature configuration of the real script, a few steps)."""

from __future__ import annotations

from pathlib import Path

from nanolang.demo.train import TrainConfig, train

TINY = dict(
    documents=200,
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    layers=1,
    heads=2,
    kv_heads=1,
    block=64,
    batch=2,
    steps=3,
    warmup=1,
)


def files(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def test_same_seed_same_model(tmp_path: Path) -> None:
    first = files(train(TrainConfig(seed=3, **TINY), tmp_path / "a", log_every=100))
    second = files(train(TrainConfig(seed=3, **TINY), tmp_path / "b", log_every=100))
    other = files(train(TrainConfig(seed=4, **TINY), tmp_path / "c", log_every=100))
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(first)
    assert first == second
    assert first["model.safetensors"] != other["model.safetensors"]
