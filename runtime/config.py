"""Model and engine configuration: frozen, validated when built."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernels.decode_choice import DecodeChoice
    from runtime.pipeline.guard import GuardConfig

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
PRESET_DIR = Path(__file__).parent / "presets"
logger = logging.getLogger("runtime")


class ModelLoadError(ValueError):
    """A model directory or preset that cannot be loaded; the message says why."""


ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    rope_type: str = "default"  # one of ROPE_TYPES
    scaling: tuple[tuple[str, Any], ...] = ()  # the checkpoint's scaling fields (factor, ...)
    max_position_embeddings: int = 2048  # the model's context length, which yarn scales to

    @staticmethod
    def from_hf(cfg: dict[str, Any]) -> RopeConfig:
        # transformers >= 5 writes rope_parameters; older checkpoints rope_theta + rope_scaling
        params = dict(cfg.get("rope_parameters") or {})
        scaling = dict(cfg.get("rope_scaling") or {})
        merged = {**scaling, **params}
        rope_type = merged.pop("rope_type", merged.pop("type", "default")) or "default"
        if rope_type not in ROPE_TYPES:
            raise ModelLoadError(
                f"unsupported rope scaling type {rope_type!r}; supported: {', '.join(ROPE_TYPES)}"
            )
        theta = float(merged.pop("rope_theta", cfg.get("rope_theta", 10000.0)))
        return RopeConfig(
            theta=theta,
            rope_type=rope_type,
            scaling=tuple(sorted(merged.items())),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        )


@dataclass(frozen=True)
class ModelConfig:
    """The architecture numbers of a Llama-family decoder."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope: RopeConfig
    qkv_bias: bool
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    torch_dtype: str = "float32"
    # tokens a sliding-window layer attends to (None: every layer attends to the whole context);
    # not implemented: the engine's context is capped at it (see context_limit)
    sliding_window: int | None = None

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ModelLoadError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_kv_heads})"
            )

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def num_parameters(self) -> int:
        """Parameter count (embeddings counted once per matrix that exists)."""
        h, i, v = self.hidden_size, self.intermediate_size, self.vocab_size
        attn = h * (self.q_size + 2 * self.kv_size) + self.q_size * h
        per_layer = attn + 3 * h * i + 2 * h
        head = 0 if self.tie_word_embeddings else v * h
        return v * h + self.num_layers * per_layer + h + head

    @staticmethod
    def from_hf(cfg: dict[str, Any]) -> ModelConfig:
        archs = cfg.get("architectures") or []
        arch = archs[0] if archs else ""
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelLoadError(
                f"unsupported architecture {arch or '(none given)'!r}; "
                f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        try:
            heads = int(cfg["num_attention_heads"])
            hidden = int(cfg["hidden_size"])
            eos = cfg.get("eos_token_id")
            eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
            return ModelConfig(
                architecture=arch,
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope=RopeConfig.from_hf(cfg),
                qkv_bias=arch == "Qwen2ForCausalLM" or bool(cfg.get("attention_bias", False)),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                eos_token_ids=eos_ids,
                bos_token_id=cfg.get("bos_token_id"),
                torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"),
                sliding_window=_sliding_window(cfg),
            )
        except KeyError as exc:
            raise ModelLoadError(f"config.json lacks required field {exc.args[0]!r}") from exc


def _sliding_window(cfg: dict[str, Any]) -> int | None:
    """The window of the layers that use sliding-window attention, if any layer does."""
    window = cfg.get("sliding_window")
    if not window:
        return None
    types = cfg.get("layer_types")
    if types is not None:
        return int(window) if "sliding_attention" in types else None
    if "use_sliding_window" in cfg:  # Qwen2: layers from max_window_layers on use the window
        layers = int(cfg["num_hidden_layers"])
        used = cfg["use_sliding_window"] and int(cfg.get("max_window_layers", layers)) < layers
        return int(window) if used else None
    return int(window)  # Mistral


def context_limit(model: ModelConfig, engine: EngineConfig) -> int:
    """The engine's context length: max_model_len, else the model's positions, never past a
    sliding window (within it, full attention computes the same; beyond it, it would not)."""
    limit = engine.max_model_len or model.max_position_embeddings
    window = model.sliding_window
    if window is None or window >= limit:
        return limit
    if engine.max_model_len is not None:
        raise ModelLoadError(
            f"this model uses sliding-window attention over {window} tokens, which the engine "
            f"does not implement: max_model_len={engine.max_model_len} would attend past the "
            f"window and compute wrong outputs; use max_model_len <= {window}"
        )
    logger.warning("sliding-window attention (%d tokens) is not implemented: context capped "
                   "at %d tokens", window, window)  # fmt: skip
    return window


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3")
ALLREDUCE_CHOICES = ("nccl", "symm_mem")  # EngineConfig.allreduce
# EngineConfig.attention_backend: every paged-attention backend kernels' registry can hold (the
# optional ones where their library imports; whether one is available is the registry's answer)
ATTENTION_BACKENDS = ("torch", "triton", "flashinfer", "flashinfer-prefill")


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs; values found at start-up (KV blocks) live in the engine, not here."""

    block_size: int = 16
    # token budget of one iteration (decode + prefill chunks); 8,192 measured ahead of 2,048 and
    # level with 16,384 on the prefill-heavy workloads (docs/performance.md)
    max_num_batched_tokens: int = 8192
    # sequences in one iteration: a cap, not the usual limit; the KV cache and the admission
    # reserve below decide how many run at once (the bench records the largest batch reached)
    max_num_seqs: int = 1024
    # admission keeps free the KV blocks each running sequence needs for up to this many more of
    # its output tokens (max_tokens), so a batch sized to memory does not run out and preempt
    # (recompute) as its sequences grow; 0 admits on the prompt alone
    admission_reserve_tokens: int = 2048
    # the tail: when every waiting sequence could run to the end together with the running ones
    # in the free blocks plus this share of all blocks, they are admitted on their prompts alone
    # (the reserve waived), so the last few requests do not form a small batch of their own that
    # decodes for their whole output; the shortfall, if their outputs reach it, is preempted
    # (recomputed) near the end, at most once per sequence. 0 turns it off. 0.1 measured on
    # Llama-3-70B at TP=2, 256 requests: 1.17x and 1.11x; in the admission simulator it leaves
    # every Llama-3-8B workload of 1,000 requests unchanged (docs/performance.md)
    admission_tail_overcommit: float = 0.1
    max_model_len: int | None = None  # defaults to the model's max_position_embeddings
    kv_cache_memory_bytes: int | None = None  # None: derived from the device's memory
    gpu_memory_utilization: float = 0.90
    enable_chunked_prefill: bool = True
    enforce_eager: bool = False  # True: no CUDA graphs for decode iterations
    enable_prefix_caching: bool = True  # reuse the KV of cached prompt prefixes (radix tree)
    # share of KV blocks an admission must leave free while sequences run (their next blocks), so
    # a sequence just admitted is not preempted at its running neighbours' next block boundary
    admission_watermark: float = 0.01
    # form batch i+1 on the host while the device runs batch i; None: on for CUDA, off on the CPU
    async_scheduling: bool | None = None
    # NanoFlow pipeline: None (plain dense forward), "default" (the shipped plans; under tensor
    # parallelism the network search's plan set, made at start-up), a plan JSON path; either
    # with ":sequential" for the same nano-batches on one stream
    pipeline: str | None = None
    # the plan guard (runtime.pipeline.guard): a plan set's plans are timed against the dense
    # forward on the live engine, plan_guard_samples pairs (a plan iteration, then a dense one
    # of the same kind) per bucket, and a bucket whose plan is not at least plan_guard_min_gain
    # faster (the pairs' median ratio) runs dense; plan_guard_recheck_every iterations of a
    # bucket after its verdict it is tried again (0: never); False: the plan set's choices as
    # they are. No effect without a plan set
    plan_guard: bool = True
    plan_guard_samples: int = 4
    plan_guard_min_gain: float = 0.02
    plan_guard_recheck_every: int = 4096
    # "torch", "triton", "flashinfer", "flashinfer-prefill" (Triton's decode, FlashInfer's
    # prefill): the paged-attention backend; None: the registry's choice (on CUDA
    # "flashinfer-prefill" where FlashInfer and Triton import, else "triton"; torch on CPU)
    attention_backend: str | None = None
    # "auto": the model's dtype; "fp8" (or "fp8_e4m3"): float8 e4m3 with a scale per layer for K
    # and one for V (from the checkpoint's k_scale / v_scale, else 1.0), half the bytes of bf16
    kv_cache_dtype: str = "auto"
    # decode attention where the backend has a choice (the Triton one; kernels.decode_choice):
    # the kernel on the whole GPU, "auto" (the measured choice per KV cache dtype), "gather",
    # "tma" (persistent grid), "tma-items" (one program per work item), "gather-64" or
    # "by-context" (the default: per decode batch over a 16-bit cache "tma-items" on
    # near-uniform contexts, "gather" on ragged ones, "auto" over float8; twice the decode CUDA
    # graphs), "by-context@RATIO" with its uniform-context ratio (max / mean context, exact:
    # e.g. "by-context@1.1"; 1.05 without, the measured choice); and the dtype a
    # float8 KV cache is widened to for the dots, "fp16" (q scaled per row into float16's range;
    # 1.3-1.4x faster than "q" and closer to the reference, docs/performance.md) or "q" (the
    # queries' dtype, bfloat16: the widening before 2026-11-30)
    decode_kernel: str = "by-context"
    fp8_decode_dot: str = "fp16"
    # the linear operator's kernel backend by name ("torch": cuBLAS through torch; "cublaslt":
    # cuBLASLt with the algorithm kernels/cublaslt_algos.json measured for the shape, torch's
    # linear elsewhere; "triton": kernels/triton/linear.py's tiles where its measured table lists
    # the shape, cuBLAS elsewhere); None: the registry's choice (cublaslt on CUDA, torch on CPU)
    linear_backend: str | None = None
    # rope and the KV store in one kernel (kernels' rotary_store_kv) where the backend of rotary
    # and store_kv has it; False: the two kernels (an A/B switch; the tokens are the same)
    fuse_rope_kv_store: bool = True
    # ranks of tensor parallelism: N > 1 starts one worker process per rank (one GPU each, or
    # N processes on the CPU with gloo); the calling process keeps the scheduler
    tensor_parallel_size: int = 1
    # tensor parallelism's own all-reduces: "nccl" (the process group's; gloo on the CPU) or
    # "symm_mem" (PyTorch's symmetric-memory two-shot all-reduce over NVLink peer memory for
    # tensors of up to symm_mem_max_bytes, NCCL above; CUDA only; runtime.distributed.allreduce)
    allreduce: str = "nccl"
    symm_mem_max_bytes: int = 8 << 20
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two, got {self.block_size}")
        if self.admission_reserve_tokens < 0:
            raise ValueError("admission_reserve_tokens must be >= 0")
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        if not 0 <= self.admission_tail_overcommit <= 1:
            raise ValueError("admission_tail_overcommit must be in [0, 1]")
        if not 0 <= self.admission_watermark < 1:
            raise ValueError("admission_watermark must be in [0, 1)")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(
                f"kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPES)}, "
                f"got {self.kv_cache_dtype!r}"
            )
        self.decode_choice()  # a clear error for an unknown kernel or dot dtype
        backend = self.attention_backend
        if backend is not None and backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {', '.join(ATTENTION_BACKENDS)} "
                             f"(or None: the registry's choice), got {backend!r}")  # fmt: skip
        if self.tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be >= 1")
        if self.allreduce not in ALLREDUCE_CHOICES:
            raise ValueError(f"allreduce must be one of {', '.join(ALLREDUCE_CHOICES)}, "
                             f"got {self.allreduce!r}")  # fmt: skip
        self.guard_config()  # a clear error for a bad sample count or gain
        if self.symm_mem_max_bytes < 1:
            raise ValueError("symm_mem_max_bytes must be positive")
        if self.kv_cache_memory_bytes is not None and self.kv_cache_memory_bytes <= 0:
            raise ValueError("kv_cache_memory_bytes must be positive")

    def guard_config(self) -> GuardConfig | None:
        """The plan guard's settings (plan_guard_samples, _min_gain, _recheck_every), validated
        even when it is off; None: ``plan_guard`` off."""
        from runtime.pipeline.guard import GuardConfig

        config = GuardConfig(self.plan_guard_samples, self.plan_guard_min_gain,
                             self.plan_guard_recheck_every)  # fmt: skip
        return config if self.plan_guard else None

    def decode_choice(self) -> DecodeChoice:
        """decode_kernel and fp8_decode_dot as the kernels' plain choice (validated there)."""
        from kernels.decode_choice import DecodeChoice  # the kernels package loads torch

        return DecodeChoice.of(self.decode_kernel, self.fp8_decode_dot)
