"""Build a model from a Hugging Face directory (safetensors, sharded or not) or a preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from runtime.config import PRESET_DIR, ModelConfig, ModelLoadError, presets, read_json
from runtime.model.llama import LlamaModel

# HF weight name (after "model.layers.N.") -> (our parameter, shard index within a fused matrix)
_LAYER_WEIGHTS = {
    "input_layernorm.weight": ("input_norm", None),
    "self_attn.q_proj.weight": ("qkv_proj", 0),
    "self_attn.k_proj.weight": ("qkv_proj", 1),
    "self_attn.v_proj.weight": ("qkv_proj", 2),
    "self_attn.q_proj.bias": ("qkv_bias", 0),
    "self_attn.k_proj.bias": ("qkv_bias", 1),
    "self_attn.v_proj.bias": ("qkv_bias", 2),
    "self_attn.o_proj.weight": ("o_proj", None),
    "post_attention_layernorm.weight": ("post_attn_norm", None),
    "mlp.gate_proj.weight": ("gate_up_proj", 0),
    "mlp.up_proj.weight": ("gate_up_proj", 1),
    "mlp.down_proj.weight": ("down_proj", None),
}
# FP8 KV-cache scales as quantised checkpoints name them (after "model.layers.N.")
_KV_SCALES = {
    "self_attn.k_scale": "k_scale",
    "self_attn.v_scale": "v_scale",
    "self_attn.k_proj.k_scale": "k_scale",
    "self_attn.v_proj.v_scale": "v_scale",
    "self_attn.attn.k_scale": "k_scale",
    "self_attn.attn.v_scale": "v_scale",
}


def _kv_scale(model: LlamaModel, name: str, tensor: torch.Tensor) -> bool:
    """Set a layer's k_scale / v_scale from a checkpoint tensor; False if ``name`` is none."""
    if not name.startswith("model.layers."):
        return False
    idx, _, rest = name[len("model.layers.") :].partition(".")
    if rest not in _KV_SCALES or not idx.isdigit() or int(idx) >= len(model.layers):
        return False
    value = float(tensor.float().reshape(-1)[0])
    if not value > 0:
        raise ModelLoadError(f"{name} must be a positive scale, got {value}")
    setattr(model.layers[int(idx)], _KV_SCALES[rest], value)
    return True


_TOP_WEIGHTS = {
    "model.embed_tokens.weight": "embed_tokens",
    "model.norm.weight": "norm",
    "lm_head.weight": "lm_head",
}


def resolve_model(
    model: str, overrides: dict[str, Any] | None = None
) -> tuple[Path | None, ModelConfig]:
    """A model argument is a directory with config.json or a preset name; ``overrides`` replace
    config.json fields (e.g. fewer layers of a real architecture, for tests)."""
    path = Path(model).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.exists():
            raise ModelLoadError(f"{path} is not a model directory: it has no config.json")
        return path, ModelConfig.from_hf({**read_json(config_file), **(overrides or {})})
    preset = PRESET_DIR / f"{model}.json"
    if preset.exists():
        return None, ModelConfig.from_hf({**read_json(preset), **(overrides or {})})
    raise ModelLoadError(
        f"model {model!r} is neither a directory nor a preset (presets: {', '.join(presets())})"
    )


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [path / name for name in sorted(set(weight_map.values()))]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{path} has no *.safetensors weights")
    return files


def _shard_slice(model: LlamaModel, param: str, shard: int) -> slice:
    cfg = model.cfg
    if param in ("qkv_proj", "qkv_bias"):
        sizes = [cfg.q_size, cfg.kv_size, cfg.kv_size]
    else:
        sizes = [cfg.intermediate_size, cfg.intermediate_size]
    start = sum(sizes[:shard])
    return slice(start, start + sizes[shard])


def _target(model: LlamaModel, name: str) -> tuple[torch.Tensor, slice | None] | None:
    if name in _TOP_WEIGHTS:
        tensor = getattr(model, _TOP_WEIGHTS[name])
        return None if tensor is None else (tensor, None)
    if not name.startswith("model.layers."):
        return None
    idx, _, rest = name[len("model.layers.") :].partition(".")
    if rest not in _LAYER_WEIGHTS or not idx.isdigit() or int(idx) >= len(model.layers):
        return None
    param, shard = _LAYER_WEIGHTS[rest]
    tensor = getattr(model.layers[int(idx)], param)
    if tensor is None:
        return None
    return tensor, None if shard is None else _shard_slice(model, param, shard)


@torch.no_grad()
def load_weights(model: LlamaModel, path: Path) -> None:
    """Copy every tensor of the checkpoint into the (fused) parameters; fail on missing ones."""
    filled: set[tuple[int, int | None]] = set()
    expected = _expected_pieces(model)
    for file in weight_files(path):
        if not file.exists():
            raise ModelLoadError(f"weight file {file} listed in the index does not exist")
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                target = _target(model, name)
                if target is None:
                    if name.endswith("_scale"):
                        _kv_scale(model, name, f.get_tensor(name))
                    continue
                tensor, rows = target
                dest = tensor if rows is None else tensor[rows]
                src = f.get_tensor(name)
                if tuple(src.shape) != tuple(dest.shape):
                    raise ModelLoadError(
                        f"{file.name}: {name} has shape {tuple(src.shape)}, "
                        f"expected {tuple(dest.shape)}"
                    )
                dest.copy_(src.to(dest.dtype))
                filled.add((id(tensor), None if rows is None else rows.start))
    missing = [n for n, key in expected.items() if key not in filled]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelLoadError(f"checkpoint in {path} lacks {len(missing)} weights: {shown}")


def _expected_pieces(model: LlamaModel) -> dict[str, tuple[int, int | None]]:
    out: dict[str, tuple[int, int | None]] = {}
    names = [n for n in _TOP_WEIGHTS if _target(model, n) is not None]
    for i in range(len(model.layers)):
        names += [f"model.layers.{i}.{rest}" for rest in _LAYER_WEIGHTS]
    for name in names:
        target = _target(model, name)
        if target is not None:
            tensor, rows = target
            out[name] = (id(tensor), None if rows is None else rows.start)
    return out


@torch.no_grad()
def init_dummy(model: LlamaModel, seed: int = 0) -> None:
    """Random weights with a sane scale (for benchmarks: values don't matter, finiteness does)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.fill_(1.0)
        elif p.dim() == 1:
            p.zero_()
        else:
            p.normal_(0.0, p.shape[-1] ** -0.5, generator=gen)


def build_model(
    model: str,
    overrides: dict[str, Any] | None,
    dtype: torch.dtype,
    device: torch.device,
    load_format: str,
    max_positions: int,
    seed: int = 0,
) -> LlamaModel:
    path, cfg = resolve_model(model, overrides)
    if load_format not in ("auto", "safetensors", "dummy"):
        raise ModelLoadError(f"unknown load_format {load_format!r}: use auto, safetensors or dummy")
    if path is None and load_format != "dummy":
        raise ModelLoadError(f"{model!r} is a preset without weights: pass load_format='dummy'")
    with torch.device("cpu" if load_format != "dummy" else device):
        net = LlamaModel(cfg, dtype, max_positions)
    if load_format == "dummy":
        init_dummy(net, seed)
    else:
        assert path is not None
        load_weights(net, path)
    return net.to(device).eval()
