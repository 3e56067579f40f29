"""The peer in the same run: Hugging Face transformers' own batched generation, same workload."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from runtime.bench.workloads import BenchRequest
from runtime.config import PRESET_DIR, read_json
from runtime.model.loader import resolve_model


@dataclass(frozen=True)
class PeerResult:
    name: str
    num_requests: int
    seconds: float
    prompt_tokens: int
    output_tokens: int

    @property
    def total_tokens_per_s(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.seconds

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds


def build_hf_model(model: str, device: torch.device, dtype: torch.dtype) -> Any:
    """The same architecture as our preset or directory, random weights, sdpa attention."""
    import transformers

    path, _ = resolve_model(model)
    cfg_dict = read_json(path / "config.json" if path else PRESET_DIR / f"{model}.json")
    cfg_cls = getattr(transformers, cfg_dict["architectures"][0].replace("ForCausalLM", "Config"))
    config = cfg_cls.from_dict(cfg_dict)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        net = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    return net.eval()


@torch.inference_mode()
def run_hf_generate(
    net: Any, requests: list[BenchRequest], batch_size: int, device: torch.device
) -> PeerResult:
    """Static batches of ``batch_size`` (left-padded), greedy, exactly output_len new tokens."""
    start = time.perf_counter()
    out_tokens = 0
    for i in range(0, len(requests), batch_size):
        chunk = requests[i : i + batch_size]
        width = max(len(r.prompt_token_ids) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for row, r in enumerate(chunk):
            ids[row, width - len(r.prompt_token_ids) :] = torch.tensor(r.prompt_token_ids)
            mask[row, width - len(r.prompt_token_ids) :] = 1
        new = max(r.output_len for r in chunk)
        net.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
            do_sample=False, pad_token_id=0, eos_token_id=None,
        )  # fmt: skip
        out_tokens += sum(r.output_len for r in chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return PeerResult(
        name=f"transformers generate (static batches of {batch_size})",
        num_requests=len(requests),
        seconds=time.perf_counter() - start,
        prompt_tokens=sum(len(r.prompt_token_ids) for r in requests),
        output_tokens=out_tokens,
    )
